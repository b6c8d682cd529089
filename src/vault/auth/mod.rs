//! Credentials: where the vault client's bearer tokens come from. One file per credential (names
//! as in the Azure Identity SDKs), the `auto` chain, and the cloud table.
//!
//! | `--auth` | credential | environment |
//! | --- | --- | --- |
//! | `env` | `ClientSecretCredential` | `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET`, else (as a group) `AKVFS_TENANT_ID` + `AKVFS_CLIENT_ID` + `AKVFS_CLIENT_SECRET` |
//! | `env` | `ClientCertificateCredential` | `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_CERTIFICATE_PATH` (PEM, RSA key); `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` |
//! | `workload-identity` | `WorkloadIdentityCredential` | `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_FEDERATED_TOKEN_FILE` |
//! | `managed-identity` | `ManagedIdentityCredential` | `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (App Service), else IMDS (`AZURE_POD_IDENTITY_AUTHORITY_HOST` overrides its address); `AZURE_CLIENT_ID` picks a user-assigned identity |
//! | `azure-cli` | `AzureCliCredential` | `az` on `PATH`, signed in |
//! | `auto` | `ChainedTokenCredential` | the rows above in that order; `AZURE_TOKEN_CREDENTIALS` = `prod`, `dev` or a credential name narrows it |
//!
//! Authority (token endpoint host): `AZURE_AUTHORITY_HOST`, else `AKVFS_AUTHORITY_HOST`, else the
//! vault's cloud (`vault.azure.net`, `vault.azure.cn`, `vault.usgovcloudapi.net`), else — for a
//! loopback vault only — the challenge's; other vaults default to the public cloud, so that no
//! vault can name the server a client secret is sent to. The tenant is the challenge's
//! (fallback: the configured one), except for workload identity (bound to its tenant).

pub mod azure_cli;
pub mod chain;
pub mod client_certificate;
pub mod client_secret;
pub mod cloud;
pub mod managed_identity;
pub mod workload_identity;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::challenge::is_loopback_host;
use super::pipeline::{build_http_client_with, deadline_after, Pipeline, Request};
use super::VaultError;
use crate::secret_value::SecretValue;

pub use azure_cli::AzureCliCredential;
pub use chain::ChainedTokenCredential;
pub use client_certificate::ClientCertificateCredential;
pub use client_secret::ClientSecretCredential;
pub use cloud::Cloud;
pub use managed_identity::ManagedIdentityCredential;
pub use workload_identity::WorkloadIdentityCredential;

/// A source of access tokens (the SDKs' `TokenCredential`).
#[async_trait]
pub trait TokenCredential: Send + Sync {
    async fn get_token(&self, request: &TokenRequest) -> Result<AccessToken, VaultError>;
    /// e.g. `ClientSecretCredential`, for messages.
    fn name(&self) -> &'static str;
}

/// What the vault's challenge asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// e.g. `https://vault.azure.net/.default`.
    pub scope: String,
    /// Tenant named by the challenge.
    pub tenant_id: Option<String>,
    /// `scheme://host[:port]` of the challenge's authorization URI.
    pub authority_host: Option<String>,
}

/// A bearer token and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    pub token: SecretValue,
    pub expires_on: SystemTime,
}

/// `--auth`: which credential to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthKind {
    /// The chain: environment secret, environment certificate, workload identity, managed
    /// identity, Azure CLI; the first that is configured and works.
    #[default]
    Auto,
    /// Client secret (or certificate) from the environment.
    Env,
    WorkloadIdentity,
    ManagedIdentity,
    AzureCli,
}

/// The credential for `kind`, reading the process environment. `ca_file` is trusted for token
/// endpoints too (a local vault serves them).
pub fn credential_for(
    kind: AuthKind,
    vault_url: &str,
    ca_file: Option<&Path>,
) -> Result<Arc<dyn TokenCredential>, VaultError> {
    let env = |name: &str| std::env::var(name).ok();
    credential_with_env(kind, vault_url, ca_file, &env)
}

/// Reads environment variables; a function so tests need not mutate the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// [`credential_for`] with an explicit environment.
pub fn credential_with_env(
    kind: AuthKind,
    vault_url: &str,
    ca_file: Option<&Path>,
    env: EnvLookup<'_>,
) -> Result<Arc<dyn TokenCredential>, VaultError> {
    // A local vault serves its own token endpoints on the same loopback address: no proxy.
    let loopback = url::Url::parse(vault_url)
        .ok()
        .and_then(|u| u.host_str().map(is_loopback_host))
        .unwrap_or(false);
    let pipeline = Pipeline::new(
        build_http_client_with(ca_file, loopback)?,
        TOKEN_MAX_RETRIES,
    );
    let unavailable = |name: &str, why: String| VaultError::Auth {
        message: format!("{name}: {why}"),
    };
    Ok(match kind {
        AuthKind::Auto => Arc::new(ChainedTokenCredential::default_chain(
            vault_url, pipeline, env,
        )),
        AuthKind::Env => match ClientSecretCredential::from_env(vault_url, pipeline.clone(), env) {
            Ok(c) => Arc::new(c),
            Err(secret_why) => {
                match ClientCertificateCredential::from_env(vault_url, pipeline, env) {
                    Ok(c) => Arc::new(c),
                    Err(cert_why) => {
                        return Err(unavailable(
                            "EnvironmentCredential",
                            format!("{secret_why}; {cert_why}"),
                        ))
                    }
                }
            }
        },
        AuthKind::WorkloadIdentity => Arc::new(
            WorkloadIdentityCredential::from_env(vault_url, pipeline, env)
                .map_err(|why| unavailable("WorkloadIdentityCredential", why))?,
        ),
        AuthKind::ManagedIdentity => Arc::new(ManagedIdentityCredential::from_env(pipeline, env)),
        AuthKind::AzureCli => Arc::new(AzureCliCredential::new()),
    })
}

const TOKEN_MAX_RETRIES: u32 = 3;
/// Deadline of one token request, retries included.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a credential in the chain gave no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// Not usable here (not configured, endpoint absent, CLI not installed): the chain moves on.
    Unavailable(String),
    /// Configured but failed (wrong secret, token endpoint error): the chain stops.
    Failed(String),
}

impl CredentialError {
    pub fn message(&self) -> &str {
        match self {
            CredentialError::Unavailable(m) | CredentialError::Failed(m) => m,
        }
    }

    fn into_vault_error(self, credential: &str) -> VaultError {
        VaultError::Auth {
            message: format!("{credential}: {}", self.message()),
        }
    }
}

/// A credential that can tell "not here" from "failed" (for the chain).
#[async_trait]
pub trait ChainableCredential: Send + Sync {
    async fn try_get_token(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError>;
    fn credential_name(&self) -> &'static str;
}

/// Implements [`TokenCredential`] for a [`ChainableCredential`].
macro_rules! token_credential_via_chainable {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::vault::auth::TokenCredential for $ty {
            async fn get_token(
                &self,
                request: &$crate::vault::auth::TokenRequest,
            ) -> Result<$crate::vault::auth::AccessToken, $crate::vault::VaultError> {
                use $crate::vault::auth::ChainableCredential;
                self.try_get_token(request)
                    .await
                    .map_err(|e| e.into_vault_error(self.credential_name()))
            }
            fn name(&self) -> &'static str {
                use $crate::vault::auth::ChainableCredential;
                self.credential_name()
            }
        }
    };
}
pub(crate) use token_credential_via_chainable;

/// `AZURE_AUTHORITY_HOST`, else `AKVFS_AUTHORITY_HOST`, else the vault's cloud. For a loopback
/// vault (a local vault) `None`: the challenge's authority is used (see [`authority_for`]). For
/// any other vault, the public cloud, as the SDKs default: a vault we do not know must not be
/// able to name the server our client secret is sent to.
pub(crate) fn configured_authority_host(vault_url: &str, env: EnvLookup<'_>) -> Option<String> {
    env("AZURE_AUTHORITY_HOST")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| env("AKVFS_AUTHORITY_HOST").filter(|v| !v.trim().is_empty()))
        .map(|h| normalize_authority_host(&h))
        .or_else(|| Cloud::for_vault_url(vault_url).map(|c| c.authority_host.to_owned()))
        .or_else(|| {
            let loopback = url::Url::parse(vault_url)
                .ok()
                .and_then(|u| u.host_str().map(is_loopback_host))
                .unwrap_or(false);
            (!loopback).then(|| cloud::AZURE_PUBLIC_CLOUD.authority_host.to_owned())
        })
}

/// Microsoft Entra ID authority hosts (with their aliases) that a challenge may name.
const KNOWN_AUTHORITY_HOSTS: [&str; 8] = [
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.us",
    "login.usgovcloudapi.net",
];

/// The authority to send a credential to: the configured one, else the challenge's when it is a
/// known Entra host or on a loopback address (a local vault); never an arbitrary host a vault
/// names (it would receive the client secret or assertion).
pub(crate) fn authority_for<'a>(
    configured: Option<&'a str>,
    request: &'a TokenRequest,
) -> Result<&'a str, CredentialError> {
    if let Some(configured) = configured {
        return Ok(configured);
    }
    let Some(challenge) = request.authority_host.as_deref() else {
        return Err(CredentialError::Failed(
            "no authority host: set AZURE_AUTHORITY_HOST (the vault's challenge named none)".into(),
        ));
    };
    let host = url::Url::parse(challenge)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if is_loopback_host(&host) || KNOWN_AUTHORITY_HOSTS.contains(&host.as_str()) {
        Ok(challenge)
    } else {
        Err(CredentialError::Failed(format!(
            "the vault's challenge names the authority {challenge}, which is not a known \
             Microsoft Entra host; set AZURE_AUTHORITY_HOST to it if it is trusted"
        )))
    }
}

/// `login.microsoftonline.com/` → `https://login.microsoftonline.com`.
pub(crate) fn normalize_authority_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    if host.contains("://") {
        host.to_owned()
    } else {
        format!("https://{host}")
    }
}

/// The resource of a `.default` scope (`https://vault.azure.net/.default` →
/// `https://vault.azure.net`), for endpoints that take a resource (managed identity, CLI).
pub(crate) fn scope_to_resource(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

/// A confidential-client token request to Entra ID (or the local vault's token endpoint):
/// `POST {authority}/{tenant}/oauth2/v2.0/token` with a form of `pairs` + `scope`.
pub(crate) async fn request_token(
    pipeline: &Pipeline,
    authority_host: &str,
    tenant_id: &str,
    pairs: &[(&str, &str)],
    scope: &str,
) -> Result<AccessToken, CredentialError> {
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        authority_host.trim_end_matches('/'),
        tenant_id
    );
    let url = url::Url::parse(&url)
        .map_err(|e| CredentialError::Failed(format!("invalid token endpoint {url}: {e}")))?;
    let mut form: Vec<(&str, &str)> = pairs.to_vec();
    form.push(("scope", scope));
    // The form holds the client secret: build it in a buffer that is zeroed when dropped.
    let body = Zeroizing::new(
        serde_urlencoded::to_string(&form)
            .map_err(|e| CredentialError::Failed(format!("cannot encode the token request: {e}")))?
            .into_bytes(),
    );
    let mut request = Request::new(Method::POST, url).header(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    request.body = Some(Bytes::from_owner(body));
    send_token_request(pipeline, &request).await
}

/// Sends a token request and parses the answer (AAD's and managed identity's shapes).
pub(crate) async fn send_token_request(
    pipeline: &Pipeline,
    request: &Request,
) -> Result<AccessToken, CredentialError> {
    let endpoint = format!(
        "{}{}",
        super::challenge::origin(&request.url),
        request.url.path()
    );
    let response = pipeline
        .send(request, deadline_after(TOKEN_REQUEST_TIMEOUT))
        .await
        .map_err(|e| {
            CredentialError::Failed(format!(
                "token request to {endpoint} failed: {}",
                e.describe()
            ))
        })?;
    if !response.status.is_success() {
        return Err(CredentialError::Failed(format!(
            "token endpoint {endpoint} answered {}: {}",
            response.status,
            describe_token_error(&response.body)
        )));
    }
    parse_token_response(&response.body, SystemTime::now()).map_err(CredentialError::Failed)
}

/// AAD's `{"error","error_description"}`, else a short, printable excerpt.
pub(crate) fn describe_token_error(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct AadError {
        #[serde(default)]
        error: serde_json::Value,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<AadError>(body) {
        let code = match &e.error {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o
                .get("message")
                .or_else(|| o.get("code"))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        let description = e.error_description.or(e.message).unwrap_or_default();
        let first_line = description.lines().next().unwrap_or_default();
        let text = format!("{code} {first_line}").trim().to_owned();
        if !text.is_empty() {
            return text;
        }
    }
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    if text.trim().is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

/// A whole number sent as a JSON number or as a string of digits (identity endpoints and the
/// Azure CLI send either).
pub(crate) fn json_u64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `{"access_token", "expires_in" | "expires_on", …}`; numbers may come as strings (managed
/// identity sends `"expires_on": "1586984735"`).
pub(crate) fn parse_token_response(body: &[u8], now: SystemTime) -> Result<AccessToken, String> {
    #[derive(Deserialize)]
    struct TokenResponse {
        access_token: Option<SecretValue>,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
        #[serde(default)]
        expires_on: Option<serde_json::Value>,
    }
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the token response is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the token response has no access_token".to_owned())?;
    // checked_add: a hostile number must not overflow (and panic); it counts as absent.
    let expires_on = parsed
        .expires_in
        .as_ref()
        .and_then(json_u64)
        .and_then(|secs| now.checked_add(Duration::from_secs(secs)))
        .or_else(|| {
            parsed
                .expires_on
                .as_ref()
                .and_then(json_u64)
                .and_then(|epoch| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(epoch)))
        })
        // No usable expiry: assume a short life so it is refreshed soon.
        .unwrap_or(now + Duration::from_secs(600));
    Ok(AccessToken { token, expires_on })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_of_aad_and_managed_identity_parse() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t = parse_token_response(
            br#"{"token_type":"Bearer","expires_in":86399,"ext_expires_in":86399,"access_token":"tok"}"#,
            now,
        )
        .expect("aad");
        assert_eq!(t.token.expose(), "tok");
        assert_eq!(t.expires_on, now + Duration::from_secs(86399));
        let t = parse_token_response(
            br#"{"access_token":"mi","expires_on":"1586984735","resource":"https://vault.azure.net","token_type":"Bearer"}"#,
            now,
        )
        .expect("mi");
        assert_eq!(
            t.expires_on,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1586984735)
        );
        let t = parse_token_response(br#"{"access_token":"x","expires_in":"3599"}"#, now)
            .expect("string");
        assert_eq!(t.expires_on, now + Duration::from_secs(3599));
        assert!(parse_token_response(br#"{"token_type":"Bearer"}"#, now).is_err());
        let t = parse_token_response(
            br#"{"access_token":"x","expires_in":18446744073709551615}"#,
            now,
        )
        .expect("huge expiry does not panic");
        assert_eq!(t.expires_on, now + Duration::from_secs(600));
        let err = parse_token_response(b"{\"access_token\": \"hunter2", now).expect_err("json");
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn aad_errors_are_summarised() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x"}"#;
        assert_eq!(
            describe_token_error(body),
            "invalid_client AADSTS7000215: Invalid client secret provided."
        );
        assert_eq!(describe_token_error(b""), "(empty body)");
    }

    #[test]
    fn authority_host_precedence() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let both = env(&[
            ("AZURE_AUTHORITY_HOST", "https://a.example/"),
            ("AKVFS_AUTHORITY_HOST", "https://b.example"),
        ]);
        assert_eq!(
            configured_authority_host("https://kv.vault.azure.cn", &both).as_deref(),
            Some("https://a.example")
        );
        let akvfs = env(&[("AKVFS_AUTHORITY_HOST", "https://127.0.0.1:8443")]);
        assert_eq!(
            configured_authority_host("https://127.0.0.1:8443", &akvfs).as_deref(),
            Some("https://127.0.0.1:8443")
        );
        let none = env(&[]);
        assert_eq!(
            configured_authority_host("https://kv.vault.azure.cn", &none).as_deref(),
            Some("https://login.chinacloudapi.cn")
        );
        assert_eq!(
            configured_authority_host("https://127.0.0.1:1", &none),
            None
        );
        assert_eq!(
            configured_authority_host("https://vault.contoso.example", &none).as_deref(),
            Some("https://login.microsoftonline.com")
        );
        assert_eq!(
            normalize_authority_host("login.microsoftonline.us/"),
            "https://login.microsoftonline.us"
        );
    }

    #[test]
    fn challenge_authorities_are_used_only_when_trusted() {
        let req = |a: &str| TokenRequest {
            scope: "s".into(),
            tenant_id: None,
            authority_host: Some(a.into()),
        };
        let local = req("https://127.0.0.1:8443");
        assert_eq!(authority_for(None, &local), Ok("https://127.0.0.1:8443"));
        let aad = req("https://login.windows.net");
        assert_eq!(authority_for(None, &aad), Ok("https://login.windows.net"));
        let evil = req("https://evil.example");
        assert!(matches!(
            authority_for(None, &evil),
            Err(CredentialError::Failed(_))
        ));
        assert_eq!(authority_for(Some("https://x"), &evil), Ok("https://x"));
        assert!(authority_for(None, &TokenRequest::default()).is_err());
    }

    #[test]
    fn scopes_map_to_resources() {
        assert_eq!(
            scope_to_resource("https://vault.azure.net/.default"),
            "https://vault.azure.net"
        );
        assert_eq!(scope_to_resource("https://x"), "https://x");
    }
}
