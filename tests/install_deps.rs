//! The README's test command on a fresh machine: `scripts/test` installs what the tests need
//! (`scripts/install-deps`, as root with apt-get) or names everything missing at once and stops
//! before building. Run here with a PATH that holds nothing but bash (and stubs).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A bin directory with `bash` and `dirname` only: a machine where none of the test tools is
/// installed.
fn bare_bin() -> tempfile::TempDir {
    let bin = tempfile::tempdir().expect("tempdir");
    for tool in ["bash", "dirname"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .expect("command -v");
        let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
        assert!(!path.is_empty(), "{tool} not found");
        symlink(&path, bin.path().join(tool)).expect("symlink");
    }
    bin
}

/// A stub program in `bin` that appends its arguments to `record` and exits 0.
fn stub(bin: &Path, name: &str, record: &Path) {
    let path = bin.join(name);
    std::fs::write(
        &path,
        format!(
            "#!{}\necho \"{name} $*\" >> '{}'\n",
            bin.join("bash").display(),
            record.display()
        ),
    )
    .expect("write stub");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn run(script: &str, bin: &Path) -> Output {
    Command::new(bin.join("bash"))
        .arg(repo().join(script))
        .env_clear()
        .env("PATH", bin)
        .stdin(Stdio::null())
        .output()
        .expect("run script")
}

const EVERY_PACKAGE: &str =
    "fuse3 mount util-linux python3 attr vim nano tmux rsync perl dash jq default-jre-headless nginx curl openssl openssh-client nodejs npm postgresql-client python3-venv postgresql";

#[test]
fn install_deps_names_everything_missing_at_once_when_it_cannot_install() {
    let bin = bare_bin();
    let out = run("scripts/install-deps", bin.path());
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for missing in [
        "fusermount3",
        "setpriv",
        "python3",
        "setfattr",
        "vim",
        "nano",
        "tmux",
        "python3-venv",
        "nginx",
        "ssh-keygen",
        "node (Debian package nodejs)",
        "npm (Debian package npm)",
        "psql",
        "PostgreSQL server",
        "cargo",
    ] {
        assert!(said.contains(missing), "{missing} not named:\n{said}");
    }
    assert!(
        said.contains(&format!("apt-get install -y {EVERY_PACKAGE}")),
        "one command installs them all:\n{said}"
    );
}

#[test]
fn install_deps_as_root_installs_every_missing_package_with_one_apt_get() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the install path runs as root only");
        return;
    }
    let bin = bare_bin();
    let record = bin.path().join("calls");
    stub(bin.path(), "apt-get", &record);
    let out = run("scripts/install-deps", bin.path());
    let calls = std::fs::read_to_string(&record).unwrap_or_default();
    assert_eq!(
        calls,
        format!("apt-get update -qq\napt-get install -y -qq {EVERY_PACKAGE}\n"),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The stub installed nothing, so the check after it still fails, naming what is missing.
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn scripts_test_stops_before_building_when_something_is_missing() {
    let bin = bare_bin();
    let record = bin.path().join("calls");
    stub(bin.path(), "cargo", &record);
    let out = Command::new(bin.path().join("bash"))
        .arg(repo().join("scripts/test"))
        .env_clear()
        .env("PATH", bin.path())
        .env("AKVFS_NO_INSTALL", "1")
        .stdin(Stdio::null())
        .output()
        .expect("scripts/test");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("nano") && said.contains("fusermount3") && said.contains("tmux"),
        "{said}"
    );
    assert!(
        !record.exists(),
        "cargo ran although the tests could not: {}",
        std::fs::read_to_string(&record).unwrap_or_default()
    );
}
