//! Open files: open, create, read, write, truncate, flush, fsync and release.
//!
//! The rules (SPEC §3.3), as on a local disk where it matters and stricter where a secret
//! needs it:
//! - A read-only handle reads one committed version, the one it opened, to its end; a read at
//!   or past that end moves it on to a newer version only when the newer one extends it (the
//!   file grew, as `tail -f` expects), so what one handle reads is always a prefix of one
//!   version; a read at offset 0 starts a new pass with the newest version. Secret files use
//!   direct I/O: the kernel's page cache is per inode and would mix the versions of two
//!   handles.
//! - Every writable handle of one file shares its pending content ([`SharedWrite`]): offsets
//!   and `O_APPEND` combine, and a writer's reads, `fstat` and `SEEK_END` see the writes.
//! - The pending content is committed (one set) when the process that opened a handle closes
//!   it or calls `fsync`; closes by other processes holding a copy of the descriptor (children
//!   after `fork`) do not commit, and the last release commits what remains. A process killed
//!   by a signal commits nothing. Writing the bytes the secret already holds makes no version.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::*;
use crate::fs::process;

/// The pending content of one secret file, shared by every handle that writes it.
pub(super) struct SharedWrite {
    pub(super) state: tokio::sync::Mutex<WriteState>,
    /// The pending content's share of `--scratch-space`.
    charge: Charge,
    /// Size of the pending content: `stat` answers it without waiting for a commit in flight.
    pub(super) size: AtomicU64,
    /// Writable handles open on the file.
    handles: AtomicUsize,
    /// The file was removed while open: as on any POSIX filesystem, what is still written to
    /// it goes nowhere (it must not bring the secret back).
    pub(super) unlinked: AtomicBool,
}

pub(super) struct WriteState {
    /// The committed version the content builds on (`None`: not in the vault yet).
    pub(super) base: Option<Arc<SecretData>>,
    pub(super) content: Zeroizing<Vec<u8>>,
    /// Changed since the last commit.
    pub(super) dirty: bool,
    /// A write failed with EFBIG: never commit what is left (the old value stays intact).
    poisoned: bool,
    /// The last commit failed with this error; flush/fsync report it again until a new write.
    failed: Option<FsError>,
    /// Emptied by `O_TRUNC` at open and not written since. A shell's `> NAME` flushes once
    /// right after the open (dup2, then close of the original descriptor): that flush must not
    /// store an empty version before the data arrives.
    emptied_at_open: bool,
    /// Handles that changed the content since the last commit, by processes not killed.
    pub(super) writers: HashSet<u64>,
}

impl WriteState {
    fn encoding(&self) -> Encoding {
        self.base.as_ref().map_or(Encoding::Text, |b| b.encoding)
    }

    /// The content became what a commit (or the rename of the file) stored as `base`.
    pub(super) fn committed(&mut self, base: Option<Arc<SecretData>>) {
        self.base = base;
        self.dirty = false;
        self.failed = None;
        self.emptied_at_open = false;
        self.writers.clear();
    }

    pub(super) fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// The error of the last failed commit, until a new write.
    pub(super) fn failure(&self) -> Result<(), FsError> {
        self.failed.clone().map_or(Ok(()), Err)
    }

    /// A failed commit is not retried: the secret keeps its old value and flush/fsync report
    /// the error (EFBIG for good).
    pub(super) fn commit_failed(&mut self, error: FsError) {
        if matches!(error, FsError::TooLarge { .. }) {
            self.poisoned = true;
        } else {
            self.dirty = false;
            self.writers.clear();
            self.failed = Some(error);
        }
    }

    /// What a commit would store now, if anything: live writers changed it and it is allowed.
    pub(super) fn uncommitted(&self) -> Option<&[u8]> {
        (self.dirty && !self.poisoned && !self.writers.is_empty()).then_some(&self.content[..])
    }
}

impl SharedWrite {
    fn new(base: Option<Arc<SecretData>>, budget: &Arc<MemoryBudget>) -> SharedWrite {
        let content = base
            .as_ref()
            .map_or_else(|| Zeroizing::new(Vec::new()), |b| b.content.clone());
        SharedWrite {
            charge: Charge::for_existing(budget, content.len()),
            size: AtomicU64::new(content.len() as u64),
            state: tokio::sync::Mutex::new(WriteState {
                base,
                content,
                dirty: false,
                poisoned: false,
                failed: None,
                emptied_at_open: false,
                writers: HashSet::new(),
            }),
            handles: AtomicUsize::new(0),
            unlinked: AtomicBool::new(false),
        }
    }
}

/// Why a read-only handle looks for a newer version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// A read at offset 0: a new pass over the file.
    Restart,
    /// A read at the end of the handle's version.
    Extend,
}

/// What an open handle reads and writes.
pub(super) enum Body {
    /// One committed version; `follow`: may move on to a newer version that extends it.
    Snapshot {
        data: Mutex<Arc<SecretData>>,
        follow: bool,
    },
    /// The file's shared pending content.
    Write(Arc<SharedWrite>),
    /// An editor's scratch file, in memory: reads and writes apply to it at once.
    Scratch(Arc<ScratchFile>),
}

pub(super) struct OpenFile {
    pub(super) fh: u64,
    pub(super) ino: u64,
    /// Name at open, for logs.
    pub(super) name: String,
    pub(super) writable: bool,
    append: bool,
    /// Thread group of the process that opened the handle (`None`: unknown, every close commits).
    opener: Option<u32>,
    pub(super) body: Body,
}

impl OpenFile {
    /// Thread group of the process that opened a writable handle, when known.
    pub(super) fn opener(&self) -> Option<u32> {
        self.opener
    }
}

/// `content` cut or zero-extended to `size`, in a fresh allocation of exactly that size: growing
/// a buffer in place could reallocate and leave a copy of the secret in freed memory, which
/// `Zeroizing` never sees.
fn resized_copy(content: &[u8], size: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.extend_from_slice(&content[..content.len().min(size)]);
    out.resize(size, 0);
    out
}

/// `content` with `data` written at `start`, or `None` past `limit` bytes.
fn written_copy(
    content: &[u8],
    start: usize,
    data: &[u8],
    limit: usize,
) -> Option<Zeroizing<Vec<u8>>> {
    let end = start.checked_add(data.len())?;
    if end > limit {
        return None;
    }
    let mut candidate = resized_copy(content, content.len().max(end));
    candidate[start..end].copy_from_slice(data);
    Some(candidate)
}

fn slice_of(content: &[u8], offset: u64, size: u32) -> Zeroizing<Vec<u8>> {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(content.len());
    let end = start.saturating_add(size as usize).min(content.len());
    Zeroizing::new(content[start..end].to_vec())
}

impl SecretFs {
    pub(super) fn check_writable(&self, name: &str) -> Result<(), FsError> {
        if self.config.read_only {
            warn!(secret = name, "write refused: the mount is read-only");
            return Err(FsError::ReadOnly {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    pub(super) fn register_file(
        &self,
        ino: u64,
        name: &str,
        mode: OpenMode,
        body: impl FnOnce(u64) -> Body,
    ) -> u64 {
        let fh = self.new_fh();
        let file = OpenFile {
            fh,
            ino,
            name: name.to_owned(),
            writable: mode.write,
            append: mode.append,
            opener: if mode.write {
                process::thread_group(mode.pid)
            } else {
                None
            },
            body: body(fh),
        };
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

    pub(super) fn snapshot(data: Arc<SecretData>, follow: bool) -> impl FnOnce(u64) -> Body {
        move |_| Body::Snapshot {
            data: Mutex::new(data),
            follow,
        }
    }

    pub async fn open(&self, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
        let (key, name) = self.node(ino)?;
        let read_only = |what: &str| FsError::AccessDenied {
            name: name.clone(),
            reason: format!("{what} are read-only"),
        };
        // Versions never change and deleted secrets show no content: their pages may stay
        // cached.
        let cached = |fh| Opened {
            fh,
            keep_cache: true,
            direct_io: false,
        };
        match key {
            NodeKey::Root | NodeKey::VersionsDir | NodeKey::DeletedDir | NodeKey::VersionsOf(_) => {
                Err(FsError::IsADirectory { name })
            }
            NodeKey::Secret(secret_key) => self.open_secret(ino, secret_key, &name, mode).await,
            NodeKey::Scratch(scratch_name) => self.open_scratch(&scratch_name, mode),
            NodeKey::CertificatesDir | NodeKey::CertificateDir(_) => {
                Err(FsError::IsADirectory { name })
            }
            NodeKey::CertificateFile(_, part) => {
                self.open_certificate_file(ino, &name, part, mode).await
            }
            NodeKey::Version(_, version) => {
                if mode.write || mode.truncate {
                    return Err(read_only("old versions"));
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
                data.readable()?;
                Ok(cached(self.register_file(
                    ino,
                    &name,
                    mode,
                    Self::snapshot(data, false),
                )))
            }
            NodeKey::Deleted(_) => {
                if mode.write || mode.truncate {
                    return Err(read_only(
                        "deleted secrets (`mv .deleted/NAME NAME` recovers)",
                    ));
                }
                let empty = Arc::new(SecretData::empty(&name));
                Ok(cached(self.register_file(
                    ino,
                    &name,
                    mode,
                    Self::snapshot(empty, false),
                )))
            }
        }
    }

    pub(super) fn open_scratch(&self, name: &str, mode: OpenMode) -> Result<Opened, FsError> {
        if mode.write || mode.truncate {
            self.check_writable(name)?;
        }
        let file = self.scratch_file(name)?;
        if mode.truncate && mode.write {
            *file.content.lock() = Zeroizing::new(Vec::new());
            *file.modified.lock() = SystemTime::now();
        }
        let ino = file.ino;
        let fh = self.register_file(ino, name, mode, |_| Body::Scratch(file));
        Ok(Opened {
            fh,
            keep_cache: false,
            direct_io: true,
        })
    }

    fn refuse_while_deleting(&self, key: &str, name: &str) -> Result<(), FsError> {
        if self.deleting.lock().contains(key) {
            warn!(
                secret = name,
                "open refused: the secret is being deleted (rm is waiting for the vault)"
            );
            return Err(FsError::Busy {
                name: name.to_owned(),
                reason: "it is being deleted".into(),
            });
        }
        Ok(())
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
        self.refuse_while_deleting(&key, name)?;
        let opened = |fh| Opened {
            fh,
            keep_cache: false,
            direct_io: true,
        };
        if !mode.write {
            let placeholder = self.placeholders.lock().contains_key(&key);
            let data = if placeholder {
                Arc::new(SecretData::empty(name))
            } else {
                self.readable_secret(name).await?
            };
            self.note_version(ino, data.version.as_deref());
            return Ok(opened(self.register_file(
                ino,
                name,
                mode,
                Self::snapshot(data, true),
            )));
        }
        let shared = self.shared_write(ino, &key, name, mode.truncate).await?;
        let fh = self.register_file(ino, name, mode, |_| Body::Write(shared.clone()));
        if mode.truncate {
            let mut state = shared.state.lock().await;
            if !state.content.is_empty()
                || state.base.as_ref().is_some_and(|b| !b.content.is_empty())
            {
                state.content = Zeroizing::new(Vec::new());
                shared.charge.resize(0);
                state.dirty = true;
                state.emptied_at_open = true;
                state.failed = None;
                state.writers.insert(fh);
                shared.size.store(0, Ordering::SeqCst);
            }
        }
        Ok(opened(fh))
    }

    /// The current version of `name` as a file's content: refused when disabled or when the
    /// value does not decode.
    pub(super) async fn readable_secret(&self, name: &str) -> Result<Arc<SecretData>, FsError> {
        let data = self.enabled_secret(name).await?;
        data.readable()?;
        Ok(data)
    }

    /// The current version of `name`, refused when disabled.
    async fn enabled_secret(&self, name: &str) -> Result<Arc<SecretData>, FsError> {
        let data = self
            .load_secret(name)
            .await?
            .value
            .ok_or(FsError::NotFound {
                name: name.to_owned(),
            })?;
        if !data.enabled {
            warn!(secret = name, "refused: the secret is disabled");
            return Err(FsError::AccessDenied {
                name: name.to_owned(),
                reason: "the secret is disabled".into(),
            });
        }
        Ok(data)
    }

    /// The pending content of `ino` that a new writable handle joins (created from the current
    /// version when no handle writes it yet). A name no longer in the vault (deleted while
    /// the kernel still knew it) is written as a new file.
    async fn shared_write(
        &self,
        ino: u64,
        key: &str,
        name: &str,
        replacing: bool,
    ) -> Result<Arc<SharedWrite>, FsError> {
        if let Some(shared) = self.join_shared_write(ino) {
            return Ok(shared);
        }
        let placeholder = self.placeholders.lock().contains_key(key);
        let base = if placeholder {
            None
        } else {
            match self.enabled_secret(name).await {
                // A value that does not decode can be replaced (`O_TRUNC`), not edited.
                Ok(data) if !replacing => {
                    data.readable()?;
                    Some(data)
                }
                Ok(data) => Some(data),
                Err(FsError::NotFound { .. }) => {
                    self.add_placeholder(ino, key, name)?;
                    None
                }
                Err(error) => return Err(error),
            }
        };
        let mut writes = self.writes.lock();
        let shared = writes
            .entry(ino)
            .or_insert_with(|| Arc::new(SharedWrite::new(base, &self.memory)))
            .clone();
        shared.handles.fetch_add(1, Ordering::SeqCst);
        Ok(shared)
    }

    fn join_shared_write(&self, ino: u64) -> Option<Arc<SharedWrite>> {
        let writes = self.writes.lock();
        let shared = writes.get(&ino)?;
        shared.handles.fetch_add(1, Ordering::SeqCst);
        Some(shared.clone())
    }

    pub(super) fn add_placeholder(&self, ino: u64, key: &str, name: &str) -> Result<(), FsError> {
        let charge = Charge::for_new_file(&self.memory).ok_or_else(|| self.no_space(name))?;
        let placeholder = Placeholder {
            ino,
            name: name.to_owned(),
            created: SystemTime::now(),
            _charge: Arc::new(charge),
        };
        self.placeholders.lock().insert(key.to_owned(), placeholder);
        Ok(())
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
        let (entry, opened) = self.create_and_open(parent, name, mode).await?;
        // The kernel holds the entry now (the open handle keeps the node meanwhile).
        self.inodes.lock().remember(entry.attr.ino);
        Ok((entry, opened))
    }

    async fn create_and_open(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
    ) -> Result<(Entry, Opened), FsError> {
        let (parent_key, parent_name) = self.node(parent)?;
        match parent_key {
            NodeKey::Root => {}
            NodeKey::CertificatesDir | NodeKey::CertificateDir(_) => {
                return Err(self.certificates_read_only(name))
            }
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
            // Characters, not bytes: a short name with a non-ASCII letter breaks the
            // character rule, not the length.
            return Err(if name.chars().count() > MAX_SECRET_NAME_LEN {
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
        self.refuse_while_deleting(&key, name)?;
        let write_mode = OpenMode {
            write: true,
            ..mode
        };
        let ino = |spelled: &str| {
            self.inodes
                .lock()
                .ino_for(NodeKey::Secret(key.clone()), spelled)
        };
        // A secret renamed to an editor's backup name is not there on this mount: creating
        // it (even exclusively: `cp --backup`, `install -b`) starts it afresh, keeping its
        // tags and encoding.
        if self.shadowed.lock().remove(&key) {
            let ino = ino(name);
            let truncating = OpenMode {
                truncate: true,
                ..write_mode
            };
            let opened = self.open_secret(ino, key, name, truncating).await?;
            return Ok((self.getattr_as(ino, Some(opened.fh), 0).await?, opened));
        }
        let existing_placeholder = self.placeholders.lock().get(&key).cloned();
        if mode.exclusive && existing_placeholder.is_none() {
            // Another client may have created it within the negative TTL: ask the vault.
            if self.values.peek(&key).is_some_and(|f| f.value.is_none()) {
                self.values.invalidate(&key);
            }
        }
        let exists_in_vault = match existing_placeholder {
            Some(_) => false,
            None => self.load_secret(name).await?.value.is_some(),
        };
        if mode.exclusive && !exists_in_vault && is_tool_temporary_name(name) {
            debug!(
                name,
                "a tool's temporary file: kept in memory until it is renamed over a secret"
            );
            return self.create_scratch(name, mode);
        }
        if existing_placeholder.is_some() || exists_in_vault {
            if mode.exclusive {
                return Err(FsError::Exists {
                    name: name.to_owned(),
                    reason: "the secret exists".into(),
                });
            }
            let ino = ino(name);
            let opened = self.open_secret(ino, key, name, write_mode).await?;
            return Ok((self.getattr_as(ino, Some(opened.fh), 0).await?, opened));
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
        let ino = ino(name);
        self.add_placeholder(ino, &key, name)?;
        let opened = self.open_secret(ino, key, name, write_mode).await?;
        Ok((self.getattr_as(ino, Some(opened.fh), 0).await?, opened))
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
            self.insert_scratch(name, Zeroizing::new(Vec::new()))?;
        }
        let opened = self.open_scratch(
            name,
            OpenMode {
                write: true,
                ..mode
            },
        )?;
        let file = self.scratch_file(name)?;
        Ok((self.scratch_entry(&file), opened))
    }

    /// The scratch file named exactly `name`.
    pub(super) fn scratch_file(&self, name: &str) -> Result<Arc<ScratchFile>, FsError> {
        let file = self.scratch.lock().get(name).cloned();
        file.ok_or(FsError::NotFound {
            name: name.to_owned(),
        })
    }

    pub(super) fn insert_scratch(
        &self,
        name: &str,
        content: Zeroizing<Vec<u8>>,
    ) -> Result<(), FsError> {
        let charge = Charge::for_new_file(&self.memory)
            .filter(|charge| charge.resize(content.len()))
            .ok_or_else(|| self.no_space(name))?;
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
                utimes: Mutex::new(None),
                charge,
            }),
        );
        Ok(())
    }

    pub async fn read(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Zeroizing<Vec<u8>>, FsError> {
        let file = self.file(fh)?;
        match &file.body {
            Body::Snapshot { data, follow } => {
                let mut current = data.lock().clone();
                let at_end = usize::try_from(offset).map_or(true, |o| o >= current.content.len());
                // A read from the start begins a new pass (`tail -f` after a truncation, a
                // program that re-reads with pread at 0): it may take the newest version. A read
                // at the end may go on only into a version that extends this one (the file grew).
                let pass = match (offset == 0, at_end) {
                    (true, _) => Some(Pass::Restart),
                    (false, true) => Some(Pass::Extend),
                    (false, false) => None,
                };
                if let Some(pass) = pass.filter(|_| *follow) {
                    if let Some(newer) = self.newer_version(&file, &current, pass).await {
                        debug!(
                            secret = file.name.as_str(),
                            "the handle reads on in the newer version"
                        );
                        data.lock().clone_from(&newer);
                        current = newer;
                    }
                }
                Ok(slice_of(&current.content, offset, size))
            }
            Body::Write(shared) => Ok(slice_of(&shared.state.lock().await.content, offset, size)),
            Body::Scratch(scratch) => Ok(slice_of(&scratch.content.lock(), offset, size)),
        }
    }

    /// A committed version newer than `current` that a handle may move on to: any, for a new
    /// pass; one that starts with all of `current`'s bytes, at its end.
    async fn newer_version(
        &self,
        file: &OpenFile,
        current: &SecretData,
        pass: Pass,
    ) -> Option<Arc<SecretData>> {
        let (key, name) = self.node(file.ino).ok()?;
        let NodeKey::Secret(key) = key else {
            return None;
        };
        if self.placeholders.lock().contains_key(&key) {
            return None;
        }
        // The common case, every `cat`: the cache still holds this version.
        if let Some(cached) = self.values.peek(&key) {
            if cached.value.is_some_and(|v| v.version == current.version) {
                return None;
            }
        }
        let latest = self.load_secret(&name).await.ok()?.value?;
        let usable = latest.enabled
            && latest.undecodable.is_none()
            && latest.version != current.version
            && match pass {
                Pass::Restart => true,
                Pass::Extend => {
                    latest.content.len() > current.content.len()
                        && latest.content.starts_with(&current.content)
                }
            };
        usable.then_some(latest)
    }

    /// Write into the file's pending content. Refuses (EFBIG) a write that would make the value
    /// longer than the service allows; the pending content then never commits, so the old
    /// value stays.
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let file = self.file(fh)?;
        if !file.writable {
            return Err(FsError::BadHandle { fh });
        }
        let written = u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument {
            name: file.name.clone(),
            reason: "write larger than 4 GiB".into(),
        })?;
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let shared = match &file.body {
            Body::Write(shared) => shared,
            Body::Scratch(scratch) => {
                let mut content = scratch.content.lock();
                let start = if file.append { content.len() } else { offset };
                let Some(candidate) = written_copy(&content, start, data, MAX_SCRATCH_BYTES) else {
                    return Err(FsError::TooLarge {
                        name: file.name.clone(),
                    });
                };
                if !scratch.charge.resize(candidate.len()) {
                    return Err(self.no_space(&file.name));
                }
                *content = candidate;
                *scratch.modified.lock() = SystemTime::now();
                drop(content);
                self.warn_once_in_memory(&file.name);
                return Ok(written);
            }
            Body::Snapshot { .. } => return Err(FsError::BadHandle { fh }),
        };
        let mut state = shared.state.lock().await;
        let start = if file.append {
            state.content.len()
        } else {
            offset
        };
        let candidate = written_copy(&state.content, start, data, MAX_CONTENT_BYTES)
            .filter(|candidate| content::fits(candidate, state.encoding()));
        let Some(candidate) = candidate else {
            state.poisoned = true;
            warn!(
                secret = file.name.as_str(),
                "write refused: the value would exceed 25,600 characters (binary: 19,200 bytes); \
                 the secret keeps its old value"
            );
            return Err(FsError::TooLarge {
                name: file.name.clone(),
            });
        };
        if !shared.charge.resize(candidate.len()) {
            // Like EFBIG: what was written so far must not become a partial secret.
            state.poisoned = true;
            return Err(self.no_space(&file.name));
        }
        shared.size.store(candidate.len() as u64, Ordering::SeqCst);
        state.content = candidate;
        state.dirty = true;
        state.emptied_at_open = false;
        state.failed = None;
        state.writers.insert(fh);
        Ok(written)
    }

    /// A name Key Vault cannot hold was written: say once that it lives in memory only.
    fn warn_once_in_memory(&self, name: &str) {
        if !is_expected_scratch_name(name) && self.warned_in_memory.lock().insert(name.to_owned()) {
            warn!(
                name,
                "{name:?} is kept in memory on this mount only and is gone after unmount: \
                 Key Vault names allow only letters, digits and '-' (names starting with '.', \
                 ending with '~' and editors' temporary names are scratch files)"
            );
        }
    }

    /// Cut or zero-extend the file behind a writable handle (`ftruncate`).
    pub(super) async fn truncate_handle(&self, file: &OpenFile, size: u64) -> Result<(), FsError> {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let shared = match &file.body {
            Body::Write(shared) => shared,
            Body::Scratch(scratch) => {
                if size > MAX_SCRATCH_BYTES {
                    return Err(FsError::TooLarge {
                        name: file.name.clone(),
                    });
                }
                let mut content = scratch.content.lock();
                if !scratch.charge.resize(size) {
                    return Err(self.no_space(&file.name));
                }
                *content = resized_copy(&content, size);
                *scratch.modified.lock() = SystemTime::now();
                return Ok(());
            }
            Body::Snapshot { .. } => {
                return Err(FsError::BadHandle { fh: file.fh });
            }
        };
        let mut state = shared.state.lock().await;
        if size == state.content.len() {
            return Ok(());
        }
        let truncated = resized_copy(&state.content, size.min(MAX_CONTENT_BYTES + 1));
        if size > MAX_CONTENT_BYTES || !content::fits(&truncated, state.encoding()) {
            return Err(FsError::TooLarge {
                name: file.name.clone(),
            });
        }
        if !shared.charge.resize(size) {
            return Err(self.no_space(&file.name));
        }
        shared.size.store(size as u64, Ordering::SeqCst);
        state.content = truncated;
        state.dirty = true;
        state.emptied_at_open = false;
        state.failed = None;
        state.writers.insert(file.fh);
        Ok(())
    }

    /// `close` of a descriptor by a process that did not say who it is: as from the opener.
    pub async fn flush(&self, fh: u64) -> Result<(), FsError> {
        self.flush_by(fh, 0).await
    }

    /// `close` of a descriptor by thread `pid`. Commits only when that is the process that
    /// opened the handle (not a child holding a copy) and it is not being killed.
    pub async fn flush_by(&self, fh: u64, pid: u32) -> Result<(), FsError> {
        let file = self.file(fh)?;
        let Body::Write(shared) = &file.body else {
            return Ok(());
        };
        if let (Some(opener), Some(closer)) = (file.opener, process::thread_group(pid)) {
            if opener != closer {
                debug!(
                    secret = file.name.as_str(),
                    pid, "close of a copy of the descriptor by another process: no commit"
                );
                return Ok(());
            }
        }
        let mut state = shared.state.lock().await;
        if process::killed_by_signal(pid) {
            if state.writers.remove(&fh) {
                warn!(
                    secret = file.name.as_str(),
                    pid, "the writer was killed by a signal: its unsaved changes are not committed"
                );
            }
            return Ok(());
        }
        if state.emptied_at_open {
            // Nothing written yet after `O_TRUNC`: the data (or the release of `: > NAME`)
            // commits, as one version.
            return Ok(());
        }
        self.commit(&file, shared, &mut state).await
    }

    /// `fsync`: commit now, whoever closes later.
    pub async fn fsync(&self, fh: u64) -> Result<(), FsError> {
        let file = self.file(fh)?;
        let Body::Write(shared) = &file.body else {
            return Ok(());
        };
        let mut state = shared.state.lock().await;
        // An explicit fsync asks for what the file holds now, whoever wrote it.
        state.writers.insert(fh);
        self.commit(&file, shared, &mut state).await
    }

    /// The last close of a handle: commit what it changed and nobody committed yet, and forget
    /// it. With the last writable handle of a file, its pending content ends.
    pub async fn release(&self, fh: u64) -> Result<(), FsError> {
        let file = self.file(fh)?;
        let result = match &file.body {
            Body::Write(shared) => {
                let result = {
                    let mut state = shared.state.lock().await;
                    let result = if state.writers.contains(&fh) {
                        self.commit(&file, shared, &mut state).await
                    } else {
                        state.failure()
                    };
                    state.writers.remove(&fh);
                    result
                };
                self.leave_shared_write(&file, shared);
                result
            }
            Body::Snapshot { .. } | Body::Scratch(_) => Ok(()),
        };
        self.files.lock().remove(&fh);
        // The kernel may have forgotten the inode while it was open.
        self.collect_inode(file.ino);
        result
    }

    fn leave_shared_write(&self, file: &OpenFile, shared: &Arc<SharedWrite>) {
        let mut writes = self.writes.lock();
        if shared.handles.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        if writes
            .get(&file.ino)
            .is_some_and(|current| Arc::ptr_eq(current, shared))
        {
            writes.remove(&file.ino);
        }
        drop(writes);
        if let Ok(state) = shared.state.try_lock() {
            if state.dirty && !state.poisoned {
                info!(
                    secret = file.name.as_str(),
                    "last handle closed: changes made only by killed writers are dropped"
                );
            }
        }
        // Attributes go back to the committed value.
        self.inval_inode(file.ino);
    }

    /// Commit every file with uncommitted changes (before unmounting). Answers how many
    /// commits failed; each failure is logged.
    pub async fn commit_pending(&self) -> usize {
        let files: Vec<Arc<OpenFile>> = self.files.lock().values().cloned().collect();
        let mut failures = 0;
        for file in files {
            if let Body::Write(shared) = &file.body {
                let mut state = shared.state.lock().await;
                if self.commit(&file, shared, &mut state).await.is_err() {
                    failures += 1;
                }
            }
        }
        failures
    }
}
