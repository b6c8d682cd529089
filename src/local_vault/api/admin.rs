//! The `/_akvfs/` test controls (see `local_vault::admin` for the table), authenticated by the
//! admin token, never by a vault token.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use serde::de::DeserializeOwned;

use super::secrets::{blocking, read_body};
use super::{json_response, OPERATIONS};
use crate::local_vault::admin::{
    ClientCertificateRequest, ClockAdvance, FaultSpec, FederatedToken, FederatedTokenRequest,
    PagingControl, PrincipalRequest, SeedRequest,
};
use crate::local_vault::auth::{self};
use crate::local_vault::error::ApiError;
use crate::local_vault::store::{NewVersion, Now};
use crate::local_vault::Shared;
use crate::vault::model::{is_valid_secret_name, value_within_service_limit};

pub(super) async fn admin(st: &Arc<Shared>, path: String, req: Request) -> Response {
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(auth::bearer)
        .is_some_and(|t| auth::secret_eq(t, st.admin_token.expose()));
    if !authorized {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "The admin endpoints need 'Authorization: Bearer <AKVFS_ADMIN_TOKEN>'.",
        )
        .into_response();
    }
    match dispatch(st, &path, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// Every admin endpoint: its body is read and validated before anything changes, so a body
/// with a missing, unknown or invalid field is 400 naming the field and changes nothing.
async fn dispatch(st: &Arc<Shared>, path: &str, req: Request) -> Result<Response, ApiError> {
    let ok = || json_response(StatusCode::OK, &serde_json::json!({}));
    let method = req.method().clone();
    match (method, path.trim_end_matches('/')) {
        (Method::GET, "counters") => {
            no_body(req).await?;
            Ok(json_response(StatusCode::OK, &st.counters.snapshot()))
        }
        (Method::POST, "counters/reset") => {
            no_body(req).await?;
            st.counters.reset();
            Ok(ok())
        }
        (Method::POST, "faults") => {
            let spec: FaultSpec = read_admin_json(req).await?;
            if let Some(problem) = fault_problem(&spec) {
                return Err(ApiError::bad_parameter(problem));
            }
            st.faults.add(spec);
            Ok(ok())
        }
        (Method::DELETE, "faults") => {
            no_body(req).await?;
            st.faults.clear();
            Ok(ok())
        }
        (Method::POST, "clock/advance") => {
            let a: ClockAdvance = read_admin_json(req).await?;
            st.clock.advance(a.seconds);
            Ok(ok())
        }
        (Method::POST, "reset") => {
            no_body(req).await?;
            blocking(st, |s| s.reset()).await?;
            Ok(ok())
        }
        (Method::POST, "paging") => {
            let p: PagingControl = read_admin_json(req).await?;
            st.short_pages
                .store(p.short_pages, std::sync::atomic::Ordering::Relaxed);
            Ok(ok())
        }
        (Method::POST, "seed") => {
            let seed: SeedRequest = read_admin_json(req).await?;
            seed_secrets(st, seed).await
        }
        (Method::POST, "principals") => {
            let p: PrincipalRequest = read_admin_json(req).await?;
            if let Some(bad) = p.permissions.iter().find(|x| !auth::is_known_permission(x)) {
                return Err(ApiError::bad_parameter(format!(
                    "`permissions`: unknown permission {bad}; known: {}, and certificates/ + one \
                     of {}",
                    auth::ALL_PERMISSIONS.join(", "),
                    auth::CERTIFICATE_PERMISSIONS.join(", ")
                )));
            }
            let shared = st.clone();
            let added = tokio::task::spawn_blocking(move || shared.add_principal(p.permissions))
                .await
                .unwrap_or_else(|_| Err(ApiError::internal("storing the principal failed")))?;
            Ok(json_response(StatusCode::OK, &added))
        }
        (Method::POST, "principals/certificates") => {
            let r: ClientCertificateRequest = read_admin_json(req).await?;
            add_client_certificate(st, r)
        }
        (Method::POST, "federated-token") => {
            let r: FederatedTokenRequest = read_admin_json(req).await?;
            federated_token(st, r)
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("No admin endpoint {path}."),
        )),
    }
}

/// An endpoint that takes no body accepts none, or `{}`; anything else is refused rather than
/// silently ignored.
async fn no_body(req: Request) -> Result<(), ApiError> {
    let bytes = read_body(req).await?;
    let text = std::str::from_utf8(&bytes).unwrap_or("?").trim();
    let empty_object = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
        .is_ok_and(|m| m.is_empty());
    if text.is_empty() || empty_object {
        Ok(())
    } else {
        Err(ApiError::bad_parameter(
            "This admin endpoint takes no body (or {}).",
        ))
    }
}

/// Reads an admin body as `T` (whose fields are `deny_unknown_fields`). Errors name the field
/// and what was expected, never the value given (a seed value is secret).
async fn read_admin_json<T: DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let bytes = read_body(req).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_parameter(
            "The admin body is missing (a JSON object).",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ApiError::bad_parameter(admin_body_problem(&e)))?;
    de.end().map_err(|e| {
        ApiError::bad_parameter(format!(
            "The admin body has trailing characters (line {}, column {}).",
            e.line(),
            e.column()
        ))
    })?;
    Ok(value)
}

fn admin_body_problem(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = e.inner();
    if inner.classify() != serde_json::error::Category::Data {
        return format!(
            "The admin body is not valid JSON ({:?} error at line {}, column {}).",
            inner.classify(),
            inner.line(),
            inner.column()
        );
    }
    let text = inner.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    let path = e.path().to_string();
    // `missing field `x``, `unknown field `x`, expected one of …`: field names only.
    if text.starts_with("missing field") || text.starts_with("unknown field") {
        return if path == "." {
            format!("Invalid admin body: {text}.")
        } else {
            format!("Invalid admin body: in `{path}`: {text}.")
        };
    }
    // `invalid type: string "…", expected u16`: keep only what was expected.
    match text.split_once(", expected ") {
        Some((_, expected)) => format!("Invalid admin body: `{path}` must be {expected}."),
        None => format!("Invalid admin body: `{path}` is not valid."),
    }
}

async fn seed_secrets(st: &Arc<Shared>, seed: SeedRequest) -> Result<Response, ApiError> {
    const MAX_SEED: usize = 100_000;
    if !(1..=MAX_SEED).contains(&seed.count) {
        return Err(ApiError::bad_parameter(format!(
            "`count` must be between 1 and {MAX_SEED}"
        )));
    }
    let widest = format!("{}{:05}", seed.prefix, seed.count - 1);
    if seed.prefix.is_empty() || !is_valid_secret_name(&widest) {
        return Err(ApiError::bad_parameter(
            "`prefix` must make valid secret names ({prefix}{i:05}: letters, digits, '-', at most 127)",
        ));
    }
    if !value_within_service_limit(seed.value.expose()) {
        return Err(ApiError::secret_too_large());
    }
    let now = Now {
        ms: st.clock.now_ms(),
    };
    let count = blocking(st, move |s| {
        let items = (0..seed.count).map(|i| {
            (
                format!("{}{i:05}", seed.prefix),
                NewVersion {
                    value: seed.value.clone(),
                    content_type: None,
                    tags: None,
                    enabled: true,
                    nbf: None,
                    exp: None,
                },
            )
        });
        s.set_many(items, now)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "count": count }),
    ))
}

/// Why a fault rule cannot be right: a typo in an operation name would never fire, and a rule
/// that does nothing would still match first and hide every rule added after it.
fn fault_problem(spec: &FaultSpec) -> Option<String> {
    const MAX_LATENCY_MS: u64 = 600_000;
    if !(spec.rate > 0.0 && spec.rate <= 1.0) {
        return Some(format!("`rate` {} is not within 0..1 (above 0)", spec.rate));
    }
    if let Some(status) = spec.status.filter(|s| !(400..=599).contains(s)) {
        return Some(format!("`status` {status} is not within 400..599"));
    }
    if spec.count == Some(0) {
        return Some("`count` must be at least 1 (omit it for no limit)".into());
    }
    if spec.latency_ms.is_some_and(|ms| ms > MAX_LATENCY_MS) {
        return Some(format!("`latency_ms` must be at most {MAX_LATENCY_MS}"));
    }
    let delays = spec.latency_ms.is_some_and(|ms| ms > 0);
    if spec.status.is_none() && !spec.drop_connection && !delays {
        return Some(
            "a fault rule needs `status`, `drop_connection` or `latency_ms` (it would do nothing \
             and hide every later rule)"
                .into(),
        );
    }
    if spec.status.is_some() && spec.drop_connection {
        return Some("`status` and `drop_connection` exclude each other".into());
    }
    if spec.retry_after.is_some() && spec.status.is_none() {
        return Some("`retry_after` needs a `status`".into());
    }
    match &spec.operation {
        Some(op) if !OPERATIONS.contains(&op.as_str()) => Some(format!(
            "`operation`: unknown operation {op}; known: {}",
            OPERATIONS.join(", ")
        )),
        _ => None,
    }
}

fn add_client_certificate(st: &Shared, r: ClientCertificateRequest) -> Result<Response, ApiError> {
    if !st.principals.read().contains_key(&r.client_id) {
        return Err(ApiError::bad_parameter(format!(
            "`client_id`: unknown principal {}",
            r.client_id
        )));
    }
    let der = auth::certificate_from_pem(&r.certificate_pem)
        .map_err(|problem| ApiError::bad_parameter(format!("`certificate_pem`: {problem}")))?;
    st.client_certificates
        .write()
        .entry(r.client_id)
        .or_default()
        .push(der);
    Ok(json_response(StatusCode::OK, &serde_json::json!({})))
}

fn federated_token(st: &Shared, r: FederatedTokenRequest) -> Result<Response, ApiError> {
    let client_id = r.client_id.unwrap_or_else(|| st.default_client_id.clone());
    let lifetime = r.lifetime_seconds.unwrap_or(3600);
    if !(1..=86_400).contains(&lifetime) {
        return Err(ApiError::bad_parameter(
            "`lifetime_seconds` must be within 1..86400",
        ));
    }
    let (token, expires_on) =
        super::identity::mint_federated_token(st, &client_id, lifetime, r.audience.as_deref())?;
    Ok(json_response(
        StatusCode::OK,
        &FederatedToken {
            token: token.into(),
            expires_on,
        },
    ))
}
