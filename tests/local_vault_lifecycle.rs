//! Start-up, persistence across restarts, the env file, TLS material and in-memory mode.

mod local_vault_support;

use std::os::unix::fs::PermissionsExt;

use akvfs::local_vault::{LocalVault, LocalVaultConfig, LocalVaultEnv};
use local_vault_support::{config, get_token, http_client, API};
use serde_json::Value;

async fn put(http: &reqwest::Client, vault: &LocalVault, token: &str, name: &str, value: &str) {
    let resp = http
        .put(format!("{}/secrets/{name}?{API}", vault.vault_url()))
        .bearer_auth(token)
        .json(&serde_json::json!({ "value": value }))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
}

async fn get(http: &reqwest::Client, vault: &LocalVault, token: &str, name: &str) -> (u16, Value) {
    let resp = http
        .get(format!("{}/secrets/{name}?{API}", vault.vault_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn secrets_survive_a_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = LocalVault::start(config(dir.path())).await.expect("start");
    let env1 = vault.env().clone();
    let http = http_client(&env1);
    let token = get_token(&http, &env1, vault.vault_url()).await;
    put(&http, &vault, &token, "durable", "kept").await;
    let ca_before = std::fs::read(&env1.ca_file).expect("ca");
    vault.shutdown().await;

    let vault = LocalVault::start(config(dir.path()))
        .await
        .expect("restart");
    let env2 = vault.env().clone();
    assert_eq!(env2.tenant_id, env1.tenant_id);
    assert_eq!(env2.client_id, env1.client_id);
    assert_eq!(env2.client_secret.expose(), env1.client_secret.expose());
    assert_eq!(env2.admin_token.expose(), env1.admin_token.expose());
    assert_eq!(
        std::fs::read(&env2.ca_file).expect("ca"),
        ca_before,
        "CA reused"
    );
    // The same client (same CA trust) works against the restarted vault.
    let token = get_token(&http, &env2, vault.vault_url()).await;
    let (s, body) = get(&http, &vault, &token, "durable").await;
    assert_eq!(s, 200);
    assert_eq!(body["value"], "kept");
    vault.shutdown().await;
}

#[tokio::test]
async fn changed_hostnames_reissue_the_leaf_under_the_same_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = LocalVault::start(config(dir.path())).await.expect("start");
    let ca = std::fs::read(&vault.env().ca_file).expect("ca");
    vault.shutdown().await;
    let mut cfg = config(dir.path());
    cfg.hostnames = vec!["vault.test".into()];
    let vault = LocalVault::start(cfg).await.expect("restart");
    assert_eq!(std::fs::read(&vault.env().ca_file).expect("ca"), ca);
    let http = http_client(vault.env());
    // TLS to 127.0.0.1 still verifies with the old CA file.
    let token = get_token(&http, vault.env(), vault.vault_url()).await;
    assert_eq!(get(&http, &vault, &token, "nothing").await.0, 404);
}

#[tokio::test]
async fn env_file_is_private_and_parses_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = LocalVault::start(config(dir.path())).await.expect("start");
    let path = vault.env_file().to_path_buf();
    assert_eq!(path, dir.path().join("env"));
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for key in ["ca-key.pem", "tls-key.pem", "vault.db"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    let env = vault.env();
    let url = vault.vault_url();
    assert!(url.starts_with("https://127.0.0.1:"));
    assert!(!url.ends_with('/'));
    for line in [
        format!("export AKVFS_VAULT_URL={url}"),
        format!("export AKVFS_AUTHORITY_HOST={url}"),
        format!("export AKVFS_TENANT_ID={}", env.tenant_id),
        format!("export AKVFS_CLIENT_ID={}", env.client_id),
        format!("export AKVFS_CA_FILE={}", env.ca_file.display()),
        format!("export REQUESTS_CA_BUNDLE={}", env.ca_file.display()),
        format!("export SSL_CERT_FILE={}", env.ca_file.display()),
        format!("export IDENTITY_ENDPOINT={url}/msi/token"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    for name in [
        "AKVFS_CLIENT_SECRET=",
        "AKVFS_ADMIN_TOKEN=",
        "IDENTITY_HEADER=",
    ] {
        assert!(text.contains(&format!("export {name}")), "{name}");
    }
    assert!(!text.contains("AZURE_CLIENT_SECRET"));
    let back = LocalVaultEnv::read_env_file(&path).expect("parse");
    assert_eq!(back.vault_url, env.vault_url);
    assert_eq!(back.client_secret.expose(), env.client_secret.expose());
    assert_eq!(back.admin_token.expose(), env.admin_token.expose());
    assert_eq!(back.identity_header.expose(), env.identity_header.expose());
    assert_eq!(back.ca_file, env.ca_file);
    assert_eq!(format!("{:?}", back.client_secret), "<redacted>");
}

#[tokio::test]
async fn in_memory_vault_uses_a_private_temp_dir_removed_on_drop() {
    let vault = LocalVault::start(LocalVaultConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: None,
        ..LocalVaultConfig::default()
    })
    .await
    .expect("start");
    let dir = vault.env_file().parent().expect("dir").to_path_buf();
    assert!(dir.join("ca.pem").exists());
    assert!(!dir.join("vault.db").exists(), "database is in memory");
    let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let http = http_client(vault.env());
    let token = get_token(&http, vault.env(), vault.vault_url()).await;
    put(&http, &vault, &token, "m", "v").await;
    assert_eq!(get(&http, &vault, &token, "m").await.1["value"], "v");
    drop(vault);
    assert!(!dir.exists());
}

#[tokio::test]
async fn second_vault_on_a_taken_port_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = LocalVault::start(config(dir.path())).await.expect("start");
    let port: u16 = vault
        .vault_url()
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("number");
    let other = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(other.path());
    cfg.listen = format!("127.0.0.1:{port}").parse().expect("addr");
    let err = LocalVault::start(cfg).await.expect_err("port taken");
    assert!(err.to_string().contains("cannot listen"), "{err}");
}

#[tokio::test]
async fn recoverable_days_outside_7_to_90_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.recoverable_days = 3;
    assert!(LocalVault::start(cfg).await.is_err());
}

#[tokio::test]
async fn second_vault_on_the_same_data_dir_is_refused_until_the_first_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = LocalVault::start(config(dir.path())).await.expect("start");
    let env_before = std::fs::read_to_string(first.env_file()).expect("env");
    let err = LocalVault::start(config(dir.path()))
        .await
        .expect_err("data dir in use");
    let message = err.to_string();
    assert!(message.contains("already using"), "{message}");
    assert!(
        message.contains(&std::process::id().to_string()),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(first.env_file()).expect("env"),
        env_before,
        "the refused vault did not touch DIR/env"
    );
    first.shutdown().await;
    let second = LocalVault::start(config(dir.path()))
        .await
        .expect("restart");
    second.shutdown().await;
}

#[tokio::test]
async fn ipv6_loopback_listener_serves_tls_for_its_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.listen = "[::1]:0".parse().expect("addr");
    let vault = match LocalVault::start(cfg).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("skipping: no IPv6 loopback here ({e})");
            return;
        }
    };
    assert!(
        vault.vault_url().starts_with("https://[::1]:"),
        "{}",
        vault.vault_url()
    );
    let http = http_client(vault.env());
    let token = get_token(&http, vault.env(), vault.vault_url()).await;
    put(&http, &vault, &token, "six", "v6").await;
    let (s, body) = get(&http, &vault, &token, "six").await;
    assert_eq!(s, 200);
    assert!(body["id"]
        .as_str()
        .expect("id")
        .starts_with(&format!("{}/secrets/six/", vault.vault_url())));
}

#[tokio::test]
async fn cloud_style_hostname_gets_a_certificate_and_the_parent_domain_resource() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.hostnames = vec!["quickstart.vault.azure.cn".into()];
    let vault = LocalVault::start(cfg).await.expect("start");
    let port = vault
        .vault_url()
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    let pem = std::fs::read(&vault.env().ca_file).expect("ca");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .resolve(
            "quickstart.vault.azure.cn",
            format!("127.0.0.1:{port}").parse().expect("addr"),
        )
        .no_proxy()
        .build()
        .expect("client");
    let base = format!("https://quickstart.vault.azure.cn:{port}");
    let resp = http
        .get(format!("{base}/secrets?{API}"))
        .send()
        .await
        .expect("TLS verifies for the extra host name");
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let tenant = &vault.env().tenant_id;
    assert_eq!(
        challenge,
        format!("Bearer authorization=\"{base}/{tenant}\", resource=\"https://vault.azure.cn\"")
    );
    let token = get_token(&http, vault.env(), "https://vault.azure.cn").await;
    let resp = http
        .put(format!("{base}/secrets/cn?{API}"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"value": "v"}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert!(body["id"]
        .as_str()
        .expect("id")
        .starts_with(&format!("{base}/secrets/cn/")));
}

#[tokio::test]
async fn env_file_sources_in_a_posix_shell_even_from_an_awkward_path() {
    let parent = tempfile::tempdir().expect("tempdir");
    // A data dir whose path needs quoting in a shell.
    let dir = parent.path().join("data dir's $HOME");
    let vault = LocalVault::start(config(&dir)).await.expect("start");
    let env = vault.env();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            r#". "$1" && printf '%s\n' "$AKVFS_VAULT_URL" "$AKVFS_CA_FILE" "$REQUESTS_CA_BUNDLE" "$SSL_CERT_FILE" "$AKVFS_CLIENT_SECRET" "$IDENTITY_ENDPOINT" "$IDENTITY_HEADER" "${AZURE_CLIENT_SECRET-unset}""#,
        )
        .arg("sh")
        .arg(vault.env_file())
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let ca = env.ca_file.display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            env.vault_url.as_str(),
            ca.as_str(),
            ca.as_str(),
            ca.as_str(),
            env.client_secret.expose(),
            env.identity_endpoint.as_str(),
            env.identity_header.expose(),
            "unset",
        ]
    );
    assert!(ca.contains("data dir's $HOME"));
}
