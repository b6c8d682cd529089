//! [`SecretFs`]: every filesystem operation as an async function over a [`SecretStore`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::content::{self, Encoding, MAX_CONTENT_BYTES};
use super::inode::{
    InodeTable, NodeKey, DELETED_DIR_INO, DELETED_DIR_NAME, ROOT_INO, VERSIONS_DIR_INO,
    VERSIONS_DIR_NAME,
};
use super::xattr::{self, XattrRefusal};
use super::{
    is_transient, Attr, DeletedConflictPolicy, DirEntry, Entry, FileKind, FsConfig, FsError,
    KernelNotifier, OpenMode, Opened, SetAttr,
};
use crate::cache::{Cache, CachePolicy, Fetched, Weigh};
use crate::vault::model::{
    is_valid_secret_name, secret_name_problem, SecretAttributes, SecretBundle, SecretId,
    SecretItem, SecretSetParameters, SecretUpdateParameters, Tags, MAX_SECRET_NAME_LEN,
};
use crate::vault::{SecretStore, VaultError};

/// A secret version as the filesystem shows it: decoded content plus what a rewrite keeps.
pub(crate) struct SecretData {
    /// The name as the vault spells it.
    pub(crate) name: String,
    pub(crate) id: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) content: Zeroizing<Vec<u8>>,
    pub(crate) encoding: Encoding,
    pub(crate) enabled: bool,
    pub(crate) content_type: Option<String>,
    pub(crate) tags: Option<Tags>,
    pub(crate) attributes: SecretAttributes,
    pub(crate) managed: Option<bool>,
}

impl SecretData {
    fn from_bundle(bundle: SecretBundle, asked_name: &str) -> SecretData {
        let id = bundle.id.as_deref().and_then(SecretId::parse);
        let encoding = Encoding::from_tags(bundle.tags.as_ref());
        let content = match &bundle.value {
            Some(value) => content::decode(value, encoding),
            None => Zeroizing::new(Vec::new()),
        };
        let attributes = bundle.attributes.unwrap_or_default();
        SecretData {
            id: bundle.id.clone(),
            managed: bundle.managed,
            name: id
                .as_ref()
                .map_or_else(|| asked_name.to_owned(), |id| id.name.clone()),
            version: id.and_then(|id| id.version),
            content,
            encoding,
            enabled: attributes.enabled.unwrap_or(true),
            content_type: bundle.content_type,
            tags: bundle.tags,
            attributes,
        }
    }

    /// A disabled secret: the vault refuses its value; the listing may know its attributes.
    fn disabled(name: &str, listed: Option<&ListedSecret>) -> SecretData {
        SecretData {
            name: listed.map_or_else(|| name.to_owned(), |l| l.name.clone()),
            id: None,
            managed: None,
            version: None,
            content: Zeroizing::new(Vec::new()),
            encoding: Encoding::Text,
            enabled: false,
            content_type: None,
            tags: None,
            attributes: listed.map(|l| l.attributes.clone()).unwrap_or_default(),
        }
    }
}

impl Weigh for SecretData {
    fn weight(&self) -> usize {
        let tags: usize = self
            .tags
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        self.content.len()
            + self.name.len()
            + self.version.as_ref().map_or(0, String::len)
            + self.content_type.as_ref().map_or(0, String::len)
            + tags
            + 128
    }
}

/// One secret of a listing (no value).
#[derive(Clone, Debug)]
pub(crate) struct ListedSecret {
    name: String,
    attributes: SecretAttributes,
    /// Versioned id for version listings.
    version: Option<String>,
    /// `deletedDate` for the deleted listing.
    deleted_date: Option<i64>,
}

pub(crate) struct Listing(Vec<ListedSecret>);

impl Weigh for Listing {
    fn weight(&self) -> usize {
        self.0.iter().map(|l| l.name.len() + 96).sum()
    }
}

/// Per-handle state of an open file.
struct FileState {
    /// The version this handle was opened on (`None`: a name not in the vault yet).
    base: Option<Arc<SecretData>>,
    /// The handle's own content once written to (or truncated); reads use `base` until then.
    buffer: Option<Zeroizing<Vec<u8>>>,
    /// Changed since the last commit.
    dirty: bool,
    /// A write failed with EFBIG: never commit what is left (the old value stays intact).
    poisoned: bool,
    /// The last commit failed with this error; flush/fsync report it again until a new write.
    failed: Option<FsError>,
    /// Opened with `O_TRUNC` on an existing secret and not written since. A shell's `> NAME`
    /// flushes once right after the open (dup2, then close of the original descriptor): that
    /// flush must not store an empty version before the data arrives.
    emptied_at_open: bool,
}

impl FileState {
    fn content(&self) -> &[u8] {
        match (&self.buffer, &self.base) {
            (Some(buffer), _) => buffer,
            (None, Some(base)) => &base.content,
            (None, None) => &[],
        }
    }

    fn encoding(&self) -> Encoding {
        self.base.as_ref().map_or(Encoding::Text, |b| b.encoding)
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

struct OpenFile {
    ino: u64,
    /// Name for vault calls and logs.
    name: String,
    writable: bool,
    append: bool,
    state: tokio::sync::Mutex<FileState>,
    /// Size of uncommitted content, so `stat` during a write agrees with the writer.
    dirty_size: Mutex<Option<u64>>,
    /// The secret version this handle reads (changes when it commits).
    version: Mutex<Option<String>>,
    /// Set for scratch files: commits go here, never to the vault.
    scratch: Option<Arc<ScratchFile>>,
    /// The file was removed while open: as on any POSIX filesystem, what is still written to
    /// it goes nowhere (it must not bring the secret back).
    unlinked: std::sync::atomic::AtomicBool,
}

/// An editor's scratch file (swap, backup, temporary): a name Key Vault cannot hold, kept in
/// memory on this mount only.
struct ScratchFile {
    ino: u64,
    content: Mutex<Zeroizing<Vec<u8>>>,
    modified: Mutex<SystemTime>,
}

/// Scratch files are for editors, not storage: bounded so they cannot eat the daemon's memory.
const MAX_SCRATCH_BYTES: usize = 16 * 1024 * 1024;

/// Names editors use for swap, backup and temporary files (vim `.x.swp` and `x~`, emacs `#x#`
/// and `.#x`, gedit `.goutputstream-…`), which Key Vault cannot hold.
pub(crate) fn is_scratch_name(name: &str) -> bool {
    if is_valid_secret_name(name)
        || matches!(name, "." | ".." | VERSIONS_DIR_NAME | DELETED_DIR_NAME)
        || name.contains('/')
    {
        return false;
    }
    name.starts_with('.')
        || name.ends_with('~')
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || [".swp", ".swx", ".swo", ".tmp", ".bak", ".save"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

/// A file created on this mount and not in the vault (yet).
#[derive(Clone)]
struct Placeholder {
    ino: u64,
    name: String,
    created: SystemTime,
}

/// The top directory's listing as last read, to recognise `ls -l` (a readdir followed by a
/// lookup of each name) and fetch the sizes concurrently.
struct RecentListing {
    at: Instant,
    listing: Arc<Listing>,
    /// Lower-cased name → position in `listing`.
    positions: HashMap<String, usize>,
    /// Position of the last looked-up name and how many lookups in a row followed the
    /// listing's order.
    last_position: Option<usize>,
    in_order: usize,
    prefetching: bool,
}

/// Lookups in the listing's order that reveal an `ls -l`.
const LOOKUPS_IN_ORDER_FOR_PREFETCH: usize = 3;

/// Lookups within this time after a readdir count as one `ls -l`.
const LISTING_LOOKUP_WINDOW: Duration = Duration::from_secs(5);
/// Gets in flight at once when fetching sizes for `ls -l`.
const PREFETCH_CONCURRENCY: usize = 16;

pub struct SecretFs {
    /// To hand `Arc<Self>` to background tasks.
    me: Weak<SecretFs>,
    recent_listing: Mutex<Option<RecentListing>>,
    store: Arc<dyn SecretStore>,
    config: FsConfig,
    /// Secret values, keyed by lower-cased name (`name/version` for `.versions`).
    values: Cache<SecretData, VaultError>,
    /// Listings: `""` = all secrets, `deleted` = deleted secrets, `versions/NAME`.
    listings: Cache<Listing, VaultError>,
    inodes: Mutex<InodeTable>,
    placeholders: Mutex<HashMap<String, Placeholder>>,
    /// Scratch files by exact name.
    scratch: Mutex<HashMap<String, Arc<ScratchFile>>>,
    /// Secrets renamed to a scratch name (an editor's backup): hidden on this mount, never
    /// deleted in the vault, visible again once written or created.
    shadowed: Mutex<std::collections::HashSet<String>>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    dirs: Mutex<HashMap<u64, Option<Arc<Vec<DirEntry>>>>>,
    next_fh: AtomicU64,
    notifier: OnceLock<Arc<dyn KernelNotifier>>,
    mounted_at: SystemTime,
}

const ALL_SECRETS: &str = "";
const DELETED_SECRETS: &str = "deleted";

fn versions_key(key: &str) -> String {
    format!("versions/{key}")
}

fn epoch_seconds(seconds: Option<i64>, fallback: SystemTime) -> SystemTime {
    match seconds {
        Some(s) if s >= 0 => UNIX_EPOCH + Duration::from_secs(s.unsigned_abs()),
        _ => fallback,
    }
}

impl SecretFs {
    pub fn new(store: Arc<dyn SecretStore>, config: FsConfig) -> Arc<SecretFs> {
        let values = Cache::new(CachePolicy {
            ttl: config.cache_ttl,
            negative_ttl: config.negative_ttl,
            capacity_bytes: config.cache_size,
            stale_if_error: config.stale_if_error,
        });
        let listings = Cache::new(CachePolicy {
            ttl: config.list_ttl,
            negative_ttl: config.negative_ttl,
            // Listings hold names only; bounded by the vault's size, not by values.
            capacity_bytes: usize::MAX,
            stale_if_error: config.stale_if_error,
        });
        Arc::new_cyclic(|me| SecretFs {
            me: me.clone(),
            recent_listing: Mutex::new(None),
            store,
            config,
            values,
            listings,
            inodes: Mutex::new(InodeTable::default()),
            placeholders: Mutex::new(HashMap::new()),
            scratch: Mutex::new(HashMap::new()),
            shadowed: Mutex::new(std::collections::HashSet::new()),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            notifier: OnceLock::new(),
            mounted_at: SystemTime::now(),
        })
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// Connect the kernel cache invalidation (set once, by the mount).
    pub fn set_notifier(&self, notifier: Arc<dyn KernelNotifier>) {
        let _ = self.notifier.set(notifier);
    }

    fn inval_inode(&self, ino: u64) {
        if let Some(notifier) = self.notifier.get() {
            notifier.inval_inode(ino);
        }
    }

    fn inval_entry(&self, parent: u64, name: &str) {
        if let Some(notifier) = self.notifier.get() {
            notifier.inval_entry(parent, name);
        }
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    // ----- attributes -------------------------------------------------------------------

    fn dir_attr(&self, ino: u64, writable: bool) -> Attr {
        let perm = if writable && !self.config.read_only {
            self.config.dir_mode
        } else {
            self.config.dir_mode & !0o222
        };
        Attr {
            ino,
            kind: FileKind::Directory,
            size: 0,
            perm,
            nlink: 2,
            uid: self.config.uid,
            gid: self.config.gid,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, perm: u16, attributes: &SecretAttributes) -> Attr {
        let updated = epoch_seconds(attributes.updated, self.mounted_at);
        Attr {
            ino,
            kind: FileKind::File,
            size,
            perm,
            nlink: 1,
            uid: self.config.uid,
            gid: self.config.gid,
            mtime: updated,
            ctime: updated,
            crtime: epoch_seconds(attributes.created, updated),
        }
    }

    fn secret_perm(&self, enabled: bool) -> u16 {
        match (enabled, self.config.read_only) {
            (false, _) => 0,
            (true, false) => self.config.file_mode,
            (true, true) => self.config.file_mode & !0o222,
        }
    }

    /// Whether an open handle of `ino` holds uncommitted changes.
    fn has_uncommitted(&self, ino: u64) -> bool {
        let files = self.files.lock();
        files
            .values()
            .any(|f| f.ino == ino && f.dirty_size.lock().is_some())
    }

    /// Attributes always describe the committed content, even while a handle has uncommitted
    /// writes: a reader's kernel sizes its reads by them, and readers must see the whole
    /// committed value, never a partial one. (The writer writes with direct I/O and does not
    /// depend on them.)
    fn secret_entry(&self, ino: u64, data: &SecretData, valid_for: Duration) -> Entry {
        let size = data.content.len() as u64;
        Entry {
            attr: self.file_attr(ino, size, self.secret_perm(data.enabled), &data.attributes),
            ttl: if self.has_uncommitted(ino) {
                Duration::ZERO
            } else {
                valid_for.min(self.config.cache_ttl)
            },
        }
    }

    fn placeholder_entry(&self, placeholder: &Placeholder) -> Entry {
        // Nothing committed yet.
        let size = 0;
        let mut attr = self.file_attr(
            placeholder.ino,
            size,
            self.secret_perm(true),
            &SecretAttributes::default(),
        );
        attr.mtime = placeholder.created;
        attr.ctime = placeholder.created;
        attr.crtime = placeholder.created;
        Entry {
            attr,
            ttl: Duration::ZERO,
        }
    }

    fn scratch_entry(&self, file: &ScratchFile) -> Entry {
        let size = file.content.lock().len() as u64;
        let modified = *file.modified.lock();
        let mut attr = self.file_attr(
            file.ino,
            size,
            self.secret_perm(true),
            &SecretAttributes::default(),
        );
        attr.mtime = modified;
        attr.ctime = modified;
        attr.crtime = modified;
        Entry {
            attr,
            ttl: Duration::ZERO,
        }
    }

    // ----- loading ----------------------------------------------------------------------

    /// The current version of a secret (cached, coalesced). `Ok(None)`: no such secret.
    async fn load_secret(&self, name: &str) -> Result<Fetched<SecretData, VaultError>, FsError> {
        let key = name.to_ascii_lowercase();
        let fetched = self
            .values
            .get_or_load(
                &key,
                || async {
                    match self.store.get_secret(name, None).await {
                        Ok(bundle) => Ok(Some(SecretData::from_bundle(bundle, name))),
                        Err(VaultError::NotFound { .. }) => Ok(None),
                        Err(VaultError::SecretDisabled { .. }) => {
                            let listed = self.listed_secret(&key);
                            Ok(Some(SecretData::disabled(name, listed.as_ref())))
                        }
                        Err(error) => {
                            // Logged once per vault call, not once per coalesced reader.
                            warn!(secret = name, %error, "could not read secret");
                            Err(error)
                        }
                    }
                },
                is_transient,
            )
            .await
            .map_err(FsError::from)?;
        if let Some(error) = &fetched.stale_because {
            warn!(secret = name, %error, "vault failed; serving the cached value (--stale-if-error)");
        }
        if let Some(data) = &fetched.value {
            let ino = self.inodes.lock().ino_for(NodeKey::Secret(key), &data.name);
            self.note_version(ino, data.version.as_deref());
        }
        Ok(fetched)
    }

    /// The listed entry of `key` from a fresh listing, if one is cached (no vault call).
    fn listed_secret(&self, key: &str) -> Option<ListedSecret> {
        let listing = self.listings.peek(ALL_SECRETS)?.value?;
        listing
            .0
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(key))
            .cloned()
    }

    /// Remember which version the kernel may now cache for `ino`; when it changed, drop what
    /// the kernel cached of the old one. Answers whether the kernel's version was unchanged.
    fn note_version(&self, ino: u64, version: Option<&str>) -> bool {
        let changed = {
            let mut inodes = self.inodes.lock();
            let Some(node) = inodes.get_mut(ino) else {
                return false;
            };
            if node.kernel_version.as_deref() == version {
                return version.is_some();
            }
            let had_one = node.kernel_version.is_some();
            node.kernel_version = version.map(str::to_owned);
            had_one
        };
        if changed {
            debug!(ino, "secret version changed; invalidating kernel cache");
            self.inval_inode(ino);
        }
        false
    }

    async fn load_listing(&self) -> Result<Arc<Listing>, FsError> {
        self.load_listing_as(ALL_SECRETS, "secrets", || async {
            let items = self.store.list_properties_of_secrets().await?;
            Ok(items
                .into_iter()
                .filter_map(|item| listed_from_item(item, None))
                .collect())
        })
        .await
    }

    async fn load_deleted_listing(&self) -> Result<Arc<Listing>, FsError> {
        self.load_listing_as(DELETED_SECRETS, "deleted secrets", || async {
            let items = self.store.list_deleted_secrets().await?;
            Ok(items
                .into_iter()
                .filter_map(|deleted| listed_from_item(deleted.item, deleted.deleted_date))
                .collect())
        })
        .await
    }

    /// One cached, coalesced listing under `key`; `what` names it in the log.
    async fn load_listing_as<F, Fut>(
        &self,
        key: &str,
        what: &str,
        list: F,
    ) -> Result<Arc<Listing>, FsError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<ListedSecret>, VaultError>>,
    {
        let fetched = self
            .listings
            .get_or_load(
                key,
                || async { Ok(Some(Listing(list().await?))) },
                is_transient,
            )
            .await
            .map_err(|error| {
                warn!(%error, "could not list {what}");
                FsError::from(error)
            })?;
        Ok(fetched
            .value
            .unwrap_or_else(|| Arc::new(Listing(Vec::new()))))
    }

    /// The versions of `name`; `None` when there is no such secret.
    async fn load_versions(&self, name: &str) -> Result<Option<Arc<Listing>>, FsError> {
        let key = versions_key(&name.to_ascii_lowercase());
        let fetched = self
            .listings
            .get_or_load(
                &key,
                || async {
                    let items = match self.store.list_properties_of_secret_versions(name).await {
                        Ok(items) => items,
                        Err(VaultError::NotFound { .. }) => return Ok(None),
                        Err(error) => return Err(error),
                    };
                    if items.is_empty() {
                        return Ok(None);
                    }
                    let mut listed: Vec<ListedSecret> = items
                        .into_iter()
                        .filter_map(|item| {
                            let id = SecretId::parse(item.id.as_deref()?)?;
                            Some(ListedSecret {
                                name: id.name,
                                attributes: item.attributes.unwrap_or_default(),
                                version: Some(id.version?),
                                deleted_date: None,
                            })
                        })
                        .collect();
                    // Oldest first, so `ls .versions/NAME` reads as a history.
                    listed.sort_by_key(|l| l.attributes.created);
                    Ok(Some(Listing(listed)))
                },
                is_transient,
            )
            .await
            .map_err(logged_failure(name, "list versions"))?;
        Ok(fetched.value)
    }

    /// One version's content (immutable, cached like values).
    async fn load_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Fetched<SecretData, VaultError>, FsError> {
        let key = format!("{}/{version}", name.to_ascii_lowercase());
        self.values
            .get_or_load(
                &key,
                || async {
                    match self.store.get_secret(name, Some(version)).await {
                        Ok(bundle) => Ok(Some(SecretData::from_bundle(bundle, name))),
                        Err(VaultError::NotFound { .. }) => Ok(None),
                        Err(VaultError::SecretDisabled { .. }) => {
                            Ok(Some(SecretData::disabled(name, None)))
                        }
                        Err(error) => Err(error),
                    }
                },
                is_transient,
            )
            .await
            .map_err(|error| {
                warn!(secret = name, version, %error, "could not read secret version");
                FsError::from(error)
            })
    }

    fn node(&self, ino: u64) -> Result<(NodeKey, String), FsError> {
        self.inodes
            .lock()
            .get(ino)
            .map(|node| (node.key.clone(), node.name.clone()))
            .ok_or(FsError::NotFound {
                name: format!("inode {ino}"),
            })
    }

    // ----- lookup and getattr -----------------------------------------------------------

    /// Find `name` in directory `parent`. Names that cannot be secrets answer NotFound without
    /// a vault call.
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Entry, FsError> {
        let (parent_key, parent_name) = self.node(parent)?;
        let not_found = || FsError::NotFound {
            name: name.to_owned(),
        };
        match parent_key {
            NodeKey::Root => match name {
                VERSIONS_DIR_NAME => Ok(self.dir_entry(VERSIONS_DIR_INO, false)),
                DELETED_DIR_NAME => Ok(self.dir_entry(DELETED_DIR_INO, true)),
                _ if !is_valid_secret_name(name) => {
                    let scratch = self.scratch.lock().get(name).cloned();
                    scratch
                        .map(|file| self.scratch_entry(&file))
                        .ok_or_else(not_found)
                }
                _ if self.shadowed.lock().contains(&name.to_ascii_lowercase()) => Err(not_found()),
                _ => {
                    self.prefetch_if_listing_sizes(name);
                    self.secret_entry_by_name(name).await
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
            NodeKey::Secret(_)
            | NodeKey::Version(..)
            | NodeKey::Deleted(_)
            | NodeKey::Scratch(_) => Err(FsError::NotADirectory { name: parent_name }),
        }
    }

    fn dir_entry(&self, ino: u64, writable: bool) -> Entry {
        Entry {
            attr: self.dir_attr(ino, writable),
            ttl: self.config.list_ttl,
        }
    }

    fn deleted_entry(&self, ino: u64, listed: &ListedSecret) -> Entry {
        let deleted = epoch_seconds(listed.deleted_date, self.mounted_at);
        let mut attr = self.file_attr(ino, 0, self.config.file_mode & 0o444, &listed.attributes);
        attr.mtime = deleted;
        attr.ctime = deleted;
        Entry {
            attr,
            ttl: self.config.list_ttl,
        }
    }

    async fn version_entry(&self, ino: u64, name: &str, version: &str) -> Result<Entry, FsError> {
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
    fn prefetch_if_listing_sizes(&self, name: &str) {
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

    async fn secret_entry_by_name(&self, name: &str) -> Result<Entry, FsError> {
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
                return Ok(self.placeholder_entry(&placeholder));
            }
            self.placeholders.lock().remove(&key);
        }
        let fetched = self.load_secret(name).await?;
        let data = fetched.value.ok_or_else(|| FsError::NotFound {
            name: name.to_owned(),
        })?;
        let ino = self.inodes.lock().ino_for(NodeKey::Secret(key), &data.name);
        Ok(self.secret_entry(ino, &data, fetched.valid_for))
    }

    pub async fn getattr(&self, ino: u64) -> Result<Entry, FsError> {
        let (key, name) = self.node(ino)?;
        match key {
            NodeKey::Root => Ok(self.dir_entry(ROOT_INO, true)),
            NodeKey::VersionsDir => Ok(self.dir_entry(VERSIONS_DIR_INO, false)),
            NodeKey::DeletedDir => Ok(self.dir_entry(DELETED_DIR_INO, true)),
            NodeKey::VersionsOf(_) => Ok(self.dir_entry(ino, false)),
            NodeKey::Secret(_) => self.secret_entry_by_name(&name).await,
            NodeKey::Scratch(scratch_name) => {
                let scratch = self.scratch.lock().get(&scratch_name).cloned();
                scratch
                    .map(|file| self.scratch_entry(&file))
                    .ok_or(FsError::NotFound { name })
            }
            NodeKey::Version(_, version) => self.version_entry(ino, &name, &version).await,
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

    // ----- open, create, read, write, commit --------------------------------------------

    fn check_writable(&self, name: &str) -> Result<(), FsError> {
        if self.config.read_only {
            warn!(secret = name, "write refused: the mount is read-only");
            return Err(FsError::ReadOnly {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn register_file(&self, file: OpenFile) -> u64 {
        let fh = self.new_fh();
        self.files.lock().insert(fh, Arc::new(file));
        fh
    }

    fn file(&self, fh: u64) -> Result<Arc<OpenFile>, FsError> {
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

    fn read_only_file(&self, ino: u64, name: &str, base: Option<Arc<SecretData>>) -> OpenFile {
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

    fn open_scratch(&self, name: &str, mode: OpenMode) -> Result<Opened, FsError> {
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
    fn handles_agree(&self, ino: u64, version: Option<&str>) -> bool {
        self.files
            .lock()
            .values()
            .filter(|f| f.ino == ino)
            .all(|f| f.dirty_size.lock().is_none() && f.version.lock().as_deref() == version)
    }

    async fn open_secret(
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

    fn create_scratch(&self, name: &str, mode: OpenMode) -> Result<(Entry, Opened), FsError> {
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

    fn insert_scratch(&self, name: &str, content: Zeroizing<Vec<u8>>) {
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

    async fn commit(&self, file: &OpenFile, state: &mut FileState) -> Result<(), FsError> {
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
    async fn store_value(
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
    async fn set_secret(
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

    // ----- setattr ----------------------------------------------------------------------

    pub async fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        changes: SetAttr,
    ) -> Result<Entry, FsError> {
        let current = self.getattr(ino).await?;
        let (_, name) = self.node(ino)?;
        let owner_change = changes.uid.is_some_and(|uid| uid != current.attr.uid)
            || changes.gid.is_some_and(|gid| gid != current.attr.gid);
        let mode_change = changes
            .mode
            .is_some_and(|mode| (mode & 0o7777) as u16 != current.attr.perm);
        if owner_change || mode_change {
            return Err(FsError::NotPermitted {
                name,
                reason: "owner and mode are set for the whole mount (--uid, --gid, --file-mode)"
                    .into(),
            });
        }
        let Some(size) = changes.size else {
            // Times (touch) and no-op changes are accepted and ignored: the vault keeps its own.
            return Ok(current);
        };
        if current.attr.kind == FileKind::Directory {
            return Err(FsError::IsADirectory { name });
        }
        self.check_writable(&name)?;
        match fh.and_then(|fh| self.file(fh).ok()).filter(|f| f.writable) {
            Some(file) => self.truncate_handle(&file, size).await?,
            None => {
                // truncate(2) on a path: a short-lived handle, committed at once.
                let opened = self
                    .open(
                        ino,
                        OpenMode {
                            write: true,
                            ..OpenMode::default()
                        },
                    )
                    .await?;
                let file = self.file(opened.fh)?;
                let truncated = self.truncate_handle(&file, size).await;
                let released = self.release(opened.fh).await;
                truncated?;
                released?;
            }
        }
        self.getattr(ino).await
    }

    async fn truncate_handle(&self, file: &OpenFile, size: u64) -> Result<(), FsError> {
        let mut state = file.state.lock().await;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size == state.content().len() && state.buffer.is_some() {
            return Ok(());
        }
        let limit = if file.scratch.is_some() {
            MAX_SCRATCH_BYTES
        } else {
            MAX_CONTENT_BYTES
        };
        if size > limit {
            return Err(FsError::TooLarge {
                name: file.name.clone(),
            });
        }
        let encoding = state.encoding();
        let truncated = resized_copy(state.content(), size);
        if file.scratch.is_none() && !content::fits(&truncated, encoding) {
            return Err(FsError::TooLarge {
                name: file.name.clone(),
            });
        }
        state.buffer = Some(truncated);
        state.dirty = true;
        state.emptied_at_open = false;
        state.failed = None;
        *file.dirty_size.lock() = Some(size as u64);
        Ok(())
    }

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

    async fn purge(&self, name: &str) -> Result<(), FsError> {
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

    async fn rename_in_vault(
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
    fn rename_scratch(&self, name: &str, new_name: &str, no_replace: bool) -> Result<(), FsError> {
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
    async fn scratch_to_secret(
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
    async fn secret_to_scratch(
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

    async fn recover(&self, name: &str, new_name: &str) -> Result<(), FsError> {
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

    async fn rename_secret(
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

    // ----- directories ------------------------------------------------------------------

    pub fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let (key, name) = self.node(ino)?;
        match key {
            NodeKey::Secret(_)
            | NodeKey::Version(..)
            | NodeKey::Deleted(_)
            | NodeKey::Scratch(_) => Err(FsError::NotADirectory { name }),
            _ => {
                let fh = self.new_fh();
                self.dirs.lock().insert(fh, None);
                Ok(fh)
            }
        }
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().remove(&fh);
    }

    /// Entries of the directory from `offset` on. The listing is taken when reading starts
    /// (offset 0) and kept for the handle, so a listing that changes meanwhile never skips or
    /// repeats names.
    pub async fn readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> Result<Arc<Vec<DirEntry>>, FsError> {
        let snapshot = self.dirs.lock().get(&fh).cloned().flatten();
        let entries = match snapshot {
            Some(entries) if offset > 0 => entries,
            _ => {
                let entries = Arc::new(self.list_dir(ino).await?);
                if let Some(slot) = self.dirs.lock().get_mut(&fh) {
                    *slot = Some(entries.clone());
                }
                entries
            }
        };
        Ok(entries)
    }

    async fn list_dir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let (key, name) = self.node(ino)?;
        let mut names: Vec<(u64, FileKind, String)> = vec![
            (ino, FileKind::Directory, ".".into()),
            (ROOT_INO, FileKind::Directory, "..".into()),
        ];
        match key {
            NodeKey::Root => {
                names.push((
                    VERSIONS_DIR_INO,
                    FileKind::Directory,
                    VERSIONS_DIR_NAME.into(),
                ));
                names.push((
                    DELETED_DIR_INO,
                    FileKind::Directory,
                    DELETED_DIR_NAME.into(),
                ));
                let listing = self.load_listing().await?;
                let positions = listing
                    .0
                    .iter()
                    .enumerate()
                    .map(|(position, listed)| (listed.name.to_ascii_lowercase(), position))
                    .collect();
                *self.recent_listing.lock() = Some(RecentListing {
                    at: Instant::now(),
                    listing: listing.clone(),
                    positions,
                    last_position: None,
                    in_order: 0,
                    prefetching: false,
                });
                let mut inodes = self.inodes.lock();
                for listed in &listing.0 {
                    let ino = inodes.ino_for(
                        NodeKey::Secret(listed.name.to_ascii_lowercase()),
                        &listed.name,
                    );
                    names.push((ino, FileKind::File, listed.name.clone()));
                }
                drop(inodes);
                let shadowed = self.shadowed.lock().clone();
                names.retain(|(_, kind, name)| {
                    *kind == FileKind::Directory || !shadowed.contains(&name.to_ascii_lowercase())
                });
                let scratch: Vec<(String, u64)> = self
                    .scratch
                    .lock()
                    .iter()
                    .map(|(name, file)| (name.clone(), file.ino))
                    .collect();
                for (name, ino) in scratch {
                    names.push((ino, FileKind::File, name));
                }
                let placeholders: Vec<Placeholder> =
                    self.placeholders.lock().values().cloned().collect();
                for placeholder in placeholders {
                    let listed = listing
                        .0
                        .iter()
                        .any(|l| l.name.eq_ignore_ascii_case(&placeholder.name));
                    if !listed {
                        names.push((placeholder.ino, FileKind::File, placeholder.name));
                    }
                }
            }
            NodeKey::VersionsDir => {
                let listing = self.load_listing().await?;
                let mut inodes = self.inodes.lock();
                for listed in &listing.0 {
                    let ino = inodes.ino_for(
                        NodeKey::VersionsOf(listed.name.to_ascii_lowercase()),
                        &listed.name,
                    );
                    names.push((ino, FileKind::Directory, listed.name.clone()));
                }
            }
            NodeKey::VersionsOf(secret_key) => {
                let listing = self
                    .load_versions(&name)
                    .await?
                    .ok_or(FsError::NotFound { name: name.clone() })?;
                let mut inodes = self.inodes.lock();
                for listed in &listing.0 {
                    let Some(version) = &listed.version else {
                        continue;
                    };
                    let ino = inodes.ino_for(
                        NodeKey::Version(secret_key.clone(), version.clone()),
                        &listed.name,
                    );
                    names.push((ino, FileKind::File, version.clone()));
                }
            }
            NodeKey::DeletedDir => {
                let listing = self.load_deleted_listing().await?;
                let mut inodes = self.inodes.lock();
                for listed in &listing.0 {
                    let ino = inodes.ino_for(
                        NodeKey::Deleted(listed.name.to_ascii_lowercase()),
                        &listed.name,
                    );
                    names.push((ino, FileKind::File, listed.name.clone()));
                }
            }
            NodeKey::Secret(_)
            | NodeKey::Version(..)
            | NodeKey::Deleted(_)
            | NodeKey::Scratch(_) => return Err(FsError::NotADirectory { name }),
        }
        Ok(names
            .into_iter()
            .enumerate()
            .map(|(index, (ino, kind, name))| DirEntry {
                ino,
                offset: index as u64 + 1,
                kind,
                name,
            })
            .collect())
    }

    // ----- extended attributes --------------------------------------------------------

    /// The secret behind `ino`, for attribute calls; `None` for anything else.
    async fn xattr_target(&self, ino: u64) -> Result<Option<Arc<SecretData>>, FsError> {
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
    fn check_properties_writable(&self, ino: u64, name: &str) -> Result<(), FsError> {
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

    fn xattr_refusal(&self, name: &str, attribute: &str, refusal: XattrRefusal) -> FsError {
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

    async fn update_properties(
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
        if updated.enabled && data.enabled {
            updated.content = Zeroizing::new(data.content.to_vec());
            updated.encoding = data.encoding;
            self.values.insert(&key, Some(updated));
        } else {
            // Enabling or disabling changes what a get answers: ask again.
            self.values.invalidate(&key);
        }
        self.listings.invalidate(ALL_SECRETS);
        self.inval_inode(ino);
        Ok(())
    }

    // ----- cache control ----------------------------------------------------------------

    /// Forget every cached value and listing (SIGHUP). The kernel's caches follow: every known
    /// secret inode is invalidated.
    pub fn drop_caches(&self) {
        self.values.clear();
        self.listings.clear();
        let inos = {
            let mut inodes = self.inodes.lock();
            let inos = inodes.secret_inodes();
            for &ino in &inos {
                if let Some(node) = inodes.get_mut(ino) {
                    node.kernel_version = None;
                }
            }
            inos
        };
        for ino in inos {
            self.inval_inode(ino);
        }
        info!("caches dropped");
    }

    /// Bytes of values held by the cache (for tests and diagnostics).
    pub fn cached_bytes(&self) -> usize {
        self.values.bytes()
    }
}

/// A listed item as the views need it; items without a parsable id are skipped.
fn listed_from_item(item: SecretItem, deleted_date: Option<i64>) -> Option<ListedSecret> {
    let id = SecretId::parse(item.id.as_deref()?)?;
    Some(ListedSecret {
        name: id.name,
        attributes: item.attributes.unwrap_or_default(),
        version: None,
        deleted_date,
    })
}

/// Names that cannot be secrets are not there (no vault call).
fn secret_name_or_not_found(name: &str) -> Result<(), FsError> {
    if is_valid_secret_name(name) {
        Ok(())
    } else {
        Err(FsError::NotFound {
            name: name.to_owned(),
        })
    }
}

/// For `map_err` on a vault call: log "could not ACTION" naming the secret, then the errno.
fn logged_failure<'a>(
    name: &'a str,
    action: &'static str,
) -> impl FnOnce(VaultError) -> FsError + 'a {
    move |error| {
        warn!(secret = name, %error, "could not {action}");
        FsError::from(error)
    }
}

fn log_deleted_conflict(name: &str) {
    warn!(
        secret = name,
        "{name} is deleted but recoverable (--on-deleted-conflict fail): recover it with \
         `mv .deleted/{name} {name}` or `az keyvault secret recover --name {name}`, or purge it \
         with `rm .deleted/{name}` (needs --allow-purge) or `az keyvault secret purge --name {name}`"
    );
}
