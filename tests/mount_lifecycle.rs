//! A mount's life from start to stop: one daemon per mountpoint, a restart right after
//! `kill -9`, a failed start that leaves nothing mounted, an unmount that removes exactly one
//! layer, and a clean run that logs nothing at WARN.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{akvfs_bin, force_unmount, is_mountpoint, sh, sh_ok, LocalMount};

/// The default filter of a daemon started without `AKVFS_LOG` (dependencies at warn).
const DEFAULT_LOG_FILTER: &str = "warn,akvfs=info";

/// How many mounts `/proc/self/mountinfo` shows at `path` (stacked ones count each). Unlike
/// `is_mountpoint`, this sees dead mounts too.
fn mounts_at(path: &Path) -> usize {
    let path = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|parent| parent.join(name))
            .unwrap_or_else(|_| path.to_owned()),
        _ => path.to_owned(),
    };
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
        .count()
}

/// Lines of a daemon's log at WARN or ERROR.
fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect()
}

/// Run `command` until it exits or `timeout` passes (then it is interrupted, killed, and
/// `None` returned); returns its status and standard error.
fn run_with_deadline(mut command: Command, timeout: Duration) -> (Option<ExitStatus>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) of our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

/// `akvfs mount local DIR/m --data DIR/data` (what `LocalMount::start_in(DIR)` mounts), started
/// here rather than through `LocalMount`, whose cleanup would unmount the dead mount that
/// `kill -9` leaves; returns the daemon once the mount serves.
fn spawn_daemon(dir: &Path) -> std::process::Child {
    let mountpoint = dir.join("m");
    std::fs::create_dir_all(&mountpoint).expect("mkdir m");
    let child = Command::new(akvfs_bin())
        .arg("mount")
        .arg("local")
        .arg(&mountpoint)
        .arg("--data")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("first.log")).expect("log"))
        .spawn()
        .expect("spawn akvfs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(mounts_at(&mountpoint) == 1 && is_mountpoint(&mountpoint)) {
        assert!(
            Instant::now() < deadline,
            "the first mount did not come up: {}",
            std::fs::read_to_string(dir.join("first.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn a_restart_right_after_kill_9_of_a_used_mount_mounts_at_once_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("m");
    let mut daemon = spawn_daemon(dir.path());
    sh_ok(&mountpoint, "printf survives > kept");
    // One `stat` of the mount's root: the kernel now holds its attributes for their TTL and
    // keeps answering `stat` from them after the daemon is gone.
    std::fs::metadata(&mountpoint).expect("stat the mount");
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGKILL);
    }
    daemon.wait().expect("reap the killed daemon");
    let cached = std::fs::metadata(&mountpoint);
    assert!(
        cached.is_ok(),
        "stat is answered from the cache: {cached:?}"
    );
    let probe = sh(
        dir.path(),
        &format!("stat -f '{}' >/dev/null", mountpoint.display()),
    );
    assert!(
        !probe.status.success(),
        "the mount should be dead; statfs answered"
    );

    // As systemd's Restart=on-failure would: at once, first try.
    let started = Instant::now();
    let m = LocalMount::start_in(dir, &[]);
    assert_eq!(sh_ok(&m.mountpoint, "cat kept"), "survives");
    assert_eq!(
        mounts_at(&m.mountpoint),
        1,
        "the dead mount was detached, not stacked under the new one"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(m.log_text().contains("found a dead mount"));
}

#[test]
fn a_second_mount_on_a_live_akvfs_mount_is_refused_naming_the_mountpoint() {
    let m = LocalMount::start(&[]);
    m.other_set("first", "served by the first daemon");
    let mut second = Command::new(akvfs_bin());
    second
        .arg("mount")
        .arg("local")
        .arg(&m.mountpoint)
        .arg("--data")
        .arg(m.dir.path().join("second-data"));
    let (status, stderr) = run_with_deadline(second, Duration::from_secs(30));
    let stacked = mounts_at(&m.mountpoint);
    if stacked > 1 {
        // The old behaviour: clean up the layer on top before failing.
        force_unmount(&m.mountpoint);
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "the second mount must exit 1; stderr: {stderr}"
    );
    assert!(
        stderr.contains(&m.mountpoint.display().to_string())
            && stderr.contains("already an akvfs mount"),
        "{stderr}"
    );
    assert_eq!(stacked, 1, "nothing stacked on the live mount");
    assert_eq!(
        sh_ok(&m.mountpoint, "cat first"),
        "served by the first daemon"
    );
}

/// A tmpfs mounted at `path` for the length of a test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mkdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "lifecycle-test"])
            .arg(path)
            .status()
            .expect("mount tmpfs");
        assert!(status.success(), "mount -t tmpfs: {status}");
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Whatever is still mounted there, top first.
        while mounts_at(&self.0) > 0 {
            if !Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success())
            {
                break;
            }
        }
    }
}

#[test]
fn akvfs_unmount_removes_only_the_akvfs_layer_and_a_clean_stop_logs_no_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("m");
    let tmpfs = Tmpfs::mount(&mountpoint);
    std::fs::write(mountpoint.join("under"), "tmpfs file").expect("write into tmpfs");
    let mut m = LocalMount::start_in_logging(dir, &[], DEFAULT_LOG_FILTER);
    // The tmpfs made it a mountpoint already: wait for akvfs on top of it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while mounts_at(&m.mountpoint) < 2 {
        assert!(
            Instant::now() < deadline,
            "akvfs did not mount on the tmpfs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sh_ok(&m.mountpoint, "printf v > s && cat s >/dev/null");

    let out = Command::new(akvfs_bin())
        .arg("unmount")
        .arg(&m.mountpoint)
        .output()
        .expect("akvfs unmount");
    assert!(
        out.status.success(),
        "akvfs unmount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = m.stop();
    assert!(status.success(), "the daemon exits 0: {status}");
    assert_eq!(
        mounts_at(&m.mountpoint),
        1,
        "one layer removed: the tmpfs underneath stays mounted"
    );
    assert_eq!(
        std::fs::read_to_string(m.mountpoint.join("under")).expect("the tmpfs file"),
        "tmpfs file"
    );
    let log = m.log_text();
    assert!(warnings(&log).is_empty(), "a clean stop warned:\n{log}");
    drop(tmpfs);
}

#[test]
fn python_open_and_a_clean_stop_on_sigint_log_nothing_at_warn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = LocalMount::start_in_logging(dir, &[], DEFAULT_LOG_FILTER);
    m.other_set("greeting", "hello");
    for _ in 0..3 {
        assert_eq!(
            sh_ok(
                &m.mountpoint,
                "python3 -c \"print(open('greeting').read(), end='')\""
            ),
            "hello"
        );
    }
    // isatty (TCGETS) on a secret is ENOTTY, as on a local file.
    assert_eq!(
        sh_ok(
            &m.mountpoint,
            "python3 -c \"import os; print(os.isatty(os.open('greeting', os.O_RDONLY)))\""
        )
        .trim(),
        "False"
    );
    let log = m.log_text();
    assert!(warnings(&log).is_empty(), "python open() warned:\n{log}");
    let status = m.stop();
    assert!(status.success(), "exit {status}");
    let log = m.log_text();
    assert!(warnings(&log).is_empty(), "a clean stop warned:\n{log}");
    assert!(log.contains("unmounted"), "{log}");
}

#[test]
fn statvfs_reports_the_key_vault_name_limit_and_free_space() {
    let m = LocalMount::start(&[]);
    let calls = m.vault_calls();
    let out = sh_ok(
        &m.mountpoint,
        "python3 -c \"import os; s = os.statvfs('.'); print(s.f_namemax, s.f_bsize, s.f_bavail > 0, s.f_favail > 0)\"",
    );
    assert_eq!(out.trim(), "127 4096 True True");
    assert_eq!(m.vault_calls(), calls, "statvfs costs no vault call");
    assert_eq!(
        sh_ok(&m.mountpoint, "getconf NAME_MAX .").trim(),
        "127",
        "pathconf(_PC_NAME_MAX)"
    );
}

#[test]
fn a_start_that_fails_after_mounting_leaves_no_mount_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("m");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    // The mount succeeds, then the FUSE workers cannot all get a /dev/fuse descriptor
    // (one each) under this descriptor limit: a failure after the mount exists.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" mount local \"$1\" --data \"$2\" --threads 256")
        .arg(akvfs_bin())
        .arg(&mountpoint)
        .arg(dir.path().join("data"));
    let (status, stderr) = run_with_deadline(command, Duration::from_secs(60));
    let left = mounts_at(&mountpoint);
    if left > 0 {
        force_unmount(&mountpoint);
    }
    assert_eq!(
        left, 0,
        "the failed start left a mount behind; stderr: {stderr}"
    );
    assert!(!is_mountpoint(&mountpoint));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "exit 1; stderr: {stderr}"
    );
    assert!(stderr.contains("Too many open files"), "{stderr}");
}
