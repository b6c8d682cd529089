//! No secret value, token or client secret appears in the server's logs, even at trace level for
//! every crate (hyper, h2, rustls included). The server runs in a child process (this test binary
//! re-executed) so the client's own logging cannot mix in.

mod local_vault_support;

use local_vault_support::{
    get_token, http_client, kill_9, serve_until_killed, spawn_child_vault, API,
};

const CHILD_ENV: &str = "AKVFS_TEST_LOGGING_CHILD";

#[tokio::test]
#[ignore = "runs only as the child process of nothing_secret_is_logged_at_trace_level"]
async fn child_vault_with_trace_logging() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(std::io::stderr)
        .init();
    serve_until_killed(std::path::Path::new(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged_at_trace_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("server.log");
    let data = dir.path().join("data");
    let log = std::fs::File::create(&log_path).expect("log");
    let (mut child, env) = spawn_child_vault(
        "child_vault_with_trace_logging",
        CHILD_ENV,
        &data,
        log.into(),
    );
    let http = http_client(&env);
    let token = get_token(&http, &env, &env.vault_url).await;
    let value = "hunter2-very-secret-value-5f1c";
    for name in ["logged", "logged2"] {
        let resp = http
            .put(format!("{}/secrets/{name}?{API}", env.vault_url))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "value": value }))
            .send()
            .await
            .expect("put");
        assert_eq!(resp.status(), 200);
        let resp = http
            .get(format!("{}/secrets/{name}?{API}", env.vault_url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        assert!(resp.text().await.expect("body").contains(value));
    }
    let resp = http
        .get(format!(
            "{}?api-version=2019-08-01&resource={}",
            env.identity_endpoint, env.vault_url
        ))
        .header("X-IDENTITY-HEADER", env.identity_header.expose())
        .send()
        .await
        .expect("mi");
    let mi_token = resp.text().await.expect("mi body");
    kill_9(&mut child);

    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.len() > 100, "trace logging produced output:\n{log}");
    let signature = token.rsplit('.').next().expect("jwt signature");
    for (what, needle) in [
        ("secret value", value),
        ("token", signature),
        ("client secret", env.client_secret.expose()),
        ("identity header", env.identity_header.expose()),
        ("admin token", env.admin_token.expose()),
    ] {
        assert!(!log.contains(needle), "{what} appears in the server log");
    }
    assert!(mi_token.contains("access_token"));
}
