//! Runs tests/sdk-js (Microsoft's @azure/keyvault-secrets, @azure/keyvault-certificates and
//! @azure/identity, with Node's built-in test runner) against in-process local vaults: one with
//! `strict_api_version` on and a 300 ms deletion delay, one with soft delete off. Needs
//! `tests/sdk-js/node_modules` from `scripts/js-sdk` and `node`; without them the test says so
//! and passes, except under `scripts/test`, which installs them and sets AKVFS_REQUIRE_JS_SDK.

use std::path::Path;
use std::time::Duration;

mod common;

use common::sdk::{suite_available, SdkVaults};

/// The number after `# NAME ` in the TAP reporter's summary.
fn summary_count(tap: &str, name: &str) -> Option<u64> {
    let prefix = format!("# {name} ");
    tap.lines()
        .rev()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
}

/// Top-level `test(` calls in the suite's files: how many tests must pass.
fn declared_tests(dir: &Path) -> u64 {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("read tests/sdk-js") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".test.js") {
            let text = std::fs::read_to_string(&path).expect("read test file");
            count += text.lines().filter(|l| l.starts_with("test(")).count() as u64;
        }
    }
    count
}

fn node_available() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_javascript_sdk_conformance_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("tests/sdk-js");
    let installed = suite
        .join("node_modules/@azure/keyvault-secrets/package.json")
        .exists();
    if !suite_available(
        installed && node_available(),
        "AKVFS_REQUIRE_JS_SDK",
        "no node or no tests/sdk-js/node_modules: run scripts/js-sdk",
    ) {
        return;
    }
    let vaults = SdkVaults::start().await;
    // Node trusts extra CAs only through NODE_EXTRA_CA_CERTS, read once at start: one bundle
    // with both vaults' CAs.
    let bundle = vaults.scratch().join("node-ca-bundle.pem");
    let mut cas = String::new();
    for running in [&vaults.vault, &vaults.no_soft_delete] {
        cas.push_str(&std::fs::read_to_string(&running.env().ca_file).expect("read CA"));
        cas.push('\n');
    }
    std::fs::write(&bundle, cas).expect("write CA bundle");

    let mut command = tokio::process::Command::new("node");
    command
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=tap",
            "tests/sdk-js/",
        ])
        .current_dir(root)
        .env("NODE_EXTRA_CA_CERTS", &bundle)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .kill_on_drop(true);
    vaults.name_to(&mut command);
    // Nothing but the env files may configure the credentials.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if ["AZURE_", "MSI_", "IDENTITY_", "IMDS_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            command.env_remove(&name);
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("node --test took over 10 minutes")
        .expect("run node --test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node --test failed:\n{stdout}\n{stderr}"
    );
    // Every test of the suite ran and passed: none skipped, todo or cancelled, and as many as
    // the files declare (a file that fails to load counts as one failed test, not its tests).
    let declared = declared_tests(&suite);
    assert!(
        declared >= 20,
        "only {declared} tests found in tests/sdk-js"
    );
    assert_eq!(summary_count(&stdout, "tests"), Some(declared), "{stdout}");
    assert_eq!(summary_count(&stdout, "pass"), Some(declared), "{stdout}");
    for word in ["fail", "cancelled", "skipped", "todo"] {
        assert_eq!(summary_count(&stdout, word), Some(0), "{word}:\n{stdout}");
    }
    eprintln!("{stdout}");
    vaults.shutdown().await;
}
