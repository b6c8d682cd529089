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
        for _ in 0..100 {
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
