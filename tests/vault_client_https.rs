//! `SecretClient` against a small scripted HTTPS server run inside the test (axum + rustls, a
//! throwaway rcgen CA, port 0). TEST-ONLY: the server plays just enough of Key Vault and its token
//! endpoint to pin the client's wire behaviour — the challenge, token caching, retries, paging,
//! polling — and counts every request it sees. Secret names pick the scripted behaviour.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akvfs::vault::auth::{credential_with_env, AuthKind};
use akvfs::vault::client::{ClientOptions, SecretClient};
use akvfs::vault::model::{SecretSetParameters, SecretUpdateParameters, Tags};
use akvfs::vault::{SecretStore, VaultError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

const TENANT: &str = "test-tenant";
const CLIENT_ID: &str = "test-client";
const CLIENT_SECRET: &str = "test-client-secret";

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    status: u16,
    authed: bool,
    content_length: Option<String>,
    body: String,
    request_id: Option<String>,
    user_agent: Option<String>,
}

#[derive(Default)]
struct Server {
    port: u16,
    log: Mutex<Vec<Seen>>,
    tokens_issued: AtomicUsize,
    revoked: Mutex<HashSet<String>>,
    /// Per-path counters for scripted "first N answers" behaviours.
    hits: Mutex<HashMap<String, usize>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.log.lock().expect("log").clone()
    }

    fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }

    fn token_requests(&self) -> usize {
        self.count("POST", &format!("/{TENANT}/oauth2/v2.0/token"))
    }

    fn hit(&self, key: &str) -> usize {
        let mut hits = self.hits.lock().expect("hits");
        let n = hits.entry(key.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    fn origin(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

fn json(status: u16, body: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn service_error(status: u16, code: &str, inner: Option<&str>, message: &str) -> Response {
    let mut error = serde_json::json!({"code": code, "message": message});
    if let Some(inner) = inner {
        error["innererror"] = serde_json::json!({"code": inner});
    }
    json(status, serde_json::json!({ "error": error }))
}

fn bundle(s: &Server, name: &str, value: Option<&str>) -> serde_json::Value {
    let mut b = serde_json::json!({
        "id": format!("{}/secrets/{name}/0123456789abcdef0123456789abcdef", s.origin()),
        "attributes": {"enabled": true, "created": 1, "updated": 2, "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
        "tags": {}
    });
    if let Some(v) = value {
        b["value"] = serde_json::json!(v);
    }
    b
}

async fn handle(
    State(s): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let response = route(&s, &method, &uri, authorization.as_deref(), &body).await;
    s.log.lock().expect("log").push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        status: response.status().as_u16(),
        authed: authorization.is_some(),
        content_length: header("content-length"),
        body: String::from_utf8_lossy(&body).into_owned(),
        request_id: header("x-ms-client-request-id"),
        user_agent: header("user-agent"),
    });
    response
}

async fn route(
    s: &Server,
    method: &Method,
    uri: &Uri,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let path = uri.path();
    if path == format!("/{TENANT}/oauth2/v2.0/token") && method == Method::POST {
        let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
            && form.get("scope").map(String::as_str) == Some("https://vault.azure.net/.default");
        if !ok {
            return json(
                401,
                serde_json::json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
            );
        }
        let n = s.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
        return json(
            200,
            serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": format!("tok-{n}")}),
        );
    }

    // Every vault request needs a valid token; otherwise the challenge (before the body).
    let valid = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| t.starts_with("tok-") && !s.revoked.lock().expect("revoked").contains(t));
    if !valid {
        let mut r = service_error(
            401,
            "Unauthorized",
            None,
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
        let challenge = format!(
            "Bearer authorization=\"{}/{TENANT}\", resource=\"https://vault.azure.net\"",
            s.origin()
        );
        r.headers_mut()
            .insert("www-authenticate", challenge.parse().expect("header"));
        return r;
    }

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    if query.get("api-version").map(String::as_str) != Some("7.5") {
        return service_error(400, "BadParameter", None, "missing api-version");
    }
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["secrets"]) => {
            let max: usize = query
                .get("maxresults")
                .and_then(|m| m.parse().ok())
                .unwrap_or(25);
            let skip: usize = query
                .get("$skiptoken")
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            let total = 7;
            let items: Vec<_> = (skip..total.min(skip + max))
                .map(|i| serde_json::json!({"id": format!("{}/secrets/s{i}", s.origin()), "attributes": {"enabled": true}}))
                .collect();
            let next = (skip + max < total).then(|| {
                // explicit port, as the real service writes `:443`
                format!(
                    "{}/secrets?api-version=7.5&$skiptoken={}&maxresults={max}",
                    s.origin(),
                    skip + max
                )
            });
            json(200, serde_json::json!({"value": items, "nextLink": next}))
        }
        ("GET", ["deletedsecrets"]) => json(
            200,
            serde_json::json!({
                "value": [{"id": format!("{}/deletedsecrets/d0", s.origin()), "recoveryId": "r"}],
                "nextLink": format!("https://evil.example:{}/deletedsecrets?api-version=7.5&$skiptoken=1", s.port)
            }),
        ),
        ("GET", ["secrets", name, "versions"]) => json(
            200,
            serde_json::json!({
                "value": [
                    {"id": format!("{}/secrets/{name}/v1", s.origin())},
                    {"id": format!("{}/secrets/{name}/v2", s.origin())}
                ],
                "nextLink": null
            }),
        ),
        ("GET", ["secrets", name]) | ("GET", ["secrets", name, _]) => {
            let n = s.hit(path);
            match *name {
                "plain" => json(200, bundle(s, name, Some("v-plain"))),
                "throttled" if n == 1 => {
                    let mut r = service_error(429, "Throttled", None, "slow down");
                    r.headers_mut()
                        .insert("retry-after", "1".parse().expect("h"));
                    r
                }
                "throttled-bare" if n == 1 => service_error(429, "Throttled", None, "slow down"),
                "flaky" if n == 1 => service_error(503, "ServiceUnavailable", None, "busy"),
                "down" => service_error(503, "ServiceUnavailable", None, "busy"),
                "big" => json(200, serde_json::json!({"value": "x".repeat(2 << 20)})),
                "badjson" => (StatusCode::OK, "{\"value\": \"hunter2").into_response(),
                "disabled" => service_error(
                    403,
                    "Forbidden",
                    Some("SecretDisabled"),
                    "Operation get is not allowed on a disabled secret.",
                ),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    json(200, bundle(s, name, Some("late")))
                }
                "recovering" if n == 1 => {
                    service_error(404, "SecretNotFound", None, "not found yet")
                }
                "throttled" | "throttled-bare" | "flaky" | "recovering" => {
                    json(200, bundle(s, name, Some("v")))
                }
                _ => service_error(
                    404,
                    "SecretNotFound",
                    None,
                    "A secret with (name/id) was not found in this key vault.",
                ),
            }
        }
        ("PUT", ["secrets", name]) => {
            if *name == "deleted-name" {
                return service_error(
                    409,
                    "Conflict",
                    Some("ObjectIsDeletedButRecoverable"),
                    "Secret deleted-name is currently in a deleted but recoverable state",
                );
            }
            let params: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => return service_error(400, "BadParameter", None, "bad body"),
            };
            let mut b = bundle(s, name, params["value"].as_str());
            b["contentType"] = params["contentType"].clone();
            json(200, b)
        }
        ("PATCH", ["secrets", name, ""]) => {
            let params: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let mut b = bundle(s, name, None);
            b["tags"] = params["tags"].clone();
            json(200, b)
        }
        ("DELETE", ["secrets", name]) => {
            let mut b = bundle(s, name, None);
            if *name != "nosoft" {
                b["recoveryId"] =
                    serde_json::json!(format!("{}/deletedsecrets/{name}", s.origin()));
                b["deletedDate"] = serde_json::json!(10);
                b["scheduledPurgeDate"] = serde_json::json!(20);
            }
            json(200, b)
        }
        ("GET", ["deletedsecrets", name]) => {
            let n = s.hit(path);
            match *name {
                "forbidden-poll" => {
                    service_error(403, "Forbidden", Some("ForbiddenByPolicy"), "no get")
                }
                _ if n <= 2 => {
                    service_error(404, "SecretNotFound", None, "Deleted Secret not found")
                }
                _ => {
                    let mut b = bundle(s, name, None);
                    b["recoveryId"] = serde_json::json!("r");
                    json(200, b)
                }
            }
        }
        ("POST", ["deletedsecrets", name, "recover"]) => json(200, bundle(s, name, None)),
        ("DELETE", ["deletedsecrets", _]) => StatusCode::NO_CONTENT.into_response(),
        _ => service_error(400, "BadParameter", None, "unknown route"),
    }
}

struct Fixture {
    server: Arc<Server>,
    client: SecretClient,
    _dir: tempfile::TempDir,
}

/// Starts the server on 127.0.0.1:0 with a fresh CA, and a client trusting that CA, using the
/// environment credential with the `AKVFS_…` names (as `akvfs local-vault` writes them).
async fn fixture(tune: impl FnOnce(&mut ClientOptions)) -> Fixture {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "akvfs test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write ca");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let server = Arc::new(Server {
        port: addr.port(),
        ..Server::default()
    });
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        leaf.pem().into_bytes(),
        leaf_key.serialize_pem().into_bytes(),
    )
    .await
    .expect("tls config");
    let app = Router::new().fallback(handle).with_state(server.clone());
    tokio::spawn(async move {
        let _ = axum_server::from_tcp_rustls(listener, tls)
            .serve(app.into_make_service())
            .await;
    });

    let vault_url = format!("https://127.0.0.1:{}", addr.port());
    let env = |name: &str| match name {
        "AKVFS_TENANT_ID" => Some(TENANT.to_owned()),
        "AKVFS_CLIENT_ID" => Some(CLIENT_ID.to_owned()),
        "AKVFS_CLIENT_SECRET" => Some(CLIENT_SECRET.to_owned()),
        _ => None,
    };
    let credential =
        credential_with_env(AuthKind::Env, &vault_url, Some(&ca_file), &env).expect("credential");
    let mut options = ClientOptions {
        vault_url,
        ca_file: Some(ca_file),
        request_timeout: Duration::from_secs(10),
        delete_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    tune(&mut options);
    let client = SecretClient::new(options, credential).expect("client");
    Fixture {
        server,
        client,
        _dir: dir,
    }
}

#[tokio::test]
async fn first_call_runs_the_challenge_then_tokens_are_cached() {
    let f = fixture(|_| {}).await;
    let got = f.client.get_secret("plain", None).await.expect("get");
    assert_eq!(got.value.as_ref().map(|v| v.expose()), Some("v-plain"));
    let seen = f.server.seen();
    let paths: Vec<(String, String, u16, bool)> = seen
        .iter()
        .map(|s| (s.method.clone(), s.path.clone(), s.status, s.authed))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("GET".into(), "/secrets/plain".into(), 401, false),
            (
                "POST".into(),
                format!("/{TENANT}/oauth2/v2.0/token"),
                200,
                false
            ),
            ("GET".into(), "/secrets/plain".into(), 200, true),
        ]
    );
    // a second call: one request, no challenge, no new token
    f.client.get_secret("plain", None).await.expect("get");
    assert_eq!(f.server.seen().len(), 4);
    assert_eq!(f.server.token_requests(), 1);
    let last = f.server.seen().pop().expect("last");
    assert!(last.user_agent.unwrap_or_default().starts_with("akvfs/"));
    let id = last.request_id.expect("x-ms-client-request-id");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert!(last.query.contains("api-version=7.5"));
}

#[tokio::test]
async fn the_unauthenticated_first_put_carries_no_body() {
    let f = fixture(|_| {}).await;
    let set = f
        .client
        .set_secret(
            "s1",
            SecretSetParameters {
                value: "hunter2".into(),
                content_type: Some("text/plain".into()),
                ..SecretSetParameters::default()
            },
        )
        .await
        .expect("set");
    assert_eq!(set.value.as_ref().map(|v| v.expose()), Some("hunter2"));
    let puts: Vec<Seen> = f
        .server
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2);
    assert!(!puts[0].authed && puts[0].status == 401);
    assert_eq!(puts[0].content_length.as_deref(), Some("0"));
    assert!(puts[0].body.is_empty());
    assert!(puts[1].authed && puts[1].body.contains("hunter2"));
}

#[tokio::test]
async fn concurrent_first_calls_share_one_challenge_and_one_token() {
    let f = Arc::new(fixture(|_| {}).await);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            f.client.get_secret("plain", None).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("get");
    }
    let unauthenticated = f
        .server
        .seen()
        .iter()
        .filter(|s| !s.authed && s.path.starts_with("/secrets"))
        .count();
    assert_eq!(unauthenticated, 1);
    assert_eq!(f.server.token_requests(), 1);
    assert_eq!(f.server.count("GET", "/secrets/plain"), 17);
}

#[tokio::test]
async fn a_revoked_token_reruns_the_challenge_once() {
    let f = fixture(|_| {}).await;
    f.client.get_secret("plain", None).await.expect("get");
    f.server
        .revoked
        .lock()
        .expect("revoked")
        .insert("tok-1".into());
    f.client
        .get_secret("plain", None)
        .await
        .expect("get after revocation");
    assert_eq!(f.server.token_requests(), 2);
    // revoke everything from now on: the second 401 is an Auth error, not a loop
    for n in 2..10 {
        f.server
            .revoked
            .lock()
            .expect("revoked")
            .insert(format!("tok-{n}"));
    }
    let before = f.server.seen().len();
    let err = f
        .client
        .get_secret("plain", None)
        .await
        .expect_err("refused");
    assert!(matches!(err, VaultError::Auth { .. }), "{err:?}");
    // one try with the cached token, one re-challenge: a token request and one more try
    assert_eq!(f.server.seen().len() - before, 3);
}

#[tokio::test]
async fn a_wrong_client_secret_is_an_auth_error_naming_the_cause() {
    let f = fixture(|_| {}).await;
    let vault_url = f.client.vault_url().to_owned();
    let env = |name: &str| match name {
        "AKVFS_TENANT_ID" => Some(TENANT.to_owned()),
        "AKVFS_CLIENT_ID" => Some(CLIENT_ID.to_owned()),
        "AKVFS_CLIENT_SECRET" => Some("wrong".to_owned()),
        _ => None,
    };
    let ca = f.client.options().ca_file.clone().expect("ca");
    let credential = credential_with_env(AuthKind::Env, &vault_url, Some(&ca), &env).expect("cred");
    let client = SecretClient::new(f.client.options().clone(), credential).expect("client");
    let err = client.get_secret("plain", None).await.expect_err("auth");
    let text = err.to_string();
    assert!(matches!(err, VaultError::Auth { .. }), "{err:?}");
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("wrong"), "{text}");
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_the_delay() {
    let f = fixture(|_| {}).await;
    f.client.get_secret("plain", None).await.expect("warm up");
    let started = Instant::now();
    let got = f.client.get_secret("throttled", None).await.expect("get");
    assert!(got.value.is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(f.server.count("GET", "/secrets/throttled"), 2);
}

#[tokio::test]
async fn a_429_without_retry_after_is_retried_too() {
    let f = fixture(|_| {}).await;
    f.client
        .get_secret("throttled-bare", None)
        .await
        .expect("get");
    // challenge + 429 + 200
    assert_eq!(f.server.count("GET", "/secrets/throttled-bare"), 3);
}

#[tokio::test]
async fn a_503_then_200_succeeds() {
    let f = fixture(|_| {}).await;
    f.client.get_secret("plain", None).await.expect("warm up");
    f.client.get_secret("flaky", None).await.expect("get");
    assert_eq!(f.server.count("GET", "/secrets/flaky"), 2);
}

#[tokio::test]
async fn a_persistent_503_is_unavailable_after_the_retries() {
    let f = fixture(|o| o.max_retries = 2).await;
    f.client.get_secret("plain", None).await.expect("warm up");
    let err = f.client.get_secret("down", None).await.expect_err("down");
    assert!(matches!(err, VaultError::Unavailable { .. }), "{err:?}");
    assert_eq!(f.server.count("GET", "/secrets/down"), 3);
}

#[tokio::test]
async fn a_slow_vault_hits_the_request_deadline() {
    let f = fixture(|o| o.request_timeout = Duration::from_millis(700)).await;
    f.client.get_secret("plain", None).await.expect("warm up");
    let started = Instant::now();
    let err = f.client.get_secret("slow", None).await.expect_err("slow");
    assert!(matches!(err, VaultError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn lists_follow_next_link_over_three_pages() {
    let f = fixture(|o| o.page_size = Some(3)).await;
    let items = f.client.list_properties_of_secrets().await.expect("list");
    let ids: Vec<String> = items.iter().filter_map(|i| i.id.clone()).collect();
    assert_eq!(ids.len(), 7);
    assert!(ids[6].ends_with("/secrets/s6"));
    let lists: Vec<Seen> = f
        .server
        .seen()
        .into_iter()
        .filter(|s| s.path == "/secrets" && s.authed)
        .collect();
    assert_eq!(lists.len(), 3);
    assert!(lists[0].query.contains("maxresults=3"));
    assert!(lists[2].query.contains("skiptoken=6"));
}

#[tokio::test]
async fn a_one_page_list_is_one_call() {
    let f = fixture(|_| {}).await;
    let versions = f
        .client
        .list_properties_of_secret_versions("plain")
        .await
        .expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(f.server.count("GET", "/secrets/plain/versions"), 2); // challenge + page
}

#[tokio::test]
async fn a_foreign_next_link_is_refused() {
    let f = fixture(|_| {}).await;
    let err = f.client.list_deleted_secrets().await.expect_err("foreign");
    match err {
        VaultError::InvalidResponse { message, .. } => {
            assert!(message.contains("evil.example"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.server.count("GET", "/deletedsecrets"), 2); // challenge + first page only
}

#[tokio::test]
async fn delete_polls_the_deleted_secret_until_it_exists() {
    let f = fixture(|_| {}).await;
    let started = Instant::now();
    let deleted = f.client.delete_secret("gone").await.expect("delete");
    assert!(deleted.recovery_id.is_some());
    assert_eq!(f.server.count("GET", "/deletedsecrets/gone"), 3); // 404, 404, 200
                                                                  // fast first polls: 50 + 100 + 200 ms of backoff
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn delete_without_soft_delete_does_not_poll() {
    let f = fixture(|_| {}).await;
    let deleted = f.client.delete_secret("nosoft").await.expect("delete");
    assert!(deleted.recovery_id.is_none());
    assert_eq!(f.server.count("GET", "/deletedsecrets/nosoft"), 0);
}

#[tokio::test]
async fn delete_poll_forbidden_counts_as_done() {
    let f = fixture(|_| {}).await;
    f.client
        .delete_secret("forbidden-poll")
        .await
        .expect("delete");
    assert_eq!(f.server.count("GET", "/deletedsecrets/forbidden-poll"), 1);
}

#[tokio::test]
async fn recover_polls_the_secret_until_it_is_back() {
    let f = fixture(|_| {}).await;
    f.client
        .recover_deleted_secret("recovering")
        .await
        .expect("recover");
    let posts = f.server.count("POST", "/deletedsecrets/recovering/recover");
    assert_eq!(posts, 2); // challenge + the real one
    assert_eq!(f.server.count("GET", "/secrets/recovering"), 2); // 404 then 200
    f.client
        .purge_deleted_secret("recovering")
        .await
        .expect("purge");
}

#[tokio::test]
async fn update_patches_the_latest_version() {
    let f = fixture(|_| {}).await;
    let mut tags = Tags::new();
    tags.insert("foo".into(), "bar".into());
    let updated = f
        .client
        .update_secret_properties(
            "plain",
            None,
            SecretUpdateParameters {
                tags: Some(tags.clone()),
                ..SecretUpdateParameters::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.tags, Some(tags));
    assert_eq!(f.server.count("PATCH", "/secrets/plain/"), 2);
}

#[tokio::test]
async fn hostile_and_error_responses_map_cleanly() {
    let f = fixture(|_| {}).await;
    let big = f.client.get_secret("big", None).await.expect_err("big");
    assert!(matches!(big, VaultError::InvalidResponse { .. }), "{big:?}");
    let bad = f
        .client
        .get_secret("badjson", None)
        .await
        .expect_err("json");
    assert!(matches!(bad, VaultError::InvalidResponse { .. }), "{bad:?}");
    assert!(!bad.to_string().contains("hunter2"));
    let disabled = f
        .client
        .get_secret("disabled", None)
        .await
        .expect_err("disabled");
    assert!(
        matches!(disabled, VaultError::SecretDisabled { .. }),
        "{disabled:?}"
    );
    let missing = f
        .client
        .get_secret("missing", None)
        .await
        .expect_err("missing");
    assert!(
        matches!(missing, VaultError::NotFound { .. }),
        "{missing:?}"
    );
    let conflict = f
        .client
        .set_secret(
            "deleted-name",
            SecretSetParameters {
                value: "x".into(),
                ..SecretSetParameters::default()
            },
        )
        .await
        .expect_err("conflict");
    assert!(
        matches!(conflict, VaultError::DeletedButRecoverable { .. }),
        "{conflict:?}"
    );
}
