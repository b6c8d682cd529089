//! `WorkloadIdentityCredential`: Kubernetes workload identity federation. The pod's projected
//! service-account token (`AZURE_FEDERATED_TOKEN_FILE`, re-read each time: it is rotated) is the
//! client assertion of a client-credentials request.

use std::path::PathBuf;

use async_trait::async_trait;

use super::{
    authority_for, configured_authority_host, request_token, token_credential_via_chainable,
    AccessToken, ChainableCredential, CredentialError, EnvLookup, TokenRequest,
};
use crate::vault::pipeline::Pipeline;

#[derive(Debug)]
pub struct WorkloadIdentityCredential {
    tenant_id: String,
    client_id: String,
    token_file: PathBuf,
    authority_host: Option<String>,
    pipeline: Pipeline,
}

pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

impl WorkloadIdentityCredential {
    /// From `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`.
    pub fn from_env(
        vault_url: &str,
        pipeline: Pipeline,
        env: EnvLookup<'_>,
    ) -> Result<WorkloadIdentityCredential, String> {
        let get = |n: &str| env(n).filter(|v| !v.is_empty());
        match (
            get("AZURE_TENANT_ID"),
            get("AZURE_CLIENT_ID"),
            get("AZURE_FEDERATED_TOKEN_FILE"),
        ) {
            (Some(tenant_id), Some(client_id), Some(file)) => Ok(WorkloadIdentityCredential {
                tenant_id,
                client_id,
                token_file: PathBuf::from(file),
                authority_host: configured_authority_host(vault_url, env),
                pipeline,
            }),
            _ => Err(
                "workload identity not configured: set AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE"
                    .into(),
            ),
        }
    }
}

#[async_trait]
impl ChainableCredential for WorkloadIdentityCredential {
    async fn try_get_token(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        let assertion = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                CredentialError::Failed(format!(
                    "cannot read the federated token file {}: {e}",
                    self.token_file.display()
                ))
            })?;
        let assertion = zeroize::Zeroizing::new(assertion.trim().to_owned());
        let authority = authority_for(self.authority_host.as_deref(), request)?;
        // The federated identity is bound to its tenant: the configured one wins here.
        request_token(
            &self.pipeline,
            authority,
            &self.tenant_id,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &self.client_id),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion.as_str()),
            ],
            &request.scope,
        )
        .await
    }

    fn credential_name(&self) -> &'static str {
        "WorkloadIdentityCredential"
    }
}

token_credential_via_chainable!(WorkloadIdentityCredential);
