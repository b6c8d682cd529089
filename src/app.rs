//! Wires things together: one tokio runtime, the local vault (for `local`), the client, the
//! filesystem core, the mount, and signals. Only this module and `main` use `anyhow`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use crate::cli::{
    AuthArg, Cli, Command, DeletedConflictArg, LocalVaultArgs, LogFormat, LoggingArgs, MountArgs,
};
use crate::fs::{DeletedConflictPolicy, FsConfig};
use crate::local_vault::{LocalVault, LocalVaultConfig};
use crate::mount::{self, MountOptions};
use crate::projection::Projection;
use crate::vault::auth::{self, AuthKind, TokenCredential};
use crate::vault::client::{ClientOptions, SecretClient};
use crate::vault::SecretStore;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Mount(args) => {
            init_logging(&args.logging)?;
            disable_core_dumps();
            run_mount(*args)
        }
        Command::LocalVault(args) => {
            init_logging(&args.logging)?;
            disable_core_dumps();
            run_local_vault(args)
        }
        Command::Unmount(args) => mount::unmount_mountpoint(&args.mountpoint, args.lazy)
            .with_context(|| format!("akvfs unmount {}", args.mountpoint.display())),
    }
}

fn init_logging(args: &LoggingArgs) -> Result<()> {
    let default_level = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // Our own crate at the chosen level; dependencies stay at warn unless AKVFS_LOG says more.
    let filter = match std::env::var("AKVFS_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(&spec)
            .with_context(|| format!("AKVFS_LOG={spec:?} is not a valid filter"))?,
        _ => EnvFilter::new(format!("warn,akvfs={default_level}")),
    };
    // A closed stderr (a mount helper that returned once the mount was ready) must cost log
    // lines, not the daemon: the default reports failed writes with `eprintln!`, which panics.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false);
    let result = match (&args.log_file, args.log_format) {
        (Some(path), format) => {
            // Created 0600 whatever the umask (an existing regular file is made 0600 too).
            let file = crate::local_vault::open_log_file(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            let builder = builder
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false);
            match format {
                LogFormat::Text => builder.try_init(),
                LogFormat::Json => builder.json().try_init(),
            }
        }
        (None, LogFormat::Text) => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        (None, LogFormat::Json) => builder.json().with_writer(std::io::stderr).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Secret values and tokens live in this process's memory: no core file may carry them, and a
/// non-dumpable process's `/proc/PID/{mem,environ}` are closed to other processes of the same
/// user without CAP_SYS_PTRACE. A failure is logged, not fatal: the mount still works.
fn disable_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the initialised struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot turn off core dumps (RLIMIT_CORE)");
    }
    // SAFETY: PR_SET_DUMPABLE takes plain integers, no pointers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot mark the process non-dumpable (PR_SET_DUMPABLE)");
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("akvfs-rt")
        .build()
        .context("cannot start the async runtime")
}

/// `$XDG_DATA_HOME/akvfs/local-vault`, else `~/.local/share/akvfs/local-vault`.
pub fn default_data_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/share"),
            None => bail!("neither XDG_DATA_HOME nor HOME is set; pass --data DIR"),
        },
    };
    Ok(base.join("akvfs").join("local-vault"))
}

fn local_vault_config(args: &LocalVaultArgs) -> Result<LocalVaultConfig> {
    let data_dir = if args.in_memory {
        None
    } else {
        Some(match &args.data {
            Some(dir) => dir.clone(),
            None => default_data_dir()?,
        })
    };
    Ok(LocalVaultConfig {
        listen: args.listen,
        data_dir,
        hostnames: args.hostnames.clone(),
        deletion_delay: args.deletion_delay,
        recoverable_days: args.recoverable_days,
        soft_delete: !args.no_soft_delete,
        purge_protection: args.purge_protection,
        token_ttl: args.token_ttl,
        strict_api_version: args.strict_api_version,
        throttle_per_10s: args.throttle.0,
        challenge_resource: args.challenge_resource.clone(),
        ..LocalVaultConfig::default()
    })
}

fn run_local_vault(args: LocalVaultArgs) -> Result<()> {
    let config = local_vault_config(&args)?;
    let print_env = args.print_env;
    let rt = runtime()?;
    rt.block_on(async move {
        let listen = config.listen;
        let vault = LocalVault::start(config)
            .await
            .with_context(|| format!("cannot start the local vault on {listen}"))?;
        // What a client needs is in DIR/env; standard output (journals, CI logs) gets its path
        // and the values that are not secret, unless --print-env asks for everything.
        if print_env {
            print!("{}", vault.env().to_env_file());
            println!("# written to {}", vault.env_file().display());
        } else {
            print!("{}", vault.env().public_summary(vault.env_file()));
        }
        tracing::info!(url = vault.vault_url(), "local vault ready");
        wait_for_termination().await?;
        tracing::info!("shutting down the local vault");
        vault.shutdown().await;
        Ok(())
    })
}

async fn wait_for_termination() -> Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    Ok(())
}

/// A bare vault name becomes `https://NAME.SUFFIX`; a URL must be https.
pub fn vault_url(vault: &str, suffix: &str) -> Result<String> {
    if vault.contains("://") {
        let url = url::Url::parse(vault).with_context(|| format!("{vault:?} is not a URL"))?;
        if url.scheme() != "https" {
            bail!("vault URL {vault:?} must use https");
        }
        if url.host_str().is_none() {
            bail!("vault URL {vault:?} has no host");
        }
        Ok(vault.trim_end_matches('/').to_owned())
    } else if !vault.is_empty()
        && vault.len() <= 24
        && vault
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(format!("https://{vault}.{suffix}"))
    } else {
        bail!(
            "{vault:?} is neither an https URL, a vault name (3-24 letters, digits, '-'), nor `local`"
        )
    }
}

fn auth_kind(arg: AuthArg) -> AuthKind {
    match arg {
        AuthArg::Auto => AuthKind::Auto,
        AuthArg::Env => AuthKind::Env,
        AuthArg::WorkloadIdentity => AuthKind::WorkloadIdentity,
        AuthArg::ManagedIdentity => AuthKind::ManagedIdentity,
        AuthArg::AzureCli => AuthKind::AzureCli,
    }
}

fn fs_config(args: &MountArgs) -> FsConfig {
    FsConfig {
        cache_ttl: args.cache_ttl,
        list_ttl: args.list_ttl,
        negative_ttl: args.negative_ttl,
        cache_size: usize::try_from(args.cache_size).unwrap_or(usize::MAX),
        stale_if_error: args.stale_if_error,
        on_deleted_conflict: match args.on_deleted_conflict {
            DeletedConflictArg::Recover => DeletedConflictPolicy::Recover,
            DeletedConflictArg::Fail => DeletedConflictPolicy::Fail,
        },
        allow_purge: args.allow_purge,
        read_only: args.read_only,
        uid: args.uid.unwrap_or_else(current_uid),
        gid: args.gid.unwrap_or_else(current_gid),
        file_mode: args.file_mode,
        dir_mode: args.dir_mode,
        scratch_space: args.scratch_space,
        refresh: args.refresh.0,
    }
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn current_gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

fn check_mountpoint(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "mountpoint {} is not usable; create it with `mkdir -p {}`",
            path.display(),
            path.display()
        )
    })?;
    if !meta.is_dir() {
        bail!("mountpoint {} is not a directory", path.display());
    }
    Ok(())
}

/// A mistake in what the user asked (exit 2, like clap's own usage errors): a config that does
/// not check, or one that needs `--allow-other` without it. Nothing is mounted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `--config FILE`, checked before anything starts.
fn load_projection(path: &Path, args: &MountArgs) -> Result<Projection> {
    let projection = Projection::load(path).map_err(|error| UsageError(error.to_string()))?;
    let allow_other = args.allow_other || args.options.iter().any(|o| o == "allow_other");
    if !allow_other {
        if let Some(why) =
            crate::fs::projection_needs_allow_other(&projection, args.file_mode, args.dir_mode)
        {
            return Err(UsageError(why).into());
        }
    }
    Ok(projection)
}

fn run_mount(args: MountArgs) -> Result<()> {
    // Before anything starts: a daemon killed with -9 leaves a dead mount (ENOTCONN) that is
    // detached here, and a live akvfs mount on this directory is refused (exit 1, naming it).
    // `mount::mount` checks again right before mounting.
    if let Err(error) = mount::prepare_mountpoint(&args.mountpoint) {
        // A missing mountpoint gets the message with the command that creates it.
        check_mountpoint(&args.mountpoint)?;
        return Err(error.into());
    }
    check_mountpoint(&args.mountpoint)?;
    mount::check_options(&args.options).context("bad -o option")?;
    if args.on_change.is_some() && args.refresh.0.is_none() {
        return Err(UsageError(
            "--on-change runs when a refresh finds a change: it needs --refresh (not off)".into(),
        )
        .into());
    }
    let projection = match &args.config {
        Some(path) => Some((path.clone(), load_projection(path, &args)?)),
        None => None,
    };
    let rt = runtime()?;

    // `local`: the embedded vault runs on our runtime and writes DATA/env like `local-vault`.
    let mut local = None;
    let (url, ca_file, credential): (String, Option<PathBuf>, Arc<dyn TokenCredential>) = if args
        .vault
        == "local"
    {
        let data_dir = match &args.data {
            Some(dir) => dir.clone(),
            None => default_data_dir()?,
        };
        let config = LocalVaultConfig {
            listen: args.listen,
            data_dir: Some(data_dir.clone()),
            deletion_delay: args.deletion_delay,
            token_ttl: args.token_ttl,
            throttle_per_10s: args.throttle.0,
            ..LocalVaultConfig::default()
        };
        let vault = rt
            .block_on(LocalVault::start(config))
            .with_context(|| format!("cannot start the local vault in {}", data_dir.display()))?;
        let env = vault.env().clone();
        // The embedded vault's own principal, exactly as `source DATA/env` would give it.
        let lookup = |name: &str| env.lookup(name);
        let credential =
            auth::credential_with_env(AuthKind::Env, &env.vault_url, Some(&env.ca_file), &lookup)
                .context("cannot use the local vault's credentials")?;
        tracing::info!(url = vault.vault_url(), env = %vault.env_file().display(), "local vault ready");
        let url = vault.vault_url().to_owned();
        local = Some(vault);
        (url, Some(env.ca_file), credential)
    } else {
        let url = vault_url(&args.vault, args.cloud.vault_suffix())?;
        let credential = auth::credential_for(auth_kind(args.auth), &url, args.ca_file.as_deref())
            .with_context(|| format!("no usable credential for {url}"))?;
        (url, args.ca_file.clone(), credential)
    };

    let options = ClientOptions {
        vault_url: url.clone(),
        ca_file,
        request_timeout: args.request_timeout,
        delete_timeout: args.delete_timeout,
        ..ClientOptions::default()
    };
    let client = {
        // reqwest's client must be built inside the runtime context.
        let _guard = rt.enter();
        SecretClient::new(options, credential)
            .with_context(|| format!("cannot create a client for {url}"))?
    };
    // Fail now, with the reason, rather than answer EIO on every file: TLS trust, the challenge
    // and its resource check, and the credential are all exercised by one small list call.
    rt.block_on(client.check_connection())
        .with_context(|| format!("cannot use the vault {url}"))?;
    tracing::info!(vault = %url, "the vault answered a listing (connection check)");
    let store: Arc<dyn SecretStore> = Arc::new(client);

    let mount_options = MountOptions {
        mountpoint: args.mountpoint.clone(),
        allow_other: args.allow_other,
        allow_root: args.allow_root,
        extra_options: args.options.clone(),
        worker_threads: usize::from(args.threads),
        projection,
        on_change: args.on_change.clone(),
    };
    let handle = mount::mount(store, rt.handle().clone(), fs_config(&args), mount_options)
        .with_context(|| format!("cannot mount {url} on {}", args.mountpoint.display()))?;
    tracing::info!(vault = %url, mountpoint = %args.mountpoint.display(), "mounted");
    // Ready means usable: the vault answered a listing (the connection check above, before
    // mounting) and the kernel now reaches this daemon through the mount. Only then does
    // systemd (`Type=notify`) or the mount helper hear READY=1. The readiness probe is a
    // `stat` of the mount's root, which costs no vault call and fills no cache: a full listing
    // here would cost a 10,000-secret vault 400 calls at every start and race the user's first
    // `ls`. Signals are handled from the start.
    let mountpoint = args.mountpoint.clone();
    let stop_probing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut reachable = rt.spawn_blocking({
        let stop = stop_probing.clone();
        move || stat_until_it_works(&mountpoint, &stop)
    });
    let status = format!("{url} on {}", args.mountpoint.display());
    let outcome = rt.block_on(async {
        let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let mut ready = false;
        loop {
            tokio::select! {
                _ = sigint.recv() => return Ok::<bool, anyhow::Error>(true),
                _ = sigterm.recv() => return Ok(true),
                _ = sighup.recv() => {
                    tracing::info!("SIGHUP: re-reading the config (with --config) and dropping all caches");
                    handle.reload();
                }
                _ = &mut reachable, if !ready => {
                    ready = true;
                    tracing::info!("vault listed and mount reachable: ready");
                    if let Err(error) = sd_notify::notify(&[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status(&status),
                    ]) {
                        tracing::warn!(%error, "cannot notify readiness to NOTIFY_SOCKET");
                    }
                }
                _ = handle.unmounted() => return Ok(false),
            }
        }
    });
    stop_probing.store(true, std::sync::atomic::Ordering::SeqCst);
    let signalled = outcome?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if signalled {
        tracing::info!("signal received: committing pending writes and unmounting");
        handle.commit_pending();
    }
    // Unmounts (unless someone else already did) and reports a session that ended in an error.
    handle.unmount().with_context(|| {
        format!(
            "the mount of {url} on {} ended with an error",
            args.mountpoint.display()
        )
    })?;
    if let Some(vault) = local {
        rt.block_on(vault.shutdown());
    }
    tracing::info!("unmounted");
    Ok(())
}

/// `stat` the mount's root (through the kernel, answered by this daemon) until it works or
/// `stop` is set.
fn stat_until_it_works(mountpoint: &Path, stop: &std::sync::atomic::AtomicBool) {
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match std::fs::metadata(mountpoint) {
            Ok(meta) if meta.is_dir() => return,
            Ok(_) => {
                tracing::warn!(mountpoint = %mountpoint.display(), "the mount's root is not a directory yet; not ready, retrying");
            }
            Err(error) => {
                tracing::warn!(mountpoint = %mountpoint.display(), %error, "the mount does not answer yet; not ready, retrying");
            }
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_expand_with_the_cloud_suffix() {
        assert_eq!(
            vault_url("myvault", "vault.azure.cn").expect("ok"),
            "https://myvault.vault.azure.cn"
        );
        assert_eq!(
            vault_url("https://v.vault.azure.net/", "x").expect("ok"),
            "https://v.vault.azure.net"
        );
        assert!(vault_url("http://v.vault.azure.net", "x").is_err());
        assert!(vault_url("bad_name", "x").is_err());
    }
}
