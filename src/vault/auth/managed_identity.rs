//! `ManagedIdentityCredential`: App Service / Functions / Container Apps (`IDENTITY_ENDPOINT` +
//! `IDENTITY_HEADER`, API 2019-08-01), else the VM's instance metadata service (IMDS), probed
//! once with a short timeout so that machines without it fall through the chain quickly.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use tokio::sync::OnceCell;
use url::Url;

use super::{
    describe_token_error, parse_token_response, scope_to_resource, send_token_request,
    token_credential_via_chainable, AccessToken, ChainableCredential, CredentialError, EnvLookup,
    TokenRequest,
};
use crate::vault::pipeline::{build_http_client_with, Pipeline, Request};

const IMDS_DEFAULT: &str = "http://169.254.169.254";
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const IMDS_MAX_RETRIES: u32 = 3;

#[derive(Debug)]
enum Source {
    AppService {
        endpoint: String,
        header: String,
    },
    Imds {
        base: String,
        available: OnceCell<bool>,
    },
}

#[derive(Debug)]
pub struct ManagedIdentityCredential {
    source: Source,
    /// A user-assigned identity's client id (`AZURE_CLIENT_ID`), else the system identity.
    client_id: Option<String>,
    pipeline: Pipeline,
}

impl ManagedIdentityCredential {
    /// App Service when `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set, else IMDS
    /// (`AZURE_POD_IDENTITY_AUTHORITY_HOST` overrides its address, as in the SDKs).
    pub fn from_env(pipeline: Pipeline, env: EnvLookup<'_>) -> ManagedIdentityCredential {
        let get = |n: &str| env(n).filter(|v| !v.is_empty());
        let mut pipeline = pipeline;
        let source = match (get("IDENTITY_ENDPOINT"), get("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => Source::AppService { endpoint, header },
            _ => {
                let base = get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                    .unwrap_or_else(|| IMDS_DEFAULT.to_owned())
                    .trim_end_matches('/')
                    .to_owned();
                // The link-local IMDS is never behind a proxy: bypass HTTPS_PROXY & co.
                if base == IMDS_DEFAULT {
                    if let Ok(http) = build_http_client_with(None, true) {
                        pipeline = Pipeline::new(http, IMDS_MAX_RETRIES);
                    }
                }
                Source::Imds {
                    base,
                    available: OnceCell::new(),
                }
            }
        };
        ManagedIdentityCredential {
            source,
            client_id: get("AZURE_CLIENT_ID"),
            pipeline,
        }
    }

    /// Whether the App Service endpoint is configured (the chain reports IMDS differently).
    pub fn is_app_service(&self) -> bool {
        matches!(self.source, Source::AppService { .. })
    }

    async fn app_service_token(
        &self,
        endpoint: &str,
        header: &str,
        resource: &str,
    ) -> Result<AccessToken, CredentialError> {
        let mut url = Url::parse(endpoint).map_err(|e| {
            CredentialError::Failed(format!("IDENTITY_ENDPOINT {endpoint} is not a URL: {e}"))
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", "2019-08-01");
            q.append_pair("resource", resource);
            if let Some(id) = &self.client_id {
                q.append_pair("client_id", id);
            }
        }
        let value = HeaderValue::from_str(header)
            .map_err(|_| CredentialError::Failed("IDENTITY_HEADER is not a valid header".into()))?;
        let request = Request::new(Method::GET, url)
            .header(HeaderName::from_static("x-identity-header"), value);
        send_token_request(&self.pipeline, &request).await
    }

    async fn imds_token(
        &self,
        base: &str,
        available: &OnceCell<bool>,
        resource: &str,
    ) -> Result<AccessToken, CredentialError> {
        let mut url = Url::parse(&format!("{base}/metadata/identity/oauth2/token"))
            .map_err(|e| CredentialError::Unavailable(format!("bad IMDS address {base}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", "2018-02-01");
            q.append_pair("resource", resource);
            if let Some(id) = &self.client_id {
                q.append_pair("client_id", id);
            }
        }
        let request = Request::new(Method::GET, url).header(
            HeaderName::from_static("metadata"),
            HeaderValue::from_static("true"),
        );
        // First use: one short try. No answer means no IMDS here (not a VM): unavailable, and
        // remembered, so later calls do not probe again.
        if available.get() == Some(&false) {
            return Err(CredentialError::Unavailable(format!(
                "no managed identity endpoint: IMDS at {base} did not answer"
            )));
        }
        let first = available.get().is_none();
        let deadline = Instant::now()
            + if first {
                IMDS_PROBE_TIMEOUT
            } else {
                Duration::from_secs(30)
            };
        let response = match self.pipeline.send(&request, deadline).await {
            Ok(r) => {
                let _ = available.set(true);
                r
            }
            Err(e) if first => {
                let _ = available.set(false);
                return Err(CredentialError::Unavailable(format!(
                    "no managed identity endpoint: IMDS at {base} did not answer ({})",
                    e.describe()
                )));
            }
            Err(e) => {
                return Err(CredentialError::Failed(format!(
                    "IMDS request failed: {}",
                    e.describe()
                )))
            }
        };
        match response.status.as_u16() {
            200..=299 => parse_token_response(&response.body, std::time::SystemTime::now())
                .map_err(CredentialError::Failed),
            // IMDS answers 400 when the VM has no identity assigned: not configured here.
            400 => Err(CredentialError::Unavailable(format!(
                "no managed identity assigned: IMDS said {}",
                describe_token_error(&response.body)
            ))),
            status => Err(CredentialError::Failed(format!(
                "IMDS answered {status}: {}",
                describe_token_error(&response.body)
            ))),
        }
    }
}

#[async_trait]
impl ChainableCredential for ManagedIdentityCredential {
    async fn try_get_token(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        let resource = scope_to_resource(&request.scope);
        match &self.source {
            Source::AppService { endpoint, header } => {
                self.app_service_token(endpoint, header, resource).await
            }
            Source::Imds { base, available } => self.imds_token(base, available, resource).await,
        }
    }

    fn credential_name(&self) -> &'static str {
        "ManagedIdentityCredential"
    }
}

token_credential_via_chainable!(ManagedIdentityCredential);
