//! `ChainedTokenCredential`: the `auto` chain (as `DefaultAzureCredential`). Credentials are tried
//! in order; one that is not available here is skipped, the first that gives a token is kept for
//! later calls, and one that is configured but fails stops the chain (its error is the useful one).
//! When none works, the error lists what each said.

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{
    token_credential_via_chainable, AccessToken, AzureCliCredential, ChainableCredential,
    ClientCertificateCredential, ClientSecretCredential, CredentialError, EnvLookup,
    ManagedIdentityCredential, TokenRequest, WorkloadIdentityCredential,
};
use crate::vault::pipeline::Pipeline;

pub struct ChainedTokenCredential {
    /// Credentials to try, in order.
    sources: Vec<Box<dyn ChainableCredential>>,
    /// Credentials left out because they are not configured, with why (for the error).
    skipped: Vec<String>,
    /// Index of the credential that worked.
    selected: Mutex<Option<usize>>,
}

impl ChainedTokenCredential {
    pub fn new(sources: Vec<Box<dyn ChainableCredential>>) -> ChainedTokenCredential {
        ChainedTokenCredential {
            sources,
            skipped: Vec::new(),
            selected: Mutex::new(None),
        }
    }

    /// SPEC §4 order: environment client secret, environment client certificate, workload
    /// identity, managed identity (App Service, else IMDS), Azure CLI.
    ///
    /// `AZURE_TOKEN_CREDENTIALS` narrows it as in the Azure Identity SDKs: `prod` (all but the
    /// CLI), `dev` (the CLI only), or one credential's name (`EnvironmentCredential`,
    /// `WorkloadIdentityCredential`, `ManagedIdentityCredential`, `AzureCliCredential`). E.g.
    /// `dev` on a developer machine or in CI skips the IMDS probe.
    pub fn default_chain(
        vault_url: &str,
        pipeline: Pipeline,
        env: EnvLookup<'_>,
    ) -> ChainedTokenCredential {
        let mut sources: Vec<Box<dyn ChainableCredential>> = Vec::new();
        let mut skipped = Vec::new();
        let selection = env("AZURE_TOKEN_CREDENTIALS")
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        let known = [
            "prod",
            "dev",
            "environmentcredential",
            "workloadidentitycredential",
            "managedidentitycredential",
            "azureclicredential",
        ];
        let selection = match selection {
            Some(s) if known.contains(&s.as_str()) => Some(s),
            Some(s) => {
                skipped.push(format!(
                    "AZURE_TOKEN_CREDENTIALS={s} is not prod, dev or a credential name; ignored"
                ));
                None
            }
            None => None,
        };
        let wanted = |name: &str, prod: bool| match selection.as_deref() {
            None => true,
            Some("prod") => prod,
            Some("dev") => !prod,
            Some(one) => one == name,
        };
        let excluded = |name: &str| {
            format!(
                "{name}: excluded by AZURE_TOKEN_CREDENTIALS={}",
                selection.as_deref().unwrap_or_default()
            )
        };
        if wanted("environmentcredential", true) {
            match ClientSecretCredential::from_env(vault_url, pipeline.clone(), env) {
                Ok(c) => sources.push(Box::new(c)),
                Err(why) => skipped.push(format!("EnvironmentCredential: {why}")),
            }
            match ClientCertificateCredential::from_env(vault_url, pipeline.clone(), env) {
                Ok(c) => sources.push(Box::new(c)),
                Err(why) => skipped.push(format!("ClientCertificateCredential: {why}")),
            }
        } else {
            skipped.push(excluded("EnvironmentCredential"));
        }
        if wanted("workloadidentitycredential", true) {
            match WorkloadIdentityCredential::from_env(vault_url, pipeline.clone(), env) {
                Ok(c) => sources.push(Box::new(c)),
                Err(why) => skipped.push(format!("WorkloadIdentityCredential: {why}")),
            }
        } else {
            skipped.push(excluded("WorkloadIdentityCredential"));
        }
        if wanted("managedidentitycredential", true) {
            sources.push(Box::new(ManagedIdentityCredential::from_env(pipeline, env)));
        } else {
            skipped.push(excluded("ManagedIdentityCredential"));
        }
        if wanted("azureclicredential", false) {
            sources.push(Box::new(AzureCliCredential::new()));
        } else {
            skipped.push(excluded("AzureCliCredential"));
        }
        ChainedTokenCredential {
            sources,
            skipped,
            selected: Mutex::new(None),
        }
    }

    /// Names of the credentials the chain will try, in order.
    pub fn source_names(&self) -> Vec<&'static str> {
        self.sources.iter().map(|s| s.credential_name()).collect()
    }
}

#[async_trait]
impl ChainableCredential for ChainedTokenCredential {
    async fn try_get_token(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        // Copied out, so the lock is not held across the token request.
        let selected = *self.selected.lock().await;
        if let Some(index) = selected {
            if let Some(source) = self.sources.get(index) {
                return source.try_get_token(request).await.map_err(|e| {
                    CredentialError::Failed(format!(
                        "{}: {}",
                        source.credential_name(),
                        e.message()
                    ))
                });
            }
        }
        let mut said = self.skipped.clone();
        for (index, source) in self.sources.iter().enumerate() {
            match source.try_get_token(request).await {
                Ok(token) => {
                    tracing::info!(
                        credential = source.credential_name(),
                        "credential chain: using"
                    );
                    *self.selected.lock().await = Some(index);
                    return Ok(token);
                }
                Err(CredentialError::Unavailable(why)) => {
                    tracing::debug!(credential = source.credential_name(), %why, "credential chain: unavailable");
                    said.push(format!("{}: {why}", source.credential_name()));
                }
                Err(CredentialError::Failed(why)) => {
                    said.push(format!("{}: {why}", source.credential_name()));
                    return Err(CredentialError::Failed(format!(
                        "{} failed; tried: {}",
                        source.credential_name(),
                        said.join("; ")
                    )));
                }
            }
        }
        Err(CredentialError::Unavailable(format!(
            "no credential is configured or worked: {}",
            said.join("; ")
        )))
    }

    fn credential_name(&self) -> &'static str {
        "DefaultAzureCredential"
    }
}

token_credential_via_chainable!(ChainedTokenCredential);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_value::SecretValue;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::SystemTime;

    struct Fake {
        name: &'static str,
        answer: Result<&'static str, CredentialError>,
        calls: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl ChainableCredential for Fake {
        async fn try_get_token(&self, _: &TokenRequest) -> Result<AccessToken, CredentialError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.answer.clone().map(|t| AccessToken {
                token: SecretValue::from(t),
                expires_on: SystemTime::now(),
            })
        }
        fn credential_name(&self) -> &'static str {
            self.name
        }
    }

    fn fake(
        name: &'static str,
        answer: Result<&'static str, CredentialError>,
    ) -> (Box<dyn ChainableCredential>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (
            Box::new(Fake {
                name,
                answer,
                calls: calls.clone(),
            }),
            calls,
        )
    }

    #[tokio::test]
    async fn first_working_credential_wins_and_is_kept() {
        let (a, a_calls) = fake("A", Err(CredentialError::Unavailable("not here".into())));
        let (b, b_calls) = fake("B", Ok("tok-b"));
        let (c, c_calls) = fake("C", Ok("tok-c"));
        let chain = ChainedTokenCredential::new(vec![a, b, c]);
        let req = TokenRequest::default();
        assert_eq!(
            chain.try_get_token(&req).await.expect("b").token.expose(),
            "tok-b"
        );
        assert_eq!(
            chain.try_get_token(&req).await.expect("b").token.expose(),
            "tok-b"
        );
        assert_eq!(a_calls.load(Ordering::SeqCst), 1);
        assert_eq!(b_calls.load(Ordering::SeqCst), 2);
        assert_eq!(c_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_configured_failure_stops_the_chain_and_lists_what_each_said() {
        let (a, _) = fake("A", Err(CredentialError::Unavailable("not here".into())));
        let (b, _) = fake("B", Err(CredentialError::Failed("bad secret".into())));
        let (c, c_calls) = fake("C", Ok("tok-c"));
        let chain = ChainedTokenCredential::new(vec![a, b, c]);
        let err = crate::vault::auth::TokenCredential::get_token(&chain, &TokenRequest::default())
            .await
            .expect_err("fails");
        let text = err.to_string();
        assert!(
            text.contains("A: not here") && text.contains("B: bad secret"),
            "{text}"
        );
        assert_eq!(c_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn none_available_lists_every_reason() {
        let (a, _) = fake("A", Err(CredentialError::Unavailable("no env".into())));
        let (b, _) = fake("B", Err(CredentialError::Unavailable("no cli".into())));
        let chain = ChainedTokenCredential::new(vec![a, b]);
        let err = chain
            .try_get_token(&TokenRequest::default())
            .await
            .expect_err("none");
        assert!(err.message().contains("A: no env") && err.message().contains("B: no cli"));
    }

    #[test]
    fn azure_token_credentials_narrows_the_chain() {
        let chain_for = |value: &'static str| {
            let env = move |name: &str| match name {
                "AZURE_TOKEN_CREDENTIALS" => Some(value.to_owned()),
                "AKVFS_TENANT_ID" | "AKVFS_CLIENT_ID" | "AKVFS_CLIENT_SECRET" => {
                    Some("x".to_owned())
                }
                _ => None,
            };
            let pipeline = Pipeline::new(
                crate::vault::pipeline::build_http_client(None).expect("client"),
                0,
            );
            ChainedTokenCredential::default_chain("https://127.0.0.1:1", pipeline, &env)
        };
        assert_eq!(chain_for("dev").source_names(), vec!["AzureCliCredential"]);
        assert_eq!(
            chain_for("prod").source_names(),
            vec!["ClientSecretCredential", "ManagedIdentityCredential"]
        );
        assert_eq!(
            chain_for("ManagedIdentityCredential").source_names(),
            vec!["ManagedIdentityCredential"]
        );
        let all = chain_for("bogus");
        assert_eq!(all.source_names().len(), 3);
        assert!(all.skipped.iter().any(|s| s.contains("bogus")));
    }

    #[test]
    fn default_chain_order_with_local_vault_env() {
        let env = |name: &str| match name {
            "AKVFS_TENANT_ID" | "AKVFS_CLIENT_ID" | "AKVFS_CLIENT_SECRET" => Some("x".to_owned()),
            "IDENTITY_ENDPOINT" => Some("https://127.0.0.1:1/msi/token".to_owned()),
            "IDENTITY_HEADER" => Some("h".to_owned()),
            _ => None,
        };
        let pipeline = Pipeline::new(
            crate::vault::pipeline::build_http_client(None).expect("client"),
            0,
        );
        let chain = ChainedTokenCredential::default_chain("https://127.0.0.1:1", pipeline, &env);
        assert_eq!(
            chain.source_names(),
            vec![
                "ClientSecretCredential",
                "ManagedIdentityCredential",
                "AzureCliCredential"
            ]
        );
        assert_eq!(chain.skipped.len(), 2);
    }
}
