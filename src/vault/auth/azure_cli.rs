//! `AzureCliCredential`: asks the Azure CLI of the signed-in user
//! (`az account get-access-token --output json --resource …`).

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    json_u64, scope_to_resource, token_credential_via_chainable, AccessToken, ChainableCredential,
    CredentialError, TokenRequest,
};
use crate::secret_value::SecretValue;

const CLI_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct AzureCliCredential {
    program: String,
}

impl Default for AzureCliCredential {
    fn default() -> Self {
        AzureCliCredential::new()
    }
}

impl AzureCliCredential {
    pub fn new() -> AzureCliCredential {
        AzureCliCredential {
            program: "az".into(),
        }
    }

    /// Uses another executable instead of `az` (tests use a script).
    pub fn with_program(program: impl Into<String>) -> AzureCliCredential {
        AzureCliCredential {
            program: program.into(),
        }
    }
}

/// A tenant id is passed on a command line: accept only what a tenant id can look like.
fn is_safe_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && !tenant.starts_with('-')
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[async_trait]
impl ChainableCredential for AzureCliCredential {
    async fn try_get_token(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        let resource = scope_to_resource(&request.scope);
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args([
                "account",
                "get-access-token",
                "--output",
                "json",
                "--resource",
                resource,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(tenant) = request.tenant_id.as_deref().filter(|t| is_safe_tenant(t)) {
            command.args(["--tenant", tenant]);
        }
        let child = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CredentialError::Unavailable("Azure CLI not found on PATH".into())
            } else {
                CredentialError::Unavailable(format!("cannot run the Azure CLI: {e}"))
            }
        })?;
        let output = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                CredentialError::Failed(format!(
                    "the Azure CLI did not answer within {}s",
                    CLI_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| CredentialError::Failed(format!("the Azure CLI failed: {e}")))?;
        // The output holds the token: zero it when done.
        let stdout = zeroize::Zeroizing::new(output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no message")
                .to_owned();
            if stderr.contains("az login") || stderr.contains("az account set") {
                return Err(CredentialError::Unavailable(format!(
                    "not signed in to the Azure CLI (run 'az login'): {first}"
                )));
            }
            return Err(CredentialError::Failed(format!(
                "'az account get-access-token' failed ({}): {first}",
                output.status
            )));
        }
        parse_cli_output(&stdout, SystemTime::now()).map_err(CredentialError::Failed)
    }

    fn credential_name(&self) -> &'static str {
        "AzureCliCredential"
    }
}

token_credential_via_chainable!(AzureCliCredential);

/// `{"accessToken", "expires_on": epoch (CLI ≥ 2.54), "expiresOn": "local time"}`.
pub(crate) fn parse_cli_output(stdout: &[u8], now: SystemTime) -> Result<AccessToken, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct CliToken {
        access_token: Option<SecretValue>,
        #[serde(default, rename = "expires_on")]
        expires_on_epoch: Option<serde_json::Value>,
    }
    let parsed: CliToken = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "the Azure CLI's output is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the Azure CLI's output has no accessToken".to_owned())?;
    let epoch = parsed.expires_on_epoch.as_ref().and_then(json_u64);
    // Older CLIs give only a local-time `expiresOn`; rather than guess the zone, assume a short
    // life (CLI tokens live ≥ 1 h) and ask again after it.
    let expires_on = epoch
        .and_then(|e| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(e)))
        .unwrap_or(now + Duration::from_secs(900));
    Ok(AccessToken { token, expires_on })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_output_parses_with_and_without_epoch() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let t = parse_cli_output(
            br#"{"accessToken":"tok","expiresOn":"2023-10-31 11:59:59.000000","expires_on":1698750000,"subscription":"s","tenant":"t","tokenType":"Bearer"}"#,
            now,
        )
        .expect("parse");
        assert_eq!(t.token.expose(), "tok");
        assert_eq!(
            t.expires_on,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1698750000)
        );
        let t = parse_cli_output(
            br#"{"accessToken":"tok","expiresOn":"2023-10-31 11:59:59.000000"}"#,
            now,
        )
        .expect("parse");
        assert_eq!(t.expires_on, now + Duration::from_secs(900));
        assert!(parse_cli_output(b"ERROR", now).is_err());
    }

    #[test]
    fn tenants_on_the_command_line_are_checked() {
        assert!(is_safe_tenant("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(is_safe_tenant("contoso.onmicrosoft.com"));
        assert!(!is_safe_tenant("--help"));
        assert!(!is_safe_tenant("a b"));
        assert!(!is_safe_tenant(""));
    }

    #[tokio::test]
    async fn a_missing_cli_is_unavailable_not_failed() {
        let c = AzureCliCredential::with_program("/nonexistent/az");
        let err = c
            .try_get_token(&TokenRequest {
                scope: "https://vault.azure.net/.default".into(),
                ..TokenRequest::default()
            })
            .await
            .expect_err("no cli");
        assert!(matches!(err, CredentialError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_fake_cli_gives_a_token() {
        let dir = tempfile::tempdir().expect("dir");
        let script = dir.path().join("az");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\necho '{\"accessToken\":\"cli-token\",\"expires_on\":4102444800}'\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let c = AzureCliCredential::with_program(script.to_string_lossy());
        let t = c
            .try_get_token(&TokenRequest {
                scope: "https://vault.azure.net/.default".into(),
                tenant_id: Some("tid".into()),
                authority_host: None,
            })
            .await
            .expect("token");
        assert_eq!(t.token.expose(), "cli-token");
        let args = std::fs::read_to_string(dir.path().join("args")).expect("args");
        assert_eq!(
            args.trim(),
            "account get-access-token --output json --resource https://vault.azure.net --tenant tid"
        );
    }
}
