//! A running local vault: start-up (data dir, lock, TLS, database, principals, env file), the
//! request-shared state, and shutdown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rand::RngCore;

use super::admin::NewPrincipal;
use super::control::{Clock, CounterRegistry, FaultTable, Throttle};
use super::error::ApiError;
use super::files::{
    open_private_file, prepare_private_dir, set_mode, write_private_file, PRIVATE_MODE,
};
use super::store::{PrincipalRecord, Store};
use super::{api, auth, tls, LocalVaultConfig, LocalVaultEnv, LocalVaultError};
use crate::secret_value::SecretValue;

/// State shared by every request.
pub(crate) struct Shared {
    pub(crate) config: LocalVaultConfig,
    pub(crate) store: Arc<Store>,
    pub(crate) clock: Clock,
    pub(crate) counters: CounterRegistry,
    pub(crate) faults: FaultTable,
    pub(crate) throttle: Throttle,
    pub(crate) jwt_key: SecretValue,
    /// The data directory (an in-memory vault's private temporary one).
    pub(crate) data_dir: PathBuf,
    /// The backup key, loaded from (or generated in) the data directory on first use.
    pub(crate) backup_key: parking_lot::Mutex<Option<api::BackupKey>>,
    pub(crate) tenant_id: String,
    pub(crate) default_client_id: String,
    pub(crate) admin_token: SecretValue,
    pub(crate) identity_header: SecretValue,
    pub(crate) vault_url: String,
    /// `host:port` for requests that name none.
    pub(crate) default_host: String,
    /// client id → principal (client secret and access policy), mirrored from the store so the
    /// hot path never touches the database for it.
    pub(crate) principals: RwLock<HashMap<String, PrincipalRecord>>,
    /// client id → DER of the certificates registered for its client assertions
    /// (`POST /_akvfs/principals/certificates`; kept in memory, not across restarts).
    pub(crate) client_certificates: RwLock<HashMap<String, Vec<Vec<u8>>>>,
    /// Test control: answer list pages 0–3 items short of the page size, as the real service
    /// sometimes does (`POST /_akvfs/paging`).
    pub(crate) short_pages: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The vault's recovery level and recoverable days, as the attributes report them.
    pub(crate) fn recovery_level(&self) -> (&'static str, Option<i64>) {
        let c = &self.config;
        if !c.soft_delete {
            return ("Purgeable", None);
        }
        let customized = c.recoverable_days < 90;
        let level = match (c.purge_protection, customized) {
            (true, false) => "Recoverable",
            (true, true) => "CustomizedRecoverable",
            (false, false) => "Recoverable+Purgeable",
            (false, true) => "CustomizedRecoverable+Purgeable",
        };
        (level, Some(c.recoverable_days))
    }

    /// How many items a list page carries: `requested`, or up to 3 fewer (at least 1) while
    /// short pages are switched on.
    pub(crate) fn page_size(&self, requested: usize) -> usize {
        if self.short_pages.load(std::sync::atomic::Ordering::Relaxed) {
            let short_by = rand::random::<usize>() % 4;
            requested.saturating_sub(short_by).max(1)
        } else {
            requested
        }
    }

    pub(crate) fn add_principal(&self, permissions: Vec<String>) -> Result<NewPrincipal, ApiError> {
        let record = PrincipalRecord {
            client_id: uuid::Uuid::new_v4().to_string(),
            secret: random_secret(),
            permissions,
        };
        self.store.add_principal(&record).map_err(|e| {
            tracing::error!(error = %e, "storing a principal");
            ApiError::internal("storing the principal failed")
        })?;
        self.remember(&record);
        Ok(NewPrincipal {
            client_id: record.client_id,
            client_secret: record.secret,
        })
    }

    fn remember(&self, p: &PrincipalRecord) {
        self.principals
            .write()
            .insert(p.client_id.clone(), p.clone());
    }
}

/// 32 random bytes, hex: client secrets, admin token, keys.
fn random_secret() -> SecretValue {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let s = SecretValue::new(hex::encode(bytes));
    zeroize::Zeroize::zeroize(&mut bytes);
    s
}

/// A running local vault. Dropping it (or `shutdown`) stops the server.
pub struct LocalVault {
    vault_url: String,
    env: LocalVaultEnv,
    env_file: PathBuf,
    handle: axum_server::Handle,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The private directory of an in-memory vault, removed on drop.
    temp_dir: Option<PathBuf>,
    /// Held while running: one vault per data dir.
    _lock: DirLock,
}

/// An exclusive `flock` on `DIR/lock`, released when dropped or when the process dies (even by
/// `kill -9`), so a second vault on the same data dir fails at start instead of overwriting
/// `DIR/env` under the first one's clients.
struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, LocalVaultError> {
        use std::io::Write;
        use std::os::unix::io::AsRawFd;
        let path = dir.join("lock");
        let io = |source| LocalVaultError::Io {
            what: format!("locking {}", path.display()),
            source,
        };
        let mut file = open_private_file(&path)?;
        // SAFETY: flock(2) on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(LocalVaultError::Config(format!(
                    "another local vault (pid {}) is already using {}; stop it or pass another \
                     --data DIR",
                    holder.trim(),
                    dir.display()
                )));
            }
            return Err(io(err));
        }
        file.set_len(0).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file })
    }
}

impl std::fmt::Debug for LocalVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVault")
            .field("vault_url", &self.vault_url)
            .field("env_file", &self.env_file)
            .finish_non_exhaustive()
    }
}

impl LocalVault {
    pub async fn start(config: LocalVaultConfig) -> Result<LocalVault, LocalVaultError> {
        if !(7..=90).contains(&config.recoverable_days) {
            return Err(LocalVaultError::Config(format!(
                "recoverable days must be between 7 and 90, not {}",
                config.recoverable_days
            )));
        }
        let (dir, temp_dir) = match &config.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "akvfs-local-vault-{}",
                    uuid::Uuid::new_v4().simple()
                ));
                (dir.clone(), Some(dir))
            }
        };
        prepare_private_dir(&dir)?;
        let result = match DirLock::acquire(&dir) {
            Ok(lock) => Self::start_in(config, dir, temp_dir.clone(), lock).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            if let Some(t) = temp_dir {
                let _ = std::fs::remove_dir_all(t);
            }
        }
        result
    }

    async fn start_in(
        config: LocalVaultConfig,
        dir: PathBuf,
        temp_dir: Option<PathBuf>,
        lock: DirLock,
    ) -> Result<LocalVault, LocalVaultError> {
        // Key generation, file and database work are blocking: keep them off the runtime.
        let cfg = config.clone();
        let dir2 = dir.clone();
        let prepared = tokio::task::spawn_blocking(move || prepare(&cfg, &dir2))
            .await
            .map_err(|e| LocalVaultError::Config(format!("start-up task failed: {e}")))??;
        let Prepared {
            tls,
            store,
            meta,
            principals,
        } = prepared;

        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| LocalVaultError::Bind {
                addr: config.listen,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| LocalVaultError::Io {
                what: "configuring the listener".into(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| LocalVaultError::Io {
                what: "reading the bound address".into(),
                source,
            })?;
        let url_ip = if local.ip().is_unspecified() {
            if local.is_ipv6() {
                "[::1]".to_owned()
            } else {
                "127.0.0.1".to_owned()
            }
        } else if local.is_ipv6() {
            format!("[{}]", local.ip())
        } else {
            local.ip().to_string()
        };
        let default_host = format!("{url_ip}:{}", local.port());
        let vault_url = format!("https://{default_host}");

        let env = LocalVaultEnv {
            vault_url: vault_url.clone(),
            ca_file: tls.ca_file.clone(),
            tenant_id: meta.tenant_id.clone(),
            client_id: meta.default_client_id.clone(),
            client_secret: principals
                .iter()
                .find(|p| p.client_id == meta.default_client_id)
                .map(|p| p.secret.clone())
                .unwrap_or_default(),
            authority_host: vault_url.clone(),
            admin_token: meta.admin_token.clone(),
            identity_endpoint: format!("{vault_url}{}", api::IDENTITY_PATH),
            identity_header: meta.identity_header.clone(),
        };
        let env_file = dir.join("env");
        // Atomic replace: whoever waits for `env` to appear never reads half a file.
        let tmp = dir.join(".env.tmp");
        write_private_file(&tmp, env.to_env_file().as_bytes())?;
        std::fs::rename(&tmp, &env_file).map_err(|source| LocalVaultError::Io {
            what: format!("renaming {} to {}", tmp.display(), env_file.display()),
            source,
        })?;

        let shared = Arc::new(Shared {
            throttle: Throttle::new(config.throttle_per_10s, config.throttle_sets_per_10s),
            config,
            store: Arc::new(store),
            clock: Clock::default(),
            counters: CounterRegistry::default(),
            faults: FaultTable::default(),
            jwt_key: meta.jwt_key,
            data_dir: dir.clone(),
            backup_key: parking_lot::Mutex::new(None),
            tenant_id: meta.tenant_id,
            default_client_id: meta.default_client_id,
            admin_token: meta.admin_token,
            identity_header: meta.identity_header,
            vault_url: vault_url.clone(),
            default_host,
            principals: RwLock::new(HashMap::new()),
            client_certificates: RwLock::new(HashMap::new()),
            short_pages: Default::default(),
        });
        for p in &principals {
            shared.remember(p);
        }

        let router = axum::Router::new().fallback(api::handle).with_state(shared);
        let service = outer_service::DroppingService::new(router);
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config),
        )
        .handle(handle.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve(tower::make::Shared::new(service)).await {
                tracing::error!(error = %e, "local vault server stopped");
            }
        });
        tracing::info!(url = %vault_url, "local vault listening");
        Ok(LocalVault {
            vault_url,
            env,
            env_file,
            handle,
            task: Some(task),
            temp_dir,
            _lock: lock,
        })
    }

    /// `https://HOST:PORT`, no trailing slash, with the bound port.
    pub fn vault_url(&self) -> &str {
        &self.vault_url
    }

    pub fn env(&self) -> &LocalVaultEnv {
        &self.env
    }

    pub fn env_file(&self) -> &Path {
        &self.env_file
    }

    /// Stops accepting, lets requests in flight finish (up to a second), and waits for the
    /// server to end.
    pub async fn shutdown(mut self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LocalVault {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(dir) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

struct Meta {
    tenant_id: String,
    default_client_id: String,
    jwt_key: SecretValue,
    admin_token: SecretValue,
    identity_header: SecretValue,
}

struct Prepared {
    tls: tls::TlsMaterial,
    store: Store,
    meta: Meta,
    principals: Vec<PrincipalRecord>,
}

fn prepare(config: &LocalVaultConfig, dir: &Path) -> Result<Prepared, LocalVaultError> {
    let tls = tls::load_or_create(dir, &config.hostnames)?;
    let db_path = config.data_dir.as_ref().map(|_| dir.join("vault.db"));
    let db_name = db_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| ":memory:".into());
    let db_err = |e: rusqlite::Error| LocalVaultError::Database {
        path: db_name.clone(),
        message: e.to_string(),
    };
    if let Some(path) = &db_path {
        if path.exists() {
            // SQLite creates the WAL and SHM files with the database file's mode.
            set_mode(path, PRIVATE_MODE)?;
        } else {
            // Create it 0600 before SQLite does (its WAL and SHM files take the mode).
            write_private_file(path, b"")?;
        }
    }
    let store = Store::open(db_path.as_deref()).map_err(db_err)?;
    let meta_secret = |key: &str| -> Result<SecretValue, LocalVaultError> {
        store
            .meta_or_insert(key, || random_secret().expose().to_owned())
            .map(SecretValue::new)
            .map_err(db_err)
    };
    let meta = Meta {
        tenant_id: store
            .meta_or_insert("tenant_id", || uuid::Uuid::new_v4().to_string())
            .map_err(db_err)?,
        default_client_id: store
            .meta_or_insert("default_client_id", || uuid::Uuid::new_v4().to_string())
            .map_err(db_err)?,
        jwt_key: meta_secret("jwt_key")?,
        admin_token: meta_secret("admin_token")?,
        identity_header: meta_secret("identity_header")?,
    };
    let mut principals = store.principals().map_err(db_err)?;
    if !principals
        .iter()
        .any(|p| p.client_id == meta.default_client_id)
    {
        let p = PrincipalRecord {
            client_id: meta.default_client_id.clone(),
            secret: random_secret(),
            permissions: auth::ALL_PERMISSIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        };
        store.add_principal(&p).map_err(db_err)?;
        principals.push(p);
    }
    Ok(Prepared {
        tls,
        store,
        meta,
        principals,
    })
}

mod outer_service {
    //! The outermost service: turns a response marked [`super::api::DropConnection`] into a
    //! service error, on which hyper closes the connection without answering (HTTP/1) or resets
    //! the stream (HTTP/2) — a real dropped connection for fault injection.

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::extract::Request;
    use axum::response::Response;
    use tower::{Service, ServiceExt};

    #[derive(Clone)]
    pub struct DroppingService {
        router: axum::Router,
    }

    impl DroppingService {
        pub fn new(router: axum::Router) -> Self {
            DroppingService { router }
        }
    }

    impl<B> Service<http_request::Request<B>> for DroppingService
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        type Response = Response;
        type Error = std::io::Error;
        type Future = Pin<Box<dyn Future<Output = Result<Response, std::io::Error>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http_request::Request<B>) -> Self::Future {
            let router = self.router.clone();
            Box::pin(async move {
                let req: Request = req.map(axum::body::Body::new);
                let resp = match router.oneshot(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                };
                if resp
                    .extensions()
                    .get::<super::api::DropConnection>()
                    .is_some()
                {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "connection dropped by an injected fault",
                    ));
                }
                Ok(resp)
            })
        }
    }

    mod http_request {
        pub use axum::http::Request;
    }
}
