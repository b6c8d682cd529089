//! Test controls of the local vault: the shared types of the `/_akvfs/` admin endpoints and a small
//! client for tests and benchmarks. The admin endpoints take `Authorization: Bearer <admin token>`
//! (`AKVFS_ADMIN_TOKEN`), never a vault token.
//!
//! | endpoint | body | effect |
//! | --- | --- | --- |
//! | `GET /_akvfs/counters` | | request counts by operation and status ([`Counters`]) |
//! | `POST /_akvfs/counters/reset` | | zero them |
//! | `POST /_akvfs/faults` | [`FaultSpec`] | add a fault rule |
//! | `DELETE /_akvfs/faults` | | remove all fault rules |
//! | `POST /_akvfs/clock/advance` | `{"seconds":N}` | move the vault clock (purge schedule, token expiry, pending deletions) |
//! | `POST /_akvfs/reset` | | wipe every secret, live and deleted |
//! | `POST /_akvfs/paging` | [`PagingControl`] | answer list pages up to 3 items short (as the service sometimes does), or full again |
//! | `POST /_akvfs/seed` | [`SeedRequest`] | set `count` secrets `{prefix}{i:05}` = `value` in one transaction (not counted, not throttled) |
//! | `POST /_akvfs/principals` | `{"permissions":["get","certificates/get",…]}` | add a principal; answers [`NewPrincipal`] |
//! | `POST /_akvfs/principals/certificates` | [`ClientCertificateRequest`] | register a certificate for a principal's client assertions (in memory) |
//! | `POST /_akvfs/federated-token` | [`FederatedTokenRequest`] | mint a workload identity token of this vault's OIDC issuer; answers [`FederatedToken`] |
//!
//! Every body is validated before anything changes: unknown fields, missing or mistyped ones
//! answer 400 `BadParameter` naming the field (never quoting a value); a fault rule must do
//! something (`status`, `drop_connection` or `latency_ms`); endpoints without a body accept
//! none, or `{}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{LocalVaultEnv, LocalVaultError};
use crate::secret_value::SecretValue;

/// Request counts: operation → HTTP status → count. Operation names: `set_secret`, `get_secret`,
/// `update_secret`, `delete_secret`, `list_secrets`, `list_secret_versions`,
/// `list_deleted_secrets`, `get_deleted_secret`, `purge_deleted_secret`, `recover_deleted_secret`,
/// `backup_secret`, `restore_secret`, `token`. A dropped connection counts as status 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub operations: BTreeMap<String, BTreeMap<u16, u64>>,
}

impl Counters {
    /// Requests of `operation`, whatever their status.
    pub fn count(&self, operation: &str) -> u64 {
        self.operations
            .get(operation)
            .map(|by_status| by_status.values().sum())
            .unwrap_or(0)
    }

    /// Requests of `operation` answered with `status`.
    pub fn count_status(&self, operation: &str, status: u16) -> u64 {
        self.operations
            .get(operation)
            .and_then(|by_status| by_status.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Every request counted, all operations.
    pub fn total(&self) -> u64 {
        self.operations.keys().map(|op| self.count(op)).sum()
    }
}

/// A fault rule. Each request whose operation matches (`operation: None` matches every data-plane
/// operation but not `token`; name `token` explicitly to hit the token endpoints) fires the rule
/// with probability `rate`, at most `count` times. A firing rule sleeps `latency_ms`, then drops
/// the connection (`drop_connection`), or answers `status` (with `Retry-After: retry_after` when
/// given; 429 without `retry_after` sends no `Retry-After`, as the real service sometimes does),
/// or — latency only — lets the request through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default = "one")]
    pub rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default)]
    pub drop_connection: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

fn one() -> f64 {
    1.0
}

impl Default for FaultSpec {
    fn default() -> Self {
        FaultSpec {
            operation: None,
            status: None,
            rate: 1.0,
            count: None,
            latency_ms: None,
            drop_connection: false,
            retry_after: None,
        }
    }
}

impl FaultSpec {
    /// Answer `status` to every matching request.
    pub fn status(status: u16) -> Self {
        FaultSpec {
            status: Some(status),
            ..FaultSpec::default()
        }
    }

    pub fn for_operation(mut self, operation: &str) -> Self {
        self.operation = Some(operation.to_owned());
        self
    }

    pub fn times(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    pub fn with_rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_latency_ms(mut self, ms: u64) -> Self {
        self.latency_ms = Some(ms);
        self
    }

    pub fn dropping_connection(mut self) -> Self {
        self.drop_connection = true;
        self
    }
}

/// Body of `POST /_akvfs/clock/advance`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockAdvance {
    pub seconds: i64,
}

/// Body of `POST /_akvfs/paging`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingControl {
    pub short_pages: bool,
}

/// Body of `POST /_akvfs/seed`: benchmarks fill a vault quickly without going through the
/// throttled, one-fsync-per-set data plane.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRequest {
    pub prefix: String,
    pub count: usize,
    pub value: SecretValue,
}

/// Body of `POST /_akvfs/principals`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRequest {
    pub permissions: Vec<String>,
}

/// Answer of `POST /_akvfs/principals`: credentials for the client-credentials token flow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewPrincipal {
    pub client_id: String,
    pub client_secret: SecretValue,
}

/// Body of `POST /_akvfs/principals/certificates`: after it, the principal may authenticate
/// with a client assertion signed by this certificate's key (`x5t` or `x5t#S256` naming it).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateRequest {
    pub client_id: String,
    /// The certificate (PEM); a private key in the same text is ignored and never kept.
    pub certificate_pem: String,
}

/// Body of `POST /_akvfs/federated-token`. The vault trusts its own issuer for every principal
/// with subject = client id, as a federated identity credential would.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedTokenRequest {
    /// Default: the vault's default principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Default 3600 (on the vault clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_seconds: Option<i64>,
    /// Default `api://AzureADTokenExchange`; tests set another to see it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// Answer of `POST /_akvfs/federated-token`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FederatedToken {
    pub token: SecretValue,
    /// Epoch seconds, vault clock.
    pub expires_on: i64,
}

/// A client of the admin endpoints (reqwest trusting the vault's CA file).
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: SecretValue,
}

impl AdminClient {
    pub fn new(env: &LocalVaultEnv) -> Result<Self, LocalVaultError> {
        let pem = std::fs::read(&env.ca_file).map_err(|e| LocalVaultError::Io {
            what: format!("reading CA file {}", env.ca_file.display()),
            source: e,
        })?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| LocalVaultError::Admin(format!("CA file: {e}")))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(cert)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| LocalVaultError::Admin(format!("building HTTP client: {e}")))?;
        Ok(AdminClient {
            http,
            base: env.vault_url.trim_end_matches('/').to_owned(),
            token: env.admin_token.clone(),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, LocalVaultError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| LocalVaultError::Admin(format!("{path}: {e}")))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(LocalVaultError::Admin(format!("{path}: {status}: {text}")));
        }
        Ok(resp)
    }

    fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, LocalVaultError> {
        serde_json::to_value(value).map_err(|e| LocalVaultError::Admin(e.to_string()))
    }

    pub async fn counters(&self) -> Result<Counters, LocalVaultError> {
        let resp = self
            .send(reqwest::Method::GET, "/_akvfs/counters", None)
            .await?;
        resp.json()
            .await
            .map_err(|e| LocalVaultError::Admin(format!("counters: {e}")))
    }

    pub async fn reset_counters(&self) -> Result<(), LocalVaultError> {
        self.send(reqwest::Method::POST, "/_akvfs/counters/reset", None)
            .await
            .map(drop)
    }

    pub async fn inject_fault(&self, fault: FaultSpec) -> Result<(), LocalVaultError> {
        let body = Self::to_json(&fault)?;
        self.send(reqwest::Method::POST, "/_akvfs/faults", Some(body))
            .await
            .map(drop)
    }

    pub async fn clear_faults(&self) -> Result<(), LocalVaultError> {
        self.send(reqwest::Method::DELETE, "/_akvfs/faults", None)
            .await
            .map(drop)
    }

    pub async fn advance_clock(&self, secs: i64) -> Result<(), LocalVaultError> {
        let body = Self::to_json(&ClockAdvance { seconds: secs })?;
        self.send(reqwest::Method::POST, "/_akvfs/clock/advance", Some(body))
            .await
            .map(drop)
    }

    /// Wipe every secret (live and deleted).
    pub async fn reset(&self) -> Result<(), LocalVaultError> {
        self.send(reqwest::Method::POST, "/_akvfs/reset", None)
            .await
            .map(drop)
    }

    /// Make list pages come back up to 3 items short of the page size (never empty before the
    /// end), as the real service's sometimes are; `false` restores full pages.
    pub async fn set_short_pages(&self, short: bool) -> Result<(), LocalVaultError> {
        let body = Self::to_json(&PagingControl { short_pages: short })?;
        self.send(reqwest::Method::POST, "/_akvfs/paging", Some(body))
            .await
            .map(drop)
    }

    /// Set `count` secrets named `{prefix}{i:05}` (i = 0..count) to `value`, in one transaction.
    pub async fn seed(
        &self,
        prefix: &str,
        count: usize,
        value: &str,
    ) -> Result<(), LocalVaultError> {
        let body = Self::to_json(&SeedRequest {
            prefix: prefix.to_owned(),
            count,
            value: SecretValue::from(value),
        })?;
        self.send(reqwest::Method::POST, "/_akvfs/seed", Some(body))
            .await
            .map(drop)
    }

    /// Add a principal with these secret permissions (`get`, `list`, `set`, `delete`, `recover`,
    /// `backup`, `restore`, `purge`) and certificate permissions (`certificates/get`, `…/list`,
    /// `…/import`, `…/update`, `…/delete`, `…/recover`, `…/purge`; without any, the secret
    /// permissions cover certificates).
    pub async fn create_principal(
        &self,
        permissions: &[&str],
    ) -> Result<NewPrincipal, LocalVaultError> {
        let body = Self::to_json(&PrincipalRequest {
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        })?;
        let resp = self
            .send(reqwest::Method::POST, "/_akvfs/principals", Some(body))
            .await?;
        resp.json()
            .await
            .map_err(|e| LocalVaultError::Admin(format!("principals: {e}")))
    }

    /// Let `client_id` authenticate with client assertions signed by this certificate's key.
    pub async fn add_client_certificate(
        &self,
        client_id: &str,
        certificate_pem: &str,
    ) -> Result<(), LocalVaultError> {
        let body = Self::to_json(&ClientCertificateRequest {
            client_id: client_id.to_owned(),
            certificate_pem: certificate_pem.to_owned(),
        })?;
        self.send(
            reqwest::Method::POST,
            "/_akvfs/principals/certificates",
            Some(body),
        )
        .await
        .map(drop)
    }

    /// A federated token (what a pod finds in `AZURE_FEDERATED_TOKEN_FILE`).
    pub async fn federated_token(
        &self,
        request: &FederatedTokenRequest,
    ) -> Result<FederatedToken, LocalVaultError> {
        let body = Self::to_json(request)?;
        let resp = self
            .send(reqwest::Method::POST, "/_akvfs/federated-token", Some(body))
            .await?;
        resp.json()
            .await
            .map_err(|e| LocalVaultError::Admin(format!("federated-token: {e}")))
    }
}
