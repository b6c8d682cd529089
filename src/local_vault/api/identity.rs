//! Token issuance: the AAD-style client-credentials endpoint (v2 and v1), the OpenID metadata
//! MSAL fetches, instance discovery, and the App Service managed-identity endpoint.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{json_response, query_get, query_pairs, request_host};
use crate::local_vault::auth::{self, Claims};
use crate::local_vault::error::ApiError;
use crate::local_vault::Shared;
use crate::secret_value::SecretValue;

pub(super) fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = uuid::Uuid::new_v4().to_string();
    let ts = httpdate::fmt_http_date(std::time::SystemTime::now());
    json_response(
        status,
        &serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}\r\nTimestamp: {ts}"),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": trace,
        }),
    )
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(String, SecretValue)> {
    use base64::Engine;
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    );
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), SecretValue::new(unescape(secret))))
}

pub(super) fn issue(
    st: &Shared,
    client_id: &str,
    audience: &str,
) -> Result<(String, i64), ApiError> {
    let now = st.clock.now_secs();
    let ttl = st.config.token_ttl.as_secs().max(1) as i64;
    let claims = Claims {
        aud: audience.to_owned(),
        iss: format!("{}/{}/v2.0", st.vault_url, st.tenant_id),
        iat: now,
        nbf: now - 300,
        exp: now + ttl,
        appid: client_id.to_owned(),
        oid: client_id.to_owned(),
        sub: client_id.to_owned(),
        tid: st.tenant_id.clone(),
    };
    let token = auth::sign(st.jwt_key.expose().as_bytes(), &claims)
        .map_err(|_| ApiError::internal("token signing failed"))?;
    Ok((token, ttl))
}

pub(super) async fn token(st: &Arc<Shared>, tenant: &str, v2: bool, req: Request) -> Response {
    let basic = basic_credentials(req.headers());
    // A client assertion's `aud` must be this endpoint, as the client reached it (v2 or v1).
    let base = base_url(st, &req);
    let token_endpoints = [
        format!("{base}/{tenant}/oauth2/v2.0/token"),
        format!("{base}/{tenant}/oauth2/token"),
    ];
    let bytes = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body is unreadable.",
            )
        }
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&bytes).into_owned().collect();
    let get = |k: &str| query_get(&form, k).filter(|v| !v.is_empty());
    if tenant != st.tenant_id {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."
            ),
        );
    }
    match get("grant_type") {
        Some("client_credentials") => {}
        Some(other) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            )
        }
        None => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        }
    }
    // client_secret_post (the form) or client_secret_basic (the Authorization header).
    let (basic_id, basic_secret) = match &basic {
        Some((id, secret)) => (Some(id.as_str()), Some(secret.expose())),
        None => (None, None),
    };
    let Some(client_id) = get("client_id").or(basic_id) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let audience = if v2 {
        get("scope").and_then(auth::audience_from_scope)
    } else {
        get("resource").and_then(auth::audience_from_scope)
    };
    let Some(audience) = audience else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90014,
            if v2 {
                "The required field 'scope' is missing from the credential."
            } else {
                "The required field 'resource' is missing from the credential."
            },
        );
    };
    let known = st
        .principals
        .read()
        .get(client_id)
        .map(|p| p.secret.clone());
    let Some(expected) = known else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        );
    };
    if get("client_assertion").is_some() || get("client_assertion_type").is_some() {
        if let Err(r) = check_client_assertion(
            st,
            client_id,
            get("client_assertion_type"),
            get("client_assertion"),
            &token_endpoints,
        ) {
            tracing::info!(client_id, code = r.code, reason = %r.description, "client assertion refused");
            let (status, error) = if r.invalid_client {
                (StatusCode::UNAUTHORIZED, "invalid_client")
            } else {
                (StatusCode::BAD_REQUEST, "invalid_request")
            };
            return aad_error(status, error, r.code, &r.description);
        }
        return issued(st, client_id, &audience);
    }
    // AAD answers a wrong or missing client secret with 401 invalid_client.
    let secret_ok = get("client_secret")
        .or(basic_secret)
        .is_some_and(|s| auth::secret_eq(s, expected.expose()));
    if !secret_ok {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    issued(st, client_id, &audience)
}

/// The token response of the client-credentials grant.
fn issued(st: &Shared, client_id: &str, audience: &str) -> Response {
    match issue(st, client_id, audience) {
        Ok((token, ttl)) => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "token_type": "Bearer",
                "expires_in": ttl,
                "ext_expires_in": ttl,
                "access_token": token,
            }),
        ),
        Err(e) => e.into_response(),
    }
}

/// `client_assertion` (jwt-bearer): a federated token this vault minted (HS256, workload
/// identity) or a JWT signed with a certificate registered for the principal (RS256/PS256).
fn check_client_assertion(
    st: &Shared,
    client_id: &str,
    assertion_type: Option<&str>,
    assertion: Option<&str>,
    token_endpoints: &[String],
) -> Result<(), auth::Rejection> {
    let rejection = |code, description: &str| auth::Rejection {
        code,
        invalid_client: false,
        description: description.to_owned(),
    };
    if assertion_type != Some(auth::JWT_BEARER) {
        return Err(rejection(
            700025,
            "The client_assertion_type must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
        ));
    }
    let Some(assertion) = assertion else {
        return Err(rejection(
            900144,
            "The request body must contain the following parameter: 'client_assertion'.",
        ));
    };
    let jwt = auth::Jwt::decode(assertion)?;
    let now = st.clock.now_secs();
    if jwt.is_hs256() {
        auth::verify_federated_assertion(
            &jwt,
            st.jwt_key.expose().as_bytes(),
            &auth::federated_issuer(&st.vault_url),
            client_id,
            now,
        )
    } else {
        let certificates = st
            .client_certificates
            .read()
            .get(client_id)
            .cloned()
            .unwrap_or_default();
        auth::verify_certificate_assertion(&jwt, &certificates, client_id, token_endpoints, now)
    }
}

/// `POST /_akvfs/federated-token`: a token of this vault's OIDC issuer for a principal, as a
/// Kubernetes cluster projects into a pod for workload identity.
pub(super) fn mint_federated_token(
    st: &Shared,
    client_id: &str,
    lifetime_seconds: i64,
    audience: Option<&str>,
) -> Result<(String, i64), ApiError> {
    let now = st.clock.now_secs();
    let claims = auth::FederatedClaims {
        iss: auth::federated_issuer(&st.vault_url),
        sub: client_id.to_owned(),
        aud: audience.unwrap_or(auth::FEDERATED_AUDIENCE).to_owned(),
        iat: now,
        nbf: now,
        exp: now + lifetime_seconds,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let token = auth::sign_federated(st.jwt_key.expose().as_bytes(), &claims)
        .map_err(|_| ApiError::internal("token signing failed"))?;
    Ok((token, claims.exp))
}

pub(super) fn base_url(st: &Shared, req: &Request) -> String {
    match request_host(req, &st.default_host) {
        Some(host) => format!("https://{host}"),
        None => st.vault_url.clone(),
    }
}

pub(super) fn openid(st: &Shared, tenant: &str, req: &Request) -> Response {
    if tenant != st.tenant_id && tenant != "common" && tenant != "organizations" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let base = base_url(st, req);
    let t = &st.tenant_id;
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "token_endpoint": format!("{base}/{t}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"],
            "jwks_uri": format!("{base}/{t}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{base}/{t}/v2.0"),
            "request_uri_parameter_supported": false,
            "authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{base}/{t}/oauth2/v2.0/logout"),
            "tenant_region_scope": null,
            "cloud_instance_name": "local",
        }),
    )
}

pub(super) fn discovery(st: &Shared, req: &Request) -> Response {
    let base = base_url(st, req);
    let host = base.trim_start_matches("https://").to_owned();
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "tenant_discovery_endpoint": format!("{base}/{}/v2.0/.well-known/openid-configuration", st.tenant_id),
            "api-version": "1.1",
            "metadata": [{
                "preferred_network": host,
                "preferred_cache": host,
                "aliases": [host],
            }],
        }),
    )
}

/// App Service managed identity (api-version 2019-08-01): `GET IDENTITY_ENDPOINT?resource=…`
/// with `X-IDENTITY-HEADER`, answered as App Service does (`expires_on` a string of epoch
/// seconds, no `expires_in`). The identity is the default principal, or `client_id` when it
/// names another known one.
pub(super) fn managed_identity(st: &Shared, req: &Request) -> Response {
    let header_ok = req
        .headers()
        .get("x-identity-header")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| auth::secret_eq(h, st.identity_header.expose()));
    if !header_ok {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"statusCode": 401, "message": "Unauthorized: the X-IDENTITY-HEADER is missing or wrong."}),
        );
    }
    let pairs = query_pairs(req);
    let Some(resource) = query_get(&pairs, "resource").and_then(auth::audience_from_scope) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"statusCode": 400, "message": "The 'resource' query parameter is required."}),
        );
    };
    let client_id = query_get(&pairs, "client_id")
        .filter(|id| st.principals.read().contains_key(*id))
        .unwrap_or(&st.default_client_id)
        .to_owned();
    match issue(st, &client_id, &resource) {
        Ok((token, ttl)) => {
            let expires_on = st.clock.now_secs() + ttl;
            json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "access_token": token,
                    "expires_on": expires_on.to_string(),

                    "resource": resource,
                    "token_type": "Bearer",
                    "client_id": client_id,
                }),
            )
        }
        Err(e) => e.into_response(),
    }
}
