//! Namespace changes: unlink (delete, polled), purge, rename, recover, scratch renames.

use std::sync::atomic::Ordering;
use std::sync::Arc;

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
            NodeKey::CertificatesDir | NodeKey::CertificateDir(_) => {
                return Err(self.certificates_read_only(name))
            }
            NodeKey::VersionsDir | NodeKey::VersionsOf(_) => {
                return Err(FsError::NotPermitted {
                    name: format!("{parent_name}/{name}"),
                    reason: "versions cannot be removed one by one".into(),
                })
            }
            _ => return Err(FsError::NotADirectory { name: parent_name }),
        }
        if self.scratch.lock().contains_key(name) || !is_valid_secret_name(name) {
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
        let ino = self.inodes.lock().lookup(&NodeKey::Secret(key.clone()));
        if self.placeholders.lock().remove(&key).is_some() {
            debug!(
                secret = name,
                "removed a placeholder that never reached the vault"
            );
            self.mark_unlinked(ino);
            return Ok(());
        }
        // Opening the name meanwhile answers EBUSY: a write must not be acknowledged and
        // then dropped with the deleted file.
        self.deleting.lock().insert(key.clone());
        let deleted = self.delete_from_vault(name, &key).await;
        self.deleting.lock().remove(&key);
        deleted?;
        self.mark_unlinked(ino);
        Ok(())
    }

    /// What is still written through handles open on a removed file goes nowhere.
    fn mark_unlinked(&self, ino: Option<u64>) {
        if let Some(shared) = self.write_state_of(ino) {
            shared.unlinked.store(true, Ordering::SeqCst);
        }
    }

    /// Delete `name` in the vault, polled to completion, and forget what was cached of it.
    async fn delete_from_vault(&self, name: &str, key: &str) -> Result<(), FsError> {
        let spelled = {
            let inodes = self.inodes.lock();
            inodes
                .lookup(&NodeKey::Secret(key.to_owned()))
                .and_then(|ino| inodes.get(ino).map(|n| n.name.clone()))
                .unwrap_or_else(|| name.to_owned())
        };
        if let Err(error) = self.store.delete_secret(&spelled).await {
            if !matches!(error, VaultError::NotFound { .. }) {
                warn!(secret = name, %error, "could not delete secret");
            }
            self.values.invalidate(key);
            return Err(error.into());
        }
        info!(secret = name, "secret deleted");
        self.values.insert(key, None);
        self.listings.invalidate(ALL_SECRETS);
        self.listings.invalidate(DELETED_SECRETS);
        self.listings.invalidate(&versions_key(key));
        {
            let mut inodes = self.inodes.lock();
            let ino = inodes.lookup(&NodeKey::Secret(key.to_owned()));
            if let Some(node) = ino.and_then(|ino| inodes.get_mut(ino)) {
                node.kernel_version = None;
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
        if Self::is_certificates_node(&from_dir) || Self::is_certificates_node(&to_dir) {
            return Err(self.certificates_read_only(name));
        }
        if to_dir != NodeKey::Root {
            return Err(FsError::NotPermitted {
                name: new_name.to_owned(),
                reason: "secrets can only be renamed into the top directory".into(),
            });
        }
        self.check_writable(new_name)?;
        let from_key = match from_dir {
            NodeKey::DeletedDir => NodeKey::Deleted(name.to_ascii_lowercase()),
            _ if self.scratch.lock().contains_key(name) => NodeKey::Scratch(name.to_owned()),
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
        // The target's own inode is replaced: like a file removed while open, what handles
        // still write to it goes nowhere (it must not overwrite what was just renamed there).
        let replaced = {
            let inodes = self.inodes.lock();
            inodes
                .lookup(&to_key)
                .filter(|&ino| inodes.lookup(&from_key) != Some(ino))
        };
        self.mark_unlinked(replaced);
        // The kernel now shows the source's inode under the new name.
        let moved = self
            .inodes
            .lock()
            .rekey(&from_key, to_key.clone(), new_name);
        if let (Some(ino), NodeKey::Scratch(_)) = (moved, &to_key) {
            let scratch = self.scratch.lock().get(new_name).cloned();
            // Keep the scratch file's inode in step with the table (a scratch file renamed
            // keeps its own, and its open handles).
            if let Some(file) = scratch.filter(|file| file.ino != ino) {
                let content = Zeroizing::new(file.content.lock().to_vec());
                let charge = Charge::for_existing(&self.memory, content.len());
                self.scratch.lock().insert(
                    new_name.to_owned(),
                    Arc::new(ScratchFile {
                        ino,
                        content: Mutex::new(content),
                        modified: Mutex::new(*file.modified.lock()),
                        utimes: Mutex::new(*file.utimes.lock()),
                        charge,
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
            NodeKey::Root => match (
                is_valid_secret_name(name) && !self.scratch.lock().contains_key(name),
                is_valid_secret_name(new_name),
            ) {
                (false, false) => self.rename_scratch(name, new_name, no_replace),
                (false, true) => self.scratch_to_secret(name, new_name, no_replace).await,
                (true, false) => self.secret_to_scratch(name, new_name, no_replace).await,
                (true, true) => {
                    let key = name.to_ascii_lowercase();
                    let placeholder = self.placeholders.lock().remove(&key);
                    match placeholder {
                        Some(placeholder) => {
                            let renamed = self
                                .rename_placeholder(&placeholder, new_name, no_replace)
                                .await;
                            if renamed.is_err() {
                                self.placeholders.lock().insert(key, placeholder);
                            }
                            renamed
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

    /// A file created on this mount and not in the vault yet, renamed. Over an existing
    /// secret it becomes that secret's new value (one set: what its writers wrote so far,
    /// else empty, as `mv` of an empty file gives on a disk); else it just changes name.
    async fn rename_placeholder(
        &self,
        placeholder: &Placeholder,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        if let Some(reason) = secret_name_problem(new_name) {
            return Err(FsError::InvalidName {
                name: new_name.to_owned(),
                reason,
            });
        }
        let new_key = new_name.to_ascii_lowercase();
        let target_is_placeholder = self.placeholders.lock().contains_key(&new_key);
        let target = match target_is_placeholder {
            true => None,
            false => self.load_secret(new_name).await?.value,
        };
        if no_replace && (target.is_some() || target_is_placeholder) {
            return Err(FsError::Exists {
                name: new_name.to_owned(),
                reason: "the target exists".into(),
            });
        }
        let Some(target) = target else {
            let renamed = Placeholder {
                name: new_name.to_owned(),
                ..placeholder.clone()
            };
            let mut placeholders = self.placeholders.lock();
            placeholders.remove(&new_key);
            placeholders.insert(new_key, renamed);
            return Ok(());
        };
        if !target.enabled {
            return Err(FsError::AccessDenied {
                name: new_name.to_owned(),
                reason: "the secret is disabled".into(),
            });
        }
        let shared = self.write_state_of(Some(placeholder.ino));
        let mut pending = match &shared {
            Some(shared) => Some(shared.state.lock().await),
            None => None,
        };
        let content = Zeroizing::new(
            pending
                .as_ref()
                .map(|state| state.content.to_vec())
                .unwrap_or_default(),
        );
        let data = self
            .store_value(placeholder.ino, &target.name, Some(&target), content)
            .await?;
        if let Some(state) = pending.as_mut() {
            state.committed(data);
        }
        Ok(())
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
        // The same file under a new name: handles open on it keep writing to it.
        scratch.insert(new_name.to_owned(), file);
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
        let stored = self
            .store_value(ino, new_name, base.as_ref(), content)
            .await?;
        // The kernel now shows the scratch file's inode under the secret's name: a time set
        // on it (rsync -t) stays with the version just stored.
        if let Some(mtime) = *file.utimes.lock() {
            let version = stored.and_then(|data| data.version.clone());
            self.times.lock().insert(file.ino, (version, mtime));
        }
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
        let placeholder = self.placeholders.lock().remove(&key);
        if let Some(placeholder) = placeholder {
            let moved = self.insert_scratch(new_name, Zeroizing::new(Vec::new()));
            if moved.is_err() {
                self.placeholders.lock().insert(key, placeholder);
            }
            return moved;
        }
        let data = self.readable_secret(name).await?;
        self.insert_scratch(new_name, Zeroizing::new(data.content.to_vec()))?;
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
            // Key Vault recovers a secret under its own name only. EPERM, not EINVAL (which
            // `mv` reports as "a subdirectory of itself") nor EXDEV (which would make `mv` copy
            // the empty file and then try to purge the deleted secret).
            warn!(
                secret = name,
                target = new_name,
                "rename refused: a deleted secret recovers under its own name only: \
                 `mv .deleted/{name} {name}`, then `mv {name} {new_name}`"
            );
            return Err(FsError::NotPermitted {
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
        let source = self.readable_secret(name).await?;
        if no_replace && self.load_secret(new_name).await?.value.is_some() {
            return Err(FsError::Exists {
                name: new_name.to_owned(),
                reason: "the target exists".into(),
            });
        }
        // A handle with unsaved writes follows its file: they are the value b gets.
        let source_ino = self
            .inodes
            .lock()
            .lookup(&NodeKey::Secret(name.to_ascii_lowercase()));
        let shared = self.write_state_of(source_ino);
        let mut pending = match &shared {
            Some(shared) => Some(shared.state.lock().await),
            None => None,
        };
        let content = Zeroizing::new(
            pending
                .as_ref()
                .and_then(|state| state.uncommitted())
                .unwrap_or(&source.content[..])
                .to_vec(),
        );
        let encoding = content::encoding_for(&content, source.encoding);
        let parameters = SecretSetParameters {
            value: content::encode(&content, encoding),
            tags: content::tags_for(source.tags.as_ref(), encoding),
            content_type: source.content_type.clone(),
            attributes: None,
        };
        let bundle = self.set_secret(new_name, parameters).await?;
        let new_key = new_name.to_ascii_lowercase();
        let mut data = SecretData::from_bundle(bundle, new_name);
        data.content = content;
        data.encoding = encoding;
        let data = self.values.insert(&new_key, Some(data));
        if let Some(state) = pending.as_mut() {
            state.committed(data);
        }
        drop(pending);
        self.placeholders.lock().remove(&new_key);
        let new_ino = self.inodes.lock().lookup(&NodeKey::Secret(new_key));
        if let Some(ino) = new_ino {
            self.inval_inode(ino);
        }
        self.delete_from_vault(name, &name.to_ascii_lowercase())
            .await
    }
}
