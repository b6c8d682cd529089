//! Namespace changes: unlink (delete, polled), purge, rename, recover, scratch renames.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::*;

impl SecretFs {
    // ----- unlink, rename ---------------------------------------------------------------

    /// `rm NAME` deletes the secret and waits until the vault finished; `rm .deleted/NAME`
    /// purges (only with `allow_purge`).
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        let (parent_key, parent_name) = self.node(parent)?;
        match parent_key {
            NodeKey::Root => {}
            NodeKey::DeletedDir => return self.purge(name).await,
            NodeKey::VersionsDir | NodeKey::VersionsOf(_) => {
                return Err(FsError::NotPermitted {
                    name: format!("{parent_name}/{name}"),
                    reason: "versions cannot be removed one by one".into(),
                })
            }
            _ => return Err(FsError::NotADirectory { name: parent_name }),
        }
        if !is_valid_secret_name(name) {
            return match self.scratch.lock().remove(name) {
                Some(_) => Ok(()),
                None => Err(FsError::NotFound {
                    name: name.to_owned(),
                }),
            };
        }
        self.check_writable(name)?;
        let key = name.to_ascii_lowercase();
        if self.shadowed.lock().contains(&key) {
            return Err(FsError::NotFound {
                name: name.to_owned(),
            });
        }
        if self.placeholders.lock().remove(&key).is_some() {
            debug!(
                secret = name,
                "removed a placeholder that never reached the vault"
            );
            return Ok(());
        }
        let spelled = {
            let inodes = self.inodes.lock();
            inodes
                .lookup(&NodeKey::Secret(key.clone()))
                .and_then(|ino| inodes.get(ino).map(|n| n.name.clone()))
                .unwrap_or_else(|| name.to_owned())
        };
        match self.store.delete_secret(&spelled).await {
            Ok(_) => {}
            Err(error) => {
                if !matches!(error, VaultError::NotFound { .. }) {
                    warn!(secret = name, %error, "could not delete secret");
                }
                self.values.invalidate(&key);
                return Err(error.into());
            }
        }
        info!(secret = name, "secret deleted");
        self.values.insert(&key, None);
        self.listings.invalidate(ALL_SECRETS);
        self.listings.invalidate(DELETED_SECRETS);
        self.listings.invalidate(&versions_key(&key));
        let ino = {
            let mut inodes = self.inodes.lock();
            let ino = inodes.lookup(&NodeKey::Secret(key));
            if let Some(node) = ino.and_then(|ino| inodes.get_mut(ino)) {
                node.kernel_version = None;
            }
            ino
        };
        if let Some(ino) = ino {
            for file in self.files.lock().values().filter(|f| f.ino == ino) {
                file.unlinked.store(true, Ordering::SeqCst);
            }
        }
        // Other spellings of the name may still be cached by the kernel.
        if spelled != name {
            self.inval_entry(ROOT_INO, &spelled);
        }
        Ok(())
    }

    pub(super) async fn purge(&self, name: &str) -> Result<(), FsError> {
        if !self.config.allow_purge {
            warn!(
                secret = name,
                "purge refused: purging is irreversible and needs --allow-purge"
            );
            return Err(FsError::NotPermitted {
                name: name.to_owned(),
                reason: "purging needs --allow-purge".into(),
            });
        }
        self.check_writable(name)?;
        secret_name_or_not_found(name)?;
        self.store
            .purge_deleted_secret(name)
            .await
            .map_err(logged_failure(name, "purge deleted secret"))?;
        info!(secret = name, "deleted secret purged");
        self.listings.invalidate(DELETED_SECRETS);
        Ok(())
    }

    /// `mv .deleted/NAME NAME` recovers; `mv a b` copies a's value, content type and tags to b
    /// (one set), then deletes a.
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let (from_dir, _) = self.node(parent)?;
        let (to_dir, _) = self.node(new_parent)?;
        if to_dir != NodeKey::Root {
            return Err(FsError::NotPermitted {
                name: new_name.to_owned(),
                reason: "secrets can only be renamed into the top directory".into(),
            });
        }
        self.check_writable(new_name)?;
        let from_key = match from_dir {
            NodeKey::DeletedDir => NodeKey::Deleted(name.to_ascii_lowercase()),
            _ if is_valid_secret_name(name) => NodeKey::Secret(name.to_ascii_lowercase()),
            _ => NodeKey::Scratch(name.to_owned()),
        };
        let to_key = if is_valid_secret_name(new_name) {
            NodeKey::Secret(new_name.to_ascii_lowercase())
        } else {
            NodeKey::Scratch(new_name.to_owned())
        };
        self.rename_in_vault(from_dir, name, new_name, no_replace)
            .await?;
        // The kernel now shows the source's inode under the new name.
        let moved = self
            .inodes
            .lock()
            .rekey(&from_key, to_key.clone(), new_name);
        if let (Some(ino), NodeKey::Scratch(_)) = (moved, &to_key) {
            let scratch = self.scratch.lock().get(new_name).cloned();
            if let Some(file) = scratch {
                // Keep the scratch file's inode in step with the table.
                self.scratch.lock().insert(
                    new_name.to_owned(),
                    Arc::new(ScratchFile {
                        ino,
                        content: Mutex::new(Zeroizing::new(file.content.lock().to_vec())),
                        modified: Mutex::new(*file.modified.lock()),
                    }),
                );
            }
        }
        if let Some(ino) = moved {
            if let NodeKey::Secret(new_key) = &to_key {
                if let Some(placeholder) = self.placeholders.lock().get_mut(new_key) {
                    placeholder.ino = ino;
                }
            }
            self.inval_inode(ino);
        }
        Ok(())
    }

    pub(super) async fn rename_in_vault(
        &self,
        from_dir: NodeKey,
        name: &str,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        match from_dir {
            NodeKey::DeletedDir => self.recover(name, new_name).await,
            NodeKey::Root => match (is_valid_secret_name(name), is_valid_secret_name(new_name)) {
                (false, false) => self.rename_scratch(name, new_name, no_replace),
                (false, true) => self.scratch_to_secret(name, new_name, no_replace).await,
                (true, false) => self.secret_to_scratch(name, new_name, no_replace).await,
                (true, true) => {
                    let key = name.to_ascii_lowercase();
                    let placeholder = self.placeholders.lock().remove(&key);
                    match placeholder {
                        // Nothing in the vault yet: the placeholder just changes name.
                        Some(_) => {
                            let new_key = new_name.to_ascii_lowercase();
                            let ino = self
                                .inodes
                                .lock()
                                .ino_for(NodeKey::Secret(new_key.clone()), new_name);
                            self.placeholders.lock().insert(
                                new_key,
                                Placeholder {
                                    ino,
                                    name: new_name.to_owned(),
                                    created: SystemTime::now(),
                                },
                            );
                            Ok(())
                        }
                        None => self.rename_secret(name, new_name, no_replace).await,
                    }
                }
            },
            _ => Err(FsError::NotPermitted {
                name: name.to_owned(),
                reason: "only secrets and deleted secrets can be renamed".into(),
            }),
        }
    }

    /// Scratch to scratch: memory only.
    pub(super) fn rename_scratch(
        &self,
        name: &str,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        if !is_scratch_name(new_name) {
            return Err(FsError::InvalidName {
                name: new_name.to_owned(),
                reason: secret_name_problem(new_name).unwrap_or("not a secret name"),
            });
        }
        let mut scratch = self.scratch.lock();
        if no_replace && scratch.contains_key(new_name) {
            return Err(FsError::Exists {
                name: new_name.to_owned(),
                reason: "the target exists".into(),
            });
        }
        let file = scratch.remove(name).ok_or(FsError::NotFound {
            name: name.to_owned(),
        })?;
        let content = Zeroizing::new(file.content.lock().to_vec());
        drop(scratch);
        self.insert_scratch(new_name, content);
        Ok(())
    }

    /// An editor's temporary file renamed over a secret: one set with its content, keeping
    /// the target's encoding, tags and content type.
    pub(super) async fn scratch_to_secret(
        &self,
        name: &str,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let file = self
            .scratch
            .lock()
            .get(name)
            .cloned()
            .ok_or(FsError::NotFound {
                name: name.to_owned(),
            })?;
        let key = new_name.to_ascii_lowercase();
        let is_placeholder = self.placeholders.lock().contains_key(&key);
        let base = if is_placeholder {
            None
        } else {
            self.load_secret(new_name).await?.value
        };
        if no_replace && (base.is_some() || is_placeholder) {
            return Err(FsError::Exists {
                name: new_name.to_owned(),
                reason: "the target exists".into(),
            });
        }
        if base.as_ref().is_some_and(|b| !b.enabled) {
            return Err(FsError::AccessDenied {
                name: new_name.to_owned(),
                reason: "the secret is disabled".into(),
            });
        }
        let ino = self.inodes.lock().ino_for(
            NodeKey::Secret(key),
            base.as_ref().map_or(new_name, |b| b.name.as_str()),
        );
        let content = Zeroizing::new(file.content.lock().to_vec());
        self.store_value(ino, new_name, base.as_ref(), content)
            .await?;
        self.scratch.lock().remove(name);
        Ok(())
    }

    /// A secret renamed to a name Key Vault cannot hold (an editor's backup `NAME~`): the
    /// scratch file gets its content, and the secret is hidden on this mount — never deleted
    /// in the vault — until it is created or written again.
    pub(super) async fn secret_to_scratch(
        &self,
        name: &str,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        if !is_scratch_name(new_name) {
            let reason = secret_name_problem(new_name).unwrap_or("not a secret name");
            warn!(
                name = new_name,
                reason, "rename refused: not a valid Key Vault secret name"
            );
            return Err(FsError::InvalidName {
                name: new_name.to_owned(),
                reason,
            });
        }
        if no_replace && self.scratch.lock().contains_key(new_name) {
            return Err(FsError::Exists {
                name: new_name.to_owned(),
                reason: "the target exists".into(),
            });
        }
        let key = name.to_ascii_lowercase();
        if self.placeholders.lock().remove(&key).is_some() {
            self.insert_scratch(new_name, Zeroizing::new(Vec::new()));
            return Ok(());
        }
        let data = self
            .load_secret(name)
            .await?
            .value
            .ok_or(FsError::NotFound {
                name: name.to_owned(),
            })?;
        if !data.enabled {
            return Err(FsError::AccessDenied {
                name: name.to_owned(),
                reason: "the secret is disabled".into(),
            });
        }
        self.insert_scratch(new_name, Zeroizing::new(data.content.to_vec()));
        self.shadowed.lock().insert(key);
        info!(
            secret = name,
            backup = new_name,
            "secret renamed to an editor backup name: hidden on this mount, not deleted in the vault"
        );
        Ok(())
    }

    pub(super) async fn recover(&self, name: &str, new_name: &str) -> Result<(), FsError> {
        if !name.eq_ignore_ascii_case(new_name) {
            return Err(FsError::InvalidArgument {
                name: new_name.to_owned(),
                reason: format!(
                    "a deleted secret recovers under its own name: mv .deleted/{name} {name}"
                ),
            });
        }
        secret_name_or_not_found(name)?;
        self.store
            .recover_deleted_secret(name)
            .await
            .map_err(logged_failure(name, "recover deleted secret"))?;
        info!(secret = name, "deleted secret recovered");
        let key = name.to_ascii_lowercase();
        self.values.invalidate(&key);
        self.listings.invalidate(ALL_SECRETS);
        self.listings.invalidate(DELETED_SECRETS);
        Ok(())
    }

    pub(super) async fn rename_secret(
        &self,
        name: &str,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        if let Some(reason) = secret_name_problem(new_name) {
            warn!(
                name = new_name,
                reason, "rename refused: not a valid Key Vault secret name"
            );
            return Err(FsError::InvalidName {
                name: new_name.to_owned(),
                reason,
            });
        }
        secret_name_or_not_found(name)?;
        if name.eq_ignore_ascii_case(new_name) {
            // One secret: Key Vault names are case-insensitive and cannot be re-spelled.
            return Ok(());
        }
        let source = self
            .load_secret(name)
            .await?
            .value
            .ok_or(FsError::NotFound {
                name: name.to_owned(),
            })?;
        if !source.enabled {
            return Err(FsError::AccessDenied {
                name: name.to_owned(),
                reason: "the secret is disabled".into(),
            });
        }
        if no_replace && self.load_secret(new_name).await?.value.is_some() {
            return Err(FsError::Exists {
                name: new_name.to_owned(),
                reason: "the target exists".into(),
            });
        }
        let parameters = SecretSetParameters {
            value: content::encode(&source.content, source.encoding),
            tags: source.tags.clone(),
            content_type: source.content_type.clone(),
            attributes: None,
        };
        let bundle = self.set_secret(new_name, parameters).await?;
        let new_key = new_name.to_ascii_lowercase();
        let mut data = SecretData::from_bundle(bundle, new_name);
        data.content = Zeroizing::new(source.content.to_vec());
        data.encoding = source.encoding;
        self.values.insert(&new_key, Some(data));
        self.placeholders.lock().remove(&new_key);
        let new_ino = self.inodes.lock().lookup(&NodeKey::Secret(new_key));
        if let Some(ino) = new_ino {
            self.inval_inode(ino);
        }
        self.unlink(ROOT_INO, name).await
    }
}
