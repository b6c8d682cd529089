//! The local, wire-compatible Key Vault (`akvfs local-vault`, and the embedded vault of
//! `akvfs mount local`). Depends only on `vault::model`.
//!
//! `LocalVault::start` binds, loads or creates the data dir's TLS material, database and default
//! principal, writes `DIR/env` (0600) and serves on the current tokio runtime until `shutdown`
//! or drop.
//!
//! Files: `server` (start-up, shared state, shutdown), `api/` (HTTP surface: dispatch, data
//! plane, wire JSON, backup blobs, token issuance, admin endpoints), `store` (SQLite state), `auth` (JWTs, challenge resource), `tls` (local CA
//! and leaf), `control` (clock, counters, faults, throttling), `admin` (admin types and client),
//! `env` (the `DIR/env` file), `files` (explicit file modes, the private data directory), `pki`
//! (certificate material: PKCS#12 and PEM read and written, X.509 facts).
//!
//! Decisions where the service leaves room (each pinned by a test):
//! - Challenge `resource`: the parent domain of the request's host when it has one (as Azure),
//!   else the host itself with its port (`https://127.0.0.1:PORT`); `authorization` is
//!   `https://HOST:PORT/TENANT` on the host the client used. Tokens must carry that audience.
//! - Names: case-insensitive; the first spelling is kept for ids and listings, a set through
//!   another spelling adds a version to the same secret.
//! - Request pipeline: injected fault → authentication (before body and api-version) →
//!   throttling → api-version → access policy → name rule → body → store.
//! - Deletion and recovery complete `deletion_delay` after the request on the vault clock; until
//!   then the target answers 404 and a set answers 409 (`ObjectIsBeingDeleted`, or
//!   `ObjectIsBeingRecovered` during a recovery). Expired deleted secrets are purged lazily.
//! - `exp`/`nbf` do not block reads (the service does not enforce them for secrets).
//! - `GET /secrets/{name}/versions` of an unknown name answers an empty list.
//! - Throttling: fixed 10-second windows for all transactions and for sets, 429 `Throttled`
//!   with `Retry-After` (injected 429 faults can omit it).
//! - Token endpoint errors follow AAD: unknown client 400 `unauthorized_client`, wrong secret
//!   401 `invalid_client`, unknown tenant 400.
//! - Client assertions (`client_assertion_type` jwt-bearer): RS256/PS256 JWTs signed with a
//!   certificate registered through the admin API (kept in memory only), or HS256 federated
//!   tokens of the vault's own OIDC issuer (`{vault}/_akvfs/oidc`, subject = client id, audience
//!   `api://AzureADTokenExchange`) minted through the admin API.
//! - Backup blobs are opaque: ChaCha20-Poly1305 under a key of the data directory
//!   (`DIR/backup.key`, 0600, made on the first backup), so a blob restores only into the vault
//!   of the data directory that made it; anything else is the service's corrupt-blob 400.
//! - List pages are full (25, or `maxresults`) so call counts are predictable; the admin
//!   `paging` control makes them short like the service's sometimes are.
//! - Certificates share the secrets' names, versions and soft delete (a certificate is its backing
//!   secret plus a policy and a leaf per version); the secrets API reads a certificate's secret
//!   (`managed`, `kid`) but refuses to set, update, delete or back it up (403, text unconfirmed),
//!   and a deleted certificate is not a deleted secret. Principals' permissions cover both.
//! - One vault per data dir: a second start on the same `DIR` fails (flock on `DIR/lock`) rather
//!   than overwrite `DIR/env` under the first one's clients.

pub mod admin;
mod api;
mod auth;
mod control;
mod env;
mod error;
mod files;
mod pki;
mod server;
mod store;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use admin::{AdminClient, Counters, FaultSpec, FederatedTokenRequest, NewPrincipal};
pub use api::OPERATIONS;
pub use env::LocalVaultEnv;
pub use files::open_log_file;
pub use server::LocalVault;
pub(crate) use server::Shared;

/// How to run a local vault. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct LocalVaultConfig {
    /// `127.0.0.1:8443` by default; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where state (SQLite), TLS material and `env` live. `None` = in memory (TLS material and
    /// `env` then go to a private temporary directory).
    pub data_dir: Option<PathBuf>,
    /// Extra DNS names for the leaf certificate.
    pub hostnames: Vec<String>,
    /// How long a deletion or a recovery takes to complete.
    pub deletion_delay: Duration,
    pub recoverable_days: i64,
    pub soft_delete: bool,
    pub purge_protection: bool,
    pub token_ttl: Duration,
    pub strict_api_version: bool,
    /// `None` = off; `Some(n)` = n transactions per 10 s (the real limit is 4,000).
    pub throttle_per_10s: Option<u32>,
    /// Secret sets per 10 s while throttling is on (the service's limit: 300). Ignored when
    /// `throttle_per_10s` is `None`.
    pub throttle_sets_per_10s: Option<u32>,
    /// The challenge's `resource` (and the audience tokens must carry) instead of the one the
    /// request's host implies: tests show a client refusing a challenge for a foreign domain.
    pub challenge_resource: Option<String>,
}

impl Default for LocalVaultConfig {
    fn default() -> Self {
        LocalVaultConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: None,
            hostnames: Vec::new(),
            deletion_delay: Duration::from_millis(1000),
            recoverable_days: 90,
            soft_delete: true,
            purge_protection: false,
            token_ttl: Duration::from_secs(3600),
            strict_api_version: false,
            throttle_per_10s: Some(4000),
            throttle_sets_per_10s: Some(300),
            challenge_resource: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalVaultError {
    #[error("local vault: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("local vault: cannot listen on {addr}: {source} (is another local vault running? try --listen 127.0.0.1:0)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("local vault: TLS material: {0}")]
    Tls(String),
    #[error("local vault: database {path}: {message}")]
    Database { path: String, message: String },
    #[error("local vault: invalid configuration: {0}")]
    Config(String),
    #[error("local vault: env file {path}: {message}")]
    EnvFile { path: String, message: String },
    #[error("local vault admin: {0}")]
    Admin(String),
}
