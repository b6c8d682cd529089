//! Projections on real mounts (`akvfs mount local DIR --config FILE`, SPEC §8): files under
//! the names, owners and modes applications expect, `[[dir]]` conventions, templates and
//! formats rendered once per change of their inputs, config validation and SIGHUP. The vault's
//! side is read through its REST API (another client) and its call counters.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use akvfs::local_vault::FaultSpec;
use akvfs::secret_value::SecretValue;
use akvfs::vault::model::{SecretAttributes, SecretSetParameters, SecretUpdateParameters};
use akvfs::vault::SecretStore;
use common::{akvfs_bin, is_mountpoint, sh, LocalMount};

/// A config file in its own directory (kept while the test runs).
struct Config {
    dir: tempfile::TempDir,
}

impl Config {
    fn new(text: &str) -> Config {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config { dir };
        config.write(text);
        config
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("app.toml")
    }

    fn write(&self, text: &str) {
        std::fs::write(self.path(), text).expect("write config");
    }

    fn arg(&self) -> String {
        self.path().display().to_string()
    }
}

fn mount_with(config: &Config, extra: &[&str]) -> LocalMount {
    let path = config.arg();
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(extra);
    LocalMount::start(&args)
}

fn read(m: &LocalMount, path: &str) -> String {
    std::fs::read_to_string(m.path(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}\n{}", m.log_text()))
}

fn errno_of(result: std::io::Result<impl Sized>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// `uid` of a user of this system, by name.
fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid")
}

fn rendered_count(m: &LocalMount, file: &str) -> usize {
    let needle = format!("rendered file={file:?}");
    m.log_text().matches(&needle).count()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_with_tags(m: &LocalMount, name: &str, value: &str, tags: &[(&str, &str)]) {
    let tags: BTreeMap<String, String> = tags
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let params = SecretSetParameters {
        value: SecretValue::from(value),
        tags: Some(tags),
        ..Default::default()
    };
    m.block_on(m.other_client().set_secret(name, params))
        .expect("set with tags");
}

const NAMES: &str = r#"
[defaults]
mode = "0640"

[[file]]
path = "nginx/tls.crt"
secret = "web-tls-crt"
mode = "0644"

[[file]]
path = "nginx/tls.key"
secret = "web-tls-key"
mode = "0400"

[[file]]
path = "ssh/id_ed25519"
secret = "deploy-key"
uid = "nobody"
mode = "0600"

[[file]]
path = "pg/.pgpass"
mode = "0600"
template = "db.internal:5432:*:app:{{ secret('db-password') }}\n"

[[file]]
path = "run/secrets/db_password"
secret = "db-password"
mode = "0444"

[[file]]
path = "app/.env"
format = "dotenv"
select = { prefix = "app-" }
names = "env"
"#;

#[test]
fn configured_names_owners_and_modes_read_write_and_delete_their_secrets() {
    let config = Config::new(NAMES);
    let m = mount_with(&config, &["--allow-other"]);
    m.other_set(
        "web-tls-crt",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    m.other_set(
        "web-tls-key",
        "-----BEGIN PRIVATE KEY-----\nMC4C\n-----END PRIVATE KEY-----\n",
    );
    m.other_set("deploy-key", "ssh key text\n");
    m.other_set("db-password", "s3cr:et");
    m.other_set("app-greeting", "hello");

    // The root lists exactly the configured entries.
    let mut top: Vec<String> = std::fs::read_dir(&m.mountpoint)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["app", "nginx", "pg", "run", "ssh"]);

    let me = unsafe { libc::getuid() };
    let nobody = uid_of("nobody");
    for (path, value, uid, mode) in [
        (
            "nginx/tls.crt",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            me,
            0o644,
        ),
        (
            "nginx/tls.key",
            "-----BEGIN PRIVATE KEY-----\nMC4C\n-----END PRIVATE KEY-----\n",
            me,
            0o400,
        ),
        ("ssh/id_ed25519", "ssh key text\n", nobody, 0o600),
        ("pg/.pgpass", "db.internal:5432:*:app:s3cr:et\n", me, 0o600),
        ("run/secrets/db_password", "s3cr:et", me, 0o444),
        ("app/.env", "GREETING='hello'\n", me, 0o640),
    ] {
        assert_eq!(read(&m, path), value, "{path}");
        let meta = std::fs::metadata(m.path(path)).expect("stat");
        assert_eq!(meta.len(), value.len() as u64, "{path}: exact size");
        assert_eq!(meta.uid(), uid, "{path}: owner");
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}: mode");
    }

    // Writing a secret's file is one set of that secret.
    m.reset_counters();
    write_file(&m.path("nginx/tls.crt"), "rotated\n").expect("write tls.crt");
    assert_eq!(m.calls("set_secret"), 1, "one version per close");
    assert_eq!(m.other_get("web-tls-crt"), "rotated\n");
    assert_eq!(read(&m, "nginx/tls.crt"), "rotated\n");

    // Templates and formats are read-only, whoever asks.
    for path in ["pg/.pgpass", "app/.env"] {
        let opened = std::fs::OpenOptions::new().write(true).open(m.path(path));
        assert_eq!(errno_of(opened), Some(libc::EROFS), "{path}");
        assert_eq!(
            errno_of(std::fs::remove_file(m.path(path))),
            Some(libc::EROFS),
            "rm {path}"
        );
    }
    // Nothing outside the config: no new names, no directories.
    assert_eq!(
        errno_of(write_file(&m.path("nginx/other.pem"), "x")),
        Some(libc::EACCES)
    );
    assert!(m
        .log_text()
        .contains("cannot create a file the config does not name"));
    assert_eq!(
        errno_of(std::fs::create_dir(m.path("nginx/sub"))),
        Some(libc::EPERM)
    );
    assert_eq!(
        errno_of(std::fs::metadata(m.path("nginx/nope"))),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno_of(std::fs::rename(
            m.path("nginx/tls.crt"),
            m.path("nginx/tls2.crt")
        )),
        Some(libc::EXDEV)
    );
    // The mode belongs to the config.
    let chmod = std::fs::set_permissions(m.path("nginx/tls.key"), PermissionsExt::from_mode(0o644));
    assert_eq!(errno_of(chmod), Some(libc::EPERM));
    assert_eq!(
        m.calls("set_secret"),
        1,
        "nothing refused reached the vault"
    );

    // rm deletes the secret, and returns once the vault is done.
    m.reset_counters();
    std::fs::remove_file(m.path("nginx/tls.key")).expect("rm tls.key");
    assert_eq!(m.calls("delete_secret"), 1);
    assert!(
        m.calls("get_deleted_secret") >= 1,
        "the deletion was polled"
    );
    let got = m.block_on(m.other_client().get_secret("web-tls-key", None));
    assert!(got.is_err(), "web-tls-key is gone");
    assert_eq!(
        errno_of(std::fs::metadata(m.path("nginx/tls.key"))),
        Some(libc::ENOENT)
    );
    let mut nginx: Vec<String> = std::fs::read_dir(m.path("nginx"))
        .expect("ls nginx")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    nginx.sort();
    assert_eq!(
        nginx,
        ["tls.crt"],
        "a configured secret that is not there is not listed"
    );
    // Writing it again creates it (one set).
    m.reset_counters();
    write_file(&m.path("nginx/tls.key"), "new key\n").expect("create tls.key");
    assert_eq!(m.other_get("web-tls-key"), "new key\n");
    // The deleted secret is recovered first (--on-deleted-conflict recover): the set that
    // found it deleted (409) made nothing.
    assert_eq!(m.counters().count_status("set_secret", 200), 1);
    assert_eq!(m.calls("recover_deleted_secret"), 1);
    let meta = std::fs::metadata(m.path("nginx/tls.key")).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o400);
}

#[test]
fn directories_name_secrets_by_convention_and_new_files_create_the_mapped_secret() {
    let config = Config::new(
        r#"
[[dir]]
path = "aspnet"
select = { prefix = "myapp--" }
names = "aspnet"

[[dir]]
path = "spring"
names = "spring"
select = { prefix = "svc--" }

[[dir]]
path = "env"
names = "env"
select = { names = ["db-password", "api-key"] }

[[dir]]
path = "tagged"
select = { tag = "app=web" }
read_only = true

[vault]
path = "vault"
"#,
    );
    let m = mount_with(&config, &[]);
    m.other_set("myapp--ConnectionStrings--Db", "Server=db;Password=x");
    m.other_set("svc--spring--datasource--password", "pw");
    m.other_set("db-password", "dbpw");
    m.other_set("api-key", "k");
    m.other_set("unrelated", "u");
    set_with_tags(&m, "web-cert", "cert", &[("app", "web")]);
    set_with_tags(&m, "other-cert", "cert2", &[("app", "api")]);

    let ls = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(m.path(dir))
            .unwrap_or_else(|e| panic!("ls {dir}: {e}"))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(ls("aspnet"), ["ConnectionStrings__Db"]);
    assert_eq!(
        read(&m, "aspnet/ConnectionStrings__Db"),
        "Server=db;Password=x"
    );
    assert_eq!(ls("spring"), ["spring.datasource.password"]);
    assert_eq!(read(&m, "spring/spring.datasource.password"), "pw");
    assert_eq!(ls("env"), ["API_KEY", "DB_PASSWORD"]);
    assert_eq!(read(&m, "env/DB_PASSWORD"), "dbpw");
    assert_eq!(ls("tagged"), ["web-cert"]);
    assert_eq!(read(&m, "tagged/web-cert"), "cert");
    // Only the convention's own spelling names a file; unselected secrets are not there.
    assert_eq!(
        errno_of(std::fs::metadata(m.path("env/db_password"))),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno_of(std::fs::metadata(m.path("tagged/other-cert"))),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno_of(std::fs::metadata(m.path("env/UNRELATED"))),
        Some(libc::ENOENT)
    );
    // The vault's own layout is where [vault] puts it.
    assert_eq!(read(&m, "vault/unrelated"), "u");

    // A new file creates the secret its name maps back to: one set.
    m.reset_counters();
    write_file(&m.path("aspnet/Logging__LogLevel__Default"), "Warning").expect("new aspnet file");
    write_file(&m.path("spring/server.port"), "8443").expect("new spring file");
    assert_eq!(m.calls("set_secret"), 2);
    assert_eq!(m.other_get("myapp--Logging--LogLevel--Default"), "Warning");
    assert_eq!(m.other_get("svc--server--port"), "8443");
    assert_eq!(
        ls("aspnet"),
        ["ConnectionStrings__Db", "Logging__LogLevel__Default"]
    );
    // A name the convention cannot map back, a name outside a names selection, a read-only
    // directory: refused, nothing set.
    assert_eq!(
        errno_of(write_file(&m.path("env/OTHER_NAME"), "x")),
        Some(libc::EACCES)
    );
    assert_eq!(
        errno_of(write_file(&m.path("tagged/new"), "x")),
        Some(libc::EROFS)
    );
    assert_eq!(m.calls("set_secret"), 2);
    // rm in a convention directory deletes the secret.
    std::fs::remove_file(m.path("spring/server.port")).expect("rm");
    assert!(m
        .block_on(m.other_client().get_secret("svc--server--port", None))
        .is_err());
}

#[test]
fn templates_render_once_per_change_of_their_inputs_and_fail_alone() {
    let config = Config::new(
        r#"
[[file]]
path = "app/settings.json"
template = '''{"db": {{ secret('db-password') | tojson }}, "old": {{ secret('db-password', version) | tojson }}}
'''

[[file]]
path = "app/env.sh"
template = "export PASSWORD={{ secret('db-password') | shell_quote }}\nexport B64={{ secret('db-password') | b64encode }}\nexport PLAIN={{ secret('db-b64') | b64decode | shell_quote }}\n"

[[file]]
path = "app/dotenv"
template = "PASSWORD={{ secret('db-b64') | dotenv_quote }}\n"

[[file]]
path = "broken/missing"
template = "{{ secret('no-such-secret') }}"

[[file]]
path = "broken/disabled"
template = "{{ secret('switched-off') }}"

[[file]]
path = "broken/forbidden"
template = "{{ secret('not-for-us') }}"
"#,
    );
    let m = mount_with(&config, &["--cache-ttl", "2s", "--list-ttl", "2s"]);
    let first = m.block_on(m.other_client().set_secret(
        "db-password",
        SecretSetParameters {
            value: SecretValue::from("it's a \"pass\" $HOME"),
            ..Default::default()
        },
    ));
    let first_version = first
        .expect("set")
        .id
        .and_then(|id| id.rsplit('/').next().map(str::to_owned))
        .expect("version");
    // A template naming a version: written in, as its config would be.
    config.write(
        &std::fs::read_to_string(config.path())
            .expect("config")
            .replace(
                "secret('db-password', version)",
                &format!("secret('db-password', '{first_version}')"),
            ),
    );
    m.other_set("db-b64", "cGxhaW4gdGV4dA==");
    m.other_set("switched-off", "x");
    m.other_set("not-for-us", "x");
    let pid = m.pid().expect("pid");
    sh(&m.mountpoint, &format!("kill -HUP {pid}"));
    wait_for("the config re-read", || {
        m.log_text().contains("config re-read")
    });

    let json = read(&m, "app/settings.json");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("settings.json is JSON");
    assert_eq!(parsed["db"], "it's a \"pass\" $HOME");
    assert_eq!(parsed["old"], "it's a \"pass\" $HOME");
    let env = sh(
        &m.mountpoint,
        "set -e; . app/env.sh; printf '%s|%s|%s' \"$PASSWORD\" \"$B64\" \"$PLAIN\"",
    );
    assert_eq!(
        String::from_utf8_lossy(&env.stdout),
        "it's a \"pass\" $HOME|aXQncyBhICJwYXNzIiAkSE9NRQ==|plain text"
    );
    let dotenv = read(&m, "app/dotenv");
    assert_eq!(dotenv, "PASSWORD='cGxhaW4gdGV4dA=='\n");
    let size = std::fs::metadata(m.path("app/settings.json"))
        .expect("stat")
        .len();
    assert_eq!(size, json.len() as u64, "exact size");

    // Rendered once: reads within the cache's validity cost no get and no render.
    let renders = rendered_count(&m, "app/settings.json");
    m.reset_counters();
    for _ in 0..10 {
        assert_eq!(read(&m, "app/settings.json"), json);
    }
    assert_eq!(
        m.calls("get_secret"),
        0,
        "no vault call within the cache's validity"
    );
    assert_eq!(
        rendered_count(&m, "app/settings.json"),
        renders,
        "not rendered again"
    );

    // After the cache expires, unchanged inputs cost a get each but no new render.
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(read(&m, "app/settings.json"), json);
    assert_eq!(
        rendered_count(&m, "app/settings.json"),
        renders,
        "inputs unchanged"
    );

    // A change of an input renders once more, with the new value.
    m.other_set("db-password", "new");
    std::thread::sleep(Duration::from_millis(2200));
    let changed = read(&m, "app/settings.json");
    assert!(changed.starts_with("{\"db\": \"new\""), "{changed}");
    let _ = read(&m, "app/settings.json");
    assert_eq!(rendered_count(&m, "app/settings.json"), renders + 1);

    // A missing, disabled or forbidden secret fails that file only, naming the secret.
    let disable = SecretUpdateParameters {
        attributes: Some(SecretAttributes {
            enabled: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    m.block_on(
        m.other_client()
            .update_secret_properties("switched-off", None, disable),
    )
    .expect("disable");
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(read(&m, "app/dotenv"), dotenv);
    m.inject(FaultSpec {
        operation: Some("get_secret".into()),
        status: Some(403),
        count: Some(1),
        ..Default::default()
    });
    assert_eq!(
        errno_of(std::fs::read(m.path("broken/forbidden"))),
        Some(libc::EIO)
    );
    assert_eq!(
        errno_of(std::fs::read(m.path("broken/missing"))),
        Some(libc::EIO)
    );
    assert_eq!(
        errno_of(std::fs::read(m.path("broken/disabled"))),
        Some(libc::EIO)
    );
    let log = m.log_text();
    for (file, secret, why) in [
        ("broken/missing", "no-such-secret", "not found"),
        ("broken/disabled", "switched-off", "disabled"),
        ("broken/forbidden", "not-for-us", "forbidden"),
    ] {
        assert!(
            log.lines().any(|l| l.contains("cannot render")
                && l.contains(&format!("file={file:?}"))
                && l.contains(&format!("secret {secret}: {why}"))),
            "no log line for {file}:\n{log}"
        );
    }
    assert!(!log.contains("it's a"), "a value reached the log");
    assert_eq!(read(&m, "app/dotenv"), dotenv, "other files keep working");
}

#[test]
fn rendered_files_count_against_the_cache_size() {
    // 100 × 20,000 bytes rendered into one file: 2 MB, beyond a 1 MiB cache, so it is never
    // kept and every open renders it again; a small file next to it is rendered once.
    let config = Config::new(
        r#"
[[file]]
path = "big"
template = "{% for i in range(100) %}{{ secret('big') }}{% endfor %}"

[[file]]
path = "small"
template = "{{ secret('small') }}"
"#,
    );
    let m = mount_with(&config, &["--cache-size", "1048576", "--cache-ttl", "1h"]);
    m.other_set("big", &"b".repeat(20_000));
    m.other_set("small", "s");
    for _ in 0..3 {
        assert_eq!(
            std::fs::read(m.path("big")).expect("read big").len(),
            2_000_000
        );
        assert_eq!(read(&m, "small"), "s");
    }
    assert_eq!(rendered_count(&m, "small"), 1, "kept in the cache");
    assert!(
        rendered_count(&m, "big") >= 3,
        "a render larger than --cache-size is not kept: {}",
        rendered_count(&m, "big")
    );
}

#[test]
fn format_files_are_read_back_exactly_through_the_mount() {
    let config = Config::new(
        r#"
[[file]]
path = ".env"
format = "dotenv"
select = { prefix = "app-" }
names = "env"

[[file]]
path = "settings.json"
format = "json"
select = { prefix = "app-" }
names = "dots"
"#,
    );
    let m = mount_with(&config, &[]);
    let values = [
        ("app-multi-line", "line one\nline two\n"),
        ("app-quotes", "it's \"quoted\""),
        ("app-hash", "a#b = c"),
        ("app-dollar", "$HOME and cost $5"),
        ("app-unicode", "héllo wörld ✓"),
    ];
    for (name, value) in values {
        m.other_set(name, value);
    }
    let shown = sh(&m.mountpoint, "set -a; . ./.env; printf '%s\\0' \"$MULTI_LINE\" \"$QUOTES\" \"$HASH\" \"$DOLLAR\" \"$UNICODE\"");
    let got: Vec<String> = String::from_utf8_lossy(&shown.stdout)
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = values.iter().map(|(_, v)| (*v).to_owned()).collect();
    assert_eq!(got, want, "sh reads the dotenv file back exactly");
    let json: BTreeMap<String, String> =
        serde_json::from_str(&read(&m, "settings.json")).expect("json");
    for (name, value) in values {
        let key = name.trim_start_matches("app-").replace('-', ".");
        assert_eq!(json.get(&key).map(String::as_str), Some(value), "{key}");
    }
    if Command::new("jq").arg("--version").output().is_ok() {
        let out = Command::new("jq")
            .args(["-j", ".\"multi.line\""])
            .arg(m.path("settings.json"))
            .output()
            .expect("jq");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "line one\nline two\n");
    }
}

/// Runs `akvfs mount local` with `args`; it must exit 2 with `expected` in its stderr and leave
/// nothing mounted.
fn refused(args: &[&str], expected: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("m");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let out = Command::new(akvfs_bin())
        .arg("mount")
        .arg("local")
        .arg(&mountpoint)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(args)
        .output()
        .expect("run akvfs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in:\n{stderr}"
    );
    assert!(!is_mountpoint(&mountpoint), "nothing is mounted");
    assert!(!dir.path().join("data").exists(), "no vault was started");
}

#[test]
fn a_bad_config_exits_2_naming_file_line_and_reason_and_mounts_nothing() {
    for (text, line, reason) in [
        (
            "[[file]]\npath = \"a\"\nsecret = \"s\"\ncolour = \"red\"\n",
            4,
            "colour",
        ),
        ("[[file]]\npath = \"/etc/a\"\nsecret = \"s\"\n", 2, "/etc/a"),
        ("[[file]]\npath = \"a/../b\"\nsecret = \"s\"\n", 2, ".."),
        (
            "[[file]]\npath = \"a\"\nsecret = \"s\"\n[[file]]\npath = \"a\"\nsecret = \"t\"\n",
            5,
            "\"a\"",
        ),
        (
            "[[file]]\npath = \"a\"\nsecret = \"s\"\nuid = \"no-such-user-here\"\n",
            4,
            "no-such-user-here",
        ),
        (
            "[[file]]\npath = \"a\"\ntemplate = \"{{ secret('x') \"\n",
            3,
            "template",
        ),
        (
            "[[file]]\npath = \"a\"\nsecret = \"not_a_name\"\n",
            3,
            "not_a_name",
        ),
    ] {
        let config = Config::new(text);
        let path = config.arg();
        refused(&["--config", &path], &format!("{path}:{line}:"));
        refused(&["--config", &path], reason);
    }
    // A file given to another user needs --allow-other (else nobody but us could open it).
    let config = Config::new("[[file]]\npath = \"a\"\nsecret = \"s\"\nuid = \"nobody\"\n");
    let path = config.arg();
    refused(&["--config", &path], "--allow-other");
}

#[test]
fn sighup_rereads_the_config_and_keeps_the_old_one_when_the_new_one_is_bad() {
    let config = Config::new("[[file]]\npath = \"one\"\nsecret = \"first\"\n");
    // From fstab: -o config=PATH.
    let option = format!("config={}", config.arg());
    let m = LocalMount::start(&["-o", &option]);
    m.other_set("first", "1");
    m.other_set("second", "2");
    assert_eq!(read(&m, "one"), "1");
    let pid = m.pid().expect("pid");

    config.write("[[file]]\npath = \"two\"\nsecret = \"second\"\n");
    sh(&m.mountpoint, &format!("kill -HUP {pid}"));
    wait_for("the new file", || {
        std::fs::read_to_string(m.path("two")).is_ok_and(|v| v == "2")
    });
    wait_for("the old file to go", || !m.path("one").exists());

    config.write("[[file]]\npath = \"three\"\nsecret = \"second\"\nbogus = 1\n");
    sh(&m.mountpoint, &format!("kill -HUP {pid}"));
    wait_for("the refusal", || {
        m.log_text().contains("the config is refused")
    });
    assert!(
        m.log_text().contains(&format!("{}:4:", config.arg())),
        "{}",
        m.log_text()
    );
    assert_eq!(read(&m, "two"), "2", "the old config stays");
    assert!(!m.path("three").exists());
}
