//! Test harness: a real `akvfs mount local` daemon (embedded local vault over real HTTPS, real
//! FUSE mount), the local vault's counters, and a second client talking to the same vault.
#![allow(dead_code)]

pub mod programs;
pub mod sdk;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akvfs::local_vault::{AdminClient, Counters, FaultSpec, LocalVaultEnv, OPERATIONS};
use akvfs::secret_value::SecretValue;
use akvfs::vault::auth::{credential_with_env, AuthKind};
use akvfs::vault::client::{ClientOptions, SecretClient};
use akvfs::vault::model::SecretSetParameters;
use akvfs::vault::SecretStore;

pub fn akvfs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_akvfs")
}

/// A running `akvfs mount local MNT --data DIR`, unmounted (SIGINT) on drop.
pub struct LocalMount {
    pub dir: tempfile::TempDir,
    pub mountpoint: PathBuf,
    pub data: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    pub env: LocalVaultEnv,
    rt: tokio::runtime::Runtime,
    admin: AdminClient,
    other: Arc<SecretClient>,
}

impl LocalMount {
    /// Mount with test-friendly defaults (short deletion delay) plus `extra` flags.
    pub fn start(extra: &[&str]) -> LocalMount {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra)
    }

    /// Mount on an existing test directory (to restart on the same data).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> LocalMount {
        Self::start_in_logging(dir, extra, "akvfs=debug")
    }

    /// Mount with `AKVFS_LOG=log_filter` (it wins over `-v`).
    pub fn start_in_logging(
        dir: tempfile::TempDir,
        extra: &[&str],
        log_filter: &str,
    ) -> LocalMount {
        let mountpoint = dir.path().join("m");
        let data = dir.path().join("data");
        // A dead mount left by a killed daemon is there but not a directory (ENOTCONN).
        if let Err(e) = std::fs::create_dir(&mountpoint) {
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "mkdir m: {e}");
        }
        let log = dir.path().join(format!("akvfs-{}.log", unique()));
        let env_file = data.join("env");
        let _ = std::fs::remove_file(&env_file);
        let child = Command::new(akvfs_bin())
            .arg("mount")
            .arg("local")
            .arg(&mountpoint)
            .arg("--data")
            .arg(&data)
            .args(if extra.contains(&"--deletion-delay") {
                &[][..]
            } else {
                &["--deletion-delay", "300ms"][..]
            })
            .args(extra)
            .env("AKVFS_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn akvfs mount local");
        let mut child = child;
        wait_until_mounted(&mut child, &mountpoint, &env_file, &log);
        let env = LocalVaultEnv::read_env_file(&env_file).expect("read env file");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (admin, other) = {
            let _guard = rt.enter();
            (
                AdminClient::new(&env).expect("admin client"),
                Arc::new(client_for(&env)),
            )
        };
        LocalMount {
            dir,
            mountpoint,
            data,
            child: Some(child),
            log,
            env,
            rt,
            admin,
            other,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn counters(&self) -> Counters {
        self.rt.block_on(self.admin.counters()).expect("counters")
    }

    pub fn reset_counters(&self) {
        self.rt
            .block_on(self.admin.reset_counters())
            .expect("reset counters")
    }

    /// Calls of one operation the vault answered, not counting the 401 challenges that open
    /// each new authenticated conversation (they carry no body and do no work).
    pub fn calls(&self, operation: &str) -> u64 {
        let c = self.counters();
        c.count(operation) - c.count_status(operation, 401)
    }

    /// Secret operations counted by the vault, 401 challenges included (the token endpoint is
    /// not a secret operation).
    pub fn vault_calls(&self) -> u64 {
        let c = self.counters();
        OPERATIONS
            .iter()
            .filter(|op| **op != "token")
            .map(|op| c.count(op))
            .sum()
    }

    /// Another client of the same vault (what a colleague or a script would use).
    pub fn other_client(&self) -> Arc<SecretClient> {
        self.other.clone()
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn other_set(&self, name: &str, value: &str) {
        let params = SecretSetParameters {
            value: SecretValue::from(value),
            ..Default::default()
        };
        self.block_on(self.other.set_secret(name, params))
            .expect("other client set");
    }

    pub fn other_get(&self, name: &str) -> String {
        let bundle = self
            .block_on(self.other.get_secret(name, None))
            .expect("other client get");
        bundle
            .value
            .map(|v| v.expose().to_owned())
            .unwrap_or_default()
    }

    /// SIGINT the daemon and wait for it; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        stop_daemon(&mut self.child, &self.mountpoint, &self.log)
    }

    /// Stop and hand back the test directory, to mount again on the same data.
    pub fn stop_keep_dir(mut self) -> (ExitStatus, tempfile::TempDir) {
        let status = self.stop();
        let placeholder = tempfile::tempdir().expect("tempdir");
        let dir = std::mem::replace(&mut self.dir, placeholder);
        (status, dir)
    }
}

impl Drop for LocalMount {
    fn drop(&mut self) {
        drop_daemon(&mut self.child, &self.mountpoint);
    }
}

/// SIGINT the daemon and wait for it; returns its exit status (panics with its log if it
/// does not exit).
fn stop_daemon(child: &mut Option<Child>, mountpoint: &Path, log: &Path) -> ExitStatus {
    let mut child = child.take().expect("daemon running");
    match interrupt_and_wait(&mut child, Duration::from_secs(30)) {
        Some(status) => status,
        None => {
            force_unmount(mountpoint);
            panic!(
                "akvfs did not exit after SIGINT; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// On drop: stop the daemon if it still runs, and never leave its mount behind.
fn drop_daemon(child: &mut Option<Child>, mountpoint: &Path) {
    if let Some(mut child) = child.take() {
        interrupt_and_wait(&mut child, Duration::from_secs(15));
    }
    if is_mountpoint(mountpoint) {
        force_unmount(mountpoint);
    }
}

/// SIGINT the daemon and wait up to `timeout`; a daemon still running then is killed and
/// `None` returned.
fn interrupt_and_wait(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    signal(child, libc::SIGINT);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

pub fn force_unmount(path: &Path) {
    let _ = Command::new("umount").arg("-l").arg(path).status();
}

/// A directory is a mountpoint when its device differs from its parent's.
pub fn is_mountpoint(path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return false;
    };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

pub fn client_for(env: &LocalVaultEnv) -> SecretClient {
    let lookup = |name: &str| env.lookup(name);
    let credential =
        credential_with_env(AuthKind::Env, &env.vault_url, Some(&env.ca_file), &lookup)
            .expect("credential");
    SecretClient::new(client_options(env), credential).expect("client")
}

/// Client options for `env`'s vault, trusting its CA.
pub fn client_options(env: &LocalVaultEnv) -> ClientOptions {
    ClientOptions {
        vault_url: env.vault_url.clone(),
        ca_file: Some(env.ca_file.clone()),
        ..ClientOptions::default()
    }
}

fn wait_until_mounted(child: &mut Child, mountpoint: &Path, env_file: &Path, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "akvfs exited early with {status}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if is_mountpoint(mountpoint) && env_file.exists() {
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "mount did not come up; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `sh -c SCRIPT` in DIR; returns the output (never panics on failure).
pub fn sh(dir: &Path, script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

pub fn sh_ok(dir: &Path, script: &str) -> String {
    let out = sh(dir, script);
    assert!(
        out.status.success(),
        "`{script}` failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl LocalMount {
    /// A second `akvfs mount` of this mount's vault (its own process, `--auth env`) signed in
    /// as a new principal holding `permissions` (see `AdminClient::create_principal`), with
    /// `extra` arguments.
    pub fn mount_as(&self, permissions: &[&str], extra: &[&str]) -> UrlMount {
        let principal = self
            .block_on(self.admin().create_principal(permissions))
            .expect("principal");
        let ca = self.env.ca_file.display().to_string();
        let mut args = vec!["--ca-file", ca.as_str(), "--auth", "env"];
        args.extend_from_slice(extra);
        UrlMount::start(
            &self.env.vault_url,
            &args,
            &env_credential(
                &self.env,
                &principal.client_id,
                principal.client_secret.expose(),
            ),
        )
    }

    /// The local vault's admin client (fault injection, clock).
    pub fn admin(&self) -> &AdminClient {
        &self.admin
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Variables that would pick a credential, a CA or a host override for a child `akvfs` from
/// the test's own environment: removed, so each test says exactly what its mount sees.
pub const CREDENTIAL_VARIABLES: &[&str] = &[
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS",
    "AKVFS_TENANT_ID",
    "AKVFS_CLIENT_ID",
    "AKVFS_CLIENT_SECRET",
    "AKVFS_AUTHORITY_HOST",
    "AKVFS_CA_FILE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "AKVFS_RESOLVE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
];

/// `akvfs mount URL MNT ARGS…` against a vault the test runs itself, with exactly `envs` for
/// credentials (see [`CREDENTIAL_VARIABLES`]); unmounted on drop.
pub struct UrlMount {
    pub dir: tempfile::TempDir,
    pub mountpoint: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl UrlMount {
    fn spawn(url: &str, args: &[&str], envs: &[(&str, String)]) -> UrlMount {
        let dir = tempfile::tempdir().expect("tempdir");
        let mountpoint = dir.path().join("m");
        std::fs::create_dir(&mountpoint).expect("mkdir m");
        let log = dir.path().join("akvfs.log");
        let mut command = Command::new(akvfs_bin());
        command
            .arg("mount")
            .arg(url)
            .arg(&mountpoint)
            .args(args)
            .env("AKVFS_LOG", "akvfs=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for name in CREDENTIAL_VARIABLES {
            command.env_remove(name);
        }
        for (name, value) in envs {
            command.env(name, value);
        }
        let child = command.spawn().expect("spawn akvfs mount");
        UrlMount {
            dir,
            mountpoint,
            child: Some(child),
            log,
        }
    }

    /// Mounts and waits until the mount is up (panics with the log if it exits instead).
    pub fn start(url: &str, args: &[&str], envs: &[(&str, String)]) -> UrlMount {
        let mut m = Self::spawn(url, args, envs);
        let (mountpoint, log) = (m.mountpoint.clone(), m.log.clone());
        let child = m.child.as_mut().expect("child");
        // The mountpoint itself stands in for the env file `mount local` waits for.
        wait_until_mounted(child, &mountpoint, &mountpoint, &log);
        m
    }

    /// Runs a mount expected to fail: its exit status and log (stderr).
    pub fn expect_failure(
        url: &str,
        args: &[&str],
        envs: &[(&str, String)],
    ) -> (ExitStatus, String) {
        let mut m = Self::spawn(url, args, envs);
        let mut child = m.child.take().expect("child");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the mount did not give up; log:\n{}", m.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            !is_mountpoint(&m.mountpoint),
            "a failed mount left {} mounted",
            m.mountpoint.display()
        );
        (status, m.log_text())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon has not exited.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGINT the daemon and wait for it; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        stop_daemon(&mut self.child, &self.mountpoint, &self.log)
    }
}

impl Drop for UrlMount {
    fn drop(&mut self) {
        drop_daemon(&mut self.child, &self.mountpoint);
    }
}

/// Fail (never skip) when a tool a test drives is missing; `.ci/run` installs them.
pub fn need_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "{tool} is missing: `apt-get install {package}` (.ci/run installs it)"
    );
}

/// `sh -c SCRIPT` in DIR that must fail; returns its standard error.
pub fn sh_err(dir: &Path, script: &str) -> String {
    let out = sh(dir, script);
    assert!(
        !out.status.success(),
        "`{script}` should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

impl LocalMount {
    /// Injects a fault in the embedded vault (admin endpoint).
    pub fn inject(&self, fault: FaultSpec) {
        self.block_on(self.admin().inject_fault(fault))
            .expect("inject fault");
    }
}

/// Read `name` in `dir` with Python: `ok:VALUE`, or the errno's name (`EIO`, `EAGAIN`, …).
pub fn read_or_errno(dir: &Path, name: &str) -> String {
    sh_ok(
        dir,
        &format!(
            "python3 -c \"import errno\ntry:\n  print('ok:' + open('{name}').read(), end='')\nexcept OSError as e: print(errno.errorcode[e.errno], end='')\""
        ),
    )
}

/// `readers` threads read secrets `0..count` through the mount once each (reader `t` takes
/// `t`, `t + readers`, …); `expected(n)` is secret `n`'s name and value. Panics naming the
/// first failures (an error or a wrong value) unless every read was right.
pub fn read_all_in_parallel(
    m: &Arc<LocalMount>,
    readers: usize,
    count: usize,
    expected: fn(usize) -> (String, String),
) {
    let handles: Vec<_> = (0..readers)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for n in (t..count).step_by(readers) {
                    let (name, value) = expected(n);
                    match std::fs::read_to_string(m.path(&name)) {
                        Ok(v) if v == value => {}
                        Ok(v) => failures.push(format!("{name}: wrong value {v:?}")),
                        Err(e) => failures.push(format!("{name}: {e}")),
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("reader thread"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {count} reads failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// The `--auth env` variables that sign `client_id` in to `env`'s vault (for [`UrlMount`]).
pub fn env_credential(
    env: &LocalVaultEnv,
    client_id: &str,
    client_secret: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("AKVFS_TENANT_ID", env.tenant_id.clone()),
        ("AKVFS_CLIENT_ID", client_id.to_owned()),
        ("AKVFS_CLIENT_SECRET", client_secret.to_owned()),
        ("AKVFS_AUTHORITY_HOST", env.authority_host.clone()),
    ]
}

/// A `setpriv` (util-linux) command line that runs `program` as `user`:`group` with no
/// supplementary groups: another local user, for permission tests (the tests run as root).
pub fn as_user(user: &str, group: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .args(["--clear-groups", "--"])
        .arg(program);
    command
}

/// Run a Python program in the mount; its stdout. Fails the test when it fails.
pub fn py(m: &LocalMount, program: &str) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(program)
        .current_dir(&m.mountpoint)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        m.log_text()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
