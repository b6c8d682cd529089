//! The HTTP surface of the local vault: one dispatcher that classifies each request into an
//! operation (for counters, faults, throttling and permissions), then runs the pipeline the
//! service runs — authenticate (before reading the body or the api-version), throttle, check the
//! api-version, check the access policy — and a thin handler over the store.
//!
//! Paths are matched by hand rather than with axum routes so that trailing slashes
//! (`/secrets/{name}/` = latest) and the classification of every request, including ones that
//! fail early, live in one place.
//!
//! Files: `secrets` (the data plane: auth pipeline, validation, paging), `certificates` (the
//! certificates data plane over the same pipeline), `render` (wire JSON),
//! `backup` (backup blobs), `identity` (token issuance, OpenID metadata, managed identity),
//! `admin` (the `/_akvfs/` test controls).

mod admin;
mod backup;
mod certificates;
mod identity;
mod render;
mod secrets;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::Shared;

pub use backup::BackupKey;
use certificates::CertOp;

/// Largest request body read (a full 25,600-character value with JSON escaping fits easily).
const MAX_BODY_BYTES: usize = 1 << 20;

/// Marker extension: the outer service turns such a response into a dropped connection.
#[derive(Clone, Copy, Debug)]
pub struct DropConnection;

/// Every operation name the counters and fault rules use.
pub const OPERATIONS: [&str; 25] = [
    "set_secret",
    "get_secret",
    "update_secret",
    "delete_secret",
    "list_secrets",
    "list_secret_versions",
    "list_deleted_secrets",
    "get_deleted_secret",
    "purge_deleted_secret",
    "recover_deleted_secret",
    "backup_secret",
    "restore_secret",
    "import_certificate",
    "get_certificate",
    "get_certificate_policy",
    "update_certificate",
    "delete_certificate",
    "list_certificates",
    "list_certificate_versions",
    "list_deleted_certificates",
    "get_deleted_certificate",
    "purge_deleted_certificate",
    "recover_deleted_certificate",
    "unsupported_certificate_operation",
    "token",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultOp {
    Set(String),
    Get(String, Option<String>),
    Update(String, Option<String>),
    Delete(String),
    List,
    ListVersions(String),
    ListDeleted,
    GetDeleted(String),
    Purge(String),
    Recover(String),
    Backup(String),
    Restore,
    /// `/certificates/…` and `/deletedcertificates/…`.
    Certificate(CertOp),
}

impl VaultOp {
    pub fn operation(&self) -> &'static str {
        match self {
            VaultOp::Set(_) => "set_secret",
            VaultOp::Get(..) => "get_secret",
            VaultOp::Update(..) => "update_secret",
            VaultOp::Delete(_) => "delete_secret",
            VaultOp::List => "list_secrets",
            VaultOp::ListVersions(_) => "list_secret_versions",
            VaultOp::ListDeleted => "list_deleted_secrets",
            VaultOp::GetDeleted(_) => "get_deleted_secret",
            VaultOp::Purge(_) => "purge_deleted_secret",
            VaultOp::Recover(_) => "recover_deleted_secret",
            VaultOp::Backup(_) => "backup_secret",
            VaultOp::Restore => "restore_secret",
            VaultOp::Certificate(op) => op.operation(),
        }
    }

    /// The permission a principal holding `held` needs for the operation, as its list spells
    /// it. A certificate operation needs a `certificates/…` permission when the principal holds
    /// any (an access policy of its own for certificates), else the secret permission.
    fn permission_needed(&self, held: &[String]) -> String {
        match self {
            VaultOp::Certificate(op)
                if held
                    .iter()
                    .any(|p| p.starts_with(super::auth::CERTIFICATE_PERMISSION_PREFIX)) =>
            {
                format!(
                    "{}{}",
                    super::auth::CERTIFICATE_PERMISSION_PREFIX,
                    op.certificate_permission()
                )
            }
            _ => self.permission().to_owned(),
        }
    }

    /// The access-policy permission the operation needs.
    fn permission(&self) -> &'static str {
        match self {
            VaultOp::Set(_) | VaultOp::Update(..) => "set",
            VaultOp::Get(..) | VaultOp::GetDeleted(_) => "get",
            VaultOp::Delete(_) => "delete",
            VaultOp::List | VaultOp::ListVersions(_) | VaultOp::ListDeleted => "list",
            VaultOp::Purge(_) => "purge",
            VaultOp::Recover(_) => "recover",
            VaultOp::Backup(_) => "backup",
            VaultOp::Restore => "restore",
            VaultOp::Certificate(op) => op.permission(),
        }
    }

    /// Which family the operation's errors speak of.
    fn kind(&self) -> super::error::Kind {
        match self {
            VaultOp::Certificate(_) => super::error::Kind::Certificate,
            _ => super::error::Kind::Secret,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            VaultOp::Set(n)
            | VaultOp::Get(n, _)
            | VaultOp::Update(n, _)
            | VaultOp::Delete(n)
            | VaultOp::ListVersions(n)
            | VaultOp::GetDeleted(n)
            | VaultOp::Purge(n)
            | VaultOp::Recover(n)
            | VaultOp::Backup(n) => Some(n),
            VaultOp::Certificate(op) => op.name(),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Vault(VaultOp),
    /// `POST /{tenant}/oauth2/v2.0/token` (v2 = true) or `/{tenant}/oauth2/token`.
    Token {
        tenant: String,
        v2: bool,
    },
    OpenIdConfiguration {
        tenant: String,
    },
    InstanceDiscovery,
    ManagedIdentity,
    Admin(String),
    MethodNotAllowed,
    NotFound,
}

impl Route {
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            Route::Vault(op) => Some(op.operation()),
            Route::Token { .. } | Route::ManagedIdentity => Some("token"),
            _ => None,
        }
    }
}

/// Path of the App Service-style managed identity endpoint (`IDENTITY_ENDPOINT`).
pub const IDENTITY_PATH: &str = "/msi/token";

pub fn classify(method: &Method, path: &str) -> Route {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = method;
    let vault = |op: VaultOp| Route::Vault(op);
    let s = |x: &str| x.to_owned();
    if let Some(op) = certificates::classify(m, &segs) {
        return op.map_or(Route::MethodNotAllowed, |op| {
            vault(VaultOp::Certificate(op))
        });
    }
    match segs.as_slice() {
        ["_akvfs", rest @ ..] => Route::Admin(rest.join("/")),
        ["msi", "token"] if m == Method::GET => Route::ManagedIdentity,
        ["secrets"] | ["secrets", ""] if m == Method::GET => vault(VaultOp::List),
        ["secrets", "restore"] if m == Method::POST => vault(VaultOp::Restore),
        ["secrets", name] => match *m {
            Method::PUT => vault(VaultOp::Set(s(name))),
            Method::GET => vault(VaultOp::Get(s(name), None)),
            Method::DELETE => vault(VaultOp::Delete(s(name))),
            Method::PATCH => vault(VaultOp::Update(s(name), None)),
            _ => Route::MethodNotAllowed,
        },
        ["secrets", name, ""] => match *m {
            Method::GET => vault(VaultOp::Get(s(name), None)),
            Method::PATCH => vault(VaultOp::Update(s(name), None)),
            Method::PUT => vault(VaultOp::Set(s(name))),
            Method::DELETE => vault(VaultOp::Delete(s(name))),
            _ => Route::MethodNotAllowed,
        },
        ["secrets", name, "versions"] | ["secrets", name, "versions", ""] if m == Method::GET => {
            vault(VaultOp::ListVersions(s(name)))
        }
        ["secrets", name, "backup"] if m == Method::POST => vault(VaultOp::Backup(s(name))),
        ["secrets", name, version] | ["secrets", name, version, ""] => match *m {
            Method::GET => vault(VaultOp::Get(s(name), Some(s(version)))),
            Method::PATCH => vault(VaultOp::Update(s(name), Some(s(version)))),
            _ => Route::MethodNotAllowed,
        },
        ["deletedsecrets"] | ["deletedsecrets", ""] if m == Method::GET => {
            vault(VaultOp::ListDeleted)
        }
        ["deletedsecrets", name] | ["deletedsecrets", name, ""] => match *m {
            Method::GET => vault(VaultOp::GetDeleted(s(name))),
            Method::DELETE => vault(VaultOp::Purge(s(name))),
            _ => Route::MethodNotAllowed,
        },
        ["deletedsecrets", name, "recover"] if m == Method::POST => {
            vault(VaultOp::Recover(s(name)))
        }
        [tenant, "oauth2", "v2.0", "token"] if m == Method::POST => Route::Token {
            tenant: s(tenant),
            v2: true,
        },
        [tenant, "oauth2", "token"] if m == Method::POST => Route::Token {
            tenant: s(tenant),
            v2: false,
        },
        [tenant, "v2.0", ".well-known", "openid-configuration"]
        | [tenant, ".well-known", "openid-configuration"]
            if m == Method::GET =>
        {
            Route::OpenIdConfiguration { tenant: s(tenant) }
        }
        ["common", "discovery", "instance"] if m == Method::GET => Route::InstanceDiscovery,
        ["secrets", ..] | ["deletedsecrets", ..] => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// The request's `Host` (HTTP/1) or `:authority` (HTTP/2), if it is a plain host[:port].
fn request_host(req: &Request, fallback: &str) -> Option<String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_else(|| fallback.to_owned());
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then(|| host.to_ascii_lowercase())
}

fn query_pairs(req: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// The service's refusal to purge `name` (a `Secret` or `Certificate`) in a vault with purge
/// protection.
fn purge_protected(kind: &str, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "Operation \"purge\" is not allowed because purge protection is enabled for this \
             vault. Key Vault service will automatically purge it after the retention period has \
             passed. {kind}: {name}"
        ),
    )
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, bytes).into_response(),
        Err(_) => ApiError::internal("serialization failed").into_response(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = json_response(self.status, &self.body());
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Sets the headers the service sends on every answer.
fn finish(
    mut resp: Response,
    request_id: &str,
    client_request_id: Option<HeaderValue>,
) -> Response {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-ms-request-id", v);
    }
    if let Some(v) = client_request_id {
        h.insert("x-ms-client-request-id", v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("-1"));
    h.insert("x-ms-keyvault-region", HeaderValue::from_static("local"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000;includeSubDomains"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "x-ms-keyvault-service-version",
        HeaderValue::from_static(concat!("akvfs-", env!("CARGO_PKG_VERSION"))),
    );
    if resp.status() != StatusCode::NO_CONTENT {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    resp
}

/// Entry point for every request.
pub async fn handle(State(st): State<Arc<Shared>>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = req.headers().get("x-ms-client-request-id").cloned();
    let route = classify(req.method(), req.uri().path());
    let operation = route.operation();

    let resp = match &route {
        Route::Admin(path) => admin::admin(&st, path.clone(), req).await,
        Route::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The requested resource {} was not found.", req.uri().path()),
        )
        .into_response(),
        Route::MethodNotAllowed => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "The method {} is not allowed on {}.",
                req.method(),
                req.uri().path()
            ),
        )
        .into_response(),
        _ => {
            let fault = operation.and_then(|op| st.faults.pick(op));
            match apply_fault(fault).await {
                Some(resp) => resp,
                None => match route {
                    Route::Vault(op) => secrets::vault(&st, op, req).await,
                    Route::Token { tenant, v2 } => identity::token(&st, &tenant, v2, req).await,
                    Route::OpenIdConfiguration { tenant } => identity::openid(&st, &tenant, &req),
                    Route::InstanceDiscovery => identity::discovery(&st, &req),
                    Route::ManagedIdentity => identity::managed_identity(&st, &req),
                    _ => ApiError::internal("unroutable").into_response(),
                },
            }
        }
    };

    if let Some(op) = operation {
        let status = if resp.extensions().get::<DropConnection>().is_some() {
            0
        } else {
            resp.status().as_u16()
        };
        st.counters.record(op, status);
        tracing::debug!(operation = op, status, "local vault request");
    }
    finish(resp, &request_id, client_request_id)
}

/// Sleeps, then answers for a firing fault (`None` = go on normally).
async fn apply_fault(fault: Option<super::control::FaultAction>) -> Option<Response> {
    let fault = fault?;
    if let Some(latency) = fault.latency {
        tokio::time::sleep(latency).await;
    }
    if fault.drop_connection {
        let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        resp.extensions_mut().insert(DropConnection);
        return Some(resp);
    }
    let status = StatusCode::from_u16(fault.status?).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = match status {
        StatusCode::INTERNAL_SERVER_ERROR => "InternalServerError",
        StatusCode::BAD_GATEWAY => "BadGateway",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        StatusCode::GATEWAY_TIMEOUT => "GatewayTimeout",
        StatusCode::REQUEST_TIMEOUT => "RequestTimeout",
        _ => "InjectedFault",
    };
    let mut err = if status == StatusCode::TOO_MANY_REQUESTS {
        ApiError::throttled(None)
    } else {
        ApiError::new(
            status,
            code,
            format!("Fault injected by the local vault's test controls (status {status})."),
        )
    };
    err.retry_after = fault.retry_after;
    Some(err.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_operation_is_a_known_operation_name() {
        let m = |x: &str| x.parse::<Method>().expect("method");
        for (method, path) in [
            ("PUT", "/secrets/a"),
            ("GET", "/secrets/a"),
            ("PATCH", "/secrets/a/v"),
            ("DELETE", "/secrets/a"),
            ("GET", "/secrets"),
            ("GET", "/secrets/a/versions"),
            ("GET", "/deletedsecrets"),
            ("GET", "/deletedsecrets/a"),
            ("DELETE", "/deletedsecrets/a"),
            ("POST", "/deletedsecrets/a/recover"),
            ("POST", "/secrets/a/backup"),
            ("POST", "/secrets/restore"),
            ("POST", "/t/oauth2/v2.0/token"),
            ("GET", "/msi/token"),
        ] {
            let op = classify(&m(method), path).operation().expect(path);
            assert!(OPERATIONS.contains(&op), "{op}");
        }
    }

    #[test]
    fn paths_classify_like_the_service() {
        let g = Method::GET;
        assert_eq!(
            classify(&g, "/secrets/a/"),
            Route::Vault(VaultOp::Get("a".into(), None))
        );
        assert_eq!(
            classify(&g, "/secrets/a"),
            Route::Vault(VaultOp::Get("a".into(), None))
        );
        assert_eq!(
            classify(&g, "/secrets/a/0123"),
            Route::Vault(VaultOp::Get("a".into(), Some("0123".into())))
        );
        assert_eq!(
            classify(&g, "/secrets/a/versions"),
            Route::Vault(VaultOp::ListVersions("a".into()))
        );
        assert_eq!(
            classify(&Method::PATCH, "/secrets/a/"),
            Route::Vault(VaultOp::Update("a".into(), None))
        );
        assert_eq!(
            classify(&Method::POST, "/secrets/restore"),
            Route::Vault(VaultOp::Restore)
        );
        assert_eq!(
            classify(&Method::POST, "/deletedsecrets/a/recover"),
            Route::Vault(VaultOp::Recover("a".into()))
        );
        assert_eq!(
            classify(&Method::DELETE, "/deletedsecrets/a"),
            Route::Vault(VaultOp::Purge("a".into()))
        );
        assert_eq!(
            classify(&Method::POST, "/secrets/a"),
            Route::MethodNotAllowed
        );
        assert_eq!(classify(&g, "/keys"), Route::NotFound);
        assert_eq!(
            classify(&Method::POST, "/t/oauth2/v2.0/token"),
            Route::Token {
                tenant: "t".into(),
                v2: true
            }
        );
    }
}
