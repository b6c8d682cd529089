//! Issue 6, part 3: the reliability and security battery of SPEC §7, on real mounts over the
//! real local vault. Each bullet of the issue and the test that shows it:
//!
//! | issue bullet | test |
//! | --- | --- |
//! | 10% faulty vault responses: 1,000 cold reads all succeed | `mount_reliability::ten_percent_faults_over_1000_cold_reads_give_1000_right_values` |
//! | vault down: stale-if-error serves cached values, uncached reads fail EIO within the deadline | `mount_reliability::vault_down_serves_cached_values_and_fails_uncached_with_eio`, `mount_reliability::a_vault_that_hangs_past_the_deadline_is_etimedout` |
//! | throttled at the real limits: 10,000 cold reads, zero errors | [`throttled_at_the_real_limits_10000_cold_reads_have_zero_errors`], [`mount_local_passes_throttle_to_the_embedded_vault`] |
//! | `kill -9` of the local vault during 1,000 writes: every acknowledged write is there | `local_vault_durability::acknowledged_writes_survive_kill_9` |
//! | `kill -9` of the mount daemon during writes: no partial secret, remount works | [`kill_9_of_the_daemon_during_writes_leaves_no_partial_secret_and_remount_works`], `mount_daemon::a_new_mount_recovers_the_stale_mount_of_a_killed_daemon` |
//! | bad input: every row of the errno table through real syscalls | [`errno_rows_through_real_syscalls`] (table-driven, one syscall a row), [`errno_row_erofs_on_a_read_only_mount`], [`errno_row_eacces_when_the_access_policy_forbids`] |
//! | (SPEC §7) malformed, oversized, hostile responses: a clean errno, never a panic | `mount_hostile::hostile_bodies_are_eio_and_the_mount_keeps_serving`, `mount_hostile::a_foreign_next_link_fails_the_listing_without_hanging` |
//! | another local user cannot list or read; `--allow-other` + modes | [`another_user_cannot_list_or_read_the_mount`], [`with_allow_other_another_user_gets_only_what_the_modes_allow`] |
//! | `AKVFS_LOG=trace`: no secret value, client secret or token in any log line | [`trace_logs_hold_no_value_client_secret_admin_token_or_access_token`], `local_vault_logging::nothing_secret_is_logged_at_trace_level` |
//! | an untrusted certificate is refused | [`an_untrusted_certificate_is_refused_before_any_request`] (adds to `cli::a_vault_whose_certificate_is_not_trusted_fails_the_mount_with_a_hint` the proof that no request, token request included, got through) |
//! | a challenge for another domain sends no token | `mount_auth` (end-to-end mount test) |
//! | the daemon's core dumps are off | [`core_dumps_of_the_daemons_are_off`] |

mod common;

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akvfs::local_vault::FaultSpec;
use akvfs::vault::model::SecretId;
use akvfs::vault::SecretStore;
use common::{
    akvfs_bin, as_user, env_credential, read_all_in_parallel, sh_ok, LocalMount, UrlMount,
};

// ---------------------------------------------------------------------------------------------
// Throttled at the real limits

/// SPEC §7: "Throttled at the real limits: 10,000 cold reads finish with zero errors." The
/// embedded vault throttles as the service does (4,000 transactions per 10 s, 429 with
/// `Retry-After`); 16 readers read each of 10,000 never-read secrets once.
#[test]
fn throttled_at_the_real_limits_10000_cold_reads_have_zero_errors() {
    const SECRETS: usize = 10_000;
    const READERS: usize = 16;
    let m = Arc::new(LocalMount::start(&["--throttle", "real"]));
    // Seeding is an admin call: neither counted nor throttled.
    for g in 0..10 {
        m.block_on(
            m.admin()
                .seed(&format!("t{g}-"), SECRETS / 10, &format!("throttled-{g}")),
        )
        .expect("seed");
    }
    m.reset_counters();
    let started = Instant::now();
    read_all_in_parallel(&m, READERS, SECRETS, |n| {
        let (g, i) = (n / 1000, n % 1000);
        (format!("t{g}-{i:05}"), format!("throttled-{g}"))
    });
    let elapsed = started.elapsed();
    let c = m.counters();
    eprintln!(
        "{SECRETS} cold reads: {} gets answered 200, {} answered 429",
        c.count_status("get_secret", 200),
        c.count_status("get_secret", 429)
    );
    assert!(
        c.count_status("get_secret", 200) >= SECRETS as u64,
        "every secret fetched: {c:?}"
    );
    // The vault's windows are 10 s long, so 10,000 gets in under 10 s fall into at most two
    // windows: one held more than 4,000 and must have been answered 429 (and waited out). On a
    // machine too slow for that, the 429 count is only reported; the 429 path itself is forced
    // by mount_local_passes_throttle_to_the_embedded_vault.
    if elapsed < Duration::from_secs(10) {
        assert!(
            c.count_status("get_secret", 429) > 0,
            "{SECRETS} gets in {elapsed:?} but the vault never throttled: {c:?}"
        );
    } else {
        eprintln!("{SECRETS} reads took {elapsed:?}: too slow to reach the real limit");
    }
}

/// `mount local --throttle N` reaches the embedded vault (the test above uses the default,
/// `real`, so it alone would not show the flag is passed on): at 5 transactions per 10 s, the
/// start-up check and six cold reads cannot all pass in one window, yet every read succeeds.
#[test]
fn mount_local_passes_throttle_to_the_embedded_vault() {
    let m = LocalMount::start(&["--throttle", "5"]);
    m.block_on(m.admin().seed("few-", 6, "slow-but-sure"))
        .expect("seed");
    for i in 0..6 {
        let name = format!("few-{i:05}");
        assert_eq!(
            std::fs::read_to_string(m.path(&name)).expect("read"),
            "slow-but-sure"
        );
    }
    let c = m.counters();
    assert!(
        c.count_status("get_secret", 429) > 0,
        "not throttled: {c:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Core dumps

/// `/proc/PID/limits` says "Max core file size 0 0" (soft and hard).
fn core_limit_is_zero(pid: u32) -> bool {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    limits.lines().any(|l| {
        l.starts_with("Max core file size")
            && l.split_whitespace().skip(4).take(2).collect::<Vec<_>>() == ["0", "0"]
    })
}

fn proc_owner(pid: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/environ"))
        .expect("stat /proc/PID/environ")
        .uid()
}

/// The daemons keep secret values and tokens in memory: `akvfs mount` and `akvfs local-vault`
/// set RLIMIT_CORE to 0 (soft and hard) and mark themselves non-dumpable at start.
/// Non-dumpable is observable through proc(5): the `/proc/PID` files of such a process belong
/// to root. That shows only for a process not running as root, so it is checked on a
/// `local-vault` run as `nobody` (same start-up code), against a plain `nobody` process.
#[test]
fn core_dumps_of_the_daemons_are_off() {
    let m = LocalMount::start(&[]);
    let pid = m.pid().expect("daemon running");
    assert!(
        core_limit_is_zero(pid),
        "core dumps are on for the mount daemon:\n{}",
        std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default()
    );

    let dir = nobody_tempdir();
    let data = dir.path().join("lv");
    let mut vault = as_user("nobody", "nogroup", akvfs_bin())
        .args(["local-vault", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn setpriv akvfs local-vault");
    let mut plain = as_user("nobody", "nogroup", "sleep")
        .arg("60")
        .spawn()
        .expect("spawn setpriv sleep");
    wait_for_file(&data.join("env"), &mut vault);
    let owners = (proc_owner(vault.id()), proc_owner(plain.id()));
    let limited = core_limit_is_zero(vault.id());
    for child in [&mut vault, &mut plain] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        owners.1, NOBODY_UID,
        "a dumpable nobody process owns its /proc files"
    );
    assert_eq!(
        owners.0, 0,
        "the local vault run as nobody is still dumpable"
    );
    assert!(limited, "core dumps are on for the local vault");
}

const NOBODY_UID: u32 = 65534;

/// A temporary directory that `nobody` can traverse and write (the test runs as root).
fn nobody_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

fn wait_for_file(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} not written: the process exited with {status}",
                path.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} not written in time",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// kill -9 of the mount daemon during writes

/// The complete value writer `w` writes on its `i`-th write: four 1,000-byte chunks, each
/// tagged, so a commit of a partial write (a prefix) can be told from a complete one.
fn full_value(w: usize, i: usize) -> String {
    (0..4)
        .map(|c| format!("{:-<1000}", format!("<{w}:{i}:{c}>")))
        .collect()
}

/// Whether `value` is exactly one of the values the writers wrote, never a prefix or a mix.
fn is_complete_value(value: &str) -> bool {
    let head = value.get(1..value.find('>').unwrap_or(0)).unwrap_or("");
    let mut parts = head.split(':').map(str::parse::<usize>);
    match (parts.next(), parts.next()) {
        (Some(Ok(w)), Some(Ok(i))) => value == full_value(w, i),
        _ => false,
    }
}

/// SPEC §7: `kill -9` of the daemon while four writers rewrite secrets (each write is four
/// `write()` calls, then `fsync`, which commits): afterwards every version of every secret in
/// the vault is one complete value, every write whose `fsync` succeeded is there, and a new
/// `akvfs mount` on the same mountpoint recovers the dead mount and works.
#[test]
fn kill_9_of_the_daemon_during_writes_leaves_no_partial_secret_and_remount_works() {
    const WRITERS: usize = 4;
    let m = Arc::new(LocalMount::start(&[]));
    let acked = Arc::new(parking_lot::Mutex::new(Vec::<(String, String)>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (m, acked) = (m.clone(), acked.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    // Five names per writer, rewritten in turn: new secrets and new versions.
                    let name = format!("k{w}-{}", i % 5);
                    let value = full_value(w, i);
                    let write = || -> std::io::Result<()> {
                        let mut f = std::fs::File::create(m.path(&name))?;
                        for chunk in value.as_bytes().chunks(1000) {
                            f.write_all(chunk)?;
                        }
                        f.sync_all()
                    };
                    if write().is_err() {
                        return; // the daemon is gone
                    }
                    acked.lock().push((name, value));
                }
            })
        })
        .collect();
    // Kill while writes are flowing (bounded wait, whatever the machine's speed).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().len() < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = m.pid().expect("daemon running") as i32;
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    for w in writers {
        w.join().expect("writer thread");
    }
    let acked = acked.lock().clone();
    assert!(acked.len() >= 40, "writers made progress: {}", acked.len());
    let m = Arc::try_unwrap(m).unwrap_or_else(|_| panic!("mount still shared"));
    let (_, dir) = m.stop_keep_dir();

    // The same mountpoint, now a dead mount: a new daemon recovers it.
    let m = LocalMount::start_in(dir, &[]);
    let other = m.other_client();
    let items = m
        .block_on(other.list_properties_of_secrets())
        .expect("list");
    let mut versions_seen = Vec::new();
    for item in &items {
        let id = SecretId::parse(item.id.as_deref().expect("id")).expect("secret id");
        let versions = m
            .block_on(other.list_properties_of_secret_versions(&id.name))
            .expect("versions");
        for version in versions {
            let vid = SecretId::parse(version.id.as_deref().expect("id")).expect("version id");
            let bundle = m
                .block_on(other.get_secret(&id.name, vid.version.as_deref()))
                .expect("get version");
            let value = bundle
                .value
                .map(|v| v.expose().to_owned())
                .unwrap_or_default();
            assert!(
                is_complete_value(&value),
                "{}/{:?} holds a partial value of {} bytes",
                id.name,
                vid.version,
                value.len()
            );
            versions_seen.push((id.name.clone(), value));
        }
    }
    for (name, value) in &acked {
        assert!(
            versions_seen.iter().any(|(n, v)| n == name && v == value),
            "the write to {name} acknowledged by fsync is not in the vault"
        );
    }
    // The new mount works.
    sh_ok(&m.mountpoint, "echo -n after > after-remount");
    assert_eq!(sh_ok(&m.mountpoint, "cat after-remount"), "after");
    assert_eq!(sh_ok(&m.mountpoint, "cat k0-0"), m.other_get("k0-0"));
}

// ---------------------------------------------------------------------------------------------
// Bad input: the errno table (docs/SEMANTICS.md "Errors", SPEC §3.9), through real syscalls

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("path without NUL")
}

/// getxattr(2); the value or the OS error.
fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let (p, n) = (c_path(path), CString::new(name).expect("name"));
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a buffer of the length we pass.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(buf)
}

/// setxattr(2).
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (p, n) = (c_path(path), CString::new(name).expect("name"));
    // SAFETY: valid NUL-terminated strings and a value of the length we pass.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Create (or truncate) `path`, write `value` and fsync (the commit), reporting the first error.
fn write_and_fsync(path: &Path, value: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(value)?;
    f.sync_all()
}

/// One row of the errno table: what the test does, the errno the table promises, and what the
/// syscall answered (`None` = it succeeded).
struct Row {
    what: &'static str,
    expected: i32,
    got: Option<i32>,
}

fn row<T>(what: &'static str, expected: i32, result: std::io::Result<T>) -> Row {
    Row {
        what,
        expected,
        got: result.err().map(|e| e.raw_os_error().unwrap_or(-1)),
    }
}

fn errno_name(errno: Option<i32>) -> String {
    match errno {
        None => "success".into(),
        Some(e) => std::io::Error::from_raw_os_error(e).to_string(),
    }
}

fn assert_rows(rows: &[Row]) {
    let wrong: Vec<String> = rows
        .iter()
        .filter(|r| r.got != Some(r.expected))
        .map(|r| {
            format!(
                "{}: expected {}, got {}",
                r.what,
                errno_name(Some(r.expected)),
                errno_name(r.got)
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "errno table rows not honoured:\n{}",
        wrong.join("\n")
    );
}

/// Every row of the errno table that a default mount can show, one syscall each, on one mount
/// (`--on-deleted-conflict fail`, short deadlines). `--read-only` and a 403 from the access
/// policy need mounts of their own: the two tests below.
#[test]
fn errno_rows_through_real_syscalls() {
    let m = LocalMount::start(&[
        "--on-deleted-conflict",
        "fail",
        "--request-timeout",
        "3s",
        "--delete-timeout",
        "2s",
    ]);
    let p = |name: &str| m.path(name);
    for name in ["existing", "disabled", "big", "gone", "busy", "polled"] {
        m.other_set(name, &format!("{name}-value"));
    }
    for name in ["throttled", "failing", "hanging"] {
        m.other_set(name, "never-served");
    }
    let mut rows = vec![
        // no such secret (404) / a name that cannot be a secret, on lookup → ENOENT
        row(
            "stat of a missing secret",
            libc::ENOENT,
            std::fs::metadata(p("missing")),
        ),
        row(
            "open of an impossible name",
            libc::ENOENT,
            std::fs::File::open(p("bad_name")),
        ),
        // a name that cannot be a secret, on create → EINVAL (ENAMETOOLONG past 127)
        row(
            "create of an impossible name",
            libc::EINVAL,
            std::fs::File::create(p("bad_name")),
        ),
        row(
            "create of a 128-character name",
            libc::ENAMETOOLONG,
            std::fs::File::create(p(&"n".repeat(128))),
        ),
        // value over the limit → EFBIG at write(), the old value kept
        row("write of 25,601 bytes", libc::EFBIG, {
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(p("big"))
                .and_then(|mut f| f.write_all(&[b'x'; 25_601]))
        }),
        // unknown xattr → ENODATA
        row(
            "getxattr of an unknown attribute",
            libc::ENODATA,
            get_xattr(&p("existing"), "user.akv.nope"),
        ),
        // mkdir, symlink, link, chmod, chown → EPERM
        row("mkdir", libc::EPERM, std::fs::create_dir(p("dir"))),
        row(
            "symlink",
            libc::EPERM,
            std::os::unix::fs::symlink("existing", p("link")),
        ),
        row(
            "link",
            libc::EPERM,
            std::fs::hard_link(p("existing"), p("hardlink")),
        ),
        row(
            "chmod",
            libc::EPERM,
            std::fs::set_permissions(p("existing"), std::fs::Permissions::from_mode(0o644)),
        ),
        row(
            "chown",
            libc::EPERM,
            std::os::unix::fs::chown(p("existing"), Some(1), Some(1)),
        ),
    ];
    assert_eq!(m.other_get("big"), "big-value", "EFBIG kept the old value");

    // disabled secret → EACCES (disabled through the mount's own xattr)
    set_xattr(&p("disabled"), "user.akv.enabled", b"false").expect("disable");
    rows.push(row(
        "read of a disabled secret",
        libc::EACCES,
        std::fs::read(p("disabled")),
    ));

    // deleted-but-recoverable with `--on-deleted-conflict fail` → EEXIST; purge without
    // `--allow-purge` → EPERM
    std::fs::remove_file(p("gone")).expect("rm gone");
    rows.push(row(
        "create of a deleted-but-recoverable name",
        libc::EEXIST,
        std::fs::File::create(p("gone")),
    ));
    rows.push(row(
        "purge without --allow-purge",
        libc::EPERM,
        std::fs::remove_file(p(".deleted/gone")),
    ));

    // being deleted → EBUSY. The deletion of `busy` is held pending by moving the vault clock
    // back an hour right after it started (deletions complete on the vault clock).
    m.block_on(m.other_client().delete_secret("busy"))
        .expect("delete busy");
    m.block_on(m.admin().advance_clock(-3600))
        .expect("clock back");
    rows.push(row(
        "write of a name being deleted",
        libc::EBUSY,
        write_and_fsync(&p("busy"), b"new"),
    ));
    m.block_on(m.admin().advance_clock(3600))
        .expect("clock forward");

    // throttled after retries → EAGAIN
    m.inject(
        FaultSpec::status(429)
            .with_retry_after(1)
            .for_operation("get_secret"),
    );
    rows.push(row(
        "read while throttled",
        libc::EAGAIN,
        std::fs::read(p("throttled")),
    ));
    m.block_on(m.admin().clear_faults()).expect("clear");
    // vault failing (5xx after retries), nothing cached → EIO
    m.inject(FaultSpec::status(503).for_operation("get_secret"));
    rows.push(row(
        "read while the vault answers 503",
        libc::EIO,
        std::fs::read(p("failing")),
    ));
    m.block_on(m.admin().clear_faults()).expect("clear");
    // request deadline → ETIMEDOUT
    m.inject(
        FaultSpec::default()
            .with_latency_ms(10_000)
            .for_operation("get_secret"),
    );
    rows.push(row(
        "read past the request deadline",
        libc::ETIMEDOUT,
        std::fs::read(p("hanging")),
    ));
    m.block_on(m.admin().clear_faults()).expect("clear");
    // delete poll past --delete-timeout → ETIMEDOUT
    assert_eq!(
        std::fs::read_to_string(p("polled")).expect("read polled"),
        "polled-value"
    );
    m.inject(FaultSpec::status(503).for_operation("get_deleted_secret"));
    rows.push(row(
        "rm whose deletion never completes",
        libc::ETIMEDOUT,
        std::fs::remove_file(p("polled")),
    ));
    m.block_on(m.admin().clear_faults()).expect("clear");

    assert_rows(&rows);
    // Every error is logged with the secret's name.
    let log = m.log_text();
    for name in [
        "big",
        "disabled",
        "gone",
        "busy",
        "throttled",
        "failing",
        "hanging",
        "polled",
    ] {
        assert!(
            log.contains(&format!("\"{name}\"")) || log.contains(&format!("={name}")),
            "no log line names {name}"
        );
    }
}

/// write on `--read-only` → EROFS, for a new name and an existing secret.
#[test]
fn errno_row_erofs_on_a_read_only_mount() {
    let m = LocalMount::start(&["--read-only"]);
    m.other_set("existing", "kept");
    assert_rows(&[
        row(
            "create on --read-only",
            libc::EROFS,
            std::fs::File::create(m.path("new")),
        ),
        row(
            "open for write on --read-only",
            libc::EROFS,
            OpenOptions::new().write(true).open(m.path("existing")),
        ),
        row(
            "rm on --read-only",
            libc::EROFS,
            std::fs::remove_file(m.path("existing")),
        ),
    ]);
    assert_eq!(sh_ok(&m.mountpoint, "cat existing"), "kept");
}

/// forbidden by the vault's access policy (403) → EACCES: a second `akvfs mount` of the same
/// vault as a principal that may only list.
#[test]
fn errno_row_eacces_when_the_access_policy_forbids() {
    let m = LocalMount::start(&[]);
    m.other_set("guarded", "not-for-you");
    let restricted = m.mount_as(&["list"], &[]);
    assert_rows(&[
        row(
            "read without get permission",
            libc::EACCES,
            std::fs::read(restricted.path("guarded")),
        ),
        row(
            "write without set permission",
            libc::EACCES,
            write_and_fsync(&restricted.path("created"), b"v"),
        ),
    ]);
    assert_eq!(m.other_get("guarded"), "not-for-you");
    let log = restricted.log_text();
    assert!(
        log.contains("guarded"),
        "the 403 is logged with the secret's name:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// Another local user

/// Run `sh -c SCRIPT` as `nobody` (util-linux `setpriv`), in no supplementary group.
fn as_nobody(script: &str) -> std::process::Output {
    as_user("nobody", "nogroup", "sh")
        .args(["-c", script])
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv (util-linux)")
}

/// `nobody` runs `script`; it must fail with "Permission denied" (EACCES).
fn nobody_is_refused(script: &str) {
    let out = as_nobody(script);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Permission denied"),
        "`{script}` as nobody: {}, stdout {:?}, stderr {err:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `nobody` runs `script`; it must succeed; returns its output.
fn nobody_ok(script: &str) -> String {
    let out = as_nobody(script);
    assert!(
        out.status.success(),
        "`{script}` as nobody: {}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Let `nobody` reach the mountpoint (the test directory is 0700 by default), so only the
/// mount itself can refuse.
fn traversable(m: &LocalMount) -> String {
    std::fs::set_permissions(m.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod test dir");
    m.mountpoint.display().to_string()
}

/// SPEC §7: another local user cannot list or read the mount (default: no `allow_other`,
/// modes 0700/0600), and no vault call is made on their behalf.
#[test]
fn another_user_cannot_list_or_read_the_mount() {
    let m = LocalMount::start(&[]);
    m.other_set("private", "root-only");
    let mnt = traversable(&m);
    assert_eq!(sh_ok(&m.mountpoint, "cat private"), "root-only");
    m.reset_counters();
    nobody_is_refused(&format!("ls {mnt}"));
    nobody_is_refused(&format!("cat {mnt}/private"));
    nobody_is_refused(&format!("stat {mnt}/private"));
    nobody_is_refused(&format!("echo x > {mnt}/planted"));
    assert_eq!(m.vault_calls(), 0, "{:?}", m.counters());
    assert_eq!(m.other_get("private"), "root-only");
}

/// SPEC §7: with `--allow-other` and the kernel's default permissions, another user gets what
/// the modes allow and nothing more: `--dir-mode 0755 --file-mode 0644` lets them list and
/// read but not write; `--dir-mode 0755` with the default 0600 files lets them list only.
#[test]
fn with_allow_other_another_user_gets_only_what_the_modes_allow() {
    let readable =
        LocalMount::start(&["--allow-other", "--dir-mode", "0755", "--file-mode", "0644"]);
    readable.other_set("shared", "for-everyone");
    let mnt = traversable(&readable);
    assert_eq!(nobody_ok(&format!("ls {mnt}")).trim(), "shared");
    assert_eq!(nobody_ok(&format!("cat {mnt}/shared")), "for-everyone");
    nobody_is_refused(&format!("echo x > {mnt}/shared"));
    nobody_is_refused(&format!("echo x > {mnt}/created"));
    assert_eq!(readable.other_get("shared"), "for-everyone");
    drop(readable);

    let private_files = LocalMount::start(&["--allow-other", "--dir-mode", "0755"]);
    private_files.other_set("owner-only", "not-for-nobody");
    let mnt = traversable(&private_files);
    assert_eq!(nobody_ok(&format!("ls {mnt}")).trim(), "owner-only");
    // (The lookup may fetch the value to give its size; only the kernel's mode check decides
    // who opens it.)
    nobody_is_refused(&format!("cat {mnt}/owner-only"));
    nobody_is_refused(&format!("echo x > {mnt}/owner-only"));
    assert_eq!(
        sh_ok(&private_files.mountpoint, "cat owner-only"),
        "not-for-nobody"
    );
}

// ---------------------------------------------------------------------------------------------
// Logs at trace level

/// SPEC §7: with `AKVFS_LOG=trace` (every crate: akvfs, the embedded vault, hyper, h2, rustls,
/// reqwest) the daemon's log holds no secret value, client secret, admin token, identity header
/// or access token after values are written, read (through the mount and by another client),
/// listed, versioned, tagged and deleted.
#[test]
fn trace_logs_hold_no_value_client_secret_admin_token_or_access_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = LocalMount::start_in_logging(dir, &[], "trace");
    let mnt = &m.mountpoint;
    let values = [
        "written-through-the-mount-7f3a9c",
        "rewritten-through-the-mount-c41d2e",
        "set-by-another-client-9b8e77",
        "tag-value-5d0f1a",
    ];
    sh_ok(mnt, &format!("echo -n {} > alpha", values[0]));
    assert_eq!(sh_ok(mnt, "cat alpha"), values[0]);
    sh_ok(mnt, &format!("echo -n {} > alpha", values[1]));
    assert_eq!(sh_ok(mnt, "cat alpha"), values[1]);
    m.other_set("beta", values[2]);
    assert_eq!(sh_ok(mnt, "cat beta"), values[2]);
    assert!(sh_ok(mnt, "ls -l").contains("beta"));
    let versions = sh_ok(mnt, "ls .versions/alpha");
    assert!(versions.lines().count() >= 2, "{versions}");
    for version in versions.lines() {
        sh_ok(mnt, &format!("cat .versions/alpha/{version}"));
    }
    set_xattr(
        &m.path("alpha"),
        "user.akv.tags.owner",
        values[3].as_bytes(),
    )
    .expect("setxattr");
    assert_eq!(
        get_xattr(&m.path("alpha"), "user.akv.tags.owner").expect("getxattr"),
        values[3].as_bytes()
    );
    sh_ok(mnt, "rm beta && ls .deleted");
    // An access token as the token endpoint issues them, to look for in the log.
    let token = m.block_on(async {
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&m.env.ca_file).expect("ca"))
                    .expect("ca pem"),
            )
            .build()
            .expect("http client");
        let resp = http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                m.env.authority_host, m.env.tenant_id
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", m.env.client_id.as_str()),
                ("client_secret", m.env.client_secret.expose()),
                ("scope", &format!("{}/.default", m.env.vault_url)),
            ])
            .send()
            .await
            .expect("token request");
        let body: serde_json::Value = resp.json().await.expect("token json");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    });
    let (_, signature) = token.rsplit_once('.').expect("a JWT");
    let log = m.log_text();
    assert!(
        log.contains("TRACE") && log.contains("rustls") && log.contains("hyper"),
        "the daemon did not log at trace level for every crate ({} bytes)",
        log.len()
    );
    let env = &m.env;
    let mut needles: Vec<(&str, &str)> = values.iter().map(|v| ("a secret value", *v)).collect();
    needles.extend([
        ("the client secret", env.client_secret.expose()),
        ("the admin token", env.admin_token.expose()),
        ("the identity header", env.identity_header.expose()),
        ("an access token's signature", signature),
        // Every JWT starts with the base64 of `{"`: no token of any kind, whoever issued it.
        ("a JWT", "eyJ"),
    ]);
    for (what, needle) in needles {
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            panic!(
                "{what} appears in the trace log, e.g. in: {}",
                line.replace(needle, "<HERE>")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

/// SPEC §7 "TLS verification cannot be disabled": the local vault's certificate comes from its
/// own CA; mounted without `--ca-file` (nor `AKVFS_CA_FILE`, `SSL_CERT_FILE`), `akvfs mount`
/// exits 1 naming the certificate problem, and not one request reaches the vault — no
/// challenge, no token request, no client secret sent.
#[test]
fn an_untrusted_certificate_is_refused_before_any_request() {
    let m = LocalMount::start(&[]);
    m.reset_counters();
    // (UrlMount removes every CA variable: AKVFS_CA_FILE, SSL_CERT_FILE, …; and it checks
    // that nothing was mounted.)
    let (status, err) = UrlMount::expect_failure(
        &m.env.vault_url,
        &["--auth", "env"],
        &env_credential(&m.env, &m.env.client_id, m.env.client_secret.expose()),
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("certificate") && err.contains(&m.env.vault_url),
        "the error names the vault and the certificate problem: {err}"
    );
    let c = m.counters();
    assert_eq!(c.count("token"), 0, "a token was requested: {c:?}");
    assert_eq!(c.total(), 0, "a request got through untrusted TLS: {c:?}");
}
