//! `ClientSecretCredential`: a service principal's client secret, from the environment
//! (`AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`, or as a group the `AKVFS_…` names
//! that `akvfs local-vault` writes to its env file).

use async_trait::async_trait;

use super::{
    authority_for, configured_authority_host, request_token, token_credential_via_chainable,
    AccessToken, ChainableCredential, CredentialError, EnvLookup, TokenRequest,
};
use crate::secret_value::SecretValue;
use crate::vault::pipeline::Pipeline;

pub struct ClientSecretCredential {
    tenant_id: String,
    client_id: String,
    client_secret: SecretValue,
    /// Configured or from the vault's cloud; `None` = use the challenge's.
    authority_host: Option<String>,
    pipeline: Pipeline,
}

impl std::fmt::Debug for ClientSecretCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecretCredential")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("authority_host", &self.authority_host)
            .finish_non_exhaustive()
    }
}

const AZURE_VARS: [&str; 3] = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"];
const AKVFS_VARS: [&str; 3] = ["AKVFS_TENANT_ID", "AKVFS_CLIENT_ID", "AKVFS_CLIENT_SECRET"];

impl ClientSecretCredential {
    pub fn new(
        tenant_id: String,
        client_id: String,
        client_secret: SecretValue,
        authority_host: Option<String>,
        pipeline: Pipeline,
    ) -> ClientSecretCredential {
        ClientSecretCredential {
            tenant_id,
            client_id,
            client_secret,
            authority_host,
            pipeline,
        }
    }

    /// From the `AZURE_…` group, else the `AKVFS_…` group (a group is used only when all three
    /// are set). `Err` says what is missing.
    pub fn from_env(
        vault_url: &str,
        pipeline: Pipeline,
        env: EnvLookup<'_>,
    ) -> Result<ClientSecretCredential, String> {
        let group = |names: [&str; 3]| {
            let values: Vec<String> = names
                .iter()
                .filter_map(|n| env(n).filter(|v| !v.is_empty()))
                .collect();
            <[String; 3]>::try_from(values).ok()
        };
        let [tenant_id, client_id, secret] = group(AZURE_VARS)
            .or_else(|| group(AKVFS_VARS))
            .ok_or_else(|| {
                format!(
                    "client secret not configured: set {} (or {})",
                    AZURE_VARS.join(", "),
                    AKVFS_VARS.join(", ")
                )
            })?;
        Ok(ClientSecretCredential::new(
            tenant_id,
            client_id,
            SecretValue::new(secret),
            configured_authority_host(vault_url, env),
            pipeline,
        ))
    }
}

#[async_trait]
impl ChainableCredential for ClientSecretCredential {
    async fn try_get_token(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        let authority = authority_for(self.authority_host.as_deref(), request)?;
        // The challenge's tenant wins (the vault knows which tenant it trusts).
        let tenant = request.tenant_id.as_deref().unwrap_or(&self.tenant_id);
        request_token(
            &self.pipeline,
            authority,
            tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &self.client_id),
                ("client_secret", self.client_secret.expose()),
            ],
            &request.scope,
        )
        .await
    }

    fn credential_name(&self) -> &'static str {
        "ClientSecretCredential"
    }
}

token_credential_via_chainable!(ClientSecretCredential);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::pipeline::build_http_client;

    fn pipeline() -> Pipeline {
        Pipeline::new(build_http_client(None).expect("client"), 0)
    }

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn azure_group_wins_and_akvfs_group_is_the_fallback() {
        let env = lookup(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AKVFS_TENANT_ID", "lt"),
            ("AKVFS_CLIENT_ID", "lc"),
            ("AKVFS_CLIENT_SECRET", "ls"),
        ]);
        let c = ClientSecretCredential::from_env("https://kv.vault.azure.net", pipeline(), &env)
            .expect("configured");
        assert_eq!(c.client_id, "c");
        assert_eq!(
            c.authority_host.as_deref(),
            Some("https://login.microsoftonline.com")
        );
        // AZURE group incomplete (no secret: what local-vault's env file looks like) → AKVFS group
        let env = lookup(&[
            ("AZURE_TENANT_ID", "t"),
            ("AKVFS_TENANT_ID", "lt"),
            ("AKVFS_CLIENT_ID", "lc"),
            ("AKVFS_CLIENT_SECRET", "ls"),
            ("AKVFS_AUTHORITY_HOST", "https://127.0.0.1:9"),
        ]);
        let c = ClientSecretCredential::from_env("https://127.0.0.1:9", pipeline(), &env)
            .expect("configured");
        assert_eq!((c.tenant_id.as_str(), c.client_id.as_str()), ("lt", "lc"));
        assert_eq!(c.authority_host.as_deref(), Some("https://127.0.0.1:9"));
        assert!(!format!("{c:?}").contains("ls\""));
    }

    #[test]
    fn unconfigured_says_what_to_set() {
        let env = lookup(&[("AZURE_CLIENT_ID", "c")]);
        let why = ClientSecretCredential::from_env("https://x", pipeline(), &env).expect_err("no");
        assert!(why.contains("AZURE_CLIENT_SECRET") && why.contains("AKVFS_CLIENT_SECRET"));
    }
}
