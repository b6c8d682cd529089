//! The `/_akvfs/` test controls (see `local_vault::admin` for the table), authenticated by the
//! admin token, never by a vault token.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::secrets::{blocking, read_json};
use super::{json_response, OPERATIONS};
use crate::local_vault::admin::{
    ClientCertificateRequest, ClockAdvance, FaultSpec, FederatedToken, FederatedTokenRequest,
    NewPrincipal, PagingControl, PrincipalRequest, SeedRequest,
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
    let ok = || json_response(StatusCode::OK, &serde_json::json!({}));
    let method = req.method().clone();
    match (method, path.trim_end_matches('/')) {
        (Method::GET, "counters") => json_response(StatusCode::OK, &st.counters.snapshot()),
        (Method::POST, "counters/reset") => {
            st.counters.reset();
            ok()
        }
        (Method::POST, "faults") => match read_json::<FaultSpec>(req).await {
            Ok(spec) => match fault_problem(&spec) {
                None => {
                    st.faults.add(spec);
                    ok()
                }
                Some(problem) => ApiError::bad_parameter(problem).into_response(),
            },
            Err(e) => e.into_response(),
        },
        (Method::DELETE, "faults") => {
            st.faults.clear();
            ok()
        }
        (Method::POST, "clock/advance") => match read_json::<ClockAdvance>(req).await {
            Ok(a) => {
                st.clock.advance(a.seconds);
                ok()
            }
            Err(e) => e.into_response(),
        },
        (Method::POST, "reset") => match blocking(st, |s| s.reset()).await {
            Ok(()) => ok(),
            Err(e) => e.into_response(),
        },
        (Method::POST, "paging") => match read_json::<PagingControl>(req).await {
            Ok(p) => {
                st.short_pages
                    .store(p.short_pages, std::sync::atomic::Ordering::Relaxed);
                ok()
            }
            Err(e) => e.into_response(),
        },
        (Method::POST, "seed") => match read_json::<SeedRequest>(req).await {
            Ok(seed) => seed_secrets(st, seed).await,
            Err(e) => e.into_response(),
        },
        (Method::POST, "principals") => match read_json::<PrincipalRequest>(req).await {
            Ok(p) => {
                if let Some(bad) = p
                    .permissions
                    .iter()
                    .find(|x| !auth::ALL_PERMISSIONS.contains(&x.as_str()))
                {
                    return ApiError::bad_parameter(format!("unknown permission: {bad}"))
                        .into_response();
                }
                let shared = st.clone();
                let added =
                    tokio::task::spawn_blocking(move || shared.add_principal(p.permissions))
                        .await
                        .unwrap_or_else(|_| {
                            Err(ApiError::internal("storing the principal failed"))
                        });
                match added {
                    Ok(NewPrincipal {
                        client_id,
                        client_secret,
                    }) => json_response(
                        StatusCode::OK,
                        &NewPrincipal {
                            client_id,
                            client_secret,
                        },
                    ),
                    Err(e) => e.into_response(),
                }
            }
            Err(e) => e.into_response(),
        },
        (Method::POST, "principals/certificates") => {
            match read_json::<ClientCertificateRequest>(req).await {
                Ok(r) => add_client_certificate(st, r),
                Err(e) => e.into_response(),
            }
        }
        (Method::POST, "federated-token") => match read_json::<FederatedTokenRequest>(req).await {
            Ok(r) => federated_token(st, r),
            Err(e) => e.into_response(),
        },
        _ => ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("No admin endpoint {path}."),
        )
        .into_response(),
    }
}

async fn seed_secrets(st: &Arc<Shared>, seed: SeedRequest) -> Response {
    const MAX_SEED: usize = 100_000;
    let widest = format!("{}{:05}", seed.prefix, seed.count.saturating_sub(1));
    if seed.count > MAX_SEED || !is_valid_secret_name(&widest) || seed.prefix.is_empty() {
        return ApiError::bad_parameter(format!(
            "seed needs a valid name prefix and at most {MAX_SEED} secrets"
        ))
        .into_response();
    }
    if !value_within_service_limit(seed.value.expose()) {
        return ApiError::secret_too_large().into_response();
    }
    let now = Now {
        ms: st.clock.now_ms(),
    };
    let result = blocking(st, move |s| {
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
    .await;
    match result {
        Ok(count) => json_response(StatusCode::OK, &serde_json::json!({ "count": count })),
        Err(e) => e.into_response(),
    }
}

/// Why a fault rule cannot be right (a typo in an operation name would otherwise never fire).
fn fault_problem(spec: &FaultSpec) -> Option<String> {
    if !(0.0..=1.0).contains(&spec.rate) {
        return Some(format!("rate {} is not within 0..1", spec.rate));
    }
    if let Some(status) = spec.status.filter(|s| !(400..=599).contains(s)) {
        return Some(format!("status {status} is not within 400..599"));
    }
    match &spec.operation {
        Some(op) if !OPERATIONS.contains(&op.as_str()) => Some(format!(
            "unknown operation {op}; known: {}",
            OPERATIONS.join(", ")
        )),
        _ => None,
    }
}

fn add_client_certificate(st: &Shared, r: ClientCertificateRequest) -> Response {
    if !st.principals.read().contains_key(&r.client_id) {
        return ApiError::bad_parameter(format!("unknown principal {}", r.client_id))
            .into_response();
    }
    match auth::certificate_from_pem(&r.certificate_pem) {
        Ok(der) => {
            st.client_certificates
                .write()
                .entry(r.client_id)
                .or_default()
                .push(der);
            json_response(StatusCode::OK, &serde_json::json!({}))
        }
        Err(problem) => ApiError::bad_parameter(problem).into_response(),
    }
}

fn federated_token(st: &Shared, r: FederatedTokenRequest) -> Response {
    let client_id = r.client_id.unwrap_or_else(|| st.default_client_id.clone());
    let lifetime = r.lifetime_seconds.unwrap_or(3600);
    if !(1..=86_400).contains(&lifetime) {
        return ApiError::bad_parameter("lifetime_seconds must be within 1..86400").into_response();
    }
    match super::identity::mint_federated_token(st, &client_id, lifetime, r.audience.as_deref()) {
        Ok((token, expires_on)) => json_response(
            StatusCode::OK,
            &FederatedToken {
                token: token.into(),
                expires_on,
            },
        ),
        Err(e) => e.into_response(),
    }
}
