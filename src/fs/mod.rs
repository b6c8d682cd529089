//! The filesystem core: inodes, name rules, handles and write buffers, the `.versions` and
//! `.deleted` views, xattr mapping. Returns plain Rust results; never sees `fuser` types, so it
//! is tested with an in-memory [`SecretStore`](crate::vault::SecretStore).
//!
//! Semantics worth knowing (docs/SEMANTICS.md material):
//! - **Reads.** `/NAME` is the current version of a secret. Opening, reading and `stat` cost
//!   one get on a cold secret, then nothing for `cache_ttl`; a 404 is remembered for
//!   `negative_ttl`; concurrent misses share one get. Names that cannot be secrets answer
//!   ENOENT without any vault call.
//! - **Listings.** `ls` costs list calls only (cached for `list_ttl`). `ls -l` needs sizes:
//!   once lookups walk a fresh listing in its order (three in a row, within 5 s of the
//!   readdir), every following listed value not cached yet is fetched concurrently (16 at a
//!   time), each exactly once; a few `cat`s after `ls` cost one get each.
//! - **Writes.** Every writable handle of a file shares one pending content (offsets combine,
//!   `O_APPEND` appends, a writer's reads, `fstat` and `SEEK_END` see its writes). It is
//!   committed with one set when the process that opened a handle closes it or calls `fsync`;
//!   closes by other processes (children holding a copy) do not commit, the last release
//!   commits what remains, and a process killed by a signal commits nothing (`/proc/PID/stat`).
//!   A failed commit fails `close`/`fsync` and is not retried. The flush a shell makes right
//!   after `O_TRUNC` stores nothing; unchanged bytes make no version. A write that would pass
//!   25,600 stored characters fails with EFBIG and the file never commits (the old value
//!   stays). See `core/handles.rs`.
//! - **New names.** A name that is created but never written (`touch new`, `: > new`) is an
//!   empty placeholder on this mount only: Key Vault never sees names no data was written to
//!   (so editors' probe files such as vim's `4913` never reach the vault). The first write
//!   creates the secret. `rm` of a placeholder just forgets it. Truncating an existing secret
//!   (`: > existing`) does set an empty value.
//! - **Editors.** Names Key Vault cannot hold that editors use (leading `.`, trailing `~`,
//!   `#x#`, `.swp`/`.swx`/`.swo`/`.tmp`/`.bak`/`.save`) are scratch files kept in memory on
//!   this mount. Renaming a scratch file over a secret is one set (keeping the secret's tags,
//!   content type and encoding). Renaming a secret to such a name (vim's backup `NAME~`) hides
//!   the secret on this mount without deleting it in the vault, until `NAME` is created or
//!   written again. Other invalid names answer EINVAL (ENAMETOOLONG past 127 characters).
//! - **Reads and kernel caching.** A read-only handle reads the version it opened, to its
//!   end (direct I/O: the page cache is per inode and would mix versions); at its end it moves
//!   on only to a newer version that extends it (`tail -f`), and a read at offset 0 starts a
//!   new pass with the newest version. Entry and attribute TTLs are the
//!   cache entry's remaining validity (0 while the file is open for writing); when a refresh or
//!   a write sees a new version, the kernel's attributes for the inode are invalidated.
//! - **Deleted names.** Writing a deleted-but-recoverable name recovers it first (history
//!   kept) with `--on-deleted-conflict recover`; with `fail`, creating it answers EEXIST (one
//!   get-deleted call at create time) and logs how to recover or purge.

mod content;
mod core;
mod inode;
mod memory_budget;
mod process;
mod projected;
mod xattr;

#[cfg(test)]
pub(crate) mod memory_store;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use thiserror::Error;

pub use self::content::Encoding;
pub use self::core::SecretFs;
pub use self::inode::{
    DELETED_DIR_INO, DELETED_DIR_NAME, ROOT_INO, VERSIONS_DIR_INO, VERSIONS_DIR_NAME,
};
pub use self::projected::{projection_needs_allow_other, ProjectedFs};
use crate::vault::VaultError;

/// What the filesystem core needs to know about the mount.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// How long a secret's value and attributes are trusted.
    pub cache_ttl: Duration,
    /// How long a directory listing is trusted.
    pub list_ttl: Duration,
    /// How long a "no such secret" is remembered.
    pub negative_ttl: Duration,
    /// Bytes of values held in memory.
    pub cache_size: usize,
    /// Serve a cached value up to this age when the vault is unreachable or throttling.
    pub stale_if_error: Option<Duration>,
    pub on_deleted_conflict: DeletedConflictPolicy,
    /// `rm .deleted/NAME` purges (irreversible) only when set.
    pub allow_purge: bool,
    pub read_only: bool,
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    /// Bytes of files held in memory only (scratch files, placeholders, unsaved writes).
    pub scratch_space: u64,
    /// `--refresh`: revalidate cached secrets by listing this often (`None`: never).
    pub refresh: Option<Duration>,
}

impl Default for FsConfig {
    fn default() -> Self {
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        FsConfig {
            cache_ttl: Duration::from_secs(30),
            list_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            cache_size: 64 * 1024 * 1024,
            stale_if_error: None,
            on_deleted_conflict: DeletedConflictPolicy::Recover,
            allow_purge: false,
            read_only: false,
            uid,
            gid,
            file_mode: 0o600,
            dir_mode: 0o700,
            scratch_space: 128 * 1024 * 1024,
            refresh: None,
        }
    }
}

/// What to do when writing a name that is deleted but recoverable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeletedConflictPolicy {
    /// Recover the deleted secret (waiting until done), then set the new value: history kept.
    Recover,
    /// Answer EEXIST and log how to recover or purge.
    Fail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
}

/// Attributes of one inode, in the core's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
}

/// Attributes plus how long the kernel may cache them.
#[derive(Clone, Debug)]
pub struct Entry {
    pub attr: Attr,
    pub ttl: Duration,
}

/// An open file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// The kernel's page cache holds this very version: keep it.
    pub keep_cache: bool,
    /// Bypass the page cache (handles that write).
    pub direct_io: bool,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenMode {
    pub read: bool,
    pub write: bool,
    pub truncate: bool,
    pub append: bool,
    /// `O_EXCL` (create only).
    pub exclusive: bool,
    /// The thread that opens (0: unknown). Closes by other processes do not commit.
    pub pid: u32,
}

/// One directory entry; `offset` is where the next `readdir` continues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub offset: u64,
    pub kind: FileKind,
    pub name: String,
}

impl DirEntry {
    /// `(inode, kind, name)`s as directory entries, each with the offset of the next.
    pub(crate) fn numbered(names: Vec<(u64, FileKind, String)>) -> Vec<DirEntry> {
        names
            .into_iter()
            .enumerate()
            .map(|(index, (ino, kind, name))| DirEntry {
                ino,
                offset: index as u64 + 1,
                kind,
                name,
            })
            .collect()
    }
}

/// Changes asked by `setattr`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `touch -d`, `utimes`: kept in memory on this mount (see `core/setattr.rs`).
    pub mtime: Option<SystemTime>,
}

/// `setxattr`'s flags (POSIX): replace or create as needed, only create, only replace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XattrSet {
    #[default]
    Any,
    /// `XATTR_CREATE`: EEXIST when the attribute exists.
    Create,
    /// `XATTR_REPLACE`: ENODATA when it does not.
    Replace,
}

/// Tells the kernel to drop what it cached. Implemented by the FUSE layer, which must not call
/// the kernel from inside a request handler on the same channel (it would deadlock): the calls
/// are queued and made from another thread.
pub trait KernelNotifier: Send + Sync {
    /// Drop cached pages and attributes of `ino`.
    fn inval_inode(&self, ino: u64);
    /// Drop the cached dentry `name` in `parent`.
    fn inval_entry(&self, parent: u64, name: &str);
}

/// Why an operation failed. The FUSE layer maps each variant to one errno (SPEC §3.9).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum FsError {
    #[error("no such secret: {name}")]
    NotFound { name: String },
    #[error("{name:?} cannot be a secret name: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{name:?} cannot be a secret name: a secret name is at most 127 characters")]
    NameTooLong { name: String },
    #[error("access to {name} denied: {reason}")]
    AccessDenied { name: String, reason: String },
    #[error("the mount is read-only ({name})")]
    ReadOnly { name: String },
    #[error("value of {name} is beyond the maximum permitted length of 25600 characters")]
    TooLarge { name: String },
    #[error("no space for {name}: files kept in memory only are bounded by --scratch-space ({limit} bytes)")]
    NoSpace { name: String, limit: u64 },
    #[error("{name} already exists: {reason}")]
    Exists { name: String, reason: String },
    #[error("{name} is busy: {reason}")]
    Busy { name: String, reason: String },
    #[error("not permitted on {name}: {reason}")]
    NotPermitted { name: String, reason: String },
    #[error("the vault is throttling requests ({name})")]
    Throttled { name: String },
    #[error("the vault failed ({name}): {message}")]
    Unavailable { name: String, message: String },
    #[error("timed out: {what}")]
    TimedOut { what: String },
    #[error("invalid argument on {name}: {reason}")]
    InvalidArgument { name: String, reason: String },
    #[error("no such extended attribute {attribute} on {name}")]
    NoData { name: String, attribute: String },
    #[error("{name} is not a directory")]
    NotADirectory { name: String },
    #[error("{name} is a directory")]
    IsADirectory { name: String },
    #[error("extended attribute {name} is not supported here")]
    Unsupported { name: String },
    #[error("{name}: {reason}")]
    CrossDevice { name: String, reason: String },
    #[error("stale or unknown file handle {fh}")]
    BadHandle { fh: u64 },
}

impl From<VaultError> for FsError {
    fn from(error: VaultError) -> Self {
        match error {
            VaultError::NotFound { name } => FsError::NotFound { name },
            VaultError::Forbidden { name, message } => FsError::AccessDenied {
                name,
                reason: message,
            },
            VaultError::SecretDisabled { name } => FsError::AccessDenied {
                name,
                reason: "the secret is disabled".into(),
            },
            VaultError::DeletedButRecoverable { name } => FsError::Exists {
                name,
                reason: "it is deleted but recoverable".into(),
            },
            VaultError::BeingDeleted { name } => FsError::Busy {
                name,
                reason: "it is being deleted or recovered".into(),
            },
            VaultError::Conflict { name, message } => FsError::Busy {
                name,
                reason: message,
            },
            VaultError::ValueTooLarge { name } => FsError::TooLarge { name },
            VaultError::BadRequest {
                name,
                code,
                message,
            } => FsError::InvalidArgument {
                name,
                reason: format!("{code}: {message}"),
            },
            VaultError::Throttled { name } => FsError::Throttled { name },
            VaultError::Unavailable { name, message } => FsError::Unavailable { name, message },
            VaultError::Timeout { what } => FsError::TimedOut { what },
            VaultError::Auth { message } => FsError::AccessDenied {
                name: "the vault".into(),
                reason: message,
            },
            VaultError::InvalidResponse { name, message } => FsError::Unavailable {
                name,
                message: format!("invalid response: {message}"),
            },
        }
    }
}

/// Errors for which a stale cached value may be served (`--stale-if-error`).
pub fn is_transient(error: &VaultError) -> bool {
    matches!(
        error,
        VaultError::Unavailable { .. } | VaultError::Throttled { .. } | VaultError::Timeout { .. }
    )
}
