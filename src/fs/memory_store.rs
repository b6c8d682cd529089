//! An in-memory [`SecretStore`] for tests: stricter than the service (name rule, value limit,
//! case-insensitive names, 409 after delete), counting calls per operation, with fault
//! injection and an optional delay on gets.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use parking_lot::Mutex;

use crate::certificate_files::{self, CONTENT_TYPE_PEM, CONTENT_TYPE_PKCS12};
use crate::secret_value::SecretValue;
use crate::vault::certificate_model::{CertificateBundle, CertificateItem};
use crate::vault::model::{
    is_valid_secret_name, value_within_service_limit, DeletedSecretBundle, DeletedSecretItem,
    SecretAttributes, SecretBundle, SecretItem, SecretSetParameters, SecretUpdateParameters,
    MAX_PAGE_SIZE,
};
use crate::vault::{SecretStore, VaultError};

const HOST: &str = "https://memory.vault.test";

#[derive(Clone)]
struct Version {
    version: String,
    value: SecretValue,
    content_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    attributes: SecretAttributes,
}

struct Secret {
    name: String,
    versions: Vec<Version>,
    deleted_date: Option<i64>,
}

#[derive(Default)]
pub struct MemoryStore {
    secrets: Mutex<BTreeMap<String, Secret>>,
    calls: Mutex<HashMap<&'static str, usize>>,
    next_version: Mutex<u64>,
    /// Every call fails with this error while set.
    failing: Mutex<Option<VaultError>>,
    get_delay: Mutex<Duration>,
    /// Extra delay on gets of one secret (lower-cased name).
    slow_secrets: Mutex<HashMap<String, Duration>>,
    /// Secrets (lower-cased names) whose gets answer 403, as for a principal without the
    /// secrets `get` permission.
    forbidden_secrets: Mutex<Vec<String>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Calls of one operation so far (`get`, `set`, `list_pages`, `delete`, …).
    pub fn calls(&self, operation: &str) -> usize {
        self.calls.lock().get(operation).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> usize {
        self.calls.lock().values().sum()
    }

    #[allow(dead_code)]
    pub fn reset_calls(&self) {
        self.calls.lock().clear();
    }

    pub fn fail_with(&self, error: Option<VaultError>) {
        *self.failing.lock() = error;
    }

    pub fn set_get_delay(&self, delay: Duration) {
        *self.get_delay.lock() = delay;
    }

    /// Gets of secret `name` answer 403 `ForbiddenByPolicy` from now on (certificates stay
    /// readable through `get_certificate`).
    pub fn forbid_secret(&self, name: &str) {
        self.forbidden_secrets
            .lock()
            .push(name.to_ascii_lowercase());
    }

    pub fn set_slow_secret(&self, name: &str, delay: Duration) {
        self.slow_secrets
            .lock()
            .insert(name.to_ascii_lowercase(), delay);
    }

    /// Seed a secret without counting a call.
    pub fn seed(&self, name: &str, value: &str, tags: &[(&str, &str)]) -> String {
        let tags = (!tags.is_empty()).then(|| {
            tags.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        });
        self.put(
            name,
            SecretSetParameters {
                value: value.into(),
                tags,
                content_type: None,
                attributes: None,
            },
        )
        .id
        .unwrap_or_default()
    }

    /// Seed a certificate (its backing secret: `value` with a certificate content type)
    /// without counting a call.
    pub fn seed_certificate(&self, name: &str, value: &str, content_type: &str) -> String {
        self.put(
            name,
            SecretSetParameters {
                value: value.into(),
                tags: None,
                content_type: Some(content_type.to_owned()),
                attributes: None,
            },
        )
        .id
        .unwrap_or_default()
    }

    pub fn disable(&self, name: &str) {
        if let Some(secret) = self.secrets.lock().get_mut(&name.to_ascii_lowercase()) {
            if let Some(latest) = secret.versions.last_mut() {
                latest.attributes.enabled = Some(false);
            }
        }
    }

    /// The latest value and tags, without counting a call.
    pub fn current(&self, name: &str) -> Option<(String, Option<BTreeMap<String, String>>)> {
        let secrets = self.secrets.lock();
        let secret = secrets.get(&name.to_ascii_lowercase())?;
        if secret.deleted_date.is_some() {
            return None;
        }
        let latest = secret.versions.last()?;
        Some((latest.value.expose().to_owned(), latest.tags.clone()))
    }

    /// Every value `name` ever held, oldest first.
    pub fn values_of(&self, name: &str) -> Vec<String> {
        let secrets = self.secrets.lock();
        secrets
            .get(&name.to_ascii_lowercase())
            .map(|secret| {
                secret
                    .versions
                    .iter()
                    .map(|v| v.value.expose().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn version_count(&self, name: &str) -> usize {
        self.secrets
            .lock()
            .get(&name.to_ascii_lowercase())
            .map_or(0, |s| s.versions.len())
    }

    fn count(&self, operation: &'static str) -> Result<(), VaultError> {
        *self.calls.lock().entry(operation).or_default() += 1;
        match self.failing.lock().clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn put(&self, name: &str, parameters: SecretSetParameters) -> SecretBundle {
        let version = {
            let mut next = self.next_version.lock();
            *next += 1;
            format!("{:032x}", *next)
        };
        let mut secrets = self.secrets.lock();
        let secret = secrets
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Secret {
                name: name.to_owned(),
                versions: Vec::new(),
                deleted_date: None,
            });
        let t = now();
        let created = secret
            .versions
            .first()
            .and_then(|v| v.attributes.created)
            .unwrap_or(t);
        let mut attributes = parameters.attributes.unwrap_or_default();
        attributes.created = Some(t);
        attributes.updated = Some(t);
        attributes.enabled = Some(attributes.enabled.unwrap_or(true));
        attributes.recovery_level = Some("Recoverable+Purgeable".into());
        let _ = created;
        secret.versions.push(Version {
            version,
            value: parameters.value,
            content_type: parameters.content_type,
            tags: parameters.tags,
            attributes,
        });
        let name = secret.name.clone();
        bundle(&name, secret.versions.last().expect("just pushed"), true)
    }
}

fn bundle(name: &str, version: &Version, with_value: bool) -> SecretBundle {
    SecretBundle {
        value: with_value.then(|| version.value.clone()),
        id: Some(format!("{HOST}/secrets/{name}/{}", version.version)),
        content_type: version.content_type.clone(),
        attributes: Some(version.attributes.clone()),
        tags: version.tags.clone(),
        kid: None,
        managed: is_certificate(version).then_some(true),
    }
}

/// The fake keeps a certificate as its backing secret: one with a certificate content type.
fn is_certificate(version: &Version) -> bool {
    matches!(
        version.content_type.as_deref(),
        Some(CONTENT_TYPE_PKCS12 | CONTENT_TYPE_PEM)
    )
}

fn not_found(name: &str) -> VaultError {
    VaultError::NotFound {
        name: name.to_owned(),
    }
}

fn check_name(name: &str) -> Result<(), VaultError> {
    if is_valid_secret_name(name) {
        Ok(())
    } else {
        Err(VaultError::BadRequest {
            name: name.to_owned(),
            code: "BadParameter".into(),
            message: "invalid secret name".into(),
        })
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn get_secret(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<SecretBundle, VaultError> {
        self.count("get")?;
        check_name(name)?;
        if self
            .forbidden_secrets
            .lock()
            .contains(&name.to_ascii_lowercase())
        {
            return Err(VaultError::Forbidden {
                name: name.to_owned(),
                message: "no secrets get permission".into(),
            });
        }
        let slow = self
            .slow_secrets
            .lock()
            .get(&name.to_ascii_lowercase())
            .copied();
        let delay = slow.unwrap_or(*self.get_delay.lock());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let secrets = self.secrets.lock();
        let secret = secrets
            .get(&name.to_ascii_lowercase())
            .filter(|s| s.deleted_date.is_none())
            .ok_or_else(|| not_found(name))?;
        let found = match version {
            None => secret.versions.last(),
            Some(v) => secret.versions.iter().find(|x| x.version == v),
        }
        .ok_or_else(|| not_found(name))?;
        if found.attributes.enabled == Some(false) {
            return Err(VaultError::SecretDisabled {
                name: name.to_owned(),
            });
        }
        Ok(bundle(&secret.name, found, true))
    }

    async fn set_secret(
        &self,
        name: &str,
        parameters: SecretSetParameters,
    ) -> Result<SecretBundle, VaultError> {
        self.count("set")?;
        check_name(name)?;
        if !value_within_service_limit(parameters.value.expose()) {
            return Err(VaultError::ValueTooLarge {
                name: name.to_owned(),
            });
        }
        if self
            .secrets
            .lock()
            .get(&name.to_ascii_lowercase())
            .is_some_and(|s| s.deleted_date.is_some())
        {
            return Err(VaultError::DeletedButRecoverable {
                name: name.to_owned(),
            });
        }
        Ok(self.put(name, parameters))
    }

    async fn update_secret_properties(
        &self,
        name: &str,
        _version: Option<&str>,
        parameters: SecretUpdateParameters,
    ) -> Result<SecretBundle, VaultError> {
        self.count("update")?;
        let mut secrets = self.secrets.lock();
        let secret = secrets
            .get_mut(&name.to_ascii_lowercase())
            .filter(|s| s.deleted_date.is_none())
            .ok_or_else(|| not_found(name))?;
        let secret_name = secret.name.clone();
        let latest = secret.versions.last_mut().ok_or_else(|| not_found(name))?;
        if let Some(tags) = parameters.tags {
            latest.tags = Some(tags);
        }
        if let Some(content_type) = parameters.content_type {
            latest.content_type = Some(content_type);
        }
        if let Some(attributes) = parameters.attributes {
            if attributes.enabled.is_some() {
                latest.attributes.enabled = attributes.enabled;
            }
        }
        Ok(bundle(&secret_name, latest, false))
    }

    async fn list_properties_of_secrets(&self) -> Result<Vec<SecretItem>, VaultError> {
        let items: Vec<SecretItem> = self
            .secrets
            .lock()
            .values()
            .filter(|s| s.deleted_date.is_none())
            .filter_map(|s| {
                let latest = s.versions.last()?;
                Some(SecretItem {
                    id: Some(format!("{HOST}/secrets/{}", s.name)),
                    attributes: Some(latest.attributes.clone()),
                    tags: latest.tags.clone(),
                    content_type: latest.content_type.clone(),
                    managed: None,
                })
            })
            .collect();
        // One call per page, as the client follows nextLink.
        for _ in 0..items.len().div_ceil(MAX_PAGE_SIZE).max(1) {
            self.count("list_pages")?;
        }
        Ok(items)
    }

    async fn list_properties_of_secret_versions(
        &self,
        name: &str,
    ) -> Result<Vec<SecretItem>, VaultError> {
        self.count("list_versions")?;
        let secrets = self.secrets.lock();
        let Some(secret) = secrets
            .get(&name.to_ascii_lowercase())
            .filter(|s| s.deleted_date.is_none())
        else {
            return Ok(Vec::new());
        };
        Ok(secret
            .versions
            .iter()
            .map(|v| SecretItem {
                id: Some(format!("{HOST}/secrets/{}/{}", secret.name, v.version)),
                attributes: Some(v.attributes.clone()),
                tags: v.tags.clone(),
                content_type: v.content_type.clone(),
                managed: None,
            })
            .collect())
    }

    async fn list_deleted_secrets(&self) -> Result<Vec<DeletedSecretItem>, VaultError> {
        self.count("list_deleted")?;
        Ok(self
            .secrets
            .lock()
            .values()
            .filter(|s| s.deleted_date.is_some())
            .map(|s| DeletedSecretItem {
                item: SecretItem {
                    id: Some(format!("{HOST}/secrets/{}", s.name)),
                    attributes: s.versions.last().map(|v| v.attributes.clone()),
                    ..SecretItem::default()
                },
                recovery_id: Some(format!("{HOST}/deletedsecrets/{}", s.name)),
                scheduled_purge_date: s.deleted_date.map(|d| d + 90 * 86_400),
                deleted_date: s.deleted_date,
            })
            .collect())
    }

    async fn list_certificates(&self) -> Result<Vec<CertificateItem>, VaultError> {
        self.count("list_certificates")?;
        Ok(self
            .secrets
            .lock()
            .values()
            .filter(|s| s.deleted_date.is_none())
            .filter_map(|s| {
                let latest = s.versions.last().filter(|v| is_certificate(v))?;
                Some(CertificateItem {
                    id: Some(format!("{HOST}/certificates/{}", s.name)),
                    attributes: Some(latest.attributes.clone()),
                    tags: latest.tags.clone(),
                    x5t: None,
                })
            })
            .collect())
    }

    async fn get_certificate(&self, name: &str) -> Result<CertificateBundle, VaultError> {
        self.count("get_certificate")?;
        check_name(name)?;
        let secrets = self.secrets.lock();
        let (secret, latest) = secrets
            .get(&name.to_ascii_lowercase())
            .filter(|s| s.deleted_date.is_none())
            .and_then(|s| Some((s, s.versions.last().filter(|v| is_certificate(v))?)))
            .ok_or_else(|| not_found(name))?;
        let material = certificate_files::read(
            latest.value.expose().as_bytes(),
            latest.content_type.as_deref(),
        )
        .map_err(|error| VaultError::InvalidResponse {
            name: name.to_owned(),
            message: error.to_string(),
        })?;
        Ok(CertificateBundle {
            id: Some(format!(
                "{HOST}/certificates/{}/{}",
                secret.name, latest.version
            )),
            sid: Some(format!("{HOST}/secrets/{}/{}", secret.name, latest.version)),
            cer: Some(STANDARD.encode(material.leaf_der())),
            attributes: Some(latest.attributes.clone()),
            tags: latest.tags.clone(),
            ..CertificateBundle::default()
        })
    }

    async fn get_deleted_secret(&self, name: &str) -> Result<DeletedSecretBundle, VaultError> {
        self.count("get_deleted")?;
        let secrets = self.secrets.lock();
        let secret = secrets
            .get(&name.to_ascii_lowercase())
            .filter(|s| s.deleted_date.is_some())
            .ok_or_else(|| not_found(name))?;
        Ok(DeletedSecretBundle {
            secret: secret
                .versions
                .last()
                .map(|v| bundle(&secret.name, v, false))
                .unwrap_or_default(),
            recovery_id: Some(format!("{HOST}/deletedsecrets/{}", secret.name)),
            scheduled_purge_date: None,
            deleted_date: secret.deleted_date,
        })
    }

    async fn delete_secret(&self, name: &str) -> Result<DeletedSecretBundle, VaultError> {
        self.count("delete")?;
        let mut secrets = self.secrets.lock();
        let secret = secrets
            .get_mut(&name.to_ascii_lowercase())
            .filter(|s| s.deleted_date.is_none())
            .ok_or_else(|| not_found(name))?;
        secret.deleted_date = Some(now());
        Ok(DeletedSecretBundle {
            secret: SecretBundle {
                id: Some(format!("{HOST}/secrets/{}", secret.name)),
                ..SecretBundle::default()
            },
            recovery_id: Some(format!("{HOST}/deletedsecrets/{}", secret.name)),
            scheduled_purge_date: None,
            deleted_date: secret.deleted_date,
        })
    }

    async fn recover_deleted_secret(&self, name: &str) -> Result<SecretBundle, VaultError> {
        self.count("recover")?;
        let mut secrets = self.secrets.lock();
        let secret = secrets
            .get_mut(&name.to_ascii_lowercase())
            .filter(|s| s.deleted_date.is_some())
            .ok_or_else(|| not_found(name))?;
        secret.deleted_date = None;
        let latest = secret.versions.last().ok_or_else(|| not_found(name))?;
        Ok(bundle(&secret.name, latest, false))
    }

    async fn purge_deleted_secret(&self, name: &str) -> Result<(), VaultError> {
        self.count("purge")?;
        let mut secrets = self.secrets.lock();
        let key = name.to_ascii_lowercase();
        if secrets.get(&key).is_none_or(|s| s.deleted_date.is_none()) {
            return Err(not_found(name));
        }
        secrets.remove(&key);
        Ok(())
    }
}
