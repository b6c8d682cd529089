//! The write path: open, create, read, write, flush, release and the commit of a value.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::*;

impl SecretFs {
    // ----- open, create, read, write, commit --------------------------------------------

    pub(super) fn check_writable(&self, name: &str) -> Result<(), FsError> {
        if self.config.read_only {
            warn!(secret = name, "write refused: the mount is read-only");
            return Err(FsError::ReadOnly {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    pub(super) fn register_file(&self, file: OpenFile) -> u64 {
        let fh = self.new_fh();
        self.files.lock().insert(fh, Arc::new(file));
        fh
    }

    pub(super) fn file(&self, fh: u64) -> Result<Arc<OpenFile>, FsError> {
        self.files
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle { fh })
    }

    pub async fn open(&self, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
        let (key, name) = self.node(ino)?;
        match key {
            NodeKey::Root | NodeKey::VersionsDir | NodeKey::DeletedDir | NodeKey::VersionsOf(_) => {
                Err(FsError::IsADirectory { name })
            }
            NodeKey::Secret(secret_key) => self.open_secret(ino, secret_key, &name, mode).await,
            NodeKey::Scratch(scratch_name) => self.open_scratch(&scratch_name, mode),
            NodeKey::Version(_, version) => {
                if mode.write || mode.truncate {
                    return Err(FsError::AccessDenied {
                        name,
                        reason: "old versions are read-only".into(),
                    });
                }
                let data = self
                    .load_version(&name, &version)
                    .await?
                    .value
                    .ok_or_else(|| FsError::NotFound { name: name.clone() })?;
                if !data.enabled {
                    return Err(FsError::AccessDenied {
                        name,
                        reason: "the version is disabled".into(),
                    });
                }
                let fh = self.register_file(self.read_only_file(ino, &name, Some(data)));
                // Versions never change: their pages may stay cached.
                Ok(Opened {
                    fh,
                    keep_cache: true,
                    direct_io: false,
                })
            }
            NodeKey::Deleted(_) => {
                if mode.write || mode.truncate {
                    return Err(FsError::AccessDenied {
                        name,
                        reason: "deleted secrets are read-only; `mv .deleted/NAME NAME` recovers"
                            .into(),
                    });
                }
                let fh = self.register_file(self.read_only_file(ino, &name, None));
                Ok(Opened {
                    fh,
                    keep_cache: true,
                    direct_io: false,
                })
            }
        }
    }

    pub(super) fn read_only_file(
        &self,
        ino: u64,
        name: &str,
        base: Option<Arc<SecretData>>,
    ) -> OpenFile {
        OpenFile {
            ino,
            name: name.to_owned(),
            writable: false,
            append: false,
            state: tokio::sync::Mutex::new(FileState {
                base,
                buffer: None,
                dirty: false,
                poisoned: false,
                failed: None,
                emptied_at_open: false,
            }),
            dirty_size: Mutex::new(None),
            version: Mutex::new(None),
            scratch: None,
            unlinked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(super) fn open_scratch(&self, name: &str, mode: OpenMode) -> Result<Opened, FsError> {
        if mode.write || mode.truncate {
            self.check_writable(name)?;
        }
        let file = self
            .scratch
            .lock()
            .get(name)
            .cloned()
            .ok_or(FsError::NotFound {
                name: name.to_owned(),
            })?;
        let truncate = mode.truncate && mode.write;
        let buffer = if truncate {
            Zeroizing::new(Vec::new())
        } else {
            Zeroizing::new(file.content.lock().to_vec())
        };
        let fh = self.register_file(OpenFile {
            ino: file.ino,
            name: name.to_owned(),
            writable: mode.write,
            append: mode.append,
            state: tokio::sync::Mutex::new(FileState {
                base: None,
                buffer: Some(buffer),
                dirty: truncate,
                poisoned: false,
                failed: None,
                emptied_at_open: false,
            }),
            dirty_size: Mutex::new(truncate.then_some(0)),
            version: Mutex::new(None),
            scratch: Some(file),
            unlinked: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Opened {
            fh,
            keep_cache: false,
            direct_io: true,
        })
    }

    /// Whether every open handle of `ino` reads `version` and none has uncommitted changes.
    pub(super) fn handles_agree(&self, ino: u64, version: Option<&str>) -> bool {
        self.files
            .lock()
            .values()
            .filter(|f| f.ino == ino)
            .all(|f| f.dirty_size.lock().is_none() && f.version.lock().as_deref() == version)
    }

    pub(super) async fn open_secret(
        &self,
        ino: u64,
        key: String,
        name: &str,
        mode: OpenMode,
    ) -> Result<Opened, FsError> {
        if mode.write || mode.truncate {
            self.check_writable(name)?;
        }
        let placeholder = self.placeholders.lock().get(&key).cloned();
        let base = match placeholder {
            Some(_) => None,
            None => {
                let data = self
                    .load_secret(name)
                    .await?
                    .value
                    .ok_or(FsError::NotFound {
                        name: name.to_owned(),
                    })?;
                if !data.enabled {
                    warn!(secret = name, "open refused: the secret is disabled");
                    return Err(FsError::AccessDenied {
                        name: name.to_owned(),
                        reason: "the secret is disabled".into(),
                    });
                }
                Some(data)
            }
        };
        let version = base.as_ref().and_then(|data| data.version.clone());
        let kernel_has_this_version = match &base {
            Some(data) => self.note_version(ino, data.version.as_deref()),
            None => false,
        };
        // Pages filled through another handle may hold another version (an older snapshot,
        // or uncommitted writes): keep the page cache only when every handle agrees.
        let keep_cache =
            kernel_has_this_version && !mode.write && self.handles_agree(ino, version.as_deref());
        let truncate = mode.truncate && mode.write;
        let state = FileState {
            base,
            buffer: truncate.then(|| Zeroizing::new(Vec::new())),
            // Truncating an existing secret is a change (`: > secret` empties it); truncating
            // a placeholder changes nothing.
            dirty: truncate && placeholder.is_none(),
            poisoned: false,
            failed: None,
            emptied_at_open: truncate && placeholder.is_none(),
        };
        let dirty_size = if state.dirty { Some(0) } else { None };
        let fh = self.register_file(OpenFile {
            ino,
            name: name.to_owned(),
            writable: mode.write,
            append: mode.append,
            state: tokio::sync::Mutex::new(state),
            dirty_size: Mutex::new(dirty_size),
            version: Mutex::new(version),
            scratch: None,
            unlinked: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Opened {
            fh,
            keep_cache,
            // Writes bypass the page cache, so no reader sees uncommitted bytes.
            direct_io: mode.write,
        })
    }

    /// Create `name` in `parent` and open it for writing. A name not in the vault becomes a
    /// placeholder (see the module docs); an existing secret is opened (and truncated when
    /// asked), or refused with `exclusive`.
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
    ) -> Result<(Entry, Opened), FsError> {
        let (parent_key, parent_name) = self.node(parent)?;
        match parent_key {
            NodeKey::Root => {}
            NodeKey::Secret(_)
            | NodeKey::Version(..)
            | NodeKey::Deleted(_)
            | NodeKey::Scratch(_) => return Err(FsError::NotADirectory { name: parent_name }),
            _ => {
                return Err(FsError::NotPermitted {
                    name: format!("{parent_name}/{name}"),
                    reason: "only secrets can be created, in the top directory".into(),
                })
            }
        }
        self.check_writable(name)?;
        if is_scratch_name(name) {
            return self.create_scratch(name, mode);
        }
        if let Some(reason) = secret_name_problem(name) {
            warn!(
                name,
                reason, "create refused: not a valid Key Vault secret name"
            );
            return Err(if name.len() > MAX_SECRET_NAME_LEN {
                FsError::NameTooLong {
                    name: name.to_owned(),
                }
            } else {
                FsError::InvalidName {
                    name: name.to_owned(),
                    reason,
                }
            });
        }
        let key = name.to_ascii_lowercase();
        let write_mode = OpenMode {
            write: true,
            ..mode
        };
        // An editor re-creating the secret it renamed to its backup: the secret is back.
        self.shadowed.lock().remove(&key);
        let existing_placeholder = self.placeholders.lock().get(&key).cloned();
        let exists_in_vault = match existing_placeholder {
            Some(_) => false,
            None => self.load_secret(name).await?.value.is_some(),
        };
        if existing_placeholder.is_some() || exists_in_vault {
            if mode.exclusive {
                return Err(FsError::Exists {
                    name: name.to_owned(),
                    reason: "the secret exists".into(),
                });
            }
            let ino = self
                .inodes
                .lock()
                .ino_for(NodeKey::Secret(key.clone()), name);
            let opened = self.open_secret(ino, key, name, write_mode).await?;
            let entry = self.getattr(ino).await?;
            return Ok((entry, opened));
        }
        if self.config.on_deleted_conflict == DeletedConflictPolicy::Fail {
            // The shell ignores close() errors: tell at create time, not at commit.
            match self.store.get_deleted_secret(name).await {
                Ok(_) => {
                    log_deleted_conflict(name);
                    return Err(FsError::Exists {
                        name: name.to_owned(),
                        reason: "it is deleted but recoverable".into(),
                    });
                }
                Err(VaultError::NotFound { .. }) => {}
                Err(error) => {
                    debug!(secret = name, %error, "could not check the deleted secrets; the commit will tell");
                }
            }
        }
        let ino = self
            .inodes
            .lock()
            .ino_for(NodeKey::Secret(key.clone()), name);
        let placeholder = Placeholder {
            ino,
            name: name.to_owned(),
            created: SystemTime::now(),
        };
        self.placeholders
            .lock()
            .insert(key.clone(), placeholder.clone());
        let opened = self.open_secret(ino, key, name, write_mode).await?;
        Ok((self.placeholder_entry(&placeholder), opened))
    }

    pub(super) fn create_scratch(
        &self,
        name: &str,
        mode: OpenMode,
    ) -> Result<(Entry, Opened), FsError> {
        let exists = self.scratch.lock().contains_key(name);
        if exists && mode.exclusive {
            return Err(FsError::Exists {
                name: name.to_owned(),
                reason: "the file exists".into(),
            });
        }
        if !exists {
            debug!(
                name,
                "scratch file kept in memory only (Key Vault cannot hold this name)"
            );
            self.insert_scratch(name, Zeroizing::new(Vec::new()));
        }
        let opened = self.open_scratch(
            name,
            OpenMode {
                write: true,
                ..mode
            },
        )?;
        let file = self
            .scratch
            .lock()
            .get(name)
            .cloned()
            .ok_or(FsError::NotFound {
                name: name.to_owned(),
            })?;
        Ok((self.scratch_entry(&file), opened))
    }

    pub(super) fn insert_scratch(&self, name: &str, content: Zeroizing<Vec<u8>>) {
        let ino = self
            .inodes
            .lock()
            .ino_for(NodeKey::Scratch(name.to_owned()), name);
        self.scratch.lock().insert(
            name.to_owned(),
            Arc::new(ScratchFile {
                ino,
                content: Mutex::new(content),
                modified: Mutex::new(SystemTime::now()),
            }),
        );
    }

    pub async fn read(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Zeroizing<Vec<u8>>, FsError> {
        let file = self.file(fh)?;
        let state = file.state.lock().await;
        let content = state.content();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(content.len());
        let end = start.saturating_add(size as usize).min(content.len());
        Ok(Zeroizing::new(content[start..end].to_vec()))
    }

    /// Write into the handle's buffer. Refuses (EFBIG) a write that would make the value longer
    /// than the service allows; the handle then never commits, so the old value stays.
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let file = self.file(fh)?;
        if !file.writable {
            return Err(FsError::BadHandle { fh });
        }
        let mut state = file.state.lock().await;
        let encoding = state.encoding();
        let current_len = state.content().len();
        let start = if file.append {
            current_len
        } else {
            usize::try_from(offset).unwrap_or(usize::MAX)
        };
        let end = start.saturating_add(data.len());
        let too_large = |state: &mut FileState| {
            state.poisoned = true;
            warn!(
                secret = file.name.as_str(),
                "write refused: the value would exceed 25,600 characters (binary: 19,200 bytes); \
                 the secret keeps its old value"
            );
            FsError::TooLarge {
                name: file.name.clone(),
            }
        };
        if file.scratch.is_some() {
            if end > MAX_SCRATCH_BYTES {
                return Err(FsError::TooLarge {
                    name: file.name.clone(),
                });
            }
        } else if end > MAX_CONTENT_BYTES {
            return Err(too_large(&mut state));
        }
        // Check on a copy first: a refused write must not change the buffer.
        let mut candidate = resized_copy(state.content(), current_len.max(end));
        candidate[start..end].copy_from_slice(data);
        if file.scratch.is_none() && !content::fits(&candidate, encoding) {
            return Err(too_large(&mut state));
        }
        let new_len = candidate.len() as u64;
        state.buffer = Some(candidate);
        state.dirty = true;
        state.emptied_at_open = false;
        state.failed = None;
        *file.dirty_size.lock() = Some(new_len);
        u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument {
            name: file.name.clone(),
            reason: "write larger than 4 GiB".into(),
        })
    }

    /// Commit the handle's changes, if any (close and `fsync`).
    pub async fn flush(&self, fh: u64) -> Result<(), FsError> {
        let file = self.file(fh)?;
        let mut state = file.state.lock().await;
        if state.emptied_at_open {
            // Nothing written yet after `O_TRUNC`: the data (or the release of `: > NAME`)
            // commits, as one version.
            return Ok(());
        }
        self.commit(&file, &mut state).await
    }

    pub async fn fsync(&self, fh: u64) -> Result<(), FsError> {
        let file = self.file(fh)?;
        let mut state = file.state.lock().await;
        self.commit(&file, &mut state).await
    }

    /// Commit what is left and forget the handle.
    pub async fn release(&self, fh: u64) -> Result<(), FsError> {
        let file = self.file(fh)?;
        let result = {
            let mut state = file.state.lock().await;
            let result = self.commit(&file, &mut state).await;
            // Whatever happened, this handle's changes end here.
            state.dirty = false;
            result
        };
        self.files.lock().remove(&fh);
        result
    }

    /// Commit every handle with uncommitted changes (before unmounting). Answers how many
    /// commits failed; each failure is logged.
    pub async fn commit_pending(&self) -> usize {
        let files: Vec<Arc<OpenFile>> = self.files.lock().values().cloned().collect();
        let mut failures = 0;
        for file in files {
            let mut state = file.state.lock().await;
            if self.commit(&file, &mut state).await.is_err() {
                failures += 1;
            }
        }
        failures
    }

    pub(super) async fn commit(
        &self,
        file: &OpenFile,
        state: &mut FileState,
    ) -> Result<(), FsError> {
        if state.poisoned {
            return Err(FsError::TooLarge {
                name: file.name.clone(),
            });
        }
        state.emptied_at_open = false;
        if !state.dirty {
            return match &state.failed {
                Some(error) => Err(error.clone()),
                None => Ok(()),
            };
        }
        if file.unlinked.load(Ordering::SeqCst) {
            debug!(
                secret = file.name.as_str(),
                "discarding writes to a removed file"
            );
            state.dirty = false;
            *file.dirty_size.lock() = None;
            return Ok(());
        }
        if let Some(scratch) = &file.scratch {
            *scratch.content.lock() = Zeroizing::new(state.content().to_vec());
            *scratch.modified.lock() = SystemTime::now();
            state.dirty = false;
            *file.dirty_size.lock() = None;
            return Ok(());
        }
        let content = Zeroizing::new(state.content().to_vec());
        let base = state.base.clone();
        match self
            .store_value(file.ino, &file.name, base.as_ref(), content)
            .await
        {
            Ok(data) => {
                let version = data.as_ref().and_then(|d| d.version.clone());
                state.base = data;
                state.buffer = None;
                state.dirty = false;
                state.failed = None;
                *file.dirty_size.lock() = None;
                file.version.lock().clone_from(&version);
                Ok(())
            }
            Err(error @ FsError::TooLarge { .. }) => {
                state.poisoned = true;
                Err(error)
            }
            Err(error) => {
                state.dirty = false;
                state.failed = Some(error.clone());
                *file.dirty_size.lock() = None;
                Err(error)
            }
        }
    }

    /// Set `content` as the new value of the secret behind `ino` (one set call), keeping the
    /// base version's encoding, tags, content type and attributes; then make every reader on
    /// this mount see it.
    pub(super) async fn store_value(
        &self,
        ino: u64,
        asked_name: &str,
        base: Option<&Arc<SecretData>>,
        content: Zeroizing<Vec<u8>>,
    ) -> Result<Option<Arc<SecretData>>, FsError> {
        let name = base.map_or(asked_name, |b| b.name.as_str());
        let key = name.to_ascii_lowercase();
        let encoding = content::encoding_for(&content, base.map_or(Encoding::Text, |b| b.encoding));
        if !content::fits(&content, encoding) {
            warn!(
                secret = name,
                "set refused: the value is beyond 25,600 characters"
            );
            return Err(FsError::TooLarge {
                name: name.to_owned(),
            });
        }
        let parameters = SecretSetParameters {
            value: content::encode(&content, encoding),
            tags: content::tags_for(base.and_then(|b| b.tags.as_ref()), encoding),
            content_type: base.and_then(|b| b.content_type.clone()),
            attributes: base.map(|b| SecretAttributes {
                enabled: b.attributes.enabled,
                nbf: b.attributes.nbf,
                exp: b.attributes.exp,
                ..SecretAttributes::default()
            }),
        };
        let bundle = self.set_secret(name, parameters).await?;
        let mut data = SecretData::from_bundle(bundle, name);
        // What we wrote is what readers must see, whatever the response carried.
        data.content = content;
        data.encoding = encoding;
        let data = self.values.insert(&key, Some(data));
        let version = data.as_ref().and_then(|d| d.version.clone());
        info!(
            secret = name,
            version = version.as_deref().unwrap_or("?"),
            "secret set"
        );
        if base.is_none() {
            self.placeholders.lock().remove(&key);
            self.listings.invalidate(ALL_SECRETS);
        }
        self.shadowed.lock().remove(&key);
        self.listings.invalidate(&versions_key(&key));
        // The kernel may cache the new content from now on; drop the old pages.
        if let Some(node) = self.inodes.lock().get_mut(ino) {
            node.kernel_version = version;
        }
        self.inval_inode(ino);
        Ok(data)
    }

    /// `set_secret`, applying the deleted-but-recoverable policy.
    pub(super) async fn set_secret(
        &self,
        name: &str,
        parameters: SecretSetParameters,
    ) -> Result<SecretBundle, FsError> {
        let log_failure = |error: &VaultError| {
            warn!(secret = name, %error, "could not set secret; it keeps its old value");
        };
        match self.store.set_secret(name, parameters.clone()).await {
            Ok(bundle) => Ok(bundle),
            Err(VaultError::DeletedButRecoverable { .. }) => {
                match self.config.on_deleted_conflict {
                    DeletedConflictPolicy::Fail => {
                        log_deleted_conflict(name);
                        Err(FsError::Exists {
                            name: name.to_owned(),
                            reason: "it is deleted but recoverable".into(),
                        })
                    }
                    DeletedConflictPolicy::Recover => {
                        info!(
                        secret = name,
                        "secret is deleted but recoverable; recovering it before setting the new value"
                    );
                        self.store
                            .recover_deleted_secret(name)
                            .await
                            .inspect_err(log_failure)?;
                        self.listings.invalidate(DELETED_SECRETS);
                        Ok(self
                            .store
                            .set_secret(name, parameters)
                            .await
                            .inspect_err(log_failure)?)
                    }
                }
            }
            Err(error) => {
                log_failure(&error);
                Err(error.into())
            }
        }
    }
}
