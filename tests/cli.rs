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

#[test]
fn a_vault_whose_certificate_is_not_trusted_fails_the_mount_with_a_hint() {
    // A standalone local vault, mounted without its CA: the mount must refuse to start.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("lv");
    let mut vault = Command::new(env!("CARGO_BIN_EXE_akvfs"))
        .args(["local-vault", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn local vault");
    let env_file = data.join("env");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !env_file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let env = akvfs::local_vault::LocalVaultEnv::read_env_file(&env_file).expect("env");
    let mountpoint = dir.path().join("m");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let out = Command::new(env!("CARGO_BIN_EXE_akvfs"))
        .args(["mount", &env.vault_url])
        .arg(&mountpoint)
        .env_remove("AKVFS_CA_FILE")
        .env("AKVFS_TENANT_ID", &env.tenant_id)
        .env("AKVFS_CLIENT_ID", &env.client_id)
        .env("AKVFS_CLIENT_SECRET", env.client_secret.expose())
        .env("AKVFS_AUTHORITY_HOST", &env.authority_host)
        .env("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
        .output()
        .expect("run mount");
    let _ = vault.kill();
    let _ = vault.wait();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&env.vault_url), "{err}");
    assert!(err.contains("--ca-file"), "{err}");
}
