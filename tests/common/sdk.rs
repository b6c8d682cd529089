//! The two in-process local vaults that the official SDKs' suites (tests/sdk for Python,
//! tests/sdk-js for JavaScript) run against, named to them by their env files.

use std::time::Duration;

use akvfs::local_vault::{LocalVault, LocalVaultConfig};
use tempfile::TempDir;

/// Whether a suite can run here. When it cannot, the test passes saying so, unless
/// `require_var` is set (scripts/test sets it after installing the suite, so CI never skips).
pub fn suite_available(installed: bool, require_var: &str, how_to_install: &str) -> bool {
    if !installed {
        assert!(std::env::var_os(require_var).is_none(), "{how_to_install}");
        eprintln!("skipping: {how_to_install}");
    }
    installed
}

pub struct SdkVaults {
    /// `strict_api_version` on (the SDKs' default api-versions must be ones the vault knows)
    /// and a 300 ms deletion delay, so that the delete pollers see a deletion in progress.
    pub vault: LocalVault,
    /// Soft delete off: deletions are final at once.
    pub no_soft_delete: LocalVault,
    dirs: [TempDir; 2],
}

impl SdkVaults {
    pub async fn start() -> Self {
        let dirs = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        let vault = LocalVault::start(LocalVaultConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: Some(dirs[0].path().to_path_buf()),
            deletion_delay: Duration::from_millis(300),
            strict_api_version: true,
            ..LocalVaultConfig::default()
        })
        .await
        .expect("start");
        let no_soft_delete = LocalVault::start(LocalVaultConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: Some(dirs[1].path().to_path_buf()),
            soft_delete: false,
            ..LocalVaultConfig::default()
        })
        .await
        .expect("start");
        SdkVaults {
            vault,
            no_soft_delete,
            dirs,
        }
    }

    /// A scratch directory that lives as long as the vaults.
    pub fn scratch(&self) -> &std::path::Path {
        self.dirs[0].path()
    }

    /// Sets the variables naming both vaults' env files (AKVFS_LOCAL_VAULT_ENV and
    /// AKVFS_LOCAL_VAULT_ENV_NO_SOFT_DELETE) on a suite's command.
    pub fn name_to(&self, command: &mut tokio::process::Command) {
        command
            .env("AKVFS_LOCAL_VAULT_ENV", self.vault.env_file())
            .env(
                "AKVFS_LOCAL_VAULT_ENV_NO_SOFT_DELETE",
                self.no_soft_delete.env_file(),
            );
    }

    pub async fn shutdown(self) {
        self.vault.shutdown().await;
        self.no_soft_delete.shutdown().await;
    }
}
