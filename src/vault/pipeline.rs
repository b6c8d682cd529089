//! The HTTP pipeline under the vault client and the credentials: one `reqwest::Client` (one
//! connection pool) with the configured trust roots, a per-request id, a deadline, bounded
//! response bodies, and the retry policy (the SDKs' `RetryPolicy`: 408/429/5xx and transport
//! errors, honouring `Retry-After`).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;
use zeroize::Zeroizing;

use super::VaultError;

/// Largest response body accepted. A secret is at most 25,600 characters (≤ ~100 KiB of UTF-8
/// JSON-escaped), a list page 25 items: 1 MiB leaves room and stops a hostile server.
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;

pub const USER_AGENT: &str = concat!("akvfs/", env!("CARGO_PKG_VERSION"));

const CLIENT_REQUEST_ID: &str = "x-ms-client-request-id";

/// First retry delay without `Retry-After`; doubles per attempt, jittered, capped.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(8);

/// One request, replayable across retries (the body is reference counted, not copied).
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `None`: no body. `Some(empty)`: an explicit empty body (`content-length: 0`).
    pub body: Option<Bytes>,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Request {
        self.headers.push((name, value));
        self
    }
}

/// A complete response. The body buffer is zeroed on drop: it may hold a secret or a token.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why a request produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Connection, TLS or protocol failure, still failing after the retries.
    Transport(String),
    /// The server's certificate was refused: not retried (it will not change in a second).
    Untrusted(String),
    /// The deadline passed.
    Timeout,
    /// The response body exceeded [`MAX_RESPONSE_BODY`].
    TooLarge,
}

impl SendError {
    /// Plain text of the failure, for messages that name the endpoint themselves.
    pub fn describe(&self) -> String {
        match self {
            SendError::Transport(m) | SendError::Untrusted(m) => m.clone(),
            SendError::Timeout => "timed out".into(),
            SendError::TooLarge => format!("response body larger than {MAX_RESPONSE_BODY} bytes"),
        }
    }

    /// The `VaultError` for this failure on `name` (`what` describes the operation).
    pub fn into_vault_error(self, name: &str, what: &str) -> VaultError {
        match self {
            SendError::Transport(message) => VaultError::Unavailable {
                name: name.to_owned(),
                message,
            },
            SendError::Untrusted(message) => VaultError::Unavailable {
                name: name.to_owned(),
                message: format!(
                    "{message} (the server's certificate is not trusted; for a local vault pass \
                     its CA with --ca-file)"
                ),
            },
            SendError::Timeout => VaultError::Timeout {
                what: format!("{what} ({name})"),
            },
            SendError::TooLarge => VaultError::InvalidResponse {
                name: name.to_owned(),
                message: format!("response body larger than {MAX_RESPONSE_BODY} bytes"),
            },
        }
    }
}

/// How long an unused connection stays open.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the one HTTP client: rustls, system + webpki roots, plus `ca_file` when given. TLS
/// verification is never turned off. Redirects are not followed (Key Vault does not redirect;
/// following one could carry a token elsewhere).
pub fn build_http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, VaultError> {
    build_http_client_with(ca_file, false)
}

/// [`build_http_client`]; `no_proxy` ignores `HTTPS_PROXY` & co. — for a vault on a loopback
/// address (a local vault), which a proxy elsewhere could not reach.
pub fn build_http_client_with(
    ca_file: Option<&Path>,
    no_proxy: bool,
) -> Result<reqwest::Client, VaultError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        // An idle connection is closed (its buffers, which hold the last request and response,
        // freed and so zeroed) soon after use: see docs/SEMANTICS.md, "Secrets in memory".
        .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(60))
        .tls_built_in_root_certs(true);
    if no_proxy {
        builder = builder.no_proxy();
    }
    if let Some(path) = ca_file {
        for cert in load_ca_file(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(spec) = std::env::var("AKVFS_RESOLVE")
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        for (host, addr) in parse_resolve(&spec)? {
            tracing::info!(%host, %addr, "AKVFS_RESOLVE: connecting to this address for the host");
            builder = builder.resolve(&host, addr);
        }
    }
    builder.build().map_err(|e| VaultError::Unavailable {
        name: "HTTP client".into(),
        message: format!("cannot build the HTTPS client: {e}"),
    })
}

/// `AKVFS_RESOLVE=HOST=IP[,HOST=IP…]`: connect to IP for HOST, as curl's `--resolve` (TLS
/// still verifies HOST). reqwest ignores an override's port: the port comes from the URL.
pub fn parse_resolve(spec: &str) -> Result<Vec<(String, std::net::SocketAddr)>, VaultError> {
    spec.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let parsed = item.split_once('=').and_then(|(host, ip)| {
                let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
                let host = host.trim().to_ascii_lowercase();
                let ip: std::net::IpAddr = ip.parse().ok()?;
                (!host.is_empty()).then(|| (host, std::net::SocketAddr::new(ip, 0)))
            });
            parsed.ok_or_else(|| VaultError::Unavailable {
                name: "AKVFS_RESOLVE".into(),
                message: format!("'{item}' is not HOST=IP (e.g. myvault.vault.azure.cn=127.0.0.1)"),
            })
        })
        .collect()
}

fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, VaultError> {
    let bad = |message: String| VaultError::Unavailable {
        name: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read the CA file: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| bad(format!("the CA file is not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("the CA file holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The HTTP client plus the retry policy.
#[derive(Clone, Debug)]
pub struct Pipeline {
    http: reqwest::Client,
    max_retries: u32,
    /// Bound of one attempt, so that a hung connection is retried rather than eating the whole
    /// deadline. `None`: only the deadline.
    try_timeout: Option<Duration>,
}

impl Pipeline {
    pub fn new(http: reqwest::Client, max_retries: u32) -> Pipeline {
        Pipeline {
            http,
            max_retries,
            try_timeout: None,
        }
    }

    pub fn with_try_timeout(mut self, try_timeout: Duration) -> Pipeline {
        self.try_timeout = Some(try_timeout);
        self
    }

    /// Sends `request`, retrying 408/429/5xx and transport errors up to `max_retries` times
    /// while the deadline allows. A retryable status still answered after the retries is
    /// returned as a response (the caller maps it: 429 → throttled, 5xx → unavailable).
    pub async fn send(&self, request: &Request, deadline: Instant) -> Result<Response, SendError> {
        // One id per logical request, kept across retries (as the SDKs' RequestIdPolicy does),
        // so a retried call can be traced as one.
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut attempt: u32 = 0;
        loop {
            let started = Instant::now();
            let remaining = deadline.saturating_duration_since(started);
            if remaining.is_zero() {
                return Err(SendError::Timeout);
            }
            let limit = self.try_timeout.map_or(remaining, |t| t.min(remaining));
            let outcome = tokio::time::timeout(limit, self.send_once(request, &request_id)).await;
            let elapsed = started.elapsed();
            let outcome = match outcome {
                Err(_) if limit == remaining => {
                    tracing::debug!(method = %request.method, path = request.url.path(), request_id, ?elapsed, attempt, "vault request timed out");
                    return Err(SendError::Timeout);
                }
                // This attempt hung, but time is left: retry it like a transport error.
                Err(_) => Err(SendError::Transport(format!(
                    "no response within {}",
                    humantime::format_duration(limit)
                ))),
                Ok(outcome) => outcome,
            };
            let delay = match &outcome {
                Ok(response) => {
                    let service_request_id = response
                        .headers
                        .get("x-ms-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::debug!(method = %request.method, path = request.url.path(), status = response.status.as_u16(), request_id, service_request_id, ?elapsed, attempt, "vault request");
                    if !is_retryable_status(response.status) {
                        return outcome;
                    }
                    retry_after(&response.headers, SystemTime::now())
                        .unwrap_or_else(|| backoff_delay(attempt))
                }
                Err(SendError::Transport(message)) => {
                    tracing::debug!(method = %request.method, path = request.url.path(), request_id, ?elapsed, attempt, error = %message, "vault request failed");
                    backoff_delay(attempt)
                }
                Err(_) => return outcome,
            };
            if attempt >= self.max_retries {
                return outcome;
            }
            // Retrying past the deadline is pointless: give the last answer now.
            if Instant::now()
                .checked_add(delay)
                .is_none_or(|at| at >= deadline)
            {
                tracing::debug!(
                    request_id,
                    ?delay,
                    "retry delay passes the deadline; giving up"
                );
                return outcome;
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn send_once(&self, request: &Request, request_id: &str) -> Result<Response, SendError> {
        let mut builder = self
            .http
            .request(request.method.clone(), request.url.clone())
            .header(CLIENT_REQUEST_ID, request_id)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(name.clone(), value.clone());
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let mut response = builder.send().await.map_err(|e| {
            let text = describe_reqwest_error(&e);
            if text.contains("invalid peer certificate") {
                SendError::Untrusted(text)
            } else {
                SendError::Transport(text)
            }
        })?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let declared = response.content_length().unwrap_or(0);
        if declared > MAX_RESPONSE_BODY as u64 {
            return Err(SendError::TooLarge);
        }
        // Reserve up front so the buffer is not reallocated (which would leave unzeroed copies).
        let mut body = Zeroizing::new(Vec::with_capacity(declared as usize));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| SendError::Transport(describe_reqwest_error(&e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BODY {
                return Err(SendError::TooLarge);
            }
            if body.len() + chunk.len() > body.capacity() {
                let mut bigger = Zeroizing::new(Vec::with_capacity(
                    (body.len() + chunk.len()).max(body.capacity() * 2),
                ));
                bigger.extend_from_slice(&body);
                body = bigger;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// reqwest's error kind plus its sources (the root cause, e.g. a TLS verification failure, is at
/// the bottom). reqwest's own text is left out: it carries the URL, and a nextLink's skip token is
/// noise in a log.
fn describe_reqwest_error(error: &reqwest::Error) -> String {
    let mut text = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    }
    .to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `now + d`, saturating far in the future instead of overflowing (a user may pass a huge
/// timeout).
pub fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The server's requested delay: `retry-after-ms` / `x-ms-retry-after-ms` (milliseconds), else
/// `Retry-After` (seconds, or an HTTP date relative to `now`).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header_str(headers, name).and_then(|v| v.trim().parse::<f64>().ok()) {
            if ms.is_finite() && ms >= 0.0 {
                // try_: a hostile value must not panic (from_secs_f64 does on overflow)
                if let Ok(d) = Duration::try_from_secs_f64(ms / 1000.0) {
                    return Some(d);
                }
            }
        }
    }
    let value = header_str(headers, "retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Exponential backoff with jitter: attempt 0 → 100–200 ms, doubling, capped at 8 s.
pub fn backoff_delay(attempt: u32) -> Duration {
    let ceiling = RETRY_BASE_DELAY
        .saturating_mul(1u32 << attempt.min(16))
        .min(RETRY_MAX_DELAY);
    let millis = ceiling.as_millis() as u64;
    // "Equal jitter": half fixed, half random, so concurrent clients spread out but never retry
    // instantly.
    let jitter = rand::thread_rng().gen_range(0..=millis / 2);
    Duration::from_millis(millis / 2 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        map
    }

    #[test]
    fn retry_after_seconds_ms_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(&[("x-ms-retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "10"), ("retry-after", "5")]),
                now
            ),
            Some(Duration::from_millis(10))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(7))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        // hostile values: no panic
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1e300")]), now),
            None
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "NaN")]), now), None);
        assert_eq!(
            retry_after(&headers(&[("x-ms-retry-after-ms", "1e300")]), now),
            None
        );
        assert!(deadline_after(Duration::MAX) > Instant::now());
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        for attempt in 0..40 {
            let d = backoff_delay(attempt);
            let ceiling = RETRY_BASE_DELAY
                .saturating_mul(1u32 << attempt.min(16))
                .min(RETRY_MAX_DELAY);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
        assert!(backoff_delay(0) <= Duration::from_millis(200));
        assert!(backoff_delay(30) <= RETRY_MAX_DELAY);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408u16, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(s).expect("s")));
        }
        for s in [200u16, 400, 401, 403, 404, 409, 501] {
            assert!(!is_retryable_status(StatusCode::from_u16(s).expect("s")));
        }
    }

    #[test]
    fn resolve_overrides_parse_and_bad_ones_are_named() {
        let parsed = parse_resolve("A.vault.azure.cn=127.0.0.1, b=[::1]").expect("parse");
        assert_eq!(parsed[0].0, "a.vault.azure.cn");
        assert_eq!(parsed[0].1.ip().to_string(), "127.0.0.1");
        assert_eq!(parsed[1].1.ip().to_string(), "::1");
        let err = parse_resolve("host:127.0.0.1").expect_err("bad");
        assert!(err.to_string().contains("host:127.0.0.1"), "{err}");
        assert!(parse_resolve("h=not-an-ip").is_err());
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let err = build_http_client(Some(Path::new("/nonexistent/ca.pem"))).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
