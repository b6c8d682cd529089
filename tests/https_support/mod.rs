//! TEST-ONLY HTTPS servers of the tests' own (axum + rustls on 127.0.0.1:0, a throwaway rcgen
//! CA): the scripted Key Vault of `vault_client_https.rs` and the hostile vault of
//! `mount_hostile.rs` share this set-up and the service's JSON shapes.
#![allow(dead_code)]

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// A fresh CA (written to `ca_file`) and a leaf it signed for `127.0.0.1` and `localhost`.
pub struct TestTls {
    pub ca_file: PathBuf,
    leaf_pem: String,
    leaf_key_pem: String,
    pub dir: tempfile::TempDir,
}

pub fn test_tls() -> TestTls {
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
    TestTls {
        ca_file,
        leaf_pem: leaf.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
        dir,
    }
}

/// A listener on 127.0.0.1:0 and its port (known before the app that needs it is built).
pub fn bind_loopback() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

/// Serves `app` over HTTPS with `tls`'s leaf on the current runtime until it ends.
pub async fn serve_https(listener: std::net::TcpListener, tls: &TestTls, app: Router) {
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        tls.leaf_pem.clone().into_bytes(),
        tls.leaf_key_pem.clone().into_bytes(),
    )
    .await
    .expect("tls config");
    tokio::spawn(async move {
        let _ = axum_server::from_tcp_rustls(listener, config)
            .serve(app.into_make_service())
            .await;
    });
}

pub fn json(status: u16, body: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Key Vault's error body: `{"error":{"code","message","innererror"?}}`.
pub fn service_error(status: u16, code: &str, inner: Option<&str>, message: &str) -> Response {
    let mut error = serde_json::json!({"code": code, "message": message});
    if let Some(inner) = inner {
        error["innererror"] = serde_json::json!({"code": inner});
    }
    json(status, serde_json::json!({ "error": error }))
}

/// The 401 that opens every conversation, naming `resource` and the token authority.
pub fn challenge(authority: &str, resource: &str) -> Response {
    let mut r = service_error(
        401,
        "Unauthorized",
        None,
        "AKV10000: Request is missing a Bearer or PoP token.",
    );
    let value = format!("Bearer authorization=\"{authority}\", resource=\"{resource}\"");
    r.headers_mut()
        .insert("www-authenticate", value.parse().expect("header"));
    r
}
