//! The daemon's life: signals commit pending writes; a slow secret never blocks another.

mod common;

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use akvfs::local_vault::FaultSpec;
use common::{sh_ok, LocalMount};

#[test]
fn sigint_commits_a_pending_write_before_unmounting() {
    let m = LocalMount::start(&[]);
    let mut file = std::fs::File::create(m.path("pending")).expect("create");
    file.write_all(b"written-but-not-closed").expect("write");
    let log = m.dir.path().to_path_buf();
    let (status, dir) = m.stop_keep_dir();
    assert!(status.success(), "exit {status}; logs in {}", log.display());
    drop(file);
    // The daemon (and its embedded vault) is gone: mount the same data again to look.
    let m = LocalMount::start_in(dir, &[]);
    assert_eq!(m.other_get("pending"), "written-but-not-closed");
}

#[test]
fn a_slow_secret_never_blocks_another() {
    let m = LocalMount::start(&["--cache-ttl", "60s"]);
    m.other_set("fast", "quick");
    m.other_set("slow", "sluggish");
    assert_eq!(sh_ok(&m.mountpoint, "cat fast"), "quick");

    // The next get (of `slow`) takes 5 s at the vault.
    m.block_on(
        m.admin().inject_fault(
            FaultSpec::default()
                .for_operation("get_secret")
                .with_latency_ms(5000)
                .times(1),
        ),
    )
    .expect("inject latency");
    let (done_tx, done_rx) = mpsc::channel();
    let slow_path = m.path("slow");
    let slow = std::thread::spawn(move || {
        let value = std::fs::read_to_string(slow_path);
        let _ = done_tx.send(());
        value
    });
    // Let the slow get reach the vault, then use other secrets meanwhile. (Creating a *new*
    // name is not among them: the kernel locks the directory exclusively for that, and an
    // uncached lookup holds it shared until the vault answers; see docs/SEMANTICS.md,
    // "Caching and consistency".)
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sh_ok(&m.mountpoint, "cat fast"), "quick");
    sh_ok(&m.mountpoint, "echo -n quicker > fast");
    assert_eq!(sh_ok(&m.mountpoint, "cat fast"), "quicker");
    assert!(sh_ok(&m.mountpoint, "ls").contains("fast"));
    assert!(
        done_rx.try_recv().is_err(),
        "the other operations should have finished while `slow` was still at the vault"
    );
    assert_eq!(slow.join().expect("join").expect("read slow"), "sluggish");
}

#[test]
fn a_new_mount_recovers_the_stale_mount_of_a_killed_daemon() {
    let m = LocalMount::start(&[]);
    sh_ok(&m.mountpoint, "echo -n survives > kept");
    let pid = m.pid().expect("running") as i32;
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let (_, dir) = m.stop_keep_dir();
    let m = LocalMount::start_in(dir, &[]);
    assert_eq!(sh_ok(&m.mountpoint, "cat kept"), "survives");
}

#[test]
fn sigterm_commits_unmounts_and_exits_zero() {
    let m = LocalMount::start(&[]);
    let mut file = std::fs::File::create(m.path("on-term")).expect("create");
    file.write_all(b"committed-on-sigterm").expect("write");
    let pid = m.pid().expect("running") as i32;
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let mountpoint = m.mountpoint.clone();
    let (status, dir) = m.stop_keep_dir();
    drop(file);
    assert!(status.success(), "exit status {status}");
    assert!(!common::is_mountpoint(&mountpoint), "still mounted");
    let m = LocalMount::start_in(dir, &[]);
    assert_eq!(m.other_get("on-term"), "committed-on-sigterm");
}
