//! Extended attributes: the `user.akv.*` properties of a secret.

use std::sync::Arc;

use tracing::info;
use zeroize::Zeroizing;

use super::*;

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
}
