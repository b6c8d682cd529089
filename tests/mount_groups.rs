//! Groups and change hooks (SPEC §9) on real mounts: the files of a group change together
//! while another client rotates their secrets seconds apart; `on_change` and `signal` +
//! `pid_file` run once per change with no secret in their environment; `--on-change` without a
//! config; nginx reloaded by its group's hook from an RSA to an EC certificate without one
//! failed handshake.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::programs::{sha256_fingerprint, Nginx};
use common::{need_tool, LocalMount};

struct Config {
    dir: tempfile::TempDir,
}

impl Config {
    fn new(text: &str) -> Config {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("app.toml"), text).expect("config");
        Config { dir }
    }

    fn arg(&self) -> String {
        self.dir.path().join("app.toml").display().to_string()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_for(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    wait_for_or(what, timeout, done, String::new);
}

/// `wait_for`, adding `account()` (a daemon's log, say) to the failure.
fn wait_for_or(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    account: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            account()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"))
}

#[test]
fn a_groups_files_change_together_and_its_hook_runs_once_per_change() {
    let config = Config::new("");
    let runs = config.file("runs");
    let env = config.file("env");
    std::fs::write(
        config.dir.path().join("app.toml"),
        format!(
            r#"
[[file]]
path = "tls.crt"
secret = "web-crt"
group = "web"
mode = "0644"

[[file]]
path = "tls.key"
secret = "web-key"
group = "web"

[group.web]
on_change = "echo \"$AKVFS_CHANGED\" >> {runs}; env > {env}"
"#,
            runs = runs.display(),
            env = env.display()
        ),
    )
    .expect("config");
    let path = config.arg();
    let m = LocalMount::start(&["--config", &path, "--refresh", "2s", "--cache-ttl", "1s"]);
    m.other_set("web-crt", "cert-0");
    m.other_set("web-key", "key-0");
    let (crt, key) = (m.path("tls.crt"), m.path("tls.key"));
    assert_eq!(read(&crt), "cert-0");
    assert_eq!(read(&key), "key-0");
    assert_eq!(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&crt)
            .err()
            .and_then(|e| e.raw_os_error()),
        Some(libc::EROFS),
        "a group's files change in the vault, together"
    );

    // A reader checks every pair it reads within one publication: the certificate read before
    // and after the key is the same, so the key must be its pair.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, crt, key) = (stop.clone(), crt.clone(), key.clone());
        std::thread::spawn(move || {
            let (mut checked, mut mismatched, mut errors) = (0u64, Vec::new(), Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let (before, k, after) = (read(&crt), read(&key), read(&crt));
                for text in [&before, &k, &after] {
                    if text.starts_with('<') {
                        errors.push(text.clone());
                    }
                }
                if before == after {
                    checked += 1;
                    if before.trim_start_matches("cert-") != k.trim_start_matches("key-") {
                        mismatched.push(format!("{before} with {k}"));
                    }
                }
            }
            (checked, mismatched, errors)
        })
    };
    // The writer sets a certificate, then its key a second later, three times.
    for i in 1..=3 {
        m.other_set("web-crt", &format!("cert-{i}"));
        std::thread::sleep(Duration::from_secs(1));
        m.other_set("web-key", &format!("key-{i}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while read(&crt) != format!("cert-{i}") {
            assert!(
                Instant::now() < deadline,
                "not published:\n{}",
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(read(&key), format!("key-{i}"), "published together");
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let (checked, mismatched, errors) = reader.join().expect("reader");
    assert!(errors.is_empty(), "read errors: {errors:?}");
    assert!(mismatched.is_empty(), "mismatched pairs: {mismatched:?}");
    assert!(checked > 100, "the reader checked {checked} pairs");

    // One hook run per publication, naming the files; no secret, no credential in its env.
    wait_for("three runs", Duration::from_secs(10), || {
        lines(&runs).len() >= 3
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lines(&runs), vec!["tls.crt tls.key"; 3], "{}", m.log_text());
    let env_text = std::fs::read_to_string(&env).expect("env dump");
    for leak in ["cert-", "key-3", "AZURE_", "AKVFS_LOG"] {
        assert!(
            !env_text.contains(leak),
            "{leak} in the hook's environment:\n{env_text}"
        );
    }
    assert!(env_text.contains("AKVFS_CHANGED=tls.crt tls.key"));
    assert_eq!(
        m.log_text().matches("on change: command ran").count(),
        3,
        "exit status logged"
    );
}

#[test]
fn a_files_signal_goes_to_the_process_in_its_pid_file_when_the_file_changes() {
    let config = Config::new("");
    let (pid_file, got) = (config.file("app.pid"), config.file("got"));
    std::fs::write(
        config.dir.path().join("app.toml"),
        format!(
            "[[file]]\npath = \"app.conf\"\nsecret = \"app-conf\"\nsignal = \"HUP\"\npid_file = \"{}\"\n",
            pid_file.display()
        ),
    )
    .expect("config");
    // A program that reloads on SIGHUP, as daemons do.
    let mut app = Command::new("sh");
    app.arg("-c")
        .arg(format!(
            "trap 'echo reload >> {got}' HUP; echo $$ > {pid}; while :; do sleep 0.1; done",
            got = got.display(),
            pid = pid_file.display()
        ))
        .stdin(Stdio::null());
    // A shell cannot trap a signal ignored when it started (POSIX), as SIGHUP is under nohup:
    // the app starts with SIGHUP at its default, as a daemon's service manager gives it.
    // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
    unsafe {
        app.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut app = app.spawn().expect("spawn");
    wait_for("the pid file", Duration::from_secs(5), || pid_file.exists());
    let path = config.arg();
    let m = LocalMount::start(&["--config", &path, "--refresh", "1s"]);
    m.other_set("app-conf", "v1");
    assert_eq!(read(&m.path("app.conf")), "v1");
    std::thread::sleep(Duration::from_secs(2));
    assert!(lines(&got).is_empty(), "no change, no signal");
    m.other_set("app-conf", "v2");
    wait_for_or(
        "the signal",
        Duration::from_secs(15),
        || !lines(&got).is_empty(),
        || m.log_text(),
    );
    assert_eq!(read(&m.path("app.conf")), "v2");
    std::thread::sleep(Duration::from_secs(3));
    let _ = app.kill();
    let _ = app.wait();
    assert_eq!(lines(&got), vec!["reload"], "one signal per change");
}

#[test]
fn on_change_without_a_config_runs_for_secrets_read_through_the_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let command = format!("echo \"$AKVFS_CHANGED\" >> {}", runs.display());
    let m = LocalMount::start(&["--refresh", "1s", "--on-change", &command]);
    m.other_set("watched", "1");
    m.other_set("unread", "1");
    assert_eq!(read(&m.path("watched")), "1");
    std::thread::sleep(Duration::from_secs(3));
    assert!(lines(&runs).is_empty(), "nothing changed yet");
    m.other_set("watched", "2");
    m.other_set("unread", "2");
    wait_for("the hook", Duration::from_secs(15), || {
        !lines(&runs).is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        lines(&runs),
        vec!["watched"],
        "once, for the secret read through the mount"
    );
    assert_eq!(read(&m.path("watched")), "2");
}

/// A self-signed certificate for localhost with a key of `algorithm` (`rsa:2048`, `ec`),
/// by `openssl req`.
fn certificate(dir: &Path, algorithm: &str) -> (String, String) {
    need_tool("openssl", "openssl");
    let (crt, key) = (
        dir.join(format!("{algorithm}.crt")),
        dir.join(format!("{algorithm}.key")),
    );
    let mut args: Vec<String> = vec!["req".into(), "-x509".into(), "-nodes".into()];
    if algorithm == "ec" {
        args.extend([
            "-newkey".into(),
            "ec".into(),
            "-pkeyopt".into(),
            "ec_paramgen_curve:P-256".into(),
        ]);
    } else {
        args.extend(["-newkey".into(), algorithm.into()]);
    }
    args.extend([
        "-subj".into(),
        "/CN=localhost".into(),
        "-addext".into(),
        "subjectAltName=DNS:localhost,IP:127.0.0.1".into(),
        "-days".into(),
        "2".into(),
        "-keyout".into(),
        key.display().to_string(),
        "-out".into(),
        crt.display().to_string(),
    ]);
    let out = Command::new("openssl")
        .args(&args)
        .output()
        .expect("openssl req");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read_to_string(crt).expect("crt"),
        std::fs::read_to_string(key).expect("key"),
    )
}

#[test]
fn nginx_moves_from_rsa_to_ec_by_its_groups_hook_without_a_failed_handshake() {
    need_tool("nginx", "nginx");
    need_tool("curl", "curl");
    let work = tempfile::tempdir().expect("tempdir");
    let (rsa_crt, rsa_key) = certificate(work.path(), "rsa:2048");
    let (ec_crt, ec_key) = certificate(work.path(), "ec");
    // A first mount with the RSA pair in the vault, so nginx can start from the projection.
    let config = Config::new(
        "[[file]]\npath = \"nginx/tls.crt\"\nsecret = \"web-crt\"\ngroup = \"web\"\nmode = \"0644\"\n\
         [[file]]\npath = \"nginx/tls.key\"\nsecret = \"web-key\"\ngroup = \"web\"\nmode = \"0600\"\n",
    );
    let path = config.arg();
    let m = LocalMount::start(&["--config", &path, "--refresh", "2s", "--cache-ttl", "1s"]);
    m.other_set("web-crt", &rsa_crt);
    m.other_set("web-key", &rsa_key);
    let nginx = Nginx::start(&m.path("nginx/tls.crt"), &m.path("nginx/tls.key"));
    let rsa_fingerprint = sha256_fingerprint(rsa_crt.as_bytes());
    assert_eq!(nginx.served_fingerprint(), rsa_fingerprint);
    // The group's hook reloads nginx: give the running mount that config (SIGHUP).
    std::fs::write(
        config.dir.path().join("app.toml"),
        format!(
            "[[file]]\npath = \"nginx/tls.crt\"\nsecret = \"web-crt\"\ngroup = \"web\"\nmode = \"0644\"\n\
             [[file]]\npath = \"nginx/tls.key\"\nsecret = \"web-key\"\ngroup = \"web\"\nmode = \"0600\"\n\
             [group.web]\non_change = \"{}\"\n",
            nginx.reload_command().replace('\\', "\\\\").replace('"', "\\\"")
        ),
    )
    .expect("config");
    let pid = m.pid().expect("pid");
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    wait_for("the config", Duration::from_secs(10), || {
        m.log_text().contains("config re-read")
    });

    // Handshakes all along, while another client rotates RSA → EC, the two sets a second apart.
    let stop = Arc::new(AtomicBool::new(false));
    let port = nginx.port();
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let out = Command::new("curl")
                    .args(["--silent", "--show-error", "--insecure", "--max-time", "5"])
                    .arg(format!("https://localhost:{port}/"))
                    .output()
                    .expect("curl");
                if out.status.success() {
                    ok += 1;
                } else {
                    failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (ok, failed)
        })
    };
    m.other_set("web-crt", &ec_crt);
    std::thread::sleep(Duration::from_secs(1));
    m.other_set("web-key", &ec_key);
    let ec_fingerprint = sha256_fingerprint(ec_crt.as_bytes());
    wait_for(
        "nginx to serve the EC certificate",
        Duration::from_secs(30),
        || nginx.served_fingerprint() == ec_fingerprint,
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = client.join().expect("client");
    assert!(
        failed.is_empty(),
        "failed handshakes: {failed:?}\n{}",
        nginx.error_log()
    );
    assert!(ok > 20, "{ok} handshakes");
    assert!(
        !nginx.error_log().contains("key values mismatch"),
        "{}",
        nginx.error_log()
    );
    assert_eq!(
        m.log_text().matches("on change: command ran").count(),
        1,
        "{}",
        m.log_text()
    );
}

#[test]
fn the_inputs_of_one_template_change_together() {
    let config = Config::new(
        "[[file]]\npath = \"pair\"\ntemplate = \"{{ secret('pair-crt') }}|{{ secret('pair-key') }}\"\n",
    );
    let path = config.arg();
    let m = LocalMount::start(&["--config", &path, "--refresh", "2s", "--cache-ttl", "1s"]);
    m.other_set("pair-crt", "cert-0");
    m.other_set("pair-key", "key-0");
    let pair = m.path("pair");
    assert_eq!(read(&pair), "cert-0|key-0");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, pair) = (stop.clone(), pair.clone());
        std::thread::spawn(move || {
            let (mut checked, mut mismatched) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let text = read(&pair);
                match text.split_once('|') {
                    Some((c, k))
                        if c.trim_start_matches("cert-") == k.trim_start_matches("key-") =>
                    {
                        checked += 1
                    }
                    _ => mismatched.push(text),
                }
            }
            (checked, mismatched)
        })
    };
    for i in 1..=3 {
        m.other_set("pair-crt", &format!("cert-{i}"));
        std::thread::sleep(Duration::from_secs(1));
        m.other_set("pair-key", &format!("key-{i}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while read(&pair) != format!("cert-{i}|key-{i}") {
            assert!(Instant::now() < deadline, "not rendered:\n{}", m.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (checked, mismatched) = reader.join().expect("reader");
    assert!(mismatched.is_empty(), "mismatched renders: {mismatched:?}");
    assert!(checked > 100, "{checked} reads");
}
