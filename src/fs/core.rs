//! [`SecretFs`]: every filesystem operation as an async function over a [`SecretStore`].

mod certificates;
mod commit;
mod handles;
mod listing;
mod lookup;
mod namespace;
mod projection_support;
mod properties;
mod refresh;
mod setattr;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use self::handles::{OpenFile, SharedWrite};
use super::content::{self, Encoding, MAX_CONTENT_BYTES};
use super::inode::{
    InodeTable, NodeKey, DELETED_DIR_INO, DELETED_DIR_NAME, ROOT_INO, VERSIONS_DIR_INO,
    VERSIONS_DIR_NAME,
};
use super::memory_budget::{Charge, MemoryBudget};
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
    /// The stored value does not decode as its `file-encoding` tag says: reads are EIO.
    pub(crate) undecodable: Option<content::Undecodable>,
    /// When the vault gave this value (whole seconds since the epoch), for the refresh: a
    /// value read in the second it was updated may hide a later change in that same second.
    pub(crate) read_at: Option<i64>,
}

impl SecretData {
    fn from_bundle(bundle: SecretBundle, asked_name: &str) -> SecretData {
        let id = bundle.id.as_deref().and_then(SecretId::parse);
        let encoding = Encoding::from_tags(bundle.tags.as_ref());
        let (content, undecodable) =
            match bundle.value.as_ref().map(|v| content::decode(v, encoding)) {
                Some(Ok(content)) => (content, None),
                Some(Err(undecodable)) => (Zeroizing::new(Vec::new()), Some(undecodable)),
                None => (Zeroizing::new(Vec::new()), None),
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
            undecodable,
            read_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok()),
        }
    }

    /// Its content, as a file: EIO (logged, naming the secret) when the value does not decode.
    fn readable(&self) -> Result<(), FsError> {
        match self.undecodable {
            None => Ok(()),
            Some(content::Undecodable(reason)) => {
                warn!(
                    secret = self.name.as_str(),
                    reason, "cannot read the secret"
                );
                Err(FsError::Unavailable {
                    name: self.name.clone(),
                    message: reason.to_owned(),
                })
            }
        }
    }

    /// No content and no version: a file not in the vault yet, or a deleted secret.
    fn empty(name: &str) -> SecretData {
        SecretData {
            enabled: true,
            ..SecretData::disabled(name, None)
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
            tags: listed.and_then(|l| l.tags.clone()),
            attributes: listed.map(|l| l.attributes.clone()).unwrap_or_default(),
            undecodable: None,
            read_at: None,
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
    /// Tags, for projections that select by tag (`select = { tag = "k=v" }`).
    tags: Option<Tags>,
    /// The content type (the refresh compares it with the cached value's).
    content_type: Option<String>,
}

pub(crate) struct Listing(Vec<ListedSecret>);

impl Weigh for Listing {
    fn weight(&self) -> usize {
        self.0.iter().map(|l| l.name.len() + 96).sum()
    }
}

/// An editor's scratch file (swap, backup, temporary): a name Key Vault cannot hold, kept in
/// memory on this mount only.
struct ScratchFile {
    ino: u64,
    content: Mutex<Zeroizing<Vec<u8>>>,
    modified: Mutex<SystemTime>,
    /// A time set with `touch -d`/`utimes` (rsync's temporary file), carried over to the secret
    /// it is renamed over.
    utimes: Mutex<Option<SystemTime>>,
    charge: Charge,
}

/// Scratch files are for editors, not storage: bounded so they cannot eat the daemon's memory.
const MAX_SCRATCH_BYTES: usize = 16 * 1024 * 1024;

/// Names editors use for swap, backup and temporary files (vim `.x.swp` and `x~`, emacs `#x#`
/// and `.#x`, gedit `.goutputstream-…`), which Key Vault cannot hold.
pub(crate) fn is_scratch_name(name: &str) -> bool {
    if is_valid_secret_name(name)
        || matches!(
            name,
            "." | ".." | VERSIONS_DIR_NAME | DELETED_DIR_NAME | super::inode::CERTIFICATES_DIR_NAME
        )
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
        || is_tool_temporary_name(name)
}

/// `len` characters of a random suffix: ASCII letters and digits, plus `extra`.
fn is_random(text: &str, len: usize, extra: &[char]) -> bool {
    text.len() == len
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

/// Temporary names of tools that write a new file and rename it over the one they edit:
/// `sed -i` (`sedXXXXXX`), `perl -i` (`XXxxxxxx`), Python's `tempfile.mkstemp` and
/// `NamedTemporaryFile` (`tmpxxxxxxxx`, lower case, digits and `_`). Created exclusively on
/// this mount (as those tools do) and not in the vault, they are scratch files: renaming one
/// over a secret is then that secret's only new version, and no copy is left in the vault.
pub(crate) fn is_tool_temporary_name(name: &str) -> bool {
    name.strip_prefix("sed")
        .is_some_and(|rest| is_random(rest, 6, &[]))
        || name
            .strip_prefix("XX")
            .is_some_and(|rest| is_random(rest, 6, &[]))
        || name.strip_prefix("tmp").is_some_and(|rest| {
            is_random(rest, 8, &['_']) && !rest.chars().any(|c| c.is_ascii_uppercase())
        })
}

/// Scratch names that tools rename away at once (editors' swap and backup files, rsync's and
/// sed's temporaries): nobody expects them to last, so writing them is not worth a warning.
fn is_expected_scratch_name(name: &str) -> bool {
    let rsync = name.strip_prefix('.').is_some_and(|rest| {
        rest.rsplit_once('.')
            .is_some_and(|(base, random)| !base.is_empty() && is_random(random, 6, &[]))
    });
    rsync
        || is_tool_temporary_name(name)
        || name.ends_with('~')
        || name.starts_with(".#")
        || name.starts_with(".goutputstream-")
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || [".swp", ".swx", ".swo"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

/// A file created on this mount and not in the vault (yet).
#[derive(Clone)]
struct Placeholder {
    ino: u64,
    name: String,
    created: SystemTime,
    /// Held for its share of `--scratch-space`, given back with the last clone.
    _charge: Arc<Charge>,
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
    /// Bounds scratch files, placeholders and unsaved writes (`--scratch-space`).
    memory: Arc<MemoryBudget>,
    /// Scratch files by exact name.
    scratch: Mutex<HashMap<String, Arc<ScratchFile>>>,
    /// Secrets renamed to a scratch name (an editor's backup): hidden on this mount, never
    /// deleted in the vault, visible again once written or created.
    shadowed: Mutex<std::collections::HashSet<String>>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    /// The pending content of each file open for writing, by inode (it follows renames).
    writes: Mutex<HashMap<u64, Arc<SharedWrite>>>,
    /// Secrets an `rm` is deleting (waiting for the vault): opening them answers EBUSY.
    deleting: Mutex<std::collections::HashSet<String>>,
    /// Modification times set with `utimes`, by inode, for the version they were set on: kept
    /// in memory on this mount (the vault keeps its own `updated`) until the content changes.
    times: Mutex<HashMap<u64, (Option<String>, SystemTime)>>,
    /// Names kept in memory only whose first write was already logged.
    warned_in_memory: Mutex<std::collections::HashSet<String>>,
    dirs: Mutex<HashMap<u64, Option<Arc<Vec<DirEntry>>>>>,
    next_fh: AtomicU64,
    notifier: OnceLock<Arc<dyn KernelNotifier>>,
    /// Told the names of cached secrets that a refresh found changed or gone (`--on-change`).
    change_listener: OnceLock<ChangeListener>,
    mounted_at: SystemTime,
}

/// See [`SecretFs::set_change_listener`].
pub type ChangeListener = Box<dyn Fn(&[String]) + Send + Sync>;

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
        let memory = MemoryBudget::new(config.scratch_space);
        Arc::new_cyclic(|me| SecretFs {
            me: me.clone(),
            recent_listing: Mutex::new(None),
            store,
            config,
            values,
            listings,
            inodes: Mutex::new(InodeTable::default()),
            placeholders: Mutex::new(HashMap::new()),
            memory,
            scratch: Mutex::new(HashMap::new()),
            shadowed: Mutex::new(std::collections::HashSet::new()),
            files: Mutex::new(HashMap::new()),
            writes: Mutex::new(HashMap::new()),
            deleting: Mutex::new(std::collections::HashSet::new()),
            warned_in_memory: Mutex::new(std::collections::HashSet::new()),
            times: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            notifier: OnceLock::new(),
            change_listener: OnceLock::new(),
            mounted_at: SystemTime::now(),
        })
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// Be told (once per refresh walk that found any) the names of the secrets read through
    /// this mount that changed or went away elsewhere (set once).
    pub fn set_change_listener(&self, listener: ChangeListener) {
        let _ = self.change_listener.set(listener);
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

    /// The pending content that handles writing `ino` share, while any is open.
    fn write_state_of(&self, ino: Option<u64>) -> Option<Arc<SharedWrite>> {
        let writes = self.writes.lock();
        ino.and_then(|ino| writes.get(&ino).cloned())
    }

    /// Size of the content that handles writing `ino` share, while any is open.
    fn pending_size(&self, ino: u64) -> Option<u64> {
        self.write_state_of(Some(ino))
            .map(|shared| shared.size.load(Ordering::SeqCst))
    }

    /// Whether the caller of a request on `ino` writes it: the request names one of its
    /// writable handles, or comes from a process that opened one.
    fn is_writer(&self, ino: u64, fh: Option<u64>, pid: u32) -> bool {
        let openers: Vec<u32> = {
            let files = self.files.lock();
            if fh.is_some_and(|fh| files.get(&fh).is_some_and(|f| f.ino == ino && f.writable)) {
                return true;
            }
            files
                .values()
                .filter(|f| f.ino == ino && f.writable)
                .filter_map(|f| f.opener())
                .collect()
        };
        !openers.is_empty()
            && crate::fs::process::thread_group(pid).is_some_and(|tgid| openers.contains(&tgid))
    }

    /// Attributes of a secret file. A writer sees its pending content (its `fstat` and
    /// `SEEK_END` see its writes, as on a local disk); everybody else sees the committed value
    /// until the commit (`tail -f` must not take a rewrite in progress for a truncation). The
    /// kernel keeps none of it while the file is open for writing (TTL 0).
    fn secret_entry(
        &self,
        ino: u64,
        data: &SecretData,
        valid_for: Duration,
        writer_view: bool,
    ) -> Entry {
        let pending = self.pending_size(ino);
        let size = pending
            .filter(|_| writer_view)
            .unwrap_or(data.content.len() as u64);
        let mut attr = self.file_attr(ino, size, self.secret_perm(data.enabled), &data.attributes);
        self.apply_kept_mtime(ino, data.version.as_deref(), &mut attr);
        Entry {
            attr,
            ttl: if pending.is_some() {
                Duration::ZERO
            } else {
                valid_for.min(self.config.cache_ttl)
            },
        }
    }

    /// A modification time set with `utimes` on this version of `ino`, if any.
    fn apply_kept_mtime(&self, ino: u64, version: Option<&str>, attr: &mut Attr) {
        if let Some((kept_version, mtime)) = self.times.lock().get(&ino) {
            if kept_version.as_deref() == version {
                attr.mtime = *mtime;
            }
        }
    }

    fn placeholder_entry(&self, placeholder: &Placeholder, writer_view: bool) -> Entry {
        // Nothing committed yet; writers see what they wrote.
        let size = self
            .pending_size(placeholder.ino)
            .filter(|_| writer_view)
            .unwrap_or(0);
        let mut attr = self.file_attr(
            placeholder.ino,
            size,
            self.secret_perm(true),
            &SecretAttributes::default(),
        );
        attr.mtime = placeholder.created;
        attr.ctime = placeholder.created;
        attr.crtime = placeholder.created;
        self.apply_kept_mtime(placeholder.ino, None, &mut attr);
        Entry {
            attr,
            ttl: Duration::ZERO,
        }
    }

    /// `(limit, used)` of the memory that files kept on this mount only may take
    /// (`--scratch-space`): what `statfs` reports as the filesystem's size and free space.
    pub fn scratch_space(&self) -> (u64, u64) {
        (self.memory.limit(), self.memory.used())
    }

    fn no_space(&self, name: &str) -> FsError {
        warn!(
            name,
            limit = self.memory.limit(),
            "no space: files kept in memory on this mount (scratch files, new files not yet \
             written, unsaved writes) reached --scratch-space"
        );
        FsError::NoSpace {
            name: name.to_owned(),
            limit: self.memory.limit(),
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
            let listed = items.into_iter().map(|item| listed_from_item(item, None));
            Ok(well_formed(listed, "secrets", None))
        })
        .await
    }

    async fn load_deleted_listing(&self) -> Result<Arc<Listing>, FsError> {
        self.load_listing_as(DELETED_SECRETS, "deleted secrets", || async {
            let items = self.store.list_deleted_secrets().await?;
            let listed = items
                .into_iter()
                .map(|deleted| listed_from_item(deleted.item, deleted.deleted_date));
            Ok(well_formed(listed, "deleted secrets", None))
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
                    let listed = items.into_iter().map(|item| {
                        let id = SecretId::parse(item.id.as_deref()?)?;
                        Some(ListedSecret {
                            name: id.name,
                            attributes: item.attributes.unwrap_or_default(),
                            version: Some(id.version?),
                            deleted_date: None,
                            tags: None,
                            content_type: None,
                        })
                    });
                    let mut listed = well_formed(listed, "secret versions", Some(name));
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

/// A listed item as the views need it; `None` for an item without a parsable id.
fn listed_from_item(item: SecretItem, deleted_date: Option<i64>) -> Option<ListedSecret> {
    let id = SecretId::parse(item.id.as_deref()?)?;
    Some(ListedSecret {
        name: id.name,
        attributes: item.attributes.unwrap_or_default(),
        version: None,
        deleted_date,
        tags: item.tags,
        content_type: item.content_type,
    })
}

/// What a listing can show: a vault (or a man in the middle of a trusted TLS chain) could
/// list names no secret can have (`.versions`, `.hidden`, `a/b`, `%2F`, 300 characters),
/// versions that are not version ids, the same name twice in different case, or another
/// secret's versions. Those are dropped, with one log line per listing.
fn well_formed(
    listed: impl Iterator<Item = Option<ListedSecret>>,
    what: &str,
    versions_of: Option<&str>,
) -> Vec<ListedSecret> {
    let mut seen = std::collections::HashSet::new();
    let mut dropped: Vec<String> = Vec::new();
    let mut kept = Vec::new();
    for listed in listed {
        let Some(listed) = listed else {
            dropped.push("(an id that is not a secret's)".into());
            continue;
        };
        let well_formed = is_valid_secret_name(&listed.name)
            && versions_of.is_none_or(|owner| listed.name.eq_ignore_ascii_case(owner))
            && listed.version.as_deref().is_none_or(is_valid_version_id);
        let key = match &listed.version {
            Some(version) => version.clone(),
            None => listed.name.to_ascii_lowercase(),
        };
        if well_formed && seen.insert(key) {
            kept.push(listed);
        } else {
            dropped.push(match &listed.version {
                Some(version) => format!("{:?}/{version:?}", listed.name),
                None => format!("{:?}", listed.name),
            });
        }
    }
    if !dropped.is_empty() {
        let examples: Vec<&str> = dropped.iter().take(5).map(String::as_str).collect();
        warn!(
            count = dropped.len(),
            examples = %examples.join(", "),
            "the vault listed {what} that cannot be shown (not a secret name or version id, \
             a duplicate, or another secret's); dropped"
        );
    }
    kept
}

/// Key Vault's version ids are 32 hexadecimal digits; accept any short alphanumeric id, never
/// one that could be a path (`..`, `/`) or hide itself.
fn is_valid_version_id(version: &str) -> bool {
    (1..=64).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric())
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
