//! Tokens and the challenge of the local vault.
//!
//! Tokens are JWTs signed with HS256 under a key kept in the vault's database (so they survive a
//! restart). A token is valid for a request when its signature checks, `nbf <= now < exp` on the
//! vault clock, and its audience is the request's resource (with or without a trailing slash);
//! each refusal has the service's 401 text ([`TokenProblem`]).
//!
//! The challenge resource: Azure answers with the parent domain of the vault host
//! (`NAME.vault.azure.cn` → `https://vault.azure.cn`), and a host anywhere under a cloud's vault
//! domain takes that cloud's audience (`NAME.privatelink.vault.azure.net` →
//! `https://vault.azure.net`). A host without a parent domain
//! (`127.0.0.1`, `localhost`, `::1`, a single-label name) is its own resource, with its port when
//! the request named one: `https://127.0.0.1:PORT`. The Python SDK then asks for
//! `https://127.0.0.1:PORT/.default` (its resource check must be off:
//! `verify_challenge_resource=False`, since the vault host is not a sub-domain of itself).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::vault::model::cloud_vault_suffix;

type HmacSha256 = Hmac<Sha256>;

/// The secret permissions of an access policy.
pub const ALL_PERMISSIONS: [&str; 8] = [
    "get", "list", "set", "delete", "recover", "backup", "restore", "purge",
];

/// The certificate permissions of an access policy that the local vault checks, each given to a
/// principal as `certificates/NAME`. A principal given none of them holds its secret
/// permissions for certificates too (`import` and `update` as `set`).
pub const CERTIFICATE_PERMISSIONS: [&str; 7] = [
    "get", "list", "import", "update", "delete", "recover", "purge",
];

/// The prefix of a certificate permission in a principal's list.
pub const CERTIFICATE_PERMISSION_PREFIX: &str = "certificates/";

/// Whether `permission` names a known secret or certificate permission.
pub fn is_known_permission(permission: &str) -> bool {
    match permission.strip_prefix(CERTIFICATE_PERMISSION_PREFIX) {
        Some(certificate) => CERTIFICATE_PERMISSIONS.contains(&certificate),
        None => ALL_PERMISSIONS.contains(&permission),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Client id of the principal.
    pub appid: String,
    pub oid: String,
    pub sub: String,
    pub tid: String,
}

/// `https://HOST[:PORT]` — the resource a token for this request must be issued for.
pub fn resource_for_host(host_header: &str) -> String {
    let (host, port) = split_host_port(host_header);
    // A host under a cloud's vault domain (also `kv.privatelink.vault.azure.net`) takes that
    // cloud's Key Vault audience, as the service does.
    if let Some(suffix) = cloud_vault_suffix(host) {
        return format!("https://{suffix}");
    }
    let is_ip = host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[');
    match host.split_once('.') {
        Some((_, parent)) if !is_ip && parent.contains('.') => format!("https://{parent}"),
        _ => match port {
            Some(port) => format!("https://{host}:{port}"),
            None => format!("https://{host}"),
        },
    }
}

/// Splits `host:port`, `[v6]:port`, `host`.
pub fn split_host_port(host_header: &str) -> (&str, Option<&str>) {
    if host_header.starts_with('[') {
        match host_header.find(']') {
            Some(end) => {
                let host = &host_header[..=end];
                let rest = &host_header[end + 1..];
                (host, rest.strip_prefix(':'))
            }
            None => (host_header, None),
        }
    } else {
        match host_header.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (host_header, None),
        }
    }
}

/// Audience from a scope (`RESOURCE/.default`) or a v1 `resource`.
pub fn audience_from_scope(scope: &str) -> Option<String> {
    let first = scope
        .split_whitespace()
        .find(|s| s.ends_with("/.default"))
        .or_else(|| scope.split_whitespace().next())?;
    let aud = first.strip_suffix("/.default").unwrap_or(first);
    let aud = aud.trim_end_matches('/');
    (!aud.is_empty()).then(|| aud.to_owned())
}

pub fn sign(key: &[u8], claims: &Claims) -> Result<String, String> {
    sign_hs256(key, claims)
}

fn sign_hs256<T: Serialize>(key: &[u8], claims: &T) -> Result<String, String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|e| e.to_string())?);
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{sig}"))
}

/// Why a bearer token is refused. Each has the service's 401 text ([`TokenProblem::message`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenProblem {
    /// Not a compact JWS of JSON objects, or not HS256.
    Malformed,
    /// The signature does not verify under this vault's key (another vault's token, a tampered
    /// one).
    BadSignature,
    Expired,
    NotYetValid,
    /// Issued for another resource.
    Audience {
        expected: String,
        found: String,
    },
}

impl TokenProblem {
    /// The service's message. Confirmed in public reports of the service's answers: AKV10022
    /// (`AKV10022: Invalid audience. Expected https://vault.azure.net, found:
    /// https://management.azure.com/.`), AKV10046 for a signing key it cannot resolve (this
    /// vault has one key, so every bad signature is that), and `Error validating token:
    /// IDX10223` for an expired token. Unconfirmed, by analogy with the same validation library:
    /// IDX10222 (not yet valid) and IDX12709 (not a well-formed JWT).
    pub fn message(&self) -> String {
        match self {
            TokenProblem::Malformed => "Error validating token: IDX12709".into(),
            // The service goes on with ` EncodedJwtHeader: '…'`, quoting the token's header;
            // left out so that no part of a token reaches a client's log.
            TokenProblem::BadSignature => {
                "AKV10046: Unable to resolve the key used for signature validation.".into()
            }
            TokenProblem::Expired => "Error validating token: IDX10223".into(),
            TokenProblem::NotYetValid => "Error validating token: IDX10222".into(),
            TokenProblem::Audience { expected, found } => {
                format!("AKV10022: Invalid audience. Expected {expected}, found: {found}.")
            }
        }
    }
}

/// Whether a token's audience is `resource`, with or without a trailing slash.
fn audience_matches(aud: &str, resource: &str) -> bool {
    aud.trim_end_matches('/') == resource.trim_end_matches('/')
}

/// Checks signature, time and audience, in that order (the signature first: nothing of an
/// unsigned token is believed).
pub fn verify(key: &[u8], token: &str, resource: &str, now: i64) -> Result<Claims, TokenProblem> {
    let malformed = |_| TokenProblem::Malformed;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenProblem::Malformed);
    };
    let header_json: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenProblem::Malformed)?,
    )
    .map_err(malformed)?;
    if header_json.get("alg").and_then(serde_json::Value::as_str) != Some("HS256") {
        return Err(TokenProblem::Malformed);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenProblem::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| TokenProblem::Malformed)?;
    mac.update(
        header_payload(token)
            .ok_or(TokenProblem::Malformed)?
            .as_bytes(),
    );
    mac.verify_slice(&sig)
        .map_err(|_| TokenProblem::BadSignature)?;
    let claims: Claims = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenProblem::Malformed)?,
    )
    .map_err(malformed)?;
    if now >= claims.exp {
        return Err(TokenProblem::Expired);
    }
    if now < claims.nbf {
        return Err(TokenProblem::NotYetValid);
    }
    if !audience_matches(&claims.aud, resource) {
        return Err(TokenProblem::Audience {
            expected: resource.trim_end_matches('/').to_owned(),
            found: claims.aud,
        });
    }
    Ok(claims)
}

fn header_payload(token: &str) -> Option<&str> {
    let end = token.rfind('.')?;
    Some(&token[..end])
}

/// `client_assertion_type` of a signed client assertion (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The audience Azure's federated identity credentials expect (and the one minted here).
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The OIDC issuer of the federated tokens this vault mints (`POST /_akvfs/federated-token`)
/// and trusts as client assertions: the vault plays the Kubernetes cluster's issuer.
pub fn federated_issuer(vault_url: &str) -> String {
    format!("{}/_akvfs/oidc", vault_url.trim_end_matches('/'))
}

/// Claims of a federated (workload identity) token. The principal's federated credential
/// trusts issuer [`federated_issuer`] with subject = its client id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FederatedClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

/// Federated tokens are signed under a key derived from the vault's token key, so that an
/// access token can never pass for a federated token or the other way round.
fn federated_key(jwt_key: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(jwt_key).expect("HMAC takes keys of any length");
    mac.update(b"akvfs federated token key");
    mac.finalize().into_bytes().to_vec()
}

pub fn sign_federated(jwt_key: &[u8], claims: &FederatedClaims) -> Result<String, String> {
    sign_hs256(&federated_key(jwt_key), claims)
}

/// Why a client assertion was refused, with the AADSTS code AAD gives for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: u32,
    /// 400 `invalid_request` or 401 `invalid_client`.
    pub invalid_client: bool,
    pub description: String,
}

fn reject(code: u32, invalid_client: bool, description: impl Into<String>) -> Rejection {
    Rejection {
        code,
        invalid_client,
        description: description.into(),
    }
}

/// A decoded (not yet verified) compact JWS.
pub struct Jwt<'a> {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> Jwt<'a> {
    pub fn decode(token: &'a str) -> Result<Jwt<'a>, Rejection> {
        let malformed = || reject(50027, false, "JWT token is invalid or malformed.");
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let json = |part: &str| -> Result<serde_json::Value, Rejection> {
            let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| malformed())?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .filter(serde_json::Value::is_object)
                .ok_or_else(malformed)
        };
        Ok(Jwt {
            header: json(h)?,
            claims: json(p)?,
            signing_input: header_payload(token).ok_or_else(malformed)?,
            signature: URL_SAFE_NO_PAD.decode(s).map_err(|_| malformed())?,
        })
    }

    fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(serde_json::Value::as_str)
    }

    fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(serde_json::Value::as_str)
    }

    fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(serde_json::Value::as_i64)
    }

    /// A federated token of ours is HS256; a certificate assertion RS256/PS256.
    pub fn is_hs256(&self) -> bool {
        self.header_str("alg") == Some("HS256")
    }

    /// `nbf <= now < exp` (`nbf` with the 5 minutes of skew AAD allows); `exp` is required.
    fn check_time(&self, now: i64) -> Result<(), Rejection> {
        let exp = self
            .claim_i64("exp")
            .ok_or_else(|| reject(50027, false, "JWT token is invalid or malformed: no 'exp'."))?;
        let nbf = self.claim_i64("nbf").unwrap_or(i64::MIN);
        if now >= exp || now + 300 < nbf {
            return Err(reject(
                700024,
                false,
                "Client assertion is not within its valid time range.",
            ));
        }
        Ok(())
    }
}

/// `base64url(SHA-1(DER))` and `base64url(SHA-256(DER))`: the `x5t` and `x5t#S256` of a
/// certificate.
pub fn thumbprints(der: &[u8]) -> (String, String) {
    use sha2::Digest;
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    (
        URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        URL_SAFE_NO_PAD.encode(Sha256::digest(der)),
    )
}

/// The DER of the first certificate of a PEM text; a private key in it is ignored.
pub fn certificate_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or("no PEM certificate in certificate_pem")?
        .map_err(|e| format!("certificate_pem is not PEM: {e}"))?;
    webpki::EndEntityCert::try_from(&der)
        .map_err(|e| format!("certificate_pem is not a usable X.509 certificate: {e}"))?;
    Ok(der.to_vec())
}

/// A client assertion signed with a certificate registered for `client_id` (AAD's
/// `private_key_jwt`): the header names the certificate by `x5t` or `x5t#S256`, the signature
/// (RS256 or PS256) verifies with it, `iss` = `sub` = `client_id`, `aud` is one of
/// `token_endpoints`, and it is within its time range on the vault clock.
pub fn verify_certificate_assertion(
    jwt: &Jwt<'_>,
    certificates: &[Vec<u8>],
    client_id: &str,
    token_endpoints: &[String],
    now: i64,
) -> Result<(), Rejection> {
    let alg: &dyn rustls::pki_types::SignatureVerificationAlgorithm = match jwt.header_str("alg") {
        Some("RS256") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        other => {
            return Err(reject(
                50027,
                false,
                format!(
                "The client assertion's signing algorithm {:?} is not supported (RS256, PS256).",
                other.unwrap_or("none")
            ),
            ))
        }
    };
    let (x5t, x5t_s256) = (jwt.header_str("x5t"), jwt.header_str("x5t#S256"));
    let certificate = certificates.iter().find(|der| {
        let (sha1, sha256) = thumbprints(der);
        x5t == Some(sha1.as_str()) || x5t_s256 == Some(sha256.as_str())
    });
    let Some(der) = certificate else {
        return Err(reject(
            700027,
            true,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application '{client_id}'. [Reason - The key was not found., Thumbprint of key used by client: '{}']",
                x5t.or(x5t_s256).unwrap_or("none")
            ),
        ));
    };
    let der = rustls::pki_types::CertificateDer::from(der.as_slice());
    let signature_ok = webpki::EndEntityCert::try_from(&der)
        .and_then(|cert| cert.verify_signature(alg, jwt.signing_input.as_bytes(), &jwt.signature))
        .is_ok();
    if !signature_ok {
        return Err(reject(
            700027,
            true,
            "Client assertion failed signature validation.",
        ));
    }
    if jwt.claim_str("iss") != Some(client_id) || jwt.claim_str("sub") != Some(client_id) {
        return Err(reject(
            700021,
            true,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    let aud = jwt.claim_str("aud").unwrap_or("").trim_end_matches('/');
    if !token_endpoints
        .iter()
        .any(|e| e.trim_end_matches('/') == aud)
    {
        return Err(reject(
            700016,
            true,
            format!(
                "Client assertion audience '{aud}' is not the token endpoint '{}'.",
                token_endpoints.first().map(String::as_str).unwrap_or("")
            ),
        ));
    }
    jwt.check_time(now)
}

/// A federated token (workload identity) minted by this vault for `client_id`: HS256 under
/// the federated key, `iss` this vault's issuer, `aud` [`FEDERATED_AUDIENCE`], `sub` the
/// client id, within its time range.
pub fn verify_federated_assertion(
    jwt: &Jwt<'_>,
    jwt_key: &[u8],
    issuer: &str,
    client_id: &str,
    now: i64,
) -> Result<(), Rejection> {
    let mut mac =
        HmacSha256::new_from_slice(&federated_key(jwt_key)).expect("HMAC takes keys of any length");
    mac.update(jwt.signing_input.as_bytes());
    if mac.verify_slice(&jwt.signature).is_err() {
        return Err(reject(
            50013,
            true,
            "Assertion failed signature validation. [Reason - The key was not found.]",
        ));
    }
    let iss = jwt.claim_str("iss").unwrap_or("");
    if iss != issuer {
        return Err(reject(
            700211,
            true,
            format!("No matching federated identity record found for presented assertion issuer '{iss}'."),
        ));
    }
    let aud = jwt.claim_str("aud").unwrap_or("");
    if aud != FEDERATED_AUDIENCE {
        return Err(reject(
            700212,
            true,
            format!("No matching federated identity record found for presented assertion audience '{aud}'."),
        ));
    }
    let sub = jwt.claim_str("sub").unwrap_or("");
    if sub != client_id {
        return Err(reject(
            700213,
            true,
            format!("No matching federated identity record found for presented assertion subject '{sub}'."),
        ));
    }
    jwt.check_time(now)
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// Constant-time equality for secrets compared against request input.
pub fn secret_eq(a: &str, b: &str) -> bool {
    use sha2::Digest;
    // Hash first so lengths leak nothing and the comparison is over fixed-size digests.
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(aud: &str, nbf: i64, exp: i64) -> Claims {
        Claims {
            aud: aud.into(),
            iss: "i".into(),
            iat: nbf,
            nbf,
            exp,
            appid: "a".into(),
            oid: "o".into(),
            sub: "s".into(),
            tid: "t".into(),
        }
    }

    #[test]
    fn resource_is_parent_domain_or_the_host_itself() {
        assert_eq!(
            resource_for_host("x.vault.azure.cn"),
            "https://vault.azure.cn"
        );
        assert_eq!(
            resource_for_host("x.vault.azure.net:443"),
            "https://vault.azure.net"
        );
        assert_eq!(
            resource_for_host("127.0.0.1:40123"),
            "https://127.0.0.1:40123"
        );
        assert_eq!(
            resource_for_host("localhost:8443"),
            "https://localhost:8443"
        );
        assert_eq!(resource_for_host("[::1]:8443"), "https://[::1]:8443");
        assert_eq!(
            resource_for_host("vault.local:8443"),
            "https://vault.local:8443"
        );
    }

    #[test]
    fn tokens_verify_signature_audience_and_expiry() {
        let key = b"0123456789abcdef0123456789abcdef";
        let token = sign(key, &claims("https://127.0.0.1:1", 100, 200)).expect("sign");
        assert!(verify(key, &token, "https://127.0.0.1:1", 150).is_ok());
        assert!(verify(key, &token, "https://127.0.0.1:1/", 150).is_ok());
        assert_eq!(
            verify(key, &token, "https://127.0.0.1:2", 150),
            Err(TokenProblem::Audience {
                expected: "https://127.0.0.1:2".into(),
                found: "https://127.0.0.1:1".into()
            })
        );
        assert_eq!(
            verify(key, &token, "https://127.0.0.1:1", 200),
            Err(TokenProblem::Expired)
        );
        assert_eq!(
            verify(key, &token, "https://127.0.0.1:1", 99),
            Err(TokenProblem::NotYetValid)
        );
        assert_eq!(
            verify(b"another key", &token, "https://127.0.0.1:1", 150),
            Err(TokenProblem::BadSignature)
        );
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(verify(key, &tampered, "https://127.0.0.1:1", 150).is_err());
        assert_eq!(
            verify(key, "garbage", "https://127.0.0.1:1", 150),
            Err(TokenProblem::Malformed)
        );
    }

    #[test]
    fn cloud_vault_hosts_take_their_clouds_audience() {
        assert_eq!(
            resource_for_host("kv.privatelink.vault.azure.net:8443"),
            "https://vault.azure.net"
        );
        assert_eq!(
            resource_for_host("kv.vault.usgovcloudapi.net"),
            "https://vault.usgovcloudapi.net"
        );
    }

    #[test]
    fn scopes_map_to_audiences() {
        assert_eq!(
            audience_from_scope("https://vault.azure.net/.default").as_deref(),
            Some("https://vault.azure.net")
        );
        assert_eq!(
            audience_from_scope("https://127.0.0.1:9/").as_deref(),
            Some("https://127.0.0.1:9")
        );
        assert_eq!(audience_from_scope(" "), None);
    }

    const TEST_PEM: &str = include_str!("../vault/auth/testdata/test-client-cert.pem");
    const ENDPOINT: &str = "https://127.0.0.1:1/t/oauth2/v2.0/token";

    /// A client assertion signed with the test certificate's key.
    fn assertion(alg: &str, thumbprint_header: &str, claims: serde_json::Value) -> String {
        let der = certificate_from_pem(TEST_PEM).expect("cert");
        let (sha1, sha256) = thumbprints(&der);
        let thumbprint = if thumbprint_header == "x5t" {
            sha1
        } else {
            sha256
        };
        let header = serde_json::json!({"alg": alg, "typ": "JWT", thumbprint_header: thumbprint});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = rustls_pemfile::private_key(&mut TEST_PEM.as_bytes())
            .expect("pem")
            .expect("key");
        let key = ring::signature::RsaKeyPair::from_pkcs8(key.secret_der()).expect("rsa");
        let padding: &'static dyn ring::signature::RsaEncoding = if alg == "PS256" {
            &ring::signature::RSA_PSS_SHA256
        } else {
            &ring::signature::RSA_PKCS1_SHA256
        };
        let mut sig = vec![0u8; key.public().modulus_len()];
        key.sign(
            padding,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn claims_for(aud: &str, iss: &str, exp: i64) -> serde_json::Value {
        serde_json::json!({"aud": aud, "iss": iss, "sub": "cid", "nbf": 100, "exp": exp, "jti": "j"})
    }

    fn check(token: &str, now: i64) -> Result<(), Rejection> {
        let certs = vec![certificate_from_pem(TEST_PEM).expect("cert")];
        let jwt = Jwt::decode(token)?;
        verify_certificate_assertion(&jwt, &certs, "cid", &[ENDPOINT.to_owned()], now)
    }

    #[test]
    fn certificate_assertions_verify_signature_thumbprint_claims_and_time() {
        let ok = claims_for(ENDPOINT, "cid", 1000);
        assert_eq!(check(&assertion("RS256", "x5t", ok.clone()), 500), Ok(()));
        assert_eq!(
            check(&assertion("PS256", "x5t#S256", ok.clone()), 500),
            Ok(())
        );
        let code = |token: String, now| check(&token, now).expect_err("refused").code;
        assert_eq!(code(assertion("RS256", "x5t", ok.clone()), 1000), 700024);
        assert_eq!(code(assertion("RS256", "x5t", ok.clone()), -300), 700024);
        let wrong_aud = claims_for("https://elsewhere/t/oauth2/v2.0/token", "cid", 1000);
        assert_eq!(code(assertion("RS256", "x5t", wrong_aud), 500), 700016);
        assert_eq!(
            code(
                assertion("RS256", "x5t", claims_for(ENDPOINT, "x", 1000)),
                500
            ),
            700021
        );
        // signed RS256 but labelled PS256: the signature does not verify
        let rs256 = assertion("RS256", "x5t", ok.clone());
        let ps256 = assertion("PS256", "x5t", ok.clone());
        let relabelled = format!(
            "{}{}",
            &ps256[..ps256.find('.').expect("dot")],
            &rs256[rs256.find('.').expect("dot")..]
        );
        assert_eq!(
            check(&relabelled, 500).expect_err("relabelled").code,
            700027
        );
        let mut tampered = assertion("RS256", "x5t", ok.clone());
        tampered.insert(tampered.rfind('.').expect("dot") - 1, 'x');
        assert!(check(&tampered, 500).is_err());
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(ok.to_string())
        );
        assert_eq!(check(&none_alg, 500).expect_err("none").code, 50027);
        assert_eq!(check("a.b", 500).expect_err("malformed").code, 50027);
        // no certificate registered
        let jwt_text = assertion("RS256", "x5t", ok);
        let jwt = Jwt::decode(&jwt_text).expect("decode");
        let err = verify_certificate_assertion(&jwt, &[], "cid", &[ENDPOINT.to_owned()], 500)
            .expect_err("unregistered");
        assert_eq!(err.code, 700027);
    }

    #[test]
    fn federated_tokens_verify_under_their_own_key_only() {
        let key = b"0123456789abcdef0123456789abcdef";
        let claims = FederatedClaims {
            iss: federated_issuer("https://v:1"),
            sub: "cid".into(),
            aud: FEDERATED_AUDIENCE.into(),
            iat: 100,
            nbf: 100,
            exp: 200,
            jti: "j".into(),
        };
        let token = sign_federated(key, &claims).expect("sign");
        let verify = |token: &str, client: &str, now| {
            verify_federated_assertion(
                &Jwt::decode(token).expect("decode"),
                key,
                &federated_issuer("https://v:1"),
                client,
                now,
            )
        };
        assert_eq!(verify(&token, "cid", 150), Ok(()));
        assert_eq!(
            verify(&token, "cid", 200).expect_err("expired").code,
            700024
        );
        assert_eq!(verify(&token, "other", 150).expect_err("sub").code, 700213);
        // signed with the access-token key: refused
        let plain = sign_hs256(key, &claims).expect("sign");
        assert_eq!(verify(&plain, "cid", 150).expect_err("key").code, 50013);
    }

    #[test]
    fn bearer_parses_scheme_case_insensitively() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
