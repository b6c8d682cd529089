//! Issue 4 and SPEC §7 (malformed, oversized and hostile responses), a hostile vault behind a
//! real mount: a server of the test's own (tests/https_support) answers the token endpoint, the
//! challenge, the connection check and listings normally, but serves a 50 MB streamed body, an
//! 8 MiB one with its length, invalid JSON, a bundle with its fields missing, one with the wrong
//! types, HTML, an empty body and junk 500s, or (in a variant) a listing whose `nextLink` points
//! at another host. The mount must answer EIO (docs/SEMANTICS.md errno table), never hang,
//! never panic, keep its memory bounded, quote no body in its log, and go on serving good
//! secrets.

mod common;
mod https_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::{read_or_errno, sh, sh_ok, UrlMount};
use https_support::{challenge, json, service_error};

const TENANT: &str = "hostile-tenant";
const CLIENT_ID: &str = "hostile-client";
const CLIENT_SECRET: &str = "hostile-client-secret";
/// The "value" of the invalid JSON body: it must never reach a log.
const LEAKED: &str = "hunter2-never-logged";
const BIG_BODY: usize = 50 * 1024 * 1024;
/// The body of the HTML answer (a proxy's sign-in page): it must never reach a log either.
const HTML: &str = "<html><body>Sign in to the proxy</body></html>";
/// The skip token of the foreign `nextLink`: never followed, never logged.
const SKIP_TOKEN: &str = "steal-me";
/// The secrets listed besides `good`, each answered as its name says: each must read EIO.
const HOSTILE: [&str; 8] = [
    "big",
    "huge",
    "badjson",
    "nofields",
    "wrongtype",
    "html",
    "empty",
    "junk500",
];

/// Listed names no secret can have (each as the id's path segment), and case duplicates of
/// `good`: a vault or a man in the middle could list them; none may reach `readdir`.
const BAD_NAMES: [&str; 9] = [
    ".versions",
    ".deleted",
    ".hidden",
    "..",
    "a%2Fb",
    "with%20space",
    "GOOD",
    "Good",
    // 300 characters: over the 127 of a name.
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// `good`'s versions: one real id, then a duplicate, ids that are not version ids, and a
/// version of another secret.
const BAD_VERSIONS: [&str; 5] = [
    "good/0123456789abcdef0123456789abcdef",
    "good/0123456789abcdef0123456789abcdef",
    "good/..",
    "good/%2E%2E",
    "other/fedcba9876543210fedcba9876543210",
];

#[derive(Default)]
struct Hostile {
    port: u16,
    /// Variant: listings carry a `nextLink` to another host.
    foreign_next_link: AtomicBool,
    /// Variant: listings hold names no secret can have, and case duplicates.
    bad_names: AtomicBool,
    /// Requests per path.
    hits: Mutex<HashMap<String, usize>>,
}

impl Hostile {
    fn origin(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// `{"value":"xxxx…` streamed in 64 KiB chunks without a length (so only a reader's own limit
/// stops it), 50 MB in all.
fn endless_body() -> Response {
    static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let head = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(b"{\"value\":\""))
    });
    let rest = futures_util::stream::iter(
        (0..BIG_BODY / CHUNK.len()).map(|_| Ok(Bytes::from_static(&CHUNK))),
    );
    let body = Body::from_stream(futures_util::StreamExt::chain(head, rest));
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

fn item(s: &Hostile, name: &str) -> serde_json::Value {
    serde_json::json!({"id": format!("{}/secrets/{name}", s.origin()), "attributes": {"enabled": true}})
}

async fn handle(
    State(s): State<Arc<Hostile>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    *s.hits
        .lock()
        .expect("hits")
        .entry(path.clone())
        .or_insert(0) += 1;
    if path == format!("/{TENANT}/oauth2/v2.0/token") && method == Method::POST {
        let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        if form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET) {
            return json(
                401,
                serde_json::json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
            );
        }
        return json(
            200,
            serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "hostile-token"}),
        );
    }
    let authorized =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer hostile-token");
    if !authorized {
        return challenge(&format!("{}/{TENANT}", s.origin()), &s.origin());
    }
    let query = uri.query().unwrap_or_default();
    match path
        .trim_start_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["secrets"] | ["deletedsecrets"] if s.bad_names.load(Ordering::SeqCst) => {
            let items: Vec<_> = std::iter::once("good")
                .chain(BAD_NAMES)
                .map(|n| item(&s, n))
                .collect();
            json(200, serde_json::json!({"value": items, "nextLink": null}))
        }
        ["secrets", "good", "versions"] if s.bad_names.load(Ordering::SeqCst) => {
            let items: Vec<_> = BAD_VERSIONS.iter().map(|v| item(&s, v)).collect();
            json(200, serde_json::json!({"value": items, "nextLink": null}))
        }
        ["secrets"] => {
            let names: Vec<&str> = std::iter::once("good").chain(HOSTILE).collect();
            let check = query.contains("maxresults=1");
            let items: Vec<_> = names
                .iter()
                .take(if check { 1 } else { names.len() })
                .map(|n| item(&s, n))
                .collect();
            let next = (!check && s.foreign_next_link.load(Ordering::SeqCst)).then(|| {
                format!(
                    "https://evil.example:{}/secrets?api-version=7.5&$skiptoken={SKIP_TOKEN}",
                    s.port
                )
            });
            json(200, serde_json::json!({"value": items, "nextLink": next}))
        }
        ["secrets", "good"] => {
            let mut b = item(&s, "good/0123456789abcdef0123456789abcdef");
            b["value"] = serde_json::json!("fine");
            json(200, b)
        }
        ["secrets", "big"] => endless_body(),
        ["secrets", "badjson"] => (
            StatusCode::OK,
            [("content-type", "application/json; charset=utf-8")],
            format!("{{\"value\": \"{LEAKED}"),
        )
            .into_response(),
        // A 200 bundle with neither value nor id.
        ["secrets", "nofields"] => json(200, serde_json::json!({"attributes": {}})),
        // A well-formed bundle whose declared length (8 MiB) is over the client's limit.
        ["secrets", "huge"] => {
            let mut b = item(&s, "huge/0123456789abcdef0123456789abcdef");
            b["value"] = serde_json::json!("x".repeat(8 * 1024 * 1024));
            json(200, b)
        }
        ["secrets", "wrongtype"] => json(
            200,
            serde_json::json!({"value": 42, "id": 7, "attributes": "no"}),
        ),
        ["secrets", "html"] => {
            (StatusCode::OK, [("content-type", "text/html")], HTML).into_response()
        }
        ["secrets", "empty"] => (
            StatusCode::OK,
            [("content-type", "application/json; charset=utf-8")],
            "",
        )
            .into_response(),
        ["secrets", "junk500"] => (
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![0u8, 0xff, 0xfe, b'{'],
        )
            .into_response(),
        _ => service_error(404, "SecretNotFound", None, "not found"),
    }
}

/// The hostile vault on the test's own runtime.
struct Server {
    state: Arc<Hostile>,
    tls: https_support::TestTls,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let tls = https_support::test_tls();
        let (listener, port) = https_support::bind_loopback();
        let state = Arc::new(Hostile {
            port,
            ..Hostile::default()
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        rt.block_on(https_support::serve_https(listener, &tls, app));
        Server {
            state,
            tls,
            _rt: rt,
        }
    }

    fn mount(&self) -> UrlMount {
        let ca = self.tls.ca_file.display().to_string();
        UrlMount::start(
            &self.state.origin(),
            &[
                "--ca-file",
                &ca,
                "--auth",
                "env",
                "--request-timeout",
                "20s",
            ],
            &[
                ("AZURE_TENANT_ID", TENANT.to_owned()),
                ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
                ("AZURE_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ],
        )
    }
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn assert_healthy(m: &mut UrlMount) {
    assert!(m.alive(), "the daemon died; log:\n{}", m.log_text());
    assert_eq!(read_or_errno(&m.mountpoint, "good"), "ok:fine");
    let log = m.log_text();
    assert!(!log.contains("panicked"), "panic in the log:\n{log}");
    assert!(!log.contains(LEAKED), "a body's content reached the log");
    assert!(!log.contains(HTML), "the HTML body reached the log");
    assert!(!log.contains("hostile-token"), "the token reached the log");
}

#[test]
fn hostile_bodies_are_eio_and_the_mount_keeps_serving() {
    let server = Server::start();
    let mut m = server.mount();
    let mut listed: Vec<&str> = std::iter::once("good").chain(HOSTILE).collect();
    listed.sort_unstable();
    assert_eq!(
        sh_ok(&m.mountpoint, "ls | sort"),
        format!("{}\n", listed.join("\n"))
    );
    assert_eq!(read_or_errno(&m.mountpoint, "good"), "ok:fine");
    let pid = m.pid().expect("pid");
    let peak_before = peak_rss_kib(pid);
    for name in HOSTILE {
        assert_eq!(read_or_errno(&m.mountpoint, name), "EIO", "{name}");
        let log = m.log_text();
        let named = |l: &&str| l.contains(&format!("\"{name}\"")) && l.contains("could not read");
        assert!(
            log.lines().any(|l| named(&l)),
            "no log line names {name}:\n{log}"
        );
        // Oversized bodies are refused for their size, not by accident.
        if ["big", "huge"].contains(&name) {
            assert!(
                log.lines()
                    .any(|l| named(&l) && l.contains("larger than 1048576 bytes")),
                "{name} not refused for its size:\n{log}"
            );
        }
    }
    assert_eq!(read_or_errno(&m.mountpoint, "missing"), "ENOENT");
    // An invalid answer is not retried, so 50 MB (and 8 MiB) bodies are not fetched again and
    // again; a 500 is (the service's own errors pass).
    assert_eq!(server.state.hits("/secrets/big"), 1);
    assert_eq!(server.state.hits("/secrets/huge"), 1);
    assert!(
        server.state.hits("/secrets/junk500") > 1,
        "a 500 is retried"
    );
    // The client stopped reading the 50 MB body at its limit (1 MiB): the daemon never held it.
    let peak = peak_rss_kib(pid);
    eprintln!("daemon peak RSS: {peak_before} KiB before the hostile reads, {peak} KiB after");
    assert!(
        peak - peak_before < 16 * 1024,
        "peak RSS grew from {peak_before} to {peak} KiB: the body was buffered"
    );
    assert_healthy(&mut m);
}

#[test]
fn a_foreign_next_link_fails_the_listing_without_hanging() {
    let server = Server::start();
    server.state.foreign_next_link.store(true, Ordering::SeqCst);
    let mut m = server.mount();
    let lists_before = server.state.hits("/secrets");
    let out = sh(
        &m.mountpoint,
        "python3 -c \"import os, errno\ntry:\n  os.listdir('.')\n  print('ok', end='')\nexcept OSError as e: print(errno.errorcode[e.errno], end='')\"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "EIO");
    let log = m.log_text();
    assert!(
        log.contains("nextLink points at https://evil.example:"),
        "the refusal is not logged:\n{log}"
    );
    assert!(
        !log.contains(SKIP_TOKEN),
        "the nextLink's skip token reached the log"
    );
    // One page, and the foreign link never followed (nor retried).
    assert_eq!(server.state.hits("/secrets") - lists_before, 1);
    assert_healthy(&mut m);
}

#[test]
fn names_no_secret_can_have_and_case_duplicates_never_reach_readdir() {
    let server = Server::start();
    server.state.bad_names.store(true, Ordering::SeqCst);
    let mut m = server.mount();
    assert_eq!(
        sh_ok(&m.mountpoint, "ls -a"),
        ".\n..\n.certificates\n.deleted\n.versions\ngood\n",
        "one of each view, `good` once"
    );
    assert_eq!(sh_ok(&m.mountpoint, "ls -a .deleted"), ".\n..\ngood\n");
    assert_eq!(sh_ok(&m.mountpoint, "ls .versions"), "good\n");
    assert_eq!(
        sh_ok(&m.mountpoint, "ls -a .versions/good"),
        ".\n..\n0123456789abcdef0123456789abcdef\n"
    );
    let log = m.log_text();
    let dropped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot be shown"))
        .collect();
    assert_eq!(
        dropped.len(),
        3,
        "one line per listing (secrets, deleted, versions):\n{log}"
    );
    assert!(
        dropped.iter().any(|l| l.contains("count=9")),
        "the nine bad names are counted: {dropped:?}"
    );
    assert!(
        dropped.iter().any(|l| l.contains("count=4")),
        "the four bad versions are counted: {dropped:?}"
    );
    // The listing is cached: a second `ls` logs nothing new.
    sh_ok(&m.mountpoint, "ls -a");
    assert_eq!(m.log_text().matches("cannot be shown").count(), 3);
    assert_healthy(&mut m);
}
