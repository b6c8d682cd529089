//! `ClientCertificateCredential`: a service principal's certificate (PEM with the private key,
//! `AZURE_CLIENT_CERTIFICATE_PATH`). The token request carries a client assertion: a JWT signed
//! RS256 with the key, naming the certificate by its SHA-1 thumbprint (`x5t`), as MSAL does.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};

use super::workload_identity::JWT_BEARER;
use super::{
    authority_for, configured_authority_host, request_token, token_credential_via_chainable,
    AccessToken, ChainableCredential, CredentialError, EnvLookup, TokenRequest,
};
use crate::vault::pipeline::Pipeline;

pub struct ClientCertificateCredential {
    tenant_id: String,
    client_id: String,
    key: RsaKeyPair,
    /// base64url SHA-1 of the certificate's DER.
    x5t: String,
    /// Every certificate of the PEM (DER), leaf first: sent as `x5c` when asked, for subject
    /// name/issuer authentication.
    chain: Vec<Vec<u8>>,
    send_chain: bool,
    authority_host: Option<String>,
    pipeline: Pipeline,
}

impl std::fmt::Debug for ClientCertificateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificateCredential")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

impl ClientCertificateCredential {
    /// From `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_CERTIFICATE_PATH`.
    pub fn from_env(
        vault_url: &str,
        pipeline: Pipeline,
        env: EnvLookup<'_>,
    ) -> Result<ClientCertificateCredential, String> {
        let get = |n: &str| env(n).filter(|v| !v.is_empty());
        let (Some(tenant_id), Some(client_id), Some(path)) = (
            get("AZURE_TENANT_ID"),
            get("AZURE_CLIENT_ID"),
            get("AZURE_CLIENT_CERTIFICATE_PATH"),
        ) else {
            return Err(
                "client certificate not configured: set AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_CERTIFICATE_PATH"
                    .into(),
            );
        };
        let pem = zeroize::Zeroizing::new(
            std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?,
        );
        let send_chain = get("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        Ok(Self::from_pem(
            tenant_id,
            client_id,
            &pem,
            Path::new(&path),
            configured_authority_host(vault_url, env),
            pipeline,
        )?
        .with_certificate_chain(send_chain))
    }

    /// From PEM text holding the certificate and its RSA private key (PKCS#8 or PKCS#1).
    pub fn from_pem(
        tenant_id: String,
        client_id: String,
        pem: &[u8],
        path_for_errors: &Path,
        authority_host: Option<String>,
        pipeline: Pipeline,
    ) -> Result<ClientCertificateCredential, String> {
        let where_ = path_for_errors.display();
        let mut chain = Vec::new();
        let mut key = None;
        for item in rustls_pemfile::read_all(&mut &pem[..]) {
            match item.map_err(|e| format!("{where_} is not PEM: {e}"))? {
                rustls_pemfile::Item::X509Certificate(der) => chain.push(der.to_vec()),
                rustls_pemfile::Item::Pkcs8Key(der) if key.is_none() => {
                    key = Some(
                        RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
                            .map_err(|e| format!("{where_}: unusable RSA key: {e}"))?,
                    )
                }
                rustls_pemfile::Item::Pkcs1Key(der) if key.is_none() => {
                    key = Some(
                        RsaKeyPair::from_der(der.secret_pkcs1_der())
                            .map_err(|e| format!("{where_}: unusable RSA key: {e}"))?,
                    )
                }
                _ => {}
            }
        }
        let cert_der = chain
            .first()
            .ok_or_else(|| format!("{where_} holds no certificate"))?;
        let key = key.ok_or_else(|| format!("{where_} holds no RSA private key"))?;
        let thumbprint = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der);
        Ok(ClientCertificateCredential {
            tenant_id,
            client_id,
            key,
            x5t: URL_SAFE_NO_PAD.encode(thumbprint.as_ref()),
            chain,
            send_chain: false,
            authority_host,
            pipeline,
        })
    }

    /// Sends the certificate chain (`x5c`) in the assertion, as
    /// `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN=true` asks (subject name/issuer authentication).
    pub fn with_certificate_chain(mut self, send: bool) -> ClientCertificateCredential {
        self.send_chain = send;
        self
    }

    /// The signed client assertion for the token endpoint `audience`.
    fn client_assertion(&self, audience: &str, now: SystemTime) -> Result<String, String> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t});
        if self.send_chain {
            let x5c: Vec<String> = self.chain.iter().map(|der| STANDARD.encode(der)).collect();
            header["x5c"] = serde_json::json!(x5c);
        }
        let claims = serde_json::json!({
            "aud": audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + 600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the client assertion failed".to_owned())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

#[async_trait]
impl ChainableCredential for ClientCertificateCredential {
    async fn try_get_token(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        let authority = authority_for(self.authority_host.as_deref(), request)?;
        let tenant = request.tenant_id.as_deref().unwrap_or(&self.tenant_id);
        let audience = format!(
            "{}/{}/oauth2/v2.0/token",
            authority.trim_end_matches('/'),
            tenant
        );
        let assertion = self
            .client_assertion(&audience, SystemTime::now())
            .map_err(CredentialError::Failed)?;
        request_token(
            &self.pipeline,
            authority,
            tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &self.client_id),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &assertion),
            ],
            &request.scope,
        )
        .await
    }

    fn credential_name(&self) -> &'static str {
        "ClientCertificateCredential"
    }
}

token_credential_via_chainable!(ClientCertificateCredential);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::pipeline::build_http_client;

    /// A throwaway self-signed RSA certificate + key made for this test (no real identity).
    const TEST_PEM: &[u8] = include_bytes!("testdata/test-client-cert.pem");
    /// `openssl x509 -outform der | openssl dgst -sha1 -binary | base64url`
    const TEST_X5T: &str = "5654Z-0WFWmaQch_kLO7EFZ0vDA";

    fn credential() -> ClientCertificateCredential {
        ClientCertificateCredential::from_pem(
            "tid".into(),
            "cid".into(),
            TEST_PEM,
            Path::new("test.pem"),
            None,
            Pipeline::new(build_http_client(None).expect("client"), 0),
        )
        .expect("credential")
    }

    #[test]
    fn assertion_is_an_rs256_jwt_naming_the_thumbprint_and_audience() {
        let c = credential();
        assert_eq!(c.x5t, TEST_X5T);
        let jwt = c
            .client_assertion(
                "https://login/tid/oauth2/v2.0/token",
                UNIX_EPOCH + std::time::Duration::from_secs(1000),
            )
            .expect("sign");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t"], TEST_X5T);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["aud"], "https://login/tid/oauth2/v2.0/token");
        assert_eq!(claims["iss"], "cid");
        assert_eq!(claims["exp"], 1600);
        assert!(header.get("x5c").is_none());
        // the signature verifies with the certificate's public key
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            c.key.public().as_ref().to_vec(),
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("valid signature");
    }

    #[test]
    fn the_chain_is_sent_as_x5c_when_asked() {
        let c = credential().with_certificate_chain(true);
        let jwt = c.client_assertion("aud", UNIX_EPOCH).expect("sign");
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').next().expect("header"))
                .expect("b64"),
        )
        .expect("json");
        let x5c = header["x5c"].as_array().expect("x5c");
        assert_eq!(x5c.len(), 1);
        let der = STANDARD.decode(x5c[0].as_str().expect("str")).expect("der");
        let thumbprint = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        assert_eq!(URL_SAFE_NO_PAD.encode(thumbprint.as_ref()), TEST_X5T);
    }

    #[test]
    fn pem_without_key_or_certificate_is_refused() {
        let text = std::str::from_utf8(TEST_PEM).expect("utf8");
        let cert_only = &text[..text.find("-----BEGIN PRIVATE KEY").expect("key")];
        let pipeline = Pipeline::new(build_http_client(None).expect("client"), 0);
        let err = ClientCertificateCredential::from_pem(
            "t".into(),
            "c".into(),
            cert_only.as_bytes(),
            Path::new("x.pem"),
            None,
            pipeline,
        )
        .expect_err("no key");
        assert!(err.contains("no RSA private key"), "{err}");
    }
}
