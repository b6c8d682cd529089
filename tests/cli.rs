//! Exit codes and error messages of the binary.

use std::process::Command;

fn akvfs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_akvfs"))
        .args(args)
        .output()
        .expect("run akvfs")
}

#[test]
fn usage_errors_exit_2() {
    let out = akvfs(&["mount"]);
    assert_eq!(out.status.code(), Some(2));
    let out = akvfs(&["mount", "local", "/tmp", "--cache-ttl", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));
}

#[test]
fn a_missing_mountpoint_exits_1_and_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nowhere");
    let out = akvfs(&["mount", "local", missing.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere"), "{err}");
    assert!(err.contains("mkdir"), "{err}");
}

#[test]
fn help_groups_the_mount_options() {
    let out = akvfs(&["mount", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for heading in ["Vault", "Mount", "Cache", "Behaviour", "Logging"] {
        assert!(
            help.contains(&format!("{heading}:")),
            "no {heading} group in:\n{help}"
        );
    }
}
