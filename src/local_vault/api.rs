//! The HTTP surface of the local vault: one dispatcher that classifies each request into an
//! operation (for counters, faults, throttling and permissions), then runs the pipeline the
//! service runs — authenticate (before reading the body or the api-version), throttle, check the
//! api-version, check the access policy — and a thin handler over the store.
//!
//! Paths are matched by hand rather than with axum routes so that trailing slashes
//! (`/secrets/{name}/` = latest) and the classification of every request, including ones that
//! fail early, live in one place.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use serde::de::DeserializeOwned;

use super::admin::{ClockAdvance, FaultSpec, NewPrincipal, PrincipalRequest};
use super::auth::{self, Claims};
use super::error::ApiError;
use super::store::{BackupData, DeletedRecord, NewVersion, Now, SecretRecord, VersionUpdate};
use super::Shared;
use crate::secret_value::SecretValue;
use crate::vault::model::{
    is_valid_secret_name, DeletedSecretBundle, DeletedSecretItem, ListPage, SecretAttributes,
    SecretBundle, SecretItem, SecretSetParameters, SecretUpdateParameters, MAX_CONTENT_TYPE_LEN,
    MAX_PAGE_SIZE, MAX_SECRET_VALUE_CHARS,
};

/// Largest request body read (a full 25,600-character value with JSON escaping fits easily).
const MAX_BODY_BYTES: usize = 1 << 20;

/// Marker extension: the outer service turns such a response into a dropped connection.
#[derive(Clone, Copy, Debug)]
pub struct DropConnection;

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
        Route::Admin(path) => admin(&st, path.clone(), req).await,
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
                    Route::Vault(op) => vault(&st, op, req).await,
                    Route::Token { tenant, v2 } => token(&st, &tenant, v2, req).await,
                    Route::OpenIdConfiguration { tenant } => openid(&st, &tenant, &req),
                    Route::InstanceDiscovery => discovery(&st, &req),
                    Route::ManagedIdentity => managed_identity(&st, &req),
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

// ---- the data plane --------------------------------------------------------------------------

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

fn check_api_version(st: &Shared, pairs: &[(String, String)]) -> Result<String, ApiError> {
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

fn challenge(st: &Shared, host: &str) -> Response {
    let resource = auth::resource_for_host(host);
    let mut resp = ApiError::unauthorized().into_response();
    let value = format!(
        "Bearer authorization=\"https://{host}/{}\", resource=\"{resource}\"",
        st.tenant_id
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

fn authenticate(st: &Shared, headers: &HeaderMap, host: &str) -> Option<Claims> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(auth::bearer)?;
    auth::verify(
        st.jwt_key.expose().as_bytes(),
        token,
        &auth::resource_for_host(host),
        st.clock.now_secs(),
    )
}

fn now(st: &Shared) -> Now {
    Now {
        ms: st.clock.now_ms(),
    }
}

/// Runs store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    st: &Arc<Shared>,
    f: impl FnOnce(&super::store::Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = st.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|_| ApiError::internal("The local vault's storage task failed."))?
}

async fn read_json<T: DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::bad_parameter("The request body is too large or unreadable."))?;
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

async fn vault(st: &Arc<Shared>, op: VaultOp, req: Request) -> Response {
    let Some(host) = request_host(&req, &st.default_host) else {
        return ApiError::bad_parameter("The Host header is not a valid host name.")
            .into_response();
    };
    // Authentication comes first: no body or api-version is looked at without a valid token.
    let Some(claims) = authenticate(st, req.headers(), &host) else {
        return challenge(st, &host);
    };
    if let Err(retry_after) = st.throttle.admit(matches!(op, VaultOp::Set(_))) {
        return ApiError::throttled(Some(retry_after)).into_response();
    }
    match vault_op(st, op, claims, &host, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn vault_op(
    st: &Arc<Shared>,
    op: VaultOp,
    claims: Claims,
    host: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&req);
    let api_version = check_api_version(st, &pairs)?;
    let permitted = st
        .principals
        .read()
        .get(&claims.appid)
        .is_some_and(|perms| perms.iter().any(|p| p == op.permission()));
    if !permitted {
        return Err(ApiError::forbidden_by_policy(
            op.permission(),
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
            let (recs, more) =
                blocking(st, move |s| s.list(after.as_deref(), page.size, now)).await?;
            let next = more.then(|| recs.last().map(|l| super::store::fold(&l.name)));
            let body = ListPage {
                value: recs.iter().map(|rec| r.item(rec, false)).collect(),
                next_link: next
                    .flatten()
                    .map(|k| r.next_link("/secrets", &api_version, &k, &page)),
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        VaultOp::ListVersions(name) => {
            let page = Paging::parse(&pairs)?;
            let after = page.after.clone();
            let n = name.clone();
            let (recs, more) = blocking(st, move |s| {
                s.list_versions(&n, after.as_deref(), page.size, now)
            })
            .await?;
            let next = more.then(|| recs.last().map(|l| l.version.version.clone()));
            let path = match recs.first() {
                Some(first) => format!("/secrets/{}/versions", first.name),
                None => format!("/secrets/{name}/versions"),
            };
            let body = ListPage {
                value: recs.iter().map(|rec| r.item(rec, true)).collect(),
                next_link: next
                    .flatten()
                    .map(|k| r.next_link(&path, &api_version, &k, &page)),
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        VaultOp::ListDeleted => {
            let page = Paging::parse(&pairs)?;
            let after = page.after.clone();
            let (recs, more) = blocking(st, move |s| {
                s.list_deleted(after.as_deref(), page.size, now)
            })
            .await?;
            let next = more.then(|| recs.last().map(|l| super::store::fold(&l.name)));
            let body = ListPage {
                value: recs.iter().map(|rec| r.deleted_item(rec)).collect(),
                next_link: next
                    .flatten()
                    .map(|k| r.next_link("/deletedsecrets", &api_version, &k, &page)),
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        VaultOp::GetDeleted(name) => {
            let rec = blocking(st, move |s| s.get_deleted(&name, now)).await?;
            Ok(json_response(StatusCode::OK, &r.deleted_bundle(&rec)))
        }
        VaultOp::Purge(name) => {
            if st.config.purge_protection {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "Operation \"purge\" is not allowed because purge protection is enabled \
                         for this vault. Key Vault service will automatically purge it after the \
                         retention period has passed. Secret: {name}"
                    ),
                ));
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

fn validate_set(p: SecretSetParameters) -> Result<NewVersion, ApiError> {
    if p.value.char_count() > MAX_SECRET_VALUE_CHARS {
        return Err(ApiError::bad_parameter(format!(
            "Secret is beyond the maximum permitted length of {MAX_SECRET_VALUE_CHARS} characters."
        )));
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

fn validate_update(p: SecretUpdateParameters) -> Result<VersionUpdate, ApiError> {
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

fn check_content_type(ct: Option<&str>) -> Result<(), ApiError> {
    match ct {
        Some(ct) if ct.chars().count() > MAX_CONTENT_TYPE_LEN => Err(ApiError::bad_parameter(
            format!("Content type is beyond the maximum permitted length of {MAX_CONTENT_TYPE_LEN} characters."),
        )),
        _ => Ok(()),
    }
}

/// The service's tag limits: 15 tags, names up to 512 and values up to 256 characters.
fn check_tags(tags: Option<&crate::vault::model::Tags>) -> Result<(), ApiError> {
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
struct Paging {
    size: usize,
    explicit_size: bool,
    after: Option<String>,
}

impl Paging {
    fn parse(pairs: &[(String, String)]) -> Result<Paging, ApiError> {
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
fn encode_skiptoken(after: &str) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::json!({ "NextMarker": after }).to_string())
}

fn decode_skiptoken(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(v.get("NextMarker")?.as_str()?.to_owned())
}

// ---- rendering -------------------------------------------------------------------------------

struct Render<'a> {
    st: &'a Shared,
    host: &'a str,
}

impl Render<'_> {
    fn base(&self) -> String {
        format!("https://{}", self.host)
    }

    fn attributes(&self, rec: &SecretRecord) -> SecretAttributes {
        let v = &rec.version;
        let (level, days) = self.st.recovery_level();
        SecretAttributes {
            enabled: Some(v.enabled),
            nbf: v.nbf,
            exp: v.exp,
            created: Some(v.created),
            updated: Some(v.updated),
            recovery_level: Some(level.to_owned()),
            recoverable_days: days,
        }
    }

    fn bundle(&self, rec: &SecretRecord, with_value: bool) -> SecretBundle {
        SecretBundle {
            value: with_value.then(|| rec.version.value.clone()),
            id: Some(format!(
                "{}/secrets/{}/{}",
                self.base(),
                rec.name,
                rec.version.version
            )),
            content_type: rec.version.content_type.clone(),
            attributes: Some(self.attributes(rec)),
            tags: rec.version.tags.clone(),
            kid: None,
            managed: None,
        }
    }

    fn item(&self, rec: &SecretRecord, versioned: bool) -> SecretItem {
        let id = if versioned {
            format!(
                "{}/secrets/{}/{}",
                self.base(),
                rec.name,
                rec.version.version
            )
        } else {
            format!("{}/secrets/{}", self.base(), rec.name)
        };
        SecretItem {
            id: Some(id),
            attributes: Some(self.attributes(rec)),
            tags: rec.version.tags.clone(),
            content_type: rec.version.content_type.clone(),
            managed: None,
        }
    }

    fn deleted_bundle(&self, rec: &DeletedRecord) -> DeletedSecretBundle {
        let as_secret = SecretRecord {
            name: rec.name.clone(),
            version: rec.version.clone(),
        };
        let mut secret = self.bundle(&as_secret, false);
        secret.value = None;
        let soft = self.st.config.soft_delete;
        DeletedSecretBundle {
            secret,
            recovery_id: soft.then(|| format!("{}/deletedsecrets/{}", self.base(), rec.name)),
            scheduled_purge_date: soft.then_some(rec.scheduled_purge),
            deleted_date: soft.then_some(rec.deleted_date),
        }
    }

    fn deleted_item(&self, rec: &DeletedRecord) -> DeletedSecretItem {
        let as_secret = SecretRecord {
            name: rec.name.clone(),
            version: rec.version.clone(),
        };
        DeletedSecretItem {
            item: self.item(&as_secret, false),
            recovery_id: Some(format!("{}/deletedsecrets/{}", self.base(), rec.name)),
            scheduled_purge_date: Some(rec.scheduled_purge),
            deleted_date: Some(rec.deleted_date),
        }
    }

    /// Absolute, like the service's: `https://HOST/PATH?api-version=V&$skiptoken=T` (the `$`
    /// unescaped, as the service writes it; the token is base64url and needs no escaping).
    fn next_link(&self, path: &str, api_version: &str, after: &str, page: &Paging) -> String {
        let version: String =
            url::form_urlencoded::byte_serialize(api_version.as_bytes()).collect();
        let mut link = format!(
            "{}{}?api-version={version}&$skiptoken={}",
            self.base(),
            path,
            encode_skiptoken(after)
        );
        if page.explicit_size {
            link.push_str(&format!("&maxresults={}", page.size));
        }
        link
    }
}

// ---- backup blobs ----------------------------------------------------------------------------

/// A backup blob: base64url of MAC(32 bytes) ‖ JSON, so only this vault restores it and a
/// tampered blob is refused.
fn seal_backup(st: &Shared, data: &BackupData) -> Result<SecretValue, ApiError> {
    let json = serde_json::to_vec(data).map_err(|_| ApiError::internal("backup failed"))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(st.backup_key.expose().as_bytes())
        .map_err(|_| ApiError::internal("backup failed"))?;
    mac.update(&json);
    let mut bytes = mac.finalize().into_bytes().to_vec();
    bytes.extend_from_slice(&json);
    let blob = SecretValue::new(URL_SAFE_NO_PAD.encode(&bytes));
    zeroize::Zeroize::zeroize(&mut bytes);
    Ok(blob)
}

fn open_backup(st: &Shared, blob: &str) -> Result<BackupData, ApiError> {
    let bad = || ApiError::bad_parameter("Backup blob contains invalid or corrupt version.");
    let bytes = zeroize::Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(blob.trim_end_matches('='))
            .map_err(|_| bad())?,
    );
    if bytes.len() < 32 {
        return Err(bad());
    }
    let (tag, json) = bytes.split_at(32);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(st.backup_key.expose().as_bytes())
        .map_err(|_| bad())?;
    mac.update(json);
    mac.verify_slice(tag).map_err(|_| bad())?;
    let data: BackupData = serde_json::from_slice(json).map_err(|_| bad())?;
    if !is_valid_secret_name(&data.name) || data.versions.is_empty() {
        return Err(bad());
    }
    Ok(data)
}

// ---- token issuance --------------------------------------------------------------------------

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
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

fn issue(st: &Shared, client_id: &str, audience: &str) -> Result<(String, i64), ApiError> {
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

async fn token(st: &Arc<Shared>, tenant: &str, v2: bool, req: Request) -> Response {
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
    let Some(client_id) = get("client_id") else {
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
    let known = st.principal_secrets.read().get(client_id).cloned();
    let Some(expected) = known else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        );
    };
    // AAD answers a wrong or missing client secret with 401 invalid_client.
    let secret_ok = get("client_secret").is_some_and(|s| auth::secret_eq(s, expected.expose()));
    if !secret_ok {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    match issue(st, client_id, &audience) {
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

fn base_url(st: &Shared, req: &Request) -> String {
    match request_host(req, &st.default_host) {
        Some(host) => format!("https://{host}"),
        None => st.vault_url.clone(),
    }
}

fn openid(st: &Shared, tenant: &str, req: &Request) -> Response {
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
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
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

fn discovery(st: &Shared, req: &Request) -> Response {
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
/// with `X-IDENTITY-HEADER`. Answers for the default principal (or `client_id` when it names
/// another known one).
fn managed_identity(st: &Shared, req: &Request) -> Response {
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
        .filter(|id| st.principal_secrets.read().contains_key(*id))
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
                    "expires_in": ttl,
                    "resource": resource,
                    "token_type": "Bearer",
                    "client_id": client_id,
                }),
            )
        }
        Err(e) => e.into_response(),
    }
}

// ---- admin endpoints -------------------------------------------------------------------------

async fn admin(st: &Arc<Shared>, path: String, req: Request) -> Response {
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
            Ok(spec) if (0.0..=1.0).contains(&spec.rate) => {
                st.faults.add(spec);
                ok()
            }
            Ok(_) => ApiError::bad_parameter("rate must be within 0..1").into_response(),
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
        _ => ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("No admin endpoint {path}."),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
