//! Real programs reading projected files (SPEC §8, issue 12 item 2), each run as the user the
//! config gives the file to, over a real `akvfs mount local --config FILE`: nginx serves HTTPS
//! from `nginx/tls.crt` and `nginx/tls.key` and picks up a rotated pair on `nginx -s reload`;
//! `ssh-keygen -y` accepts `ssh/id_ed25519` owned by its user with mode 0600 and refuses the same
//! key projected 0644; `psql` signs in with a `.pgpass` template owned by its user (0600) and
//! libpq ignores the same file projected 0644; the PostgreSQL server reads its TLS key owned by
//! `postgres` 0600 from the mount. Fixtures: `tests/common/programs.rs`; programs:
//! `scripts/install-deps`.
//!
//! The first test runs the programs on plain files on disk: it shows that the refusals the
//! mount tests rely on are the programs' own (and keeps the fixtures honest without a mount).

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::programs::{
    self_signed_localhost, sha256_fingerprint, ssh_ed25519_keypair, ssh_keygen_public_as, user_ids,
    write_owned, Nginx, Postgres, NGINX_BODY,
};
use common::LocalMount;

/// The unprivileged user the config gives files to, and its group.
const USER: &str = "nobody";
const GROUP: &str = "nogroup";

/// `akvfs mount local MNT --config DIR/app.toml EXTRA…` with `config` as app.toml, over a vault
/// that already holds `secrets` (set through a plain mount of the same data first, as an
/// operator's vault would), in a test directory other users may traverse (only the mount's own
/// modes decide what they get).
fn mount_with_config(config: &str, secrets: &[(&str, &str)], extra: &[&str]) -> LocalMount {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod test dir");
    let path = dir.path().join("app.toml");
    std::fs::write(&path, config).expect("write app.toml");
    let plain = LocalMount::start_in(dir, &[]);
    for (name, value) in secrets {
        plain.other_set(name, value);
    }
    let (status, dir) = plain.stop_keep_dir();
    assert!(status.success(), "the plain mount exited with {status}");
    let path = path.display().to_string();
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(extra);
    LocalMount::start_in(dir, &args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(uid, mode bits)` of `path`.
fn owner_and_mode(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (meta.uid(), meta.mode() & 0o7777)
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

/// Waits (up to 30 s) until `path` reads `expected`: a change made by another client shows
/// once `--cache-ttl` has passed.
fn wait_for_contents(path: &Path, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} still reads {now:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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

// ---------------------------------------------------------------------------------------------
// The same programs on projected files. These need `akvfs mount --config` (SPEC §8).

/// nginx serves HTTPS with `ssl_certificate` and `ssl_certificate_key` in the mount: curl
/// verifies the served certificate against the vault's, whose fingerprint it has; after the
/// pair is rotated in the vault (by another client), `nginx -s reload` serves the new one.
#[test]
fn nginx_serves_the_vaults_certificate_from_projected_tls_crt_and_tls_key() {
    let (cert, key) = self_signed_localhost();
    let m = mount_with_config(
        r#"
[[file]]
path = "nginx/tls.crt"
secret = "web-tls-crt"
mode = "0444"
group = "web-tls"

[[file]]
path = "nginx/tls.key"
secret = "web-tls-key"
mode = "0400"
group = "web-tls"
"#,
        &[("web-tls-crt", &cert), ("web-tls-key", &key)],
        &["--cache-ttl", "1s"],
    );
    let (crt_path, key_path) = (m.path("nginx/tls.crt"), m.path("nginx/tls.key"));
    assert_eq!(owner_and_mode(&crt_path), (0, 0o444));
    assert_eq!(owner_and_mode(&key_path), (0, 0o400));
    // curl trusts nothing but the vault's certificate, kept outside the mount.
    let trusted = m.dir.path().join("trusted.pem");
    std::fs::write(&trusted, &cert).expect("write trusted.pem");

    let nginx = Nginx::start(&crt_path, &key_path);
    let out = nginx.curl(&trusted);
    assert!(out.status.success(), "curl: {}", stderr(&out));
    assert_eq!(stdout(&out), NGINX_BODY);
    assert_eq!(
        nginx.served_fingerprint(),
        sha256_fingerprint(cert.as_bytes())
    );

    let (new_cert, new_key) = self_signed_localhost();
    m.other_set("web-tls-crt", &new_cert);
    m.other_set("web-tls-key", &new_key);
    wait_for_contents(&crt_path, &new_cert);
    wait_for_contents(&key_path, &new_key);
    nginx.reload();
    nginx.wait_for_fingerprint(&sha256_fingerprint(new_cert.as_bytes()));
    std::fs::write(&trusted, &new_cert).expect("write trusted.pem");
    let out = nginx.curl(&trusted);
    assert!(out.status.success(), "curl after reload: {}", stderr(&out));
}

/// `ssh-keygen -y -f MNT/ssh/id_ed25519` as `nobody`: the config gives the key to `nobody` with
/// mode 0600 and ssh-keygen accepts it, while the same mount serves the public key 0644 (root's)
/// for anyone to read; the same secret projected 0644 to `nobody` is refused, so the owner and
/// the mode are what ssh-keygen sees.
#[test]
fn ssh_keygen_accepts_a_projected_key_owned_by_its_user_at_0600_and_refuses_it_at_0644() {
    let (private, public) = ssh_ed25519_keypair("deploy@akvfs");
    let m = mount_with_config(
        &format!(
            r#"
[[file]]
path = "ssh/id_ed25519"
secret = "deploy-key"
uid = "{USER}"
gid = "{GROUP}"
mode = "0600"

[[file]]
path = "ssh/id_ed25519.pub"
secret = "deploy-key-pub"
mode = "0644"

[[file]]
path = "ssh-open/id_ed25519"
secret = "deploy-key"
uid = "{USER}"
gid = "{GROUP}"
mode = "0644"
"#
        ),
        &[("deploy-key", &private), ("deploy-key-pub", &public)],
        &["--allow-other", "--dir-mode", "0755"],
    );
    let (nobody, _) = user_ids(USER);
    assert_eq!(owner_and_mode(&m.path("ssh/id_ed25519")), (nobody, 0o600));
    assert_eq!(owner_and_mode(&m.path("ssh/id_ed25519.pub")), (0, 0o644));
    assert_eq!(
        owner_and_mode(&m.path("ssh-open/id_ed25519")),
        (nobody, 0o644)
    );

    // The other user reads the public key the mount serves 0644 ...
    let out = common::as_user(USER, GROUP, "cat")
        .arg(m.path("ssh/id_ed25519.pub"))
        .output()
        .expect("run setpriv cat");
    assert!(out.status.success(), "cat as {USER}: {}", stderr(&out));
    assert_eq!(stdout(&out), public);
    // ... and its own 0600 private key, which ssh-keygen accepts.
    assert_accepted(
        &ssh_keygen_public_as(USER, GROUP, &m.path("ssh/id_ed25519")),
        &public,
    );
    assert_refused_as_unprotected(
        &ssh_keygen_public_as(USER, GROUP, &m.path("ssh-open/id_ed25519")),
        "0644",
    );
}

/// `psql` as `nobody` with `PGPASSFILE=MNT/pg/.pgpass`, a template rendering the vault's
/// password into a `.pgpass` line, owned by `nobody` with mode 0600: it signs in (SCRAM) and
/// `SELECT 1` answers; the same template projected 0644 is ignored by libpq ("has group or world
/// access"), so the sign-in fails for want of a password.
#[test]
fn psql_signs_in_with_a_projected_pgpass_owned_by_its_user_at_0600_and_libpq_ignores_it_at_0644() {
    let password = "db-pw-7c1e";
    let server = Postgres::start(password, &[]);
    let line = format!(
        "127.0.0.1:{}:*:app:{{{{ secret('db-password') }}}}\\n",
        server.port()
    );
    let m = mount_with_config(
        &format!(
            r#"
[[file]]
path = "pg/.pgpass"
uid = "{USER}"
gid = "{GROUP}"
mode = "0600"
template = "{line}"

[[file]]
path = "pg-open/.pgpass"
uid = "{USER}"
gid = "{GROUP}"
mode = "0644"
template = "{line}"
"#
        ),
        &[("db-password", password)],
        &["--allow-other", "--dir-mode", "0755"],
    );
    let (nobody, _) = user_ids(USER);
    let pgpass = m.path("pg/.pgpass");
    // A template is read-only (EROFS on write) and shows the config's 0600, which is what
    // libpq checks.
    let (owner, mode) = owner_and_mode(&pgpass);
    assert_eq!((owner, mode), (nobody, 0o600), "mode {mode:o}");
    assert_eq!(
        std::fs::read_to_string(&pgpass).expect("read .pgpass"),
        format!("127.0.0.1:{}:*:app:{password}\n", server.port())
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
    assert_pgpass_ignored(&psql(&m.path("pg-open/.pgpass")));
}

/// The PostgreSQL server (user `postgres`) reads `ssl_key_file` from the mount, owned by
/// `postgres` with mode 0600 as it demands, and `ssl_cert_file` (0644, root's): psql with
/// `sslmode=verify-full` and the projected certificate as its root signs in over TLS.
#[test]
fn the_postgres_server_reads_its_tls_key_projected_to_user_postgres_at_0600() {
    let (cert, key) = self_signed_localhost();
    let m = mount_with_config(
        r#"
[[file]]
path = "pg/server.crt"
secret = "db-tls-crt"
mode = "0644"

[[file]]
path = "pg/server.key"
secret = "db-tls-key"
uid = "postgres"
gid = "postgres"
mode = "0600"
"#,
        &[("db-tls-crt", &cert), ("db-tls-key", &key)],
        &["--allow-other", "--dir-mode", "0755"],
    );
    let (postgres, _) = user_ids("postgres");
    let (crt_path, key_path) = (m.path("pg/server.crt"), m.path("pg/server.key"));
    assert_eq!(owner_and_mode(&key_path), (postgres, 0o600));

    let password = "tls-pw-51d0";
    let server = Postgres::start(
        password,
        &[
            "ssl = on".to_owned(),
            format!("ssl_cert_file = '{}'", crt_path.display()),
            format!("ssl_key_file = '{}'", key_path.display()),
        ],
    );
    let out = server.psql_as(
        USER,
        GROUP,
        &format!("sslmode=verify-full sslrootcert={}", crt_path.display()),
        &[("PGPASSWORD", OsStr::new(password))],
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert!(
        out.status.success(),
        "psql over TLS: {}\nserver log:\n{}",
        stderr(&out),
        server.log_text()
    );
    assert_eq!(stdout(&out).trim(), "t");
}
