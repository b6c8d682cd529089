//! The Key Vault quickstart through files, on a real mount of the real local vault:
//! set with `echo`, get with `cat`, delete with `rm` (waits until the vault has finished), and
//! re-create a deleted-but-recoverable name.

mod common;

use akvfs::vault::SecretStore;
use common::{sh, sh_ok, LocalMount};

#[test]
fn quickstart_set_get_delete_through_files() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;

    sh_ok(dir, "echo -n v > mySecret");
    assert_eq!(sh_ok(dir, "cat mySecret"), "v");
    assert_eq!(
        m.other_get("mySecret"),
        "v",
        "the vault holds what was written"
    );

    sh_ok(dir, "rm mySecret");
    // rm returned: the vault must already report the deletion as complete.
    let deleted = m.block_on(m.other_client().get_deleted_secret("mySecret"));
    assert!(
        deleted.is_ok(),
        "rm returned before the deletion completed: {deleted:?}"
    );
    let out = sh(dir, "cat mySecret");
    assert!(
        !out.status.success(),
        "a deleted secret must not be readable"
    );
    assert!(!dir.join("mySecret").exists());
}

#[test]
fn unlink_waits_until_deletion_completes_then_rewrite_recovers_and_keeps_history() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;

    sh_ok(dir, "echo -n v > NAME");
    sh_ok(dir, "rm NAME && echo -n w > NAME");
    assert_eq!(sh_ok(dir, "cat NAME"), "w");
    assert_eq!(m.other_get("NAME"), "w");

    let versions = m
        .block_on(m.other_client().list_properties_of_secret_versions("NAME"))
        .expect("versions");
    assert_eq!(
        versions.len(),
        2,
        "the recovered secret keeps its old version and gains the new one"
    );
    let c = m.counters();
    assert_eq!(c.count("recover_deleted_secret"), 1);
}

#[test]
fn rewrite_of_deleted_name_with_fail_policy_answers_eexist() {
    let m = LocalMount::start(&["--on-deleted-conflict", "fail"]);
    let dir = &m.mountpoint;

    sh_ok(dir, "echo -n v > NAME");
    sh_ok(dir, "rm NAME");
    let out = sh(
        dir,
        "python3 -c \"import errno,os\ntry:\n  fd=os.open('NAME', os.O_WRONLY|os.O_CREAT|os.O_TRUNC, 0o600); os.write(fd, b'w'); os.close(fd); print('ok')\nexcept OSError as e: print(errno.errorcode[e.errno])\"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "EEXIST");
    assert_eq!(m.counters().count("recover_deleted_secret"), 0);
    assert!(
        m.block_on(m.other_client().get_deleted_secret("NAME"))
            .is_ok(),
        "the deleted secret is left as it was"
    );
}

#[test]
fn kill_int_unmounts_cleanly_and_exits_zero() {
    let mut m = LocalMount::start(&[]);
    sh_ok(&m.mountpoint, "echo -n x > a");
    let status = m.stop();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        m.log_text()
    );
    assert!(!common::is_mountpoint(&m.mountpoint), "still mounted");
}

#[test]
fn local_vault_keeps_secrets_across_restart() {
    let m = LocalMount::start(&[]);
    sh_ok(&m.mountpoint, "echo -n persisted > keep-me");
    let (status, dir) = m.stop_keep_dir();
    assert!(status.success());

    let m = LocalMount::start_in(dir, &[]);
    assert_eq!(sh_ok(&m.mountpoint, "cat keep-me"), "persisted");
}

#[test]
fn logs_never_contain_values() {
    let m = LocalMount::start(&["-vv"]);
    let value = "s3cr3t-VALUE-that-must-not-leak";
    sh_ok(
        &m.mountpoint,
        &format!("echo -n {value} > leak-check && cat leak-check"),
    );
    let log = m.log_text();
    assert!(!log.is_empty(), "trace logging produced nothing");
    assert!(!log.contains(value), "a secret value reached the log");
    assert!(
        !log.contains(m.env.client_secret.expose()),
        "the client secret reached the log"
    );
}
