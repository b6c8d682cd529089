//! The real Azure CLI (`azure-cli` from PyPI, in `.venv/azure-cli`) and a mount on the same local vault
//! agree on binary secrets, both directions: `az keyvault secret set --file --encoding
//! base64|hex` then `cat` through the mount, and bytes written through the mount then
//! `az keyvault secret download --encoding …`. The CLI stores base64 as Python's `encodebytes`
//! (a newline every 76 characters and one at the end), which the mount must decode.
//!
//! Offline set-up: a cloud whose Key Vault suffix is `.0.0.1:PORT`, so that `--vault-name 127`
//! is `https://127.0.0.1:PORT` (the local vault), its Active Directory endpoint the local
//! vault's token endpoint, instance discovery off, and a service-principal login with the local
//! vault's credentials. `scripts/python-venv` installs the CLI; under `scripts/test`
//! (AKVFS_REQUIRE_PYTHON_SDK) the test must not skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use akvfs::secret_value::SecretValue;
use akvfs::vault::model::SecretSetParameters;
use akvfs::vault::SecretStore;
use common::{sh, LocalMount};

fn az_binary() -> Option<PathBuf> {
    let az = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/azure-cli/bin/az");
    if az.exists() {
        return Some(az);
    }
    assert!(
        std::env::var_os("AKVFS_REQUIRE_PYTHON_SDK").is_none(),
        "no .venv/azure-cli/bin/az: run scripts/python-venv"
    );
    eprintln!("skipping: no .venv/azure-cli/bin/az (run scripts/python-venv)");
    None
}

/// The Azure CLI, logged in to the mount's local vault with its own configuration directory.
struct AzureCli {
    az: PathBuf,
    config_dir: PathBuf,
    ca_file: PathBuf,
}

impl AzureCli {
    fn login(az: PathBuf, m: &LocalMount) -> AzureCli {
        let env = &m.env;
        let port = env
            .vault_url
            .rsplit(':')
            .next()
            .expect("the local vault's URL has a port")
            .to_owned();
        let cli = AzureCli {
            az,
            config_dir: m.dir.path().join("azure-config"),
            ca_file: env.ca_file.clone(),
        };
        cli.run(&[
            "cloud",
            "register",
            "-n",
            "Local",
            "--skip-endpoint-discovery",
            "--endpoint-active-directory",
            &env.authority_host,
            "--endpoint-active-directory-resource-id",
            "https://management.core.chinacloudapi.cn/",
            "--endpoint-resource-manager",
            "https://127.0.0.1/",
            "--suffix-keyvault-dns",
            &format!(".0.0.1:{port}"),
        ]);
        cli.run(&["cloud", "set", "-n", "Local"]);
        cli.run(&["config", "set", "core.instance_discovery=false"]);
        cli.run(&[
            "login",
            "--service-principal",
            "-u",
            &env.client_id,
            "-p",
            env.client_secret.expose(),
            "--tenant",
            &env.tenant_id,
            "--allow-no-subscriptions",
            "--skip-subscription-discovery",
        ]);
        cli
    }

    fn run(&self, args: &[&str]) {
        let output = Command::new(&self.az)
            .args(args)
            .args(["--only-show-errors", "-o", "none"])
            .env("AZURE_CONFIG_DIR", &self.config_dir)
            .env("REQUESTS_CA_BUNDLE", &self.ca_file)
            .env("AZURE_CORE_COLLECT_TELEMETRY", "false")
            .output()
            .expect("run az");
        assert!(
            output.status.success(),
            "az {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `az keyvault secret set|download --file FILE --encoding ENCODING` on the local vault.
    fn secret_file(&self, verb: &str, name: &str, file: &Path, encoding: &str) {
        let file = file.to_str().expect("utf-8 path");
        let vault = ["--vault-name", "127", "-n", name];
        let file = ["--file", file, "--encoding", encoding];
        let args: Vec<&str> = ["keyvault", "secret", verb]
            .into_iter()
            .chain(vault)
            .chain(file)
            .collect();
        self.run(&args);
    }

    fn set_file(&self, name: &str, file: &Path, encoding: &str) {
        self.secret_file("set", name, file, encoding);
    }

    fn download(&self, name: &str, file: &Path, encoding: &str) {
        self.secret_file("download", name, file, encoding);
    }
}

fn random_bytes(len: usize, seed: u8) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(seed) * 1000 + len as u64);
    (0..len).map(|_| rng.gen()).collect()
}

#[test]
fn azure_cli_and_the_mount_agree_on_base64_and_hex_both_ways() {
    let Some(az) = az_binary() else { return };
    let m = LocalMount::start(&[]);
    let cli = AzureCli::login(az, &m);
    let work = m.dir.path();
    for encoding in ["base64", "hex"] {
        for (seed, len) in [57usize, 58, 5000].into_iter().enumerate() {
            let name = format!("{encoding}-{len}");
            // The CLI sets, the mount reads.
            let bytes = random_bytes(len, seed as u8);
            let src = work.join(format!("{name}.in"));
            std::fs::write(&src, &bytes).expect("write source");
            cli.set_file(&name, &src, encoding);
            let read = std::fs::read(m.path(&name)).expect("read through the mount");
            assert!(read == bytes, "{name}: the mount shows other bytes");

            // The mount writes (keeping the secret's encoding), the CLI downloads.
            let rewritten = random_bytes(len, seed as u8 + 100);
            std::fs::write(m.path(&name), &rewritten).expect("write through the mount");
            let out = work.join(format!("{name}.out"));
            cli.download(&name, &out, encoding);
            let downloaded = std::fs::read(&out).expect("downloaded file");
            assert!(downloaded == rewritten, "{name}: az downloads other bytes");
            let bundle = m
                .block_on(m.other_client().get_secret(&name, None))
                .expect("get");
            let tags = bundle.tags.unwrap_or_default();
            assert_eq!(
                tags.get("file-encoding").map(String::as_str),
                Some(encoding),
                "{name}: the encoding is kept"
            );

            // A new name written through the mount is base64 (the bytes are not UTF-8).
            let fresh = format!("fresh-{encoding}-{len}");
            std::fs::write(m.path(&fresh), &bytes).expect("write a new name");
            let out = work.join(format!("{fresh}.out"));
            cli.download(&fresh, &out, "base64");
            assert!(std::fs::read(&out).expect("downloaded") == bytes, "{fresh}");
        }
    }
}

#[test]
fn a_value_that_does_not_decode_as_its_tag_says_is_eio_never_other_bytes() {
    let m = LocalMount::start(&[]);
    for (name, encoding, value) in [
        ("bad-base64", "base64", "this is not base64!"),
        ("bad-hex", "hex", "0g1h"),
    ] {
        let mut tags = akvfs::vault::model::Tags::new();
        tags.insert("file-encoding".into(), encoding.into());
        let params = SecretSetParameters {
            value: SecretValue::from(value),
            tags: Some(tags),
            ..Default::default()
        };
        m.block_on(m.other_client().set_secret(name, params))
            .expect("set");
        let out = sh(&m.mountpoint, &format!("cat {name}"));
        assert!(!out.status.success(), "{name}: read must fail");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
            "{name}: EIO: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{name}: no bytes shown");
        let log = m.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains(name) && l.contains("not valid")),
            "the log names {name} and the reason: {log}"
        );
        assert!(!log.contains(value), "the value is never logged");
        // Replacing the value works.
        std::fs::write(m.path(name), b"fixed").expect("replace");
        assert_eq!(std::fs::read(m.path(name)).expect("read"), b"fixed");
    }
}
