//! The secrets data plane: authentication first, then throttling, api-version, access policy,
//! validation, and a thin call into the store.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;

use super::backup::{open_backup, seal_backup};
use super::render::Render;
use super::{
    json_response, purge_protected, query_get, query_pairs, request_host, VaultOp, MAX_BODY_BYTES,
};
use crate::local_vault::auth::{self, Claims};
use crate::local_vault::error::ApiError;
use crate::local_vault::store::{NewVersion, Now, VersionUpdate};
use crate::local_vault::Shared;
use crate::secret_value::SecretValue;
use crate::vault::model::{
    is_valid_secret_name, value_within_service_limit, SecretSetParameters, SecretUpdateParameters,
    MAX_CONTENT_TYPE_LEN, MAX_PAGE_SIZE,
};

/// The api-versions the service knows: 7.0 … 7.6 (and their previews), 2016-10-01, and date
/// versions from 2025-07-01 on.
pub fn is_known_api_version(v: &str) -> bool {
    let base = v.split("-preview").next().unwrap_or(v);
    if let Some(minor) = base.strip_prefix("7.") {
        return matches!(minor, "0" | "1" | "2" | "3" | "4" | "5" | "6");
    }
    if base == "2016-10-01" {
        return true;
    }
    let date = base.as_bytes();
    date.len() == 10
        && date[4] == b'-'
        && date[7] == b'-'
        && base
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
        && base >= "2025-07-01"
}

pub(super) fn check_api_version(
    st: &Shared,
    pairs: &[(String, String)],
) -> Result<String, ApiError> {
    let Some(v) = query_get(pairs, "api-version").filter(|v| !v.is_empty()) else {
        return Err(ApiError::bad_parameter(
            "The 'api-version' query parameter is required.",
        ));
    };
    if st.config.strict_api_version && !is_known_api_version(v) {
        return Err(ApiError::bad_parameter(format!(
            "The specified version ({v}) is not recognized. Consider using the latest supported \
             version (7.6)."
        )));
    }
    Ok(v.to_owned())
}

/// The resource of `host`'s challenge: `--challenge-resource` when set, else as Azure's.
fn challenge_resource(st: &Shared, host: &str) -> String {
    st.config
        .challenge_resource
        .clone()
        .unwrap_or_else(|| auth::resource_for_host(host))
}

/// A 401 with the service's challenge (`WWW-Authenticate`), whatever the reason: a client
/// learns the authority and resource from any 401, as from the service's.
pub(super) fn challenge(st: &Shared, host: &str, error: ApiError) -> Response {
    let resource = challenge_resource(st, host);
    let mut resp = error.into_response();
    let value = format!(
        "Bearer authorization=\"https://{host}/{}\", resource=\"{resource}\"",
        st.tenant_id
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The request's claims, or the 401 to answer: AKV10000 without a bearer token, else the
/// service's text for why the token is refused.
pub(super) fn authenticate(
    st: &Shared,
    headers: &HeaderMap,
    host: &str,
) -> Result<Claims, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(auth::bearer)
        .ok_or_else(ApiError::unauthorized)?;
    auth::verify(
        st.jwt_key.expose().as_bytes(),
        token,
        &challenge_resource(st, host),
        st.clock.now_secs(),
    )
    .map_err(|problem| ApiError::unauthorized_with(problem.message()))
}

pub(super) fn now(st: &Shared) -> Now {
    Now {
        ms: st.clock.now_ms(),
    }
}

/// Runs store work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    st: &Arc<Shared>,
    f: impl FnOnce(&super::super::store::Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = st.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|_| ApiError::internal("The local vault's storage task failed."))?
}

/// The request body, at most [`MAX_BODY_BYTES`] (possibly empty).
pub(super) async fn read_body(req: Request) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::bad_parameter("The request body is too large or unreadable."))
}

pub(super) async fn read_json<T: DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let bytes = read_body(req).await?;
    if bytes.is_empty() {
        return Err(ApiError::bad_parameter("The request body is missing."));
    }
    // serde's message can quote input, which may be secret: describe the error by position only.
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_parameter(format!(
            "The request body is not valid for this operation ({:?} error at line {}, column {}).",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

pub(super) async fn vault(st: &Arc<Shared>, op: VaultOp, req: Request) -> Response {
    let Some(host) = request_host(&req, &st.default_host) else {
        return ApiError::bad_parameter("The Host header is not a valid host name.")
            .into_response();
    };
    // Authentication comes first: no body or api-version is looked at without a valid token.
    let claims = match authenticate(st, req.headers(), &host) {
        Ok(claims) => claims,
        Err(error) => return challenge(st, &host, error),
    };
    if let Err(retry_after) = st.throttle.admit(matches!(op, VaultOp::Set(_))) {
        return ApiError::throttled(Some(retry_after)).into_response();
    }
    match vault_op(st, op, claims, &host, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

pub(super) async fn vault_op(
    st: &Arc<Shared>,
    op: VaultOp,
    claims: Claims,
    host: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&req);
    let api_version = check_api_version(st, &pairs)?;
    let denied = match st.principals.read().get(&claims.appid) {
        Some(p) => {
            let needed = op.permission_needed(&p.permissions);
            (!p.permissions.contains(&needed)).then_some(needed)
        }
        None => Some(op.permission().to_owned()),
    };
    if let Some(needed) = denied {
        let word = needed
            .strip_prefix(auth::CERTIFICATE_PERMISSION_PREFIX)
            .unwrap_or(&needed);
        return Err(ApiError::forbidden_by_policy_of(
            op.kind(),
            word,
            &claims.appid,
        ));
    }
    if let Some(name) = op.name() {
        if !is_valid_secret_name(name) {
            return Err(ApiError::bad_parameter(format!(
                "The request URI contains an invalid name: {name}"
            )));
        }
    }
    let r = Render { st, host };
    let now = now(st);
    match op {
        VaultOp::Certificate(op) => {
            super::certificates::handle(st, op, &r, req, &pairs, &api_version, now).await
        }
        VaultOp::Set(name) => {
            let params: SecretSetParameters = read_json(req).await?;
            let new = validate_set(params)?;
            let rec = blocking(st, move |s| s.set(&name, new, now)).await?;
            Ok(json_response(StatusCode::OK, &r.bundle(&rec, true)))
        }
        VaultOp::Get(name, version) => {
            let rec = blocking(st, move |s| s.get(&name, version.as_deref(), now)).await?;
            // Like the service: `enabled: false` forbids reading the value, while `nbf`/`exp`
            // are informational for secrets (an expired secret still reads, answering 200).
            if !rec.version.enabled {
                return Err(ApiError::disabled("get"));
            }
            Ok(json_response(StatusCode::OK, &r.bundle(&rec, true)))
        }
        VaultOp::Update(name, version) => {
            let params: SecretUpdateParameters = read_json(req).await?;
            let change = validate_update(params)?;
            let rec = blocking(st, move |s| {
                s.update(&name, version.as_deref(), change, now)
            })
            .await?;
            Ok(json_response(StatusCode::OK, &r.bundle(&rec, false)))
        }
        VaultOp::Delete(name) => {
            let soft = st.config.soft_delete.then(|| {
                (
                    st.config.deletion_delay.as_millis() as i64,
                    st.config.recoverable_days,
                )
            });
            let rec = blocking(st, move |s| s.delete(&name, soft, now)).await?;
            Ok(json_response(StatusCode::OK, &r.deleted_bundle(&rec)))
        }
        VaultOp::List => {
            let page = Paging::parse(&pairs)?;
            let after = page.after.clone();
            let size = st.page_size(page.size);
            let (recs, next) = blocking(st, move |s| s.list(after.as_deref(), size, now)).await?;
            let items = recs.iter().map(|rec| r.item(rec, false)).collect();
            Ok(r.list_page(items, next, "/secrets", &api_version, &page))
        }
        VaultOp::ListVersions(name) => {
            let page = Paging::parse(&pairs)?;
            let after = page.after.clone();
            let path = format!("/secrets/{name}/versions");
            let size = st.page_size(page.size);
            let (recs, next) = blocking(st, move |s| {
                s.list_versions(&name, after.as_deref(), size, now)
            })
            .await?;
            let items = recs.iter().map(|rec| r.item(rec, true)).collect();
            Ok(r.list_page(items, next, &path, &api_version, &page))
        }
        VaultOp::ListDeleted => {
            let page = Paging::parse(&pairs)?;
            let after = page.after.clone();
            let size = st.page_size(page.size);
            let (recs, next) =
                blocking(st, move |s| s.list_deleted(after.as_deref(), size, now)).await?;
            let items = recs.iter().map(|rec| r.deleted_item(rec)).collect();
            Ok(r.list_page(items, next, "/deletedsecrets", &api_version, &page))
        }
        VaultOp::GetDeleted(name) => {
            let rec = blocking(st, move |s| s.get_deleted(&name, now)).await?;
            Ok(json_response(StatusCode::OK, &r.deleted_bundle(&rec)))
        }
        VaultOp::Purge(name) => {
            if st.config.purge_protection {
                return Err(purge_protected("Secret", &name));
            }
            blocking(st, move |s| s.purge(&name, now)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        VaultOp::Recover(name) => {
            let delay = st.config.deletion_delay.as_millis() as i64;
            let rec = blocking(st, move |s| s.recover(&name, delay, now)).await?;
            Ok(json_response(StatusCode::OK, &r.bundle(&rec, false)))
        }
        VaultOp::Backup(name) => {
            let data = blocking(st, move |s| s.backup(&name, now)).await?;
            let blob = seal_backup(st, &data)?;
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "value": blob.expose() }),
            ))
        }
        VaultOp::Restore => {
            #[derive(serde::Deserialize)]
            struct RestoreBody {
                value: SecretValue,
            }
            let body: RestoreBody = read_json(req).await?;
            let data = open_backup(st, body.value.expose())?;
            let rec = blocking(st, move |s| s.restore(data, now)).await?;
            Ok(json_response(StatusCode::OK, &r.bundle(&rec, false)))
        }
    }
}

pub(super) fn validate_set(p: SecretSetParameters) -> Result<NewVersion, ApiError> {
    if !value_within_service_limit(p.value.expose()) {
        return Err(ApiError::secret_too_large());
    }
    check_content_type(p.content_type.as_deref())?;
    check_tags(p.tags.as_ref())?;
    let attrs = p.attributes.unwrap_or_default();
    Ok(NewVersion {
        value: p.value,
        content_type: p.content_type,
        tags: p.tags,
        enabled: attrs.enabled.unwrap_or(true),
        nbf: attrs.nbf,
        exp: attrs.exp,
    })
}

pub(super) fn validate_update(p: SecretUpdateParameters) -> Result<VersionUpdate, ApiError> {
    check_content_type(p.content_type.as_deref())?;
    check_tags(p.tags.as_ref())?;
    let attrs = p.attributes.unwrap_or_default();
    Ok(VersionUpdate {
        content_type: p.content_type,
        tags: p.tags,
        enabled: attrs.enabled,
        nbf: attrs.nbf,
        exp: attrs.exp,
    })
}

pub(super) fn check_content_type(ct: Option<&str>) -> Result<(), ApiError> {
    match ct {
        Some(ct) if ct.chars().count() > MAX_CONTENT_TYPE_LEN => Err(ApiError::bad_parameter(
            format!("Content type is beyond the maximum permitted length of {MAX_CONTENT_TYPE_LEN} characters."),
        )),
        _ => Ok(()),
    }
}

/// The service's tag limits: 15 tags, names up to 512 and values up to 256 characters.
pub(super) fn check_tags(tags: Option<&crate::vault::model::Tags>) -> Result<(), ApiError> {
    let Some(tags) = tags else { return Ok(()) };
    if tags.len() > 15 {
        return Err(ApiError::bad_parameter(
            "The number of tags is beyond the maximum of 15.",
        ));
    }
    if tags
        .iter()
        .any(|(k, v)| k.is_empty() || k.chars().count() > 512 || v.chars().count() > 256)
    {
        return Err(ApiError::bad_parameter(
            "A tag name must have 1 to 512 characters and a tag value at most 256 characters.",
        ));
    }
    Ok(())
}

/// `maxresults` and the `$skiptoken` of a list call.
#[derive(Clone, Debug)]
pub(super) struct Paging {
    pub(super) size: usize,
    pub(super) explicit_size: bool,
    pub(super) after: Option<String>,
}

impl Paging {
    pub(super) fn parse(pairs: &[(String, String)]) -> Result<Paging, ApiError> {
        let (size, explicit_size) = match query_get(pairs, "maxresults") {
            None => (MAX_PAGE_SIZE, false),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => (n, true),
                _ => {
                    return Err(ApiError::bad_parameter(format!(
                        "Invalid value for parameter maxresults: {raw}. The value must be between \
                         1 and {MAX_PAGE_SIZE}."
                    )))
                }
            },
        };
        let after = match query_get(pairs, "$skiptoken") {
            None => None,
            Some(token) => Some(decode_skiptoken(token).ok_or_else(|| {
                ApiError::bad_parameter("The $skiptoken query parameter is not valid.")
            })?),
        };
        Ok(Paging {
            size,
            explicit_size,
            after,
        })
    }
}

/// Opaque continuation tokens: base64url of a small JSON object naming the last key returned.
pub(super) fn encode_skiptoken(after: &str) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::json!({ "NextMarker": after }).to_string())
}

pub(super) fn decode_skiptoken(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(v.get("NextMarker")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_known_to_the_service() {
        for v in [
            "7.0",
            "7.3",
            "7.6",
            "7.6-preview.2",
            "2016-10-01",
            "2025-07-01",
            "2026-04-01",
        ] {
            assert!(is_known_api_version(v), "{v}");
        }
        for v in ["7.7", "8.0", "2025-06-30", "2015-06-01", "latest", ""] {
            assert!(!is_known_api_version(v), "{v}");
        }
    }

    #[test]
    fn skiptokens_round_trip_and_reject_garbage() {
        let t = encode_skiptoken("abc-1");
        assert_eq!(decode_skiptoken(&t).as_deref(), Some("abc-1"));
        assert_eq!(decode_skiptoken("!!!"), None);
        assert_eq!(decode_skiptoken(&URL_SAFE_NO_PAD.encode("[1]")), None);
    }
}
