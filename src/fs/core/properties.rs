//! Extended attributes: the `user.akv.*` properties of a secret.

use std::sync::Arc;

use tracing::info;
use zeroize::Zeroizing;

use super::*;
use crate::fs::XattrSet;

impl SecretFs {
    // ----- extended attributes --------------------------------------------------------

    /// The secret behind `ino`, for attribute calls; `None` for anything else.
    pub(super) async fn xattr_target(&self, ino: u64) -> Result<Option<Arc<SecretData>>, FsError> {
        let (key, name) = self.node(ino)?;
        let fetched = match key {
            NodeKey::Secret(secret_key) => {
                if self.placeholders.lock().contains_key(&secret_key) {
                    return Ok(None);
                }
                self.load_secret(&name).await?
            }
            // Old versions show their properties too (read-only).
            NodeKey::Version(_, version) => self.load_version(&name, &version).await?,
            _ => return Ok(None),
        };
        Ok(Some(fetched.value.ok_or(FsError::NotFound { name })?))
    }

    /// Properties can be changed on the current version only.
    pub(super) fn check_properties_writable(&self, ino: u64, name: &str) -> Result<(), FsError> {
        self.check_writable(name)?;
        match self.node(ino)?.0 {
            NodeKey::Secret(_) => Ok(()),
            key if Self::is_certificates_node(&key) => Err(self.certificates_read_only(name)),
            _ => Err(FsError::NotPermitted {
                name: name.to_owned(),
                reason: "old versions are read-only".into(),
            }),
        }
    }

    pub async fn listxattr(&self, ino: u64) -> Result<Vec<String>, FsError> {
        Ok(match self.xattr_target(ino).await? {
            Some(data) => xattr::all(&data).into_iter().map(|(n, _)| n).collect(),
            None => Vec::new(),
        })
    }

    pub async fn getxattr(&self, ino: u64, attribute: &str) -> Result<Vec<u8>, FsError> {
        let no_data = |name: &str| FsError::NoData {
            name: name.to_owned(),
            attribute: attribute.to_owned(),
        };
        let node_name = || self.node(ino).map(|(_, name)| name).unwrap_or_default();
        // security.*, system.posix_acl_*: asked on every `ls -l`; never a vault call.
        if !attribute.starts_with(xattr::PREFIX) {
            return Err(no_data(&node_name()));
        }
        let data = self
            .xattr_target(ino)
            .await?
            .ok_or_else(|| no_data(&node_name()))?;
        xattr::get(&data, attribute)
            .map(String::into_bytes)
            .ok_or_else(|| no_data(&data.name))
    }

    pub async fn setxattr(&self, ino: u64, attribute: &str, value: &[u8]) -> Result<(), FsError> {
        self.setxattr_as(ino, attribute, value, XattrSet::Any).await
    }

    /// `setxattr` with its POSIX flags (`XATTR_CREATE`, `XATTR_REPLACE`).
    pub async fn setxattr_as(
        &self,
        ino: u64,
        attribute: &str,
        value: &[u8],
        how: XattrSet,
    ) -> Result<(), FsError> {
        // Editors copy ACLs and security labels to the file they save: not supported here,
        // like a filesystem mounted without ACLs (they carry on).
        if !attribute.starts_with(xattr::PREFIX) {
            return Err(FsError::Unsupported {
                name: attribute.to_owned(),
            });
        }
        let data = self.xattr_target(ino).await?.ok_or(FsError::Unsupported {
            name: attribute.to_owned(),
        })?;
        self.check_properties_writable(ino, &data.name)?;
        let value = std::str::from_utf8(value).map_err(|_| FsError::InvalidArgument {
            name: data.name.clone(),
            reason: format!("{attribute} must be UTF-8 text"),
        })?;
        let exists = xattr::get(&data, attribute).is_some();
        match how {
            XattrSet::Create if exists => {
                return Err(FsError::Exists {
                    name: data.name.clone(),
                    reason: format!("{attribute} exists (XATTR_CREATE)"),
                })
            }
            XattrSet::Replace if !exists => {
                return Err(FsError::NoData {
                    name: data.name.clone(),
                    attribute: attribute.to_owned(),
                })
            }
            _ => {}
        }
        let update = xattr::set(&data, attribute, value)
            .map_err(|refusal| self.xattr_refusal(&data.name, attribute, refusal))?;
        self.update_properties(ino, &data, update).await
    }

    pub async fn removexattr(&self, ino: u64, attribute: &str) -> Result<(), FsError> {
        let data = self.xattr_target(ino).await?.ok_or(FsError::NoData {
            name: String::new(),
            attribute: attribute.to_owned(),
        })?;
        self.check_properties_writable(ino, &data.name)?;
        if let Some(date) = xattr::clearable_date(attribute) {
            if xattr::get(&data, attribute).is_none() {
                return Err(FsError::NoData {
                    name: data.name.clone(),
                    attribute: attribute.to_owned(),
                });
            }
            return self.clear_date(ino, &data, date).await;
        }
        let update = xattr::remove(&data, attribute)
            .map_err(|refusal| self.xattr_refusal(&data.name, attribute, refusal))?;
        self.update_properties(ino, &data, update).await
    }

    pub(super) fn xattr_refusal(
        &self,
        name: &str,
        attribute: &str,
        refusal: XattrRefusal,
    ) -> FsError {
        match refusal {
            XattrRefusal::Unknown if attribute.starts_with(xattr::PREFIX) => FsError::NoData {
                name: name.to_owned(),
                attribute: attribute.to_owned(),
            },
            XattrRefusal::Unknown => FsError::Unsupported {
                name: attribute.to_owned(),
            },
            XattrRefusal::ReadOnly => FsError::NotPermitted {
                name: name.to_owned(),
                reason: format!("{attribute} is read-only"),
            },
            XattrRefusal::BadValue(reason) => FsError::InvalidArgument {
                name: name.to_owned(),
                reason: format!("{attribute}: {reason}"),
            },
        }
    }

    pub(super) async fn update_properties(
        &self,
        ino: u64,
        data: &SecretData,
        update: SecretUpdateParameters,
    ) -> Result<(), FsError> {
        let bundle = self
            .store
            .update_secret_properties(&data.name, None, update)
            .await
            .map_err(logged_failure(&data.name, "update secret properties"))?;
        info!(secret = data.name.as_str(), "secret properties updated");
        let key = data.name.to_ascii_lowercase();
        // The value did not change (no new version): keep it, take the new properties.
        let mut updated = SecretData::from_bundle(bundle, &data.name);
        if updated.enabled && data.enabled && updated.encoding == data.encoding {
            updated.content = Zeroizing::new(data.content.to_vec());
            updated.undecodable = data.undecodable;
            self.values.insert(&key, Some(updated));
        } else {
            // Enabling or disabling changes what a get answers, and a new `file-encoding` tag
            // changes what the stored value decodes to: the next open asks again.
            self.values.invalidate(&key);
        }
        self.listings.invalidate(ALL_SECRETS);
        self.inval_inode(ino);
        Ok(())
    }

    /// `setfattr -x user.akv.expires` (or `not_before`). Key Vault keeps a date an update leaves
    /// out, and removing one in place is not possible (Terraform's azurerm provider recreates
    /// the secret for it), so the date goes with a new version: the same value, content type,
    /// tags and enabled state, without that date. One set call.
    async fn clear_date(
        &self,
        ino: u64,
        data: &SecretData,
        date: xattr::ClearableDate,
    ) -> Result<(), FsError> {
        if !data.enabled {
            return Err(FsError::AccessDenied {
                name: data.name.clone(),
                reason: "the secret is disabled".into(),
            });
        }
        data.readable()?;
        let mut attributes = SecretAttributes {
            enabled: data.attributes.enabled,
            nbf: data.attributes.nbf,
            exp: data.attributes.exp,
            ..SecretAttributes::default()
        };
        match date {
            xattr::ClearableDate::NotBefore => attributes.nbf = None,
            xattr::ClearableDate::Expires => attributes.exp = None,
        }
        let parameters = SecretSetParameters {
            value: content::encode(&data.content, data.encoding),
            tags: data.tags.clone(),
            content_type: data.content_type.clone(),
            attributes: Some(attributes),
        };
        let bundle = self.set_secret(&data.name, parameters).await?;
        let mut stored = SecretData::from_bundle(bundle, &data.name);
        stored.content = Zeroizing::new(data.content.to_vec());
        stored.encoding = data.encoding;
        info!(
            secret = data.name.as_str(),
            "date removed: a new version without it (Key Vault cannot remove a date in place)"
        );
        let key = data.name.to_ascii_lowercase();
        self.values.insert(&key, Some(stored));
        self.listings.invalidate(ALL_SECRETS);
        self.listings.invalidate(&versions_key(&key));
        self.inval_inode(ino);
        Ok(())
    }
}
