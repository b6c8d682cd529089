//! Lookup and attributes: `lookup`, `getattr`, the `ls -l` size prefetch.

use std::sync::Arc;

use tracing::debug;

use super::*;
use crate::fs::inode::CERTIFICATES_DIR_NAME;

impl SecretFs {
    // ----- lookup and getattr -----------------------------------------------------------

    /// `lookup` for the kernel: the entry it will hold, counted until it forgets it.
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Entry, FsError> {
        // The node may be forgotten between resolving and counting: resolve again (a new
        // inode then); a few tries, as a forget racing every time cannot last.
        let mut entry = self.resolve(parent, name).await?;
        for _ in 0..3 {
            if self.inodes.lock().remember(entry.attr.ino) {
                break;
            }
            entry = self.resolve(parent, name).await?;
        }
        Ok(entry)
    }

    /// The kernel dropped `count` lookups of `ino`. When it holds none and nothing on this
    /// mount needs the node (an open file, unsaved writes, a placeholder, a scratch file), the
    /// node goes: a long-running daemon does not grow with every name it ever saw.
    pub fn forget(&self, ino: u64, count: u64) {
        if self.inodes.lock().forget(ino, count) {
            self.collect_inode(ino);
        }
    }

    /// Drop `ino` if the kernel holds no lookup of it and nothing here needs it. Runs on every
    /// release: the cheap check (the kernel still holds it, the usual case) comes first.
    pub(super) fn collect_inode(&self, ino: u64) {
        if self.inodes.lock().is_held(ino) {
            return;
        }
        let in_use = self.files.lock().values().any(|file| file.ino == ino)
            || self.writes.lock().contains_key(&ino)
            || self.placeholders.lock().values().any(|p| p.ino == ino)
            || self.scratch.lock().values().any(|file| file.ino == ino);
        if !in_use && self.inodes.lock().remove_unheld(ino) {
            self.times.lock().remove(&ino);
        }
    }

    /// How many inodes the table holds (for tests and the soak).
    pub fn inode_count(&self) -> usize {
        self.inodes.lock().len()
    }

    /// Find `name` in directory `parent`. Names that cannot be secrets answer NotFound without
    /// a vault call.
    async fn resolve(&self, parent: u64, name: &str) -> Result<Entry, FsError> {
        let (parent_key, parent_name) = self.node(parent)?;
        let not_found = || FsError::NotFound {
            name: name.to_owned(),
        };
        match parent_key {
            NodeKey::Root => match name {
                VERSIONS_DIR_NAME => Ok(self.dir_entry(VERSIONS_DIR_INO, false)),
                DELETED_DIR_NAME => Ok(self.dir_entry(DELETED_DIR_INO, true)),
                CERTIFICATES_DIR_NAME => Ok(self.certificates_dir_entry()),
                // Scratch files first: a tool's temporary file may have a valid secret name.
                _ if self.scratch.lock().contains_key(name) || !is_valid_secret_name(name) => {
                    let scratch = self.scratch.lock().get(name).cloned();
                    scratch
                        .map(|file| self.scratch_entry(&file))
                        .ok_or_else(not_found)
                }
                _ if self.shadowed.lock().contains(&name.to_ascii_lowercase()) => Err(not_found()),
                _ => {
                    self.prefetch_if_listing_sizes(name);
                    self.secret_entry_by_name(name, false).await
                }
            },
            NodeKey::VersionsDir => {
                if !is_valid_secret_name(name) {
                    return Err(not_found());
                }
                let listing = self.load_versions(name).await?.ok_or_else(not_found)?;
                let spelled = listing.0.first().map_or(name, |l| l.name.as_str());
                let ino = self
                    .inodes
                    .lock()
                    .ino_for(NodeKey::VersionsOf(name.to_ascii_lowercase()), spelled);
                Ok(self.dir_entry(ino, false))
            }
            NodeKey::VersionsOf(secret_key) => {
                let listing = self
                    .load_versions(&parent_name)
                    .await?
                    .ok_or_else(not_found)?;
                let listed = listing
                    .0
                    .iter()
                    .find(|l| l.version.as_deref() == Some(name))
                    .ok_or_else(not_found)?;
                let ino = self
                    .inodes
                    .lock()
                    .ino_for(NodeKey::Version(secret_key, name.to_owned()), &listed.name);
                self.version_entry(ino, &listed.name, name).await
            }
            NodeKey::DeletedDir => {
                if !is_valid_secret_name(name) {
                    return Err(not_found());
                }
                let listing = self.load_deleted_listing().await?;
                let listed = listing
                    .0
                    .iter()
                    .find(|l| l.name.eq_ignore_ascii_case(name))
                    .ok_or_else(not_found)?;
                let ino = self
                    .inodes
                    .lock()
                    .ino_for(NodeKey::Deleted(name.to_ascii_lowercase()), &listed.name);
                Ok(self.deleted_entry(ino, listed))
            }
            NodeKey::CertificatesDir | NodeKey::CertificateDir(_) => {
                self.resolve_certificate(&parent_key, &parent_name, name)
                    .await
            }
            NodeKey::Secret(_)
            | NodeKey::Version(..)
            | NodeKey::Deleted(_)
            | NodeKey::Scratch(_)
            | NodeKey::CertificateFile(..) => Err(FsError::NotADirectory { name: parent_name }),
        }
    }

    pub(super) fn dir_entry(&self, ino: u64, writable: bool) -> Entry {
        Entry {
            attr: self.dir_attr(ino, writable),
            ttl: self.config.list_ttl,
        }
    }

    pub(super) fn deleted_entry(&self, ino: u64, listed: &ListedSecret) -> Entry {
        let deleted = epoch_seconds(listed.deleted_date, self.mounted_at);
        let mut attr = self.file_attr(ino, 0, self.config.file_mode & 0o444, &listed.attributes);
        attr.mtime = deleted;
        attr.ctime = deleted;
        Entry {
            attr,
            ttl: self.config.list_ttl,
        }
    }

    pub(super) async fn version_entry(
        &self,
        ino: u64,
        name: &str,
        version: &str,
    ) -> Result<Entry, FsError> {
        let fetched = self.load_version(name, version).await?;
        let data = fetched.value.ok_or_else(|| FsError::NotFound {
            name: format!("{name}/{version}"),
        })?;
        let mut attr = self.file_attr(
            ino,
            data.content.len() as u64,
            self.config.file_mode & 0o444,
            &data.attributes,
        );
        // A version's mtime is when it was created.
        attr.mtime = attr.crtime;
        attr.ctime = attr.crtime;
        if !data.enabled {
            attr.perm = 0;
        }
        Ok(Entry {
            attr,
            ttl: fetched.valid_for,
        })
    }

    /// `ls -l`: lookups that walk the listing in its order, shortly after a readdir, start
    /// fetching every following listed value not cached yet, concurrently (bounded); the
    /// lookups that follow join those loads. A plain `ls` (no lookups) or a few `cat`s after
    /// `ls` cost no extra get.
    pub(super) fn prefetch_if_listing_sizes(&self, name: &str) {
        let (listing, from) = {
            let mut recent = self.recent_listing.lock();
            let Some(recent) = recent.as_mut() else {
                return;
            };
            if recent.prefetching || recent.at.elapsed() > LISTING_LOOKUP_WINDOW {
                return;
            }
            let Some(&position) = recent.positions.get(&name.to_ascii_lowercase()) else {
                return;
            };
            let follows = recent
                .last_position
                .is_some_and(|last| position == last + 1);
            recent.in_order = if follows { recent.in_order + 1 } else { 1 };
            recent.last_position = Some(position);
            if recent.in_order < LOOKUPS_IN_ORDER_FOR_PREFETCH {
                return;
            }
            recent.prefetching = true;
            (recent.listing.clone(), position + 1)
        };
        let (Some(me), Ok(runtime)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let permits = Arc::new(tokio::sync::Semaphore::new(PREFETCH_CONCURRENCY));
        let mut fetched = 0;
        for listed in listing.0.iter().skip(from) {
            let key = listed.name.to_ascii_lowercase();
            let disabled = listed.attributes.enabled == Some(false);
            if disabled || self.values.peek(&key).is_some() {
                continue;
            }
            fetched += 1;
            let (me, permits, name) = (me.clone(), permits.clone(), listed.name.clone());
            runtime.spawn(async move {
                let Ok(_permit) = permits.acquire().await else {
                    return;
                };
                // Errors are logged by load_secret and met again by the lookup itself.
                let _ = me.load_secret(&name).await;
            });
        }
        debug!(
            secrets = fetched,
            "listing sizes: fetching values concurrently"
        );
    }

    pub(super) async fn secret_entry_by_name(
        &self,
        name: &str,
        writer_view: bool,
    ) -> Result<Entry, FsError> {
        let key = name.to_ascii_lowercase();
        let placeholder = self.placeholders.lock().get(&key).cloned();
        if let Some(placeholder) = placeholder {
            // Another client may have created the secret since: look again once the
            // placeholder is older than the negative TTL and nobody has it open.
            let in_use = self.files.lock().values().any(|f| f.ino == placeholder.ino);
            let recent = placeholder
                .created
                .elapsed()
                .map_or(true, |age| age < self.config.negative_ttl);
            if in_use || recent || self.load_secret(name).await?.value.is_none() {
                return Ok(self.placeholder_entry(&placeholder, writer_view));
            }
            self.placeholders.lock().remove(&key);
        }
        let fetched = self.load_secret(name).await?;
        let data = fetched.value.ok_or_else(|| FsError::NotFound {
            name: name.to_owned(),
        })?;
        let ino = self.inodes.lock().ino_for(NodeKey::Secret(key), &data.name);
        Ok(self.secret_entry(ino, &data, fetched.valid_for, writer_view))
    }

    /// Attributes as a reader sees them (the committed value).
    pub async fn getattr(&self, ino: u64) -> Result<Entry, FsError> {
        self.getattr_as(ino, None, 0).await
    }

    /// Attributes for the caller: thread `pid`, through handle `fh` when it names one (a
    /// writer sees its pending content).
    pub async fn getattr_as(&self, ino: u64, fh: Option<u64>, pid: u32) -> Result<Entry, FsError> {
        let (key, name) = self.node(ino)?;
        match key {
            NodeKey::Root => Ok(self.dir_entry(ROOT_INO, true)),
            NodeKey::VersionsDir => Ok(self.dir_entry(VERSIONS_DIR_INO, false)),
            NodeKey::DeletedDir => Ok(self.dir_entry(DELETED_DIR_INO, true)),
            NodeKey::VersionsOf(_) => Ok(self.dir_entry(ino, false)),
            NodeKey::Secret(_) => {
                let writer_view = self.pending_size(ino).is_some() && self.is_writer(ino, fh, pid);
                self.secret_entry_by_name(&name, writer_view).await
            }
            NodeKey::Scratch(scratch_name) => {
                let scratch = self.scratch.lock().get(&scratch_name).cloned();
                scratch
                    .map(|file| self.scratch_entry(&file))
                    .ok_or(FsError::NotFound { name })
            }
            NodeKey::Version(_, version) => self.version_entry(ino, &name, &version).await,
            NodeKey::CertificatesDir => Ok(self.certificates_dir_entry()),
            NodeKey::CertificateDir(_) => {
                let listed = self.listed_certificate(&name).await?;
                Ok(self.certificate_dir_entry(ino, &listed))
            }
            NodeKey::CertificateFile(_, part) => {
                self.certificate_file_entry(ino, &name, part).await
            }
            NodeKey::Deleted(_) => {
                let listing = self.load_deleted_listing().await?;
                let listed = listing
                    .0
                    .iter()
                    .find(|l| l.name.eq_ignore_ascii_case(&name))
                    .ok_or(FsError::NotFound { name })?;
                Ok(self.deleted_entry(ino, listed))
            }
        }
    }
}
