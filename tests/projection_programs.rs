//! Real programs reading projected files (SPEC §8, issue 12 item 2), with the fixtures of
//! `tests/common/programs.rs` and the programs from `scripts/install-deps`.
//!
//! The first test runs the programs on plain files on disk: it shows that the refusals the
//! mount tests rely on are the programs' own (and keeps the fixtures honest without a mount).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::programs::{
    self_signed_localhost, sha256_fingerprint, ssh_ed25519_keypair, ssh_keygen_public_as,
    write_owned, Nginx, Postgres, NGINX_BODY,
};

/// The unprivileged user the config gives files to, and its group.
const USER: &str = "nobody";
const GROUP: &str = "nogroup";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ssh-keygen accepted the key and printed its public half (`ssh-ed25519 AAAA… comment`).
fn assert_accepted(out: &Output, public: &str) {
    assert!(
        out.status.success(),
        "ssh-keygen refused the key: {}",
        stderr(out)
    );
    assert_eq!(stdout(out).trim(), public.trim());
}

/// ssh-keygen refused the key for its mode.
fn assert_refused_as_unprotected(out: &Output, mode: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success()
            && err.contains("UNPROTECTED PRIVATE KEY FILE")
            && err.contains(&format!("Permissions {mode}")),
        "ssh-keygen should refuse a {mode} key: {}, stdout {:?}, stderr {err:?}",
        out.status,
        stdout(out)
    );
}

/// psql signed in and `SELECT 1` answered.
fn assert_signed_in(out: &Output) {
    assert!(out.status.success(), "psql failed: {}", stderr(out));
    assert_eq!(stdout(out).trim(), "1");
}

/// libpq warned that the password file is open to others, ignored it, and so had no password.
fn assert_pgpass_ignored(out: &Output) {
    let err = stderr(out);
    assert!(
        !out.status.success()
            && err.contains("has group or world access")
            && err.contains("no password supplied"),
        "libpq should ignore a group/world-readable .pgpass: {}, stderr {err:?}",
        out.status
    );
}

// ---------------------------------------------------------------------------------------------
// The programs on plain files (no mount)

/// What the mount tests rely on, on plain files: nginx serves the certificate its config names;
/// ssh-keygen accepts its user's key at 0600 and refuses it at 0644; libpq reads its user's
/// `.pgpass` at 0600 and ignores it at 0644.
#[test]
fn on_plain_files_the_programs_check_owner_and_mode_as_the_mount_tests_expect() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = |name: &str| dir.path().join(name);

    let (cert, key) = self_signed_localhost();
    write_owned(&file("tls.crt"), &cert, "root", 0o644);
    write_owned(&file("tls.key"), &key, "root", 0o400);
    let nginx = Nginx::start(&file("tls.crt"), &file("tls.key"));
    let out = nginx.curl(&file("tls.crt"));
    assert!(out.status.success(), "curl: {}", stderr(&out));
    assert_eq!(stdout(&out), NGINX_BODY);
    assert_eq!(
        nginx.served_fingerprint(),
        sha256_fingerprint(cert.as_bytes())
    );
    drop(nginx);

    let (private, public) = ssh_ed25519_keypair("plain");
    write_owned(&file("id_ed25519"), &private, USER, 0o600);
    assert_accepted(
        &ssh_keygen_public_as(USER, GROUP, &file("id_ed25519")),
        &public,
    );
    std::fs::set_permissions(file("id_ed25519"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    assert_refused_as_unprotected(
        &ssh_keygen_public_as(USER, GROUP, &file("id_ed25519")),
        "0644",
    );

    let password = "plain-pw-3f9";
    let server = Postgres::start(password, &[]);
    let pgpass = file(".pgpass");
    write_owned(
        &pgpass,
        &format!("127.0.0.1:{}:*:app:{password}\n", server.port()),
        USER,
        0o600,
    );
    let psql = |pgpass: &Path| {
        server.psql_as(
            USER,
            GROUP,
            "",
            &[("PGPASSFILE", pgpass.as_os_str())],
            "SELECT 1",
        )
    };
    assert_signed_in(&psql(&pgpass));
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_pgpass_ignored(&psql(&pgpass));
}
