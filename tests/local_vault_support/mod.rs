//! Shared helpers of the local vault tests: a real server on port 0 in a temp dir, and a reqwest
//! client trusting its CA that gets tokens through the client-credentials flow.
#![allow(dead_code)]

use std::time::Duration;

use akvfs::local_vault::{AdminClient, LocalVault, LocalVaultConfig, LocalVaultEnv};
use serde_json::Value;

pub const API: &str = "api-version=7.5";

pub struct TestVault {
    pub vault: LocalVault,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub token: String,
}

pub fn config(dir: &std::path::Path) -> LocalVaultConfig {
    LocalVaultConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: Some(dir.to_path_buf()),
        deletion_delay: Duration::from_millis(300),
        ..LocalVaultConfig::default()
    }
}

pub fn http_client(env: &LocalVaultEnv) -> reqwest::Client {
    let pem = std::fs::read(&env.ca_file).expect("ca file");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("ca pem"))
        .no_proxy()
        .build()
        .expect("client")
}

/// Client-credentials token for `resource` (the vault URL by default).
pub async fn get_token(http: &reqwest::Client, env: &LocalVaultEnv, resource: &str) -> String {
    let resp = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            env.authority_host, env.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", env.client_id.as_str()),
            ("client_secret", env.client_secret.expose()),
            ("scope", &format!("{resource}/.default")),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200, "token endpoint");
    let body: Value = resp.json().await.expect("token json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

impl TestVault {
    /// The port the vault listens on.
    pub fn port(&self) -> u16 {
        self.vault
            .vault_url()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the vault URL ends with its port")
    }

    pub async fn start() -> TestVault {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut LocalVaultConfig)) -> TestVault {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(dir.path());
        tweak(&mut cfg);
        let vault = LocalVault::start(cfg).await.expect("start local vault");
        let http = http_client(vault.env());
        let token = get_token(&http, vault.env(), vault.vault_url()).await;
        TestVault {
            vault,
            dir,
            http,
            token,
        }
    }

    /// `GET VAULT/path?api-version` with `token` as the bearer (the raw response).
    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("send")
    }

    /// `GET VAULT/path?api-version` with this vault's token (the raw response).
    pub async fn get_raw(&self, path: &str) -> reqwest::Response {
        self.get_with_token(path, &self.token).await
    }

    /// `POST` a form to the token endpoint: `(status, body)`.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let env = self.vault.env();
        let resp = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                env.authority_host, env.tenant_id
            ))
            .form(form)
            .send()
            .await
            .expect("token request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("token json"))
    }

    /// An admin request with the admin token and a raw body: `(status, JSON body or Null)`.
    pub async fn admin_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.vault.vault_url()))
            .bearer_auth(self.vault.env().admin_token.expose())
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// An admin request with the admin token and a JSON body (or none).
    pub async fn admin_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        self.admin_text(method, path, &text).await
    }

    pub fn admin(&self) -> AdminClient {
        AdminClient::new(self.vault.env()).expect("admin client")
    }

    /// `VAULT/path?api-version=7.5` (path may carry its own query).
    pub fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}{API}", self.vault.vault_url())
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json body")
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, name: &str, value: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::PUT,
            &format!("/secrets/{name}"),
            Some(serde_json::json!({ "value": value })),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// Polls `path` until it answers `status` (bounded).
    pub async fn wait_for(&self, path: &str, status: u16) -> Value {
        for _ in 0..300 {
            let (s, body) = self.get(path).await;
            if s == status {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path} never answered {status}");
    }

    /// Delete and wait until the deletion completed.
    pub async fn delete_and_wait(&self, name: &str) {
        let (s, _) = self.delete(&format!("/secrets/{name}")).await;
        assert_eq!(s, 200, "delete {name}");
        self.wait_for(&format!("/deletedsecrets/{name}"), 200).await;
    }
}

pub fn error_code(body: &Value) -> (&str, Option<&str>) {
    (
        body["error"]["code"].as_str().unwrap_or(""),
        body["error"]["innererror"]["code"].as_str(),
    )
}

/// Runs a local vault on `dir` until the process is killed (the body of a child-process test).
pub async fn serve_until_killed(dir: &std::path::Path) {
    let _vault = LocalVault::start(config(dir))
        .await
        .expect("start child vault");
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Re-executes this test binary to run the ignored test `child_test` with `var=data` (so it
/// serves a vault on `data` in a process of its own) and waits for `data/env`.
// The caller reaps the child (`kill_9` waits for it).
#[allow(clippy::zombie_processes)]
pub fn spawn_child_vault(
    child_test: &str,
    var: &str,
    data: &std::path::Path,
    stderr: std::process::Stdio,
) -> (std::process::Child, LocalVaultEnv) {
    let env_file = data.join("env");
    let _ = std::fs::remove_file(&env_file);
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", child_test, "--nocapture"])
        .env(var, data)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn child vault");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(env) = LocalVaultEnv::read_env_file(&env_file) {
            return (child, env);
        }
        if std::time::Instant::now() > deadline {
            kill_9(&mut child);
            panic!("child vault did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kill -9` and reap.
pub fn kill_9(child: &mut std::process::Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9");
    let _ = child.wait();
}
