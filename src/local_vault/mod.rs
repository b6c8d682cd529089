//! The local, wire-compatible Key Vault (`akvfs local-vault`, and the embedded vault of
//! `akvfs mount local`). Depends only on `vault::model`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
        }
    }
}
