//! Issue 4, authentication on a real mount: the Azure CLI credential through a fake `az` on
//! `PATH`, short-lived tokens refreshed while reading (`mount local --token-ttl`), and a
//! sovereign-cloud vault URL (`https://NAME.vault.azure.cn:PORT`) served by the local vault on
//! loopback through `AKVFS_RESOLVE`, with the challenge resource checked before any token leaves.

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use akvfs::local_vault::{AdminClient, Counters, LocalVault, LocalVaultConfig, LocalVaultEnv};
use akvfs::vault::auth::{credential_with_env, AuthKind, TokenRequest};
use akvfs::vault::SecretStore;
use common::{client_for, sh, sh_ok, LocalMount, UrlMount};

/// A local vault run by the test process (on its own runtime), for mounts of its URL.
struct Vault {
    vault: LocalVault,
    admin: AdminClient,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Vault {
    fn start(tweak: impl FnOnce(&mut LocalVaultConfig)) -> Vault {
        let dir = tempfile::tempdir().expect("dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = LocalVaultConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: Some(dir.path().join("data")),
            ..LocalVaultConfig::default()
        };
        tweak(&mut config);
        let vault = rt.block_on(LocalVault::start(config)).expect("start");
        let admin = {
            let _guard = rt.enter();
            AdminClient::new(vault.env()).expect("admin")
        };
        Vault {
            vault,
            admin,
            rt,
            _dir: dir,
        }
    }

    fn env(&self) -> &LocalVaultEnv {
        self.vault.env()
    }

    fn port(&self) -> u16 {
        url::Url::parse(self.vault.vault_url())
            .expect("url")
            .port()
            .expect("port")
    }

    fn set(&self, name: &str, value: &str) {
        let client = {
            let _guard = self.rt.enter();
            client_for(self.env())
        };
        self.rt
            .block_on(client.set_secret(
                name,
                akvfs::vault::model::SecretSetParameters {
                    value: value.into(),
                    ..Default::default()
                },
            ))
            .expect("set");
    }

    fn counters(&self) -> Counters {
        self.rt.block_on(self.admin.counters()).expect("counters")
    }

    fn reset_counters(&self) {
        self.rt
            .block_on(self.admin.reset_counters())
            .expect("reset counters");
    }

    /// An access token for `resource`, from the vault's own client-credentials endpoint.
    fn token_for(&self, resource: &str) -> (String, SystemTime) {
        let env = self.env().clone();
        let lookup = move |name: &str| env.lookup(name);
        let _guard = self.rt.enter();
        let credential = credential_with_env(
            AuthKind::Env,
            &self.env().vault_url,
            Some(&self.env().ca_file),
            &lookup,
        )
        .expect("credential");
        let token = self
            .rt
            .block_on(credential.get_token(&TokenRequest {
                scope: format!("{resource}/.default"),
                ..TokenRequest::default()
            }))
            .expect("token");
        (token.token.expose().to_owned(), token.expires_on)
    }
}

/// A directory with an executable `az` script, to put first on a child's `PATH`.
struct FakeAz {
    dir: tempfile::TempDir,
}

impl FakeAz {
    fn new(script: &str) -> FakeAz {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let az = dir.path().join("az");
        std::fs::write(&az, script).expect("write az");
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        FakeAz { dir }
    }

    /// An `az` printing `output` (what `az account get-access-token --output json` prints)
    /// and recording its arguments.
    fn printing(output: &serde_json::Value) -> FakeAz {
        let fake = FakeAz::new(
            "#!/bin/sh\nhere=$(dirname \"$0\")\nprintf '%s\\n' \"$*\" >> \"$here/args\"\ncat \"$here/output.json\"\n",
        );
        std::fs::write(fake.dir.path().join("output.json"), output.to_string()).expect("write");
        fake
    }

    /// `PATH` with this directory first.
    fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn args(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("args")).unwrap_or_default()
    }
}

/// The JSON the real `az account get-access-token --output json --resource …` prints; the
/// epoch `expires_on` (CLI ≥ 2.54) only when `with_epoch`.
fn az_output(
    token: &str,
    expires_on: SystemTime,
    tenant: &str,
    with_epoch: bool,
) -> serde_json::Value {
    let mut out = serde_json::json!({
        "accessToken": token,
        "expiresOn": "2026-11-28 17:00:00.000000",
        "subscription": "00000000-0000-0000-0000-000000000001",
        "tenant": tenant,
        "tokenType": "Bearer",
    });
    if with_epoch {
        let epoch = expires_on
            .duration_since(UNIX_EPOCH)
            .expect("epoch")
            .as_secs();
        out["expires_on"] = serde_json::json!(epoch);
    }
    out
}

fn ca_args(ca: &Path) -> Vec<String> {
    vec!["--ca-file".into(), ca.display().to_string()]
}

fn mount_with_fake_cli(with_epoch: bool) {
    let v = Vault::start(|_| {});
    v.set("cli-secret", "from-the-cli");
    let resource = v.vault.vault_url().to_owned();
    let (token, expires_on) = v.token_for(&resource);
    let az = FakeAz::printing(&az_output(
        &token,
        expires_on,
        &v.env().tenant_id,
        with_epoch,
    ));
    v.reset_counters();

    let ca = ca_args(&v.env().ca_file);
    let mut args: Vec<&str> = ca.iter().map(String::as_str).collect();
    args.extend(["--auth", "azure-cli"]);
    let m = UrlMount::start(v.vault.vault_url(), &args, &[("PATH", az.path_var())]);
    let value = sh_ok(&m.mountpoint, "cat cli-secret");
    assert_eq!(value, "from-the-cli");
    // The mount asked the CLI for the challenge's resource, and never the token endpoint.
    let args_seen = az.args();
    assert!(
        args_seen.contains(&format!(
            "account get-access-token --output json --resource {resource}"
        )),
        "az was called with: {args_seen}"
    );
    assert_eq!(v.counters().count("token"), 0);
    assert!(!m.log_text().contains(&token), "the token was logged");
}

#[test]
fn azure_cli_credential_mounts_with_the_epoch_expires_on() {
    mount_with_fake_cli(true);
}

#[test]
fn azure_cli_credential_mounts_with_only_the_local_time_expires_on() {
    mount_with_fake_cli(false);
}

#[test]
fn azure_cli_not_signed_in_tells_the_user_to_run_az_login() {
    let v = Vault::start(|_| {});
    let az = FakeAz::new(
        "#!/bin/sh\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n",
    );
    let ca = ca_args(&v.env().ca_file);
    for auth in ["azure-cli", "auto"] {
        let mut args: Vec<&str> = ca.iter().map(String::as_str).collect();
        args.extend(["--auth", auth]);
        let envs = [
            ("PATH", az.path_var()),
            // No VM here: IMDS on a closed loopback port is "not available", whatever the
            // network would answer for 169.254.169.254.
            (
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                "http://127.0.0.1:9".to_owned(),
            ),
        ];
        let (status, log) = UrlMount::expect_failure(v.vault.vault_url(), &args, &envs);
        assert_eq!(status.code(), Some(1), "{auth}: {log}");
        let error = log
            .lines()
            .find(|l| l.starts_with("akvfs: error:"))
            .unwrap_or_else(|| panic!("{auth}: no error line in:\n{log}"));
        assert!(
            error.contains("AzureCliCredential") && error.contains("run 'az login'"),
            "{auth}: {error}"
        );
        if auth == "auto" {
            // The chain's one error lists what each member said.
            for member in ["EnvironmentCredential", "ManagedIdentityCredential"] {
                assert!(
                    error.contains(member),
                    "auto: {member} missing from: {error}"
                );
            }
        }
    }
    assert_eq!(v.counters().count("token"), 0);
}

#[test]
fn short_lived_tokens_are_refreshed_while_reading_without_a_failed_read() {
    // 6 s tokens: the client refreshes at half-life (3 s), well before the vault would refuse
    // them even on a loaded machine.
    let m = LocalMount::start(&["--token-ttl", "6s"]);
    const SECRETS: usize = 6000;
    m.block_on(m.admin().seed("t", SECRETS, "v")).expect("seed");
    assert_eq!(sh_ok(&m.mountpoint, "cat t00000"), "v");
    let first = m.counters();
    let tokens_at_start = first.count_status("token", 200);
    let challenges_at_start = challenges(&first);
    // Cold reads (a new secret each time) and cached reads (the first one again), until the
    // token has been replaced at least twice.
    let mut reads = 0;
    for i in 1..SECRETS {
        let cold = format!("t{i:05}");
        let out = sh(&m.mountpoint, &format!("cat {cold} && cat t00000"));
        assert!(
            out.status.success(),
            "read {i} failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            m.log_text()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "vv");
        reads += 2;
        if i % 20 == 0 && m.counters().count_status("token", 200) >= tokens_at_start + 2 {
            break;
        }
    }
    let end = m.counters();
    eprintln!("{reads} reads; counters: {end:?}");
    assert!(
        end.count_status("token", 200) >= tokens_at_start + 2,
        "the token was not refreshed twice over {reads} reads: {end:?}"
    );
    assert_eq!(
        end.count("token"),
        end.count_status("token", 200),
        "{end:?}"
    );
    // No read was refused with an expired token: every 401 is an opening challenge.
    assert_eq!(challenges(&end), challenges_at_start, "{end:?}");
    assert!(!m.log_text().contains("could not read secret"));
}

/// 401s the vault answered, all operations but the token endpoint.
fn challenges(c: &Counters) -> u64 {
    c.operations
        .iter()
        .filter(|(op, _)| op.as_str() != "token")
        .map(|(op, _)| c.count_status(op, 401))
        .sum()
}

const CHINA_VAULT: &str = "kv.vault.azure.cn";

fn china_mount_env(env: &LocalVaultEnv) -> Vec<(&'static str, String)> {
    vec![
        ("AKVFS_RESOLVE", format!("{CHINA_VAULT}=127.0.0.1")),
        ("AZURE_TENANT_ID", env.tenant_id.clone()),
        ("AZURE_CLIENT_ID", env.client_id.clone()),
        ("AZURE_CLIENT_SECRET", env.client_secret.expose().to_owned()),
        // The China cloud's login host is not local: the token endpoint is the local vault's.
        ("AZURE_AUTHORITY_HOST", env.authority_host.clone()),
    ]
}

fn china_vault() -> (Vault, String) {
    let v = Vault::start(|c| c.hostnames = vec![CHINA_VAULT.into()]);
    let url = format!("https://{CHINA_VAULT}:{}", v.port());
    (v, url)
}

#[test]
fn a_china_cloud_vault_url_mounts_and_reads_through_the_challenge_for_vault_azure_cn() {
    let (v, url) = china_vault();
    v.set("sovereign", "mooncake");
    v.reset_counters();
    let ca = ca_args(&v.env().ca_file);
    let args: Vec<&str> = ca.iter().map(String::as_str).collect();
    let m = UrlMount::start(&url, &args, &china_mount_env(v.env()));
    assert_eq!(sh_ok(&m.mountpoint, "cat sovereign"), "mooncake");
    let log = m.log_text();
    assert!(
        log.contains("https://vault.azure.cn/.default"),
        "the challenge scope is not logged:\n{log}"
    );
    assert_eq!(v.counters().count_status("token", 200), 1);
}

/// `akvfs local-vault ARGS…` as a separate process (the CLI's own knobs), killed on drop.
struct VaultProcess {
    child: std::process::Child,
    env: LocalVaultEnv,
    admin: AdminClient,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl VaultProcess {
    fn start(args: &[&str]) -> VaultProcess {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let mut child = std::process::Command::new(common::akvfs_bin())
            .arg("local-vault")
            .arg("--data")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
            .spawn()
            .expect("spawn local-vault");
        let env_file = data.join("env");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !env_file.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "local-vault exited with {status}: {}",
                    std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "local-vault did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let env = LocalVaultEnv::read_env_file(&env_file).expect("env file");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let admin = {
            let _guard = rt.enter();
            AdminClient::new(&env).expect("admin")
        };
        VaultProcess {
            child,
            env,
            admin,
            rt,
            _dir: dir,
        }
    }
}

impl Drop for VaultProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_challenge_naming_another_domain_is_refused_before_any_token_request() {
    let v = VaultProcess::start(&[
        "--hostname",
        CHINA_VAULT,
        "--challenge-resource",
        "https://vault.azure.net",
    ]);
    let port = url::Url::parse(&v.env.vault_url)
        .expect("url")
        .port()
        .expect("port");
    let url = format!("https://{CHINA_VAULT}:{port}");
    let ca = ca_args(&v.env.ca_file);
    let args: Vec<&str> = ca.iter().map(String::as_str).collect();
    let (status, log) = UrlMount::expect_failure(&url, &args, &china_mount_env(&v.env));
    assert_eq!(status.code(), Some(1), "{log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("akvfs: error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{log}"));
    assert!(
        error.contains(CHINA_VAULT) && error.contains("vault.azure.net"),
        "the error names neither domain: {error}"
    );
    let counters = v.rt.block_on(v.admin.counters()).expect("counters");
    assert_eq!(counters.count("token"), 0, "{counters:?}");
    assert!(counters.count("list_secrets") >= 1, "{counters:?}");
}
