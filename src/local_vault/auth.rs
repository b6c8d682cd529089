//! Tokens and the challenge of the local vault.
//!
//! Tokens are JWTs signed with HS256 under a key kept in the vault's database (so they survive a
//! restart). A token is valid for a request when its signature checks, `nbf <= now < exp` on the
//! vault clock, and its audience is the request's resource (with or without a trailing slash).
//!
//! The challenge resource: Azure answers with the parent domain of the vault host
//! (`NAME.vault.azure.cn` → `https://vault.azure.cn`). A host without a parent domain
//! (`127.0.0.1`, `localhost`, `::1`, a single-label name) is its own resource, with its port when
//! the request named one: `https://127.0.0.1:PORT`. The Python SDK then asks for
//! `https://127.0.0.1:PORT/.default` (its resource check must be off:
//! `verify_challenge_resource=False`, since the vault host is not a sub-domain of itself).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The secret permissions of an access policy.
pub const ALL_PERMISSIONS: [&str; 8] = [
    "get", "list", "set", "delete", "recover", "backup", "restore", "purge",
];

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
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|e| e.to_string())?);
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{sig}"))
}

/// Checks signature, time and audience; `None` when the token is not valid for `resource`.
pub fn verify(key: &[u8], token: &str, resource: &str, now: i64) -> Option<Claims> {
    let mut parts = token.split('.');
    let (header, payload, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(header_payload(token)?.as_bytes());
    mac.verify_slice(&sig).ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    if now < claims.nbf || now >= claims.exp {
        return None;
    }
    if claims.aud.trim_end_matches('/') != resource.trim_end_matches('/') {
        return None;
    }
    Some(claims)
}

fn header_payload(token: &str) -> Option<&str> {
    let end = token.rfind('.')?;
    Some(&token[..end])
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
        assert!(verify(key, &token, "https://127.0.0.1:1", 150).is_some());
        assert!(verify(key, &token, "https://127.0.0.1:1/", 150).is_some());
        assert!(verify(key, &token, "https://127.0.0.1:2", 150).is_none());
        assert!(verify(key, &token, "https://127.0.0.1:1", 200).is_none());
        assert!(verify(key, &token, "https://127.0.0.1:1", 99).is_none());
        assert!(verify(b"another key", &token, "https://127.0.0.1:1", 150).is_none());
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(verify(key, &tampered, "https://127.0.0.1:1", 150).is_none());
        assert!(verify(key, "garbage", "https://127.0.0.1:1", 150).is_none());
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

    #[test]
    fn bearer_parses_scheme_case_insensitively() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
