//! The certificates data plane: import (PFX or PEM), get (latest, by version), policy, update,
//! list, versions, delete with soft delete, deleted certificates, recover, purge. Requests pass
//! the same pipeline as the secrets API (`secrets::vault`); this file classifies the paths,
//! validates bodies, turns an import into a store write and renders the service's JSON.
//!
//! Not served (each answers 501 `NotImplemented` with the reason): creating a certificate from a
//! policy (`/create`, `/pending`), policy updates, merge, backup/restore, contacts and issuers.

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::render::Render;
use super::secrets::{blocking, check_tags, read_json, Paging};
use super::{json_response, purge_protected};
use crate::local_vault::error::ApiError;
use crate::local_vault::pki::{self, CONTENT_TYPE_PEM, CONTENT_TYPE_PKCS12};
use crate::local_vault::store::{
    CertificateRecord, DeletedCertificateRecord, NewCertificate, NewVersion, Now, VersionUpdate,
};
use crate::local_vault::Shared;
use crate::secret_value::SecretValue;
use crate::vault::certificate_model::{
    BasicConstraints, CertificateBundle, CertificateImportParameters, CertificateItem,
    CertificatePolicy, CertificateUpdateParameters, DeletedCertificateBundle,
    DeletedCertificateItem, IssuerParameters, KeyProperties, LifetimeAction, LifetimeActionType,
    LifetimeTrigger, PolicyAttributes, SecretProperties, SubjectAlternativeNames,
    X509CertificateProperties,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertOp {
    Import(String),
    Get(String, Option<String>),
    GetPolicy(String),
    Update(String, Option<String>),
    Delete(String),
    List,
    ListVersions(String),
    ListDeleted,
    GetDeleted(String),
    Purge(String),
    Recover(String),
    /// A certificates operation the local vault does not serve (what it is, for the 501).
    Unsupported(&'static str),
}

impl CertOp {
    pub fn operation(&self) -> &'static str {
        match self {
            CertOp::Import(_) => "import_certificate",
            CertOp::Get(..) => "get_certificate",
            CertOp::GetPolicy(_) => "get_certificate_policy",
            CertOp::Update(..) => "update_certificate",
            CertOp::Delete(_) => "delete_certificate",
            CertOp::List => "list_certificates",
            CertOp::ListVersions(_) => "list_certificate_versions",
            CertOp::ListDeleted => "list_deleted_certificates",
            CertOp::GetDeleted(_) => "get_deleted_certificate",
            CertOp::Purge(_) => "purge_deleted_certificate",
            CertOp::Recover(_) => "recover_deleted_certificate",
            CertOp::Unsupported(_) => "unsupported_certificate_operation",
        }
    }

    /// The secret permission it needs from a principal given no `certificates/…` permission
    /// (one set of permissions for secrets and certificates): import and update need `set`.
    pub fn permission(&self) -> &'static str {
        match self {
            CertOp::Import(_) | CertOp::Update(..) => "set",
            CertOp::Get(..) | CertOp::GetPolicy(_) | CertOp::GetDeleted(_) => "get",
            CertOp::Unsupported(_) => "get",
            CertOp::Delete(_) => "delete",
            CertOp::List | CertOp::ListVersions(_) | CertOp::ListDeleted => "list",
            CertOp::Purge(_) => "purge",
            CertOp::Recover(_) => "recover",
        }
    }

    /// The certificate permission of an access policy it needs (for a principal given
    /// `certificates/…` permissions).
    pub fn certificate_permission(&self) -> &'static str {
        match self {
            CertOp::Import(_) => "import",
            CertOp::Update(..) => "update",
            CertOp::Get(..) | CertOp::GetPolicy(_) | CertOp::GetDeleted(_) => "get",
            CertOp::Unsupported(_) => "get",
            CertOp::Delete(_) => "delete",
            CertOp::List | CertOp::ListVersions(_) | CertOp::ListDeleted => "list",
            CertOp::Purge(_) => "purge",
            CertOp::Recover(_) => "recover",
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            CertOp::Import(n)
            | CertOp::Get(n, _)
            | CertOp::GetPolicy(n)
            | CertOp::Update(n, _)
            | CertOp::Delete(n)
            | CertOp::ListVersions(n)
            | CertOp::GetDeleted(n)
            | CertOp::Purge(n)
            | CertOp::Recover(n) => Some(n),
            _ => None,
        }
    }
}

/// The certificate operation of `segs` (the path split on `/`), if it is one of the
/// certificates API's paths; `Some(None)` for a known path with a method it does not take.
pub fn classify(m: &Method, segs: &[&str]) -> Option<Option<CertOp>> {
    let s = |x: &str| x.to_owned();
    let get = m == Method::GET;
    let op = match segs {
        ["certificates"] | ["certificates", ""] => get.then_some(CertOp::List),
        ["certificates", "contacts"] => Some(CertOp::Unsupported("certificate contacts")),
        ["certificates", "issuers", ..] => Some(CertOp::Unsupported("certificate issuers")),
        ["certificates", "restore"] => {
            (m == Method::POST).then_some(CertOp::Unsupported("certificate backup and restore"))
        }
        ["certificates", name] | ["certificates", name, ""] => match *m {
            Method::GET => Some(CertOp::Get(s(name), None)),
            Method::PATCH => Some(CertOp::Update(s(name), None)),
            Method::DELETE if segs.len() == 2 => Some(CertOp::Delete(s(name))),
            _ => None,
        },
        ["certificates", name, "import"] => (m == Method::POST).then(|| CertOp::Import(s(name))),
        ["certificates", _, "create"] => (m == Method::POST).then_some(CertOp::Unsupported(
            "creating certificates from a policy (POST /certificates/{name}/create)",
        )),
        ["certificates", _, "pending", ..] => Some(CertOp::Unsupported(
            "certificate operations (/certificates/{name}/pending)",
        )),
        ["certificates", _, "backup"] => {
            (m == Method::POST).then_some(CertOp::Unsupported("certificate backup and restore"))
        }
        ["certificates", name, "versions"] | ["certificates", name, "versions", ""] => {
            get.then(|| CertOp::ListVersions(s(name)))
        }
        ["certificates", name, "policy"] => match *m {
            Method::GET => Some(CertOp::GetPolicy(s(name))),
            Method::PATCH => Some(CertOp::Unsupported("certificate policy updates")),
            _ => None,
        },
        ["certificates", name, version] | ["certificates", name, version, ""] => match *m {
            Method::GET => Some(CertOp::Get(s(name), Some(s(version)))),
            Method::PATCH => Some(CertOp::Update(s(name), Some(s(version)))),
            _ => None,
        },
        ["deletedcertificates"] | ["deletedcertificates", ""] => get.then_some(CertOp::ListDeleted),
        ["deletedcertificates", name] | ["deletedcertificates", name, ""] => match *m {
            Method::GET => Some(CertOp::GetDeleted(s(name))),
            Method::DELETE => Some(CertOp::Purge(s(name))),
            _ => None,
        },
        ["deletedcertificates", name, "recover"] => {
            (m == Method::POST).then(|| CertOp::Recover(s(name)))
        }
        ["certificates", ..] | ["deletedcertificates", ..] => None,
        _ => return None,
    };
    Some(op)
}

/// Runs one certificate operation (authentication, throttling, api-version, access policy and
/// the name rule already passed).
pub(super) async fn handle(
    st: &std::sync::Arc<Shared>,
    op: CertOp,
    r: &Render<'_>,
    req: Request,
    pairs: &[(String, String)],
    api_version: &str,
    now: Now,
) -> Result<Response, ApiError> {
    match op {
        CertOp::Import(name) => {
            let params: CertificateImportParameters = read_json(req).await?;
            let rec = blocking(st, move |s| {
                let new = read_import(params, now)?;
                s.import_certificate(&name, new, now)
            })
            .await?;
            Ok(json_response(StatusCode::OK, &bundle(r, &rec, true)))
        }
        CertOp::Get(name, version) => {
            let latest = version.is_none();
            let rec = blocking(st, move |s| {
                s.get_certificate(&name, version.as_deref(), now)
            })
            .await?;
            Ok(json_response(StatusCode::OK, &bundle(r, &rec, latest)))
        }
        CertOp::GetPolicy(name) => {
            let asked = name.clone();
            let policy = blocking(st, move |s| s.certificate_policy(&name, now)).await?;
            Ok(json_response(
                StatusCode::OK,
                &with_policy_id(r, &asked, policy),
            ))
        }
        CertOp::Update(name, version) => {
            let params: CertificateUpdateParameters = read_json(req).await?;
            if params.policy.is_some() {
                return Err(ApiError::not_implemented("certificate policy updates"));
            }
            check_tags(params.tags.as_ref())?;
            let attrs = params.attributes.unwrap_or_default();
            let change = VersionUpdate {
                content_type: None,
                tags: params.tags,
                enabled: attrs.enabled,
                nbf: None,
                exp: None,
            };
            let latest = version.is_none();
            let rec = blocking(st, move |s| {
                s.update_certificate(&name, version.as_deref(), change, now)
            })
            .await?;
            Ok(json_response(StatusCode::OK, &bundle(r, &rec, latest)))
        }
        CertOp::Delete(name) => {
            let soft = st.config.soft_delete.then(|| {
                (
                    st.config.deletion_delay.as_millis() as i64,
                    st.config.recoverable_days,
                )
            });
            let rec = blocking(st, move |s| s.delete_certificate(&name, soft, now)).await?;
            Ok(json_response(StatusCode::OK, &deleted_bundle(r, &rec)))
        }
        CertOp::List => {
            let page = Paging::parse(pairs)?;
            let after = page.after.clone();
            let size = st.page_size(page.size);
            let (recs, next) = blocking(st, move |s| {
                s.list_certificates(after.as_deref(), size, now)
            })
            .await?;
            let items: Vec<_> = recs.iter().map(|rec| item(r, rec, false)).collect();
            Ok(r.list_page(items, next, "/certificates", api_version, &page))
        }
        CertOp::ListVersions(name) => {
            let page = Paging::parse(pairs)?;
            let after = page.after.clone();
            let path = format!("/certificates/{name}/versions");
            let size = st.page_size(page.size);
            let (recs, next) = blocking(st, move |s| {
                s.list_certificate_versions(&name, after.as_deref(), size, now)
            })
            .await?;
            let items: Vec<_> = recs.iter().map(|rec| item(r, rec, true)).collect();
            Ok(r.list_page(items, next, &path, api_version, &page))
        }
        CertOp::ListDeleted => {
            let page = Paging::parse(pairs)?;
            let after = page.after.clone();
            let size = st.page_size(page.size);
            let (recs, next) = blocking(st, move |s| {
                s.list_deleted_certificates(after.as_deref(), size, now)
            })
            .await?;
            let items: Vec<_> = recs.iter().map(|rec| deleted_item(r, rec)).collect();
            Ok(r.list_page(items, next, "/deletedcertificates", api_version, &page))
        }
        CertOp::GetDeleted(name) => {
            let rec = blocking(st, move |s| s.get_deleted_certificate(&name, now)).await?;
            Ok(json_response(StatusCode::OK, &deleted_bundle(r, &rec)))
        }
        CertOp::Purge(name) => {
            if st.config.purge_protection {
                return Err(purge_protected("Certificate", &name));
            }
            blocking(st, move |s| s.purge_deleted_certificate(&name, now)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        CertOp::Recover(name) => {
            let delay = st.config.deletion_delay.as_millis() as i64;
            let rec = blocking(st, move |s| {
                s.recover_deleted_certificate(&name, delay, now)
            })
            .await?;
            Ok(json_response(StatusCode::OK, &bundle(r, &rec, true)))
        }
        CertOp::Unsupported(what) => Err(ApiError::not_implemented(what)),
    }
}

/// The policy with its `id` (the store keeps policies without one: the id names the host the
/// client used).
fn with_policy_id(r: &Render<'_>, name: &str, mut policy: CertificatePolicy) -> CertificatePolicy {
    policy.id = Some(format!("{}/certificates/{name}/policy", r.base()));
    policy
}

/// An import's body as a store write: the content read (PFX or PEM, with the password), the
/// backing secret's value in the policy's content type, the policy the service shows for an
/// imported certificate, and the version's attributes (`nbf`/`exp` from the certificate).
fn read_import(p: CertificateImportParameters, now: Now) -> Result<NewCertificate, ApiError> {
    let given = p.policy.unwrap_or_default();
    let content_type = given
        .secret_props
        .as_ref()
        .and_then(|sp| sp.content_type.clone())
        .unwrap_or_else(|| CONTENT_TYPE_PKCS12.to_owned());
    if content_type != CONTENT_TYPE_PKCS12 && content_type != CONTENT_TYPE_PEM {
        return Err(ApiError::bad_parameter(format!(
            "The content type of a certificate's secret must be {CONTENT_TYPE_PKCS12} or \
             {CONTENT_TYPE_PEM}, not {content_type}."
        )));
    }
    check_tags(p.tags.as_ref())?;
    let pem = content_type == CONTENT_TYPE_PEM;
    let material = pki::read_import(
        p.value.expose(),
        p.pwd.as_ref().map(SecretValue::expose),
        pem,
    )
    .map_err(|e| ApiError::bad_parameter(e.message()))?;
    let leaf = material
        .chain
        .first()
        .cloned()
        .ok_or_else(|| ApiError::bad_parameter(pki::MaterialError::Pkcs12.message()))?;
    let facts = pki::leaf_facts(&leaf).ok_or_else(|| {
        ApiError::bad_parameter(if pem {
            pki::MaterialError::Pem.message()
        } else {
            pki::MaterialError::Pkcs12.message()
        })
    })?;
    let key_props = given.key_props.clone().unwrap_or_default();
    let exportable = key_props.exportable.unwrap_or(true);
    let value = pki::secret_value(&material, &content_type, exportable)
        .map_err(|()| ApiError::internal("The certificate's secret could not be written."))?;
    let attrs = p.attributes.unwrap_or_default();
    let policy = imported_policy(&given, &facts, &content_type, exportable, now);
    Ok(NewCertificate {
        version: NewVersion {
            value: SecretValue::new(value.to_string()),
            content_type: Some(content_type),
            tags: p.tags,
            enabled: attrs.enabled.unwrap_or(true),
            nbf: Some(facts.not_before),
            exp: Some(facts.not_after),
        },
        cer: leaf,
        policy,
    })
}

/// The policy of an imported certificate, as the service builds it: key and X.509 properties
/// read from the certificate, issuer `Unknown`, an `EmailContacts` action at 80 % of the
/// lifetime; the content type, exportability, key reuse, issuer and lifetime actions of the
/// given policy win.
fn imported_policy(
    given: &CertificatePolicy,
    facts: &pki::LeafFacts,
    content_type: &str,
    exportable: bool,
    now: Now,
) -> CertificatePolicy {
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let sans = SubjectAlternativeNames {
        emails: non_empty(&facts.emails),
        dns_names: non_empty(&facts.dns_names),
        upns: non_empty(&facts.upns),
    };
    let has_sans = sans.emails.is_some() || sans.dns_names.is_some() || sans.upns.is_some();
    let given_key = given.key_props.clone().unwrap_or_default();
    CertificatePolicy {
        id: None,
        key_props: Some(KeyProperties {
            exportable: Some(exportable),
            kty: Some(facts.key.kty.clone()),
            key_size: facts.key.key_size,
            reuse_key: Some(given_key.reuse_key.unwrap_or(false)),
            crv: facts.key.crv.clone(),
        }),
        secret_props: Some(SecretProperties {
            content_type: Some(content_type.to_owned()),
        }),
        x509_props: Some(X509CertificateProperties {
            subject: Some(facts.subject.clone()),
            sans: has_sans.then_some(sans),
            ekus: non_empty(&facts.ekus),
            key_usage: non_empty(&facts.key_usage),
            validity_months: Some(pki::validity_months(facts.not_before, facts.not_after)),
            basic_constraints: facts.ca.map(|ca| BasicConstraints { ca }),
        }),
        lifetime_actions: Some(given.lifetime_actions.clone().unwrap_or_else(|| {
            vec![LifetimeAction {
                trigger: Some(LifetimeTrigger {
                    lifetime_percentage: Some(80),
                    days_before_expiry: None,
                }),
                action: Some(LifetimeActionType {
                    action_type: Some("EmailContacts".to_owned()),
                }),
            }]
        })),
        issuer: Some(IssuerParameters {
            name: Some(
                given
                    .issuer
                    .as_ref()
                    .and_then(|i| i.name.clone())
                    .unwrap_or_else(|| "Unknown".to_owned()),
            ),
            cty: None,
            cert_transparency: None,
        }),
        attributes: Some(PolicyAttributes {
            enabled: Some(true),
            created: Some(now.secs()),
            updated: Some(now.secs()),
        }),
    }
}

fn bundle(r: &Render<'_>, rec: &CertificateRecord, with_policy: bool) -> CertificateBundle {
    let base = r.base();
    let (name, version) = (&rec.name, &rec.version.version);
    CertificateBundle {
        id: Some(format!("{base}/certificates/{name}/{version}")),
        kid: Some(format!("{base}/keys/{name}/{version}")),
        sid: Some(format!("{base}/secrets/{name}/{version}")),
        x5t: Some(pki::x5t(&rec.cer)),
        cer: Some(STANDARD.encode(&rec.cer)),
        attributes: Some(r.version_attributes(&rec.version)),
        tags: rec.version.tags.clone(),
        policy: with_policy.then(|| with_policy_id(r, name, rec.policy.clone())),
    }
}

fn deleted_bundle(r: &Render<'_>, rec: &DeletedCertificateRecord) -> DeletedCertificateBundle {
    let d = &rec.deleted;
    let as_certificate = CertificateRecord {
        name: d.name.clone(),
        version: d.version.clone(),
        cer: rec.cer.clone(),
        policy: rec.policy.clone(),
    };
    let soft = r.st.config.soft_delete;
    DeletedCertificateBundle {
        recovery_id: soft.then(|| format!("{}/deletedcertificates/{}", r.base(), d.name)),
        deleted_date: soft.then_some(d.deleted_date),
        scheduled_purge_date: soft.then_some(d.scheduled_purge),
        certificate: bundle(r, &as_certificate, true),
    }
}

fn item(r: &Render<'_>, rec: &CertificateRecord, versioned: bool) -> CertificateItem {
    let id = if versioned {
        format!(
            "{}/certificates/{}/{}",
            r.base(),
            rec.name,
            rec.version.version
        )
    } else {
        format!("{}/certificates/{}", r.base(), rec.name)
    };
    CertificateItem {
        id: Some(id),
        attributes: Some(r.version_attributes(&rec.version)),
        tags: rec.version.tags.clone(),
        x5t: Some(pki::x5t(&rec.cer)),
    }
}

fn deleted_item(r: &Render<'_>, rec: &DeletedCertificateRecord) -> DeletedCertificateItem {
    let d = &rec.deleted;
    let as_certificate = CertificateRecord {
        name: d.name.clone(),
        version: d.version.clone(),
        cer: rec.cer.clone(),
        policy: CertificatePolicy::default(),
    };
    DeletedCertificateItem {
        recovery_id: Some(format!("{}/deletedcertificates/{}", r.base(), d.name)),
        deleted_date: Some(d.deleted_date),
        scheduled_purge_date: Some(d.scheduled_purge),
        item: item(r, &as_certificate, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: &str, path: &str) -> Option<Option<CertOp>> {
        let m = method.parse::<Method>().expect("method");
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        classify(&m, &segs)
    }

    #[test]
    fn certificate_paths_classify_like_the_service() {
        assert_eq!(c("GET", "/certificates"), Some(Some(CertOp::List)));
        assert_eq!(
            c("GET", "/certificates/a/"),
            Some(Some(CertOp::Get("a".into(), None)))
        );
        assert_eq!(
            c("GET", "/certificates/a/v1"),
            Some(Some(CertOp::Get("a".into(), Some("v1".into()))))
        );
        assert_eq!(
            c("GET", "/certificates/a/policy"),
            Some(Some(CertOp::GetPolicy("a".into())))
        );
        assert_eq!(
            c("GET", "/certificates/a/versions"),
            Some(Some(CertOp::ListVersions("a".into())))
        );
        assert_eq!(
            c("POST", "/certificates/a/import"),
            Some(Some(CertOp::Import("a".into())))
        );
        assert!(matches!(
            c("POST", "/certificates/a/create"),
            Some(Some(CertOp::Unsupported(_)))
        ));
        assert_eq!(
            c("PATCH", "/certificates/a/"),
            Some(Some(CertOp::Update("a".into(), None)))
        );
        assert_eq!(
            c("DELETE", "/certificates/a"),
            Some(Some(CertOp::Delete("a".into())))
        );
        assert_eq!(
            c("POST", "/deletedcertificates/a/recover"),
            Some(Some(CertOp::Recover("a".into())))
        );
        assert_eq!(
            c("DELETE", "/deletedcertificates/a"),
            Some(Some(CertOp::Purge("a".into())))
        );
        assert_eq!(c("PUT", "/certificates/a"), Some(None));
        assert_eq!(c("GET", "/secrets/a"), None);
    }
}
