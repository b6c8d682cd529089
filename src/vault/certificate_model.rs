//! Serde types mirroring the Key Vault certificates wire JSON (REST API 7.x), shared by the local
//! vault (and, later, the client). Names follow the REST spec (`CertificateBundle`,
//! `CertificateItem`, `CertificatePolicy`, …). The policy's own fields are snake_case on the wire
//! (`key_props`, `x509_props`, `validity_months`), except `secret_props.contentType`; the
//! bundle's are camelCase. Absent fields are omitted, never `null`.

use serde::{Deserialize, Serialize};

use super::model::{SecretAttributes, Tags};
use crate::secret_value::SecretValue;

/// The attributes of a certificate version: the shape of a secret's (`enabled`, `nbf`, `exp`,
/// `created`, `updated`, `recoveryLevel`, `recoverableDays`).
pub type CertificateAttributes = SecretAttributes;

/// `GET /certificates/{name}[/{version}]`, import, update, recover.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateBundle {
    /// `https://HOST/certificates/NAME/VERSION`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The backing key: `https://HOST/keys/NAME/VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The backing secret: `https://HOST/secrets/NAME/VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// base64url (no padding) of the SHA-1 thumbprint of `cer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t: Option<String>,
    /// base64 of the leaf certificate's DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<CertificateAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<CertificatePolicy>,
}

/// `DELETE /certificates/{name}`, `GET /deletedcertificates/{name}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedCertificateBundle {
    /// Absent when soft delete is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_purge_date: Option<i64>,
    #[serde(flatten)]
    pub certificate: CertificateBundle,
}

/// One entry of `GET /certificates` (base id) or `GET /certificates/{name}/versions`
/// (versioned id).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<CertificateAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t: Option<String>,
}

impl CertificateItem {
    /// The certificate's name, from an id `https://HOST/certificates/NAME[/VERSION]`.
    pub fn name(&self) -> Option<String> {
        let url = url::Url::parse(self.id.as_deref()?).ok()?;
        let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
        if segments.next()? != "certificates" {
            return None;
        }
        let name = segments.next()?.to_owned();
        segments.nth(1).is_none().then_some(name)
    }
}

/// One entry of `GET /deletedcertificates`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedCertificateItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_purge_date: Option<i64>,
    #[serde(flatten)]
    pub item: CertificateItem,
}

/// A certificate's management policy (`GET /certificates/{name}/policy`, and `policy` in the
/// latest version's bundle).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatePolicy {
    /// `https://HOST/certificates/NAME/policy`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_props: Option<KeyProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_props: Option<SecretProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_props: Option<X509CertificateProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_actions: Option<Vec<LifetimeAction>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<PolicyAttributes>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_key: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretProperties {
    #[serde(
        default,
        rename = "contentType",
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct X509CertificateProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sans: Option<SubjectAlternativeNames>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ekus: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_usage: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_months: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_constraints: Option<BasicConstraints>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectAlternativeNames {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upns: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicConstraints {
    pub ca: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<LifetimeTrigger>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<LifetimeActionType>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeTrigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_percentage: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_before_expiry: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeActionType {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_type: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_transparency: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
}

/// Body of `POST /certificates/{name}/import`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateImportParameters {
    /// base64 of the PFX, or the PEM text (as is or base64).
    pub value: SecretValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd: Option<SecretValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<CertificatePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<CertificateAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_cert_order: Option<bool>,
}

/// Body of `PATCH /certificates/{name}/{version}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateUpdateParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<CertificatePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<CertificateAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_come_from_their_ids() {
        let item = |id: &str| CertificateItem {
            id: Some(id.to_owned()),
            ..Default::default()
        };
        assert_eq!(
            item("https://kv.vault.azure.net/certificates/web-tls").name(),
            Some("web-tls".into())
        );
        assert_eq!(
            item("https://kv.vault.azure.net/certificates/web/0123abcd").name(),
            Some("web".into())
        );
        assert_eq!(item("https://kv.vault.azure.net/secrets/web").name(), None);
        assert_eq!(
            item("https://kv.vault.azure.net/certificates/a/b/c").name(),
            None
        );
    }

    #[test]
    fn policy_field_names_are_the_services() {
        let policy = CertificatePolicy {
            key_props: Some(KeyProperties {
                exportable: Some(true),
                kty: Some("RSA".into()),
                key_size: Some(2048),
                reuse_key: Some(false),
                crv: None,
            }),
            secret_props: Some(SecretProperties {
                content_type: Some("application/x-pkcs12".into()),
            }),
            x509_props: Some(X509CertificateProperties {
                validity_months: Some(13),
                basic_constraints: Some(BasicConstraints { ca: false }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(&policy).expect("json");
        assert_eq!(json["key_props"]["key_size"], 2048);
        assert_eq!(json["key_props"]["reuse_key"], false);
        assert_eq!(json["secret_props"]["contentType"], "application/x-pkcs12");
        assert_eq!(json["x509_props"]["validity_months"], 13);
        assert_eq!(json["x509_props"]["basic_constraints"]["ca"], false);
        assert!(json.get("issuer").is_none(), "absent, not null");
    }
}
