//! Key Vault: wire model, errors, and the REST client. Knows nothing of files.

pub mod auth;
pub mod certificate_model;
pub mod challenge;
pub mod client;
pub mod error;
pub mod model;
pub mod pipeline;
pub mod poll;

use async_trait::async_trait;

use certificate_model::{CertificateBundle, CertificateItem};
pub use error::VaultError;
use model::{
    DeletedSecretBundle, DeletedSecretItem, SecretBundle, SecretItem, SecretSetParameters,
    SecretUpdateParameters,
};

/// The secret operations the filesystem needs. Implemented by [`client::SecretClient`] over
/// HTTPS; unit tests of the filesystem core implement it in memory.
///
/// Names are passed as the user typed them (the vault is case-insensitive).
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// `GET /secrets/{name}/{version}`; `version = None` means the latest.
    async fn get_secret(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<SecretBundle, VaultError>;

    /// `PUT /secrets/{name}`: a new version.
    async fn set_secret(
        &self,
        name: &str,
        parameters: SecretSetParameters,
    ) -> Result<SecretBundle, VaultError>;

    /// `PATCH /secrets/{name}/{version}` (`None` = latest): attributes, tags, content type.
    async fn update_secret_properties(
        &self,
        name: &str,
        version: Option<&str>,
        parameters: SecretUpdateParameters,
    ) -> Result<SecretBundle, VaultError>;

    /// `GET /secrets`, following `nextLink` until it is null.
    async fn list_properties_of_secrets(&self) -> Result<Vec<SecretItem>, VaultError>;

    /// `GET /secrets/{name}/versions`, following `nextLink` until it is null.
    async fn list_properties_of_secret_versions(
        &self,
        name: &str,
    ) -> Result<Vec<SecretItem>, VaultError>;

    /// `GET /deletedsecrets`, following `nextLink` until it is null.
    async fn list_deleted_secrets(&self) -> Result<Vec<DeletedSecretItem>, VaultError>;

    /// `GET /certificates`, following `nextLink` until it is null: the certificates, whose
    /// key and chain are the secret of the same name.
    async fn list_certificates(&self) -> Result<Vec<CertificateItem>, VaultError>;

    /// `GET /certificates/{name}`: the latest version, with its leaf certificate (`cer`), which
    /// a principal may be allowed to get without the backing secret.
    async fn get_certificate(&self, name: &str) -> Result<CertificateBundle, VaultError>;

    /// `GET /deletedsecrets/{name}`.
    async fn get_deleted_secret(&self, name: &str) -> Result<DeletedSecretBundle, VaultError>;

    /// `DELETE /secrets/{name}`, then poll `GET /deletedsecrets/{name}` until the deletion has
    /// completed (the SDK poller's rule), bounded by the delete timeout.
    async fn delete_secret(&self, name: &str) -> Result<DeletedSecretBundle, VaultError>;

    /// `POST /deletedsecrets/{name}/recover`, then poll `GET /secrets/{name}` until the secret
    /// is back, bounded by the delete timeout.
    async fn recover_deleted_secret(&self, name: &str) -> Result<SecretBundle, VaultError>;

    /// `DELETE /deletedsecrets/{name}` (irreversible).
    async fn purge_deleted_secret(&self, name: &str) -> Result<(), VaultError>;
}
