//! The projected tree (`akvfs mount VAULT DIR --config FILE`, SPEC §8): the files a legacy
//! application expects, each resolved to a secret of the vault view ([`SecretFs`]) or rendered
//! from several, with its own owner and mode. A layer over the vault view: the vault view knows
//! nothing of the tree, and without a config every call goes straight to it, unchanged.
//!
//! - Inodes: the tree's own nodes (its directories, configured files, the files of `[[dir]]`
//!   entries) are numbered from 1 (the root) by [`tree::TreeNodes`]; the vault view's inode `i`
//!   is `VAULT_VIEW_BASE + i` here, so its root is the `[vault] path` directory.
//! - A file that is a secret (`[[file]] secret = …`, a `[[dir]]` file) is that secret's file of
//!   the vault view seen under another name, owner and mode: opening, reading, writing,
//!   committing and `rm` are the vault view's, on the secret's inode there. Each tree node holds
//!   one lookup of that inode while the kernel holds the tree node, so the vault view keeps it.
//! - Template and format files are rendered ([`render`]): read-only, exact size, rendered again
//!   only when one of their inputs changed.
//! - File handles of rendered files and tree directories carry [`TREE_HANDLE_BIT`]; every other
//!   handle is the vault view's.
//!
//! Files: this one dispatches each operation; [`resolve`] says what a tree node is under the
//! current config (and re-reads it on SIGHUP); [`tree`] numbers the nodes; [`dirs`] lists
//! directories; [`render`] renders templates and formats; [`groups`] publishes groups and runs
//! hooks.

mod certificates;
mod dirs;
mod groups;
mod render;
mod resolve;
mod tree;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};
use zeroize::Zeroizing;

use self::resolve::{Looks, Resolved};
use self::tree::{TreeKey, TreeNodes};
use super::core::SecretData;
use super::{
    Attr, DirEntry, Entry, FileKind, FsConfig, FsError, KernelNotifier, OpenMode, Opened, SecretFs,
    SetAttr, XattrSet, ROOT_INO,
};
use crate::projection::{self, EntryKind, Projection};

/// The vault view's inode `i` is `VAULT_VIEW_BASE + i` in a projected mount.
const VAULT_VIEW_BASE: u64 = 1 << 48;
/// Handles of rendered files and tree directories (the vault view's count up from 1).
const TREE_HANDLE_BIT: u64 = 1 << 62;
/// How long the kernel may keep a tree directory's or rendered file's attributes.
const TREE_ATTR_TTL: Duration = Duration::from_secs(1);

/// The filesystem the FUSE adapter serves: the vault view, or a projected tree over it.
pub struct ProjectedFs {
    vault: Arc<SecretFs>,
    tree: Option<Arc<Tree>>,
}

/// A projected tree's state.
struct Tree {
    config_path: PathBuf,
    projection: RwLock<Arc<Projection>>,
    /// Whether the mount lets other users in: a reloaded config that needs it and lacks it is
    /// refused, as at mount time.
    allow_other: bool,
    /// `--file-mode`: the mode of entries that give none.
    file_mode: u16,
    nodes: Mutex<TreeNodes>,
    handles: Mutex<HashMap<u64, TreeHandle>>,
    /// Translated snapshots of vault view directories (by the vault view's handle), so a long
    /// `readdir` is translated once.
    vault_dirs: Mutex<HashMap<u64, TranslatedListing>>,
    next_fh: AtomicU64,
    renders: render::Renders,
    /// Groups and files with hooks of the current config.
    watches: RwLock<Arc<groups::Watches>>,
    /// How long a group waits for its other members after one changed.
    settle: Duration,
    /// Where hooks run (set when watching starts).
    runtime: OnceLock<tokio::runtime::Handle>,
    notifier: OnceLock<Arc<dyn KernelNotifier>>,
    mounted_at: SystemTime,
}

/// A vault view directory's snapshot and the same in this mount's inode numbers.
type TranslatedListing = (Arc<Vec<DirEntry>>, Arc<Vec<DirEntry>>);

enum TreeHandle {
    /// A rendered file, as rendered when it was opened.
    Rendered(Arc<Zeroizing<Vec<u8>>>),
    /// A tree directory's listing, taken when reading starts.
    Dir(Option<Arc<Vec<DirEntry>>>),
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn vault_ino(ino: u64) -> Option<u64> {
    ino.checked_sub(VAULT_VIEW_BASE).filter(|&i| i > 0)
}

fn from_vault(mut entry: Entry) -> Entry {
    entry.attr.ino += VAULT_VIEW_BASE;
    entry
}

fn not_found(name: &str) -> FsError {
    FsError::NotFound {
        name: name.to_owned(),
    }
}

impl ProjectedFs {
    /// The vault's own layout at the root, exactly as without projections.
    pub fn vault_only(vault: Arc<SecretFs>) -> Arc<ProjectedFs> {
        Arc::new(ProjectedFs { vault, tree: None })
    }

    /// The tree `projection` (read from `config_path`, re-read on [`ProjectedFs::reload`]) over
    /// `vault`.
    pub fn projected(
        vault: Arc<SecretFs>,
        projection: Projection,
        config_path: PathBuf,
        allow_other: bool,
    ) -> Arc<ProjectedFs> {
        let watches = groups::Watches::of(&projection, None);
        let tree = Tree {
            config_path,
            projection: RwLock::new(Arc::new(projection)),
            allow_other,
            file_mode: vault.config().file_mode,
            nodes: Mutex::new(TreeNodes::default()),
            handles: Mutex::new(HashMap::new()),
            vault_dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            renders: render::Renders::default(),
            watches: RwLock::new(Arc::new(watches)),
            // One more refresh after the one that saw a change, with room for its jitter and
            // for the watcher's period: a member set a second after another is still waited for.
            settle: {
                let interval = vault.config().refresh.unwrap_or(vault.config().cache_ttl);
                interval * 2 + interval / 5 + groups::WATCH_PERIOD
            },
            runtime: OnceLock::new(),
            notifier: OnceLock::new(),
            mounted_at: SystemTime::now(),
        };
        Arc::new(ProjectedFs {
            vault,
            tree: Some(Arc::new(tree)),
        })
    }

    /// The vault view (the vault's own layout).
    pub fn vault(&self) -> &Arc<SecretFs> {
        &self.vault
    }

    pub fn config(&self) -> &FsConfig {
        self.vault.config()
    }

    /// Connect the kernel cache invalidation (set once, by the mount). In a projected mount
    /// the vault view's invalidations are translated, and reach the tree's files of each secret.
    pub fn set_notifier(&self, notifier: Arc<dyn KernelNotifier>) {
        match &self.tree {
            None => self.vault.set_notifier(notifier),
            Some(tree) => {
                let _ = tree.notifier.set(notifier.clone());
                self.vault.set_notifier(Arc::new(VaultViewNotifier {
                    outer: notifier,
                    tree: Arc::downgrade(tree),
                }));
            }
        }
    }

    pub fn scratch_space(&self) -> (u64, u64) {
        self.vault.scratch_space()
    }

    /// SIGHUP: re-read the config and its templates (a bad one is refused with a log line and
    /// the old one stays), then forget every cached value and listing.
    pub fn reload(&self) {
        if let Some(tree) = &self.tree {
            tree.reload(self.vault.config());
        }
        self.vault.drop_caches();
    }

    pub async fn commit_pending(&self) -> usize {
        self.vault.commit_pending().await
    }

    fn tree_handle(&self, fh: u64) -> Option<&Arc<Tree>> {
        self.tree.as_ref().filter(|_| fh & TREE_HANDLE_BIT != 0)
    }

    // ----- names and attributes ---------------------------------------------------------

    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Entry, FsError> {
        let Some(tree) = &self.tree else {
            return self.vault.lookup(parent, name).await;
        };
        if let Some(parent) = vault_ino(parent) {
            return self.vault.lookup(parent, name).await.map(from_vault);
        }
        let key = tree.child_key(parent, name)?;
        let resolved = tree.resolve(&key).ok_or_else(|| not_found(name))?;
        let (mut entry, holds) = self.entry_of(tree, 0, &resolved, None, 0).await?;
        if matches!(resolved, Resolved::Vault) {
            return Ok(entry);
        }
        let ino = {
            let mut nodes = tree.nodes.lock();
            let ino = nodes.ino_for(key);
            nodes.remember(ino);
            ino
        };
        self.hold(tree, ino, holds);
        entry.attr.ino = ino;
        Ok(entry)
    }

    pub fn forget(&self, ino: u64, count: u64) {
        let Some(tree) = &self.tree else {
            return self.vault.forget(ino, count);
        };
        if let Some(ino) = vault_ino(ino) {
            return self.vault.forget(ino, count);
        }
        if let Some(held) = tree.nodes.lock().forget(ino, count) {
            self.vault.forget(held, 1);
        }
    }

    pub async fn getattr_as(&self, ino: u64, fh: Option<u64>, pid: u32) -> Result<Entry, FsError> {
        let Some(tree) = &self.tree else {
            return self.vault.getattr_as(ino, fh, pid).await;
        };
        if let Some(ino) = vault_ino(ino) {
            return self.vault.getattr_as(ino, fh, pid).await.map(from_vault);
        }
        let resolved = tree.resolve_ino(ino)?;
        let (entry, holds) = self.entry_of(tree, ino, &resolved, fh, pid).await?;
        self.hold(tree, ino, holds);
        Ok(entry)
    }

    /// The entry of a resolved node numbered `ino`, and the vault view's inode it now holds a
    /// lookup of (a secret's file: the caller keeps or gives back that lookup).
    async fn entry_of(
        &self,
        tree: &Tree,
        ino: u64,
        resolved: &Resolved,
        fh: Option<u64>,
        pid: u32,
    ) -> Result<(Entry, Option<u64>), FsError> {
        let config = self.vault.config();
        match resolved {
            Resolved::Dir(_) => {
                let projection = tree.projection();
                Ok((
                    tree.dir_entry(ino, projection.uid, projection.gid, config),
                    None,
                ))
            }
            Resolved::ConventionDir { entry, .. } => {
                Ok((tree.dir_entry(ino, entry.uid, entry.gid, config), None))
            }
            Resolved::Vault => Ok((from_vault(self.vault.getattr(ROOT_INO).await?), None)),
            Resolved::Secret {
                path,
                secret,
                looks,
                dir_entry,
            } => {
                let found = self.vault.lookup(ROOT_INO, secret).await?;
                let inner = found.attr.ino;
                let checked = async {
                    if let Some(dir_entry) = dir_entry {
                        self.check_selected(path, secret, dir_entry).await?;
                    }
                    if fh.is_some() || pid != 0 {
                        self.vault.getattr_as(inner, fh, pid).await
                    } else {
                        Ok(found)
                    }
                };
                match checked.await {
                    Ok(entry) => Ok((dressed(entry, ino, *looks, config.read_only), Some(inner))),
                    Err(error) => {
                        self.vault.forget(inner, 1);
                        Err(error)
                    }
                }
            }
            Resolved::Rendered { looks, .. }
            | Resolved::Grouped { looks, .. }
            | Resolved::Certificate { looks, .. } => {
                let shown = self.shown(tree, resolved).await?;
                Ok((rendered_entry(ino, &shown, *looks, tree.mounted_at), None))
            }
        }
    }

    /// What a file the tree makes shows now: a render, a group's published version, a
    /// certificate's part. (Not for other nodes.)
    async fn shown(&self, tree: &Tree, resolved: &Resolved) -> Result<Arc<SecretData>, FsError> {
        match resolved {
            Resolved::Rendered { path, entry, .. } => self.render(tree, path, entry).await,
            Resolved::Grouped { path, group, .. } => self.published(tree, group, path).await,
            Resolved::Certificate {
                path,
                certificate,
                part,
                ..
            } => self.certificate_file(path, certificate, *part).await,
            other => Err(other.unchangeable()),
        }
    }

    /// A `[[dir]]` file exists only for a secret the selection takes and the convention names
    /// exactly so (`db_password` is not `DB_PASSWORD`'s file). A file created but not written
    /// yet (no value) is there.
    async fn check_selected(
        &self,
        path: &str,
        secret: &str,
        dir_entry: &projection::Entry,
    ) -> Result<(), FsError> {
        let EntryKind::Dir { select, names } = &dir_entry.kind else {
            return Ok(());
        };
        let Some(data) = self.vault.current_value(secret).await? else {
            return Ok(());
        };
        let tags = render::tags_of(data.tags.as_ref());
        let file_name = path.rsplit('/').next().unwrap_or(path);
        if select.key_for(*names, &data.name, tags).as_deref() == Some(file_name) {
            Ok(())
        } else {
            Err(not_found(path))
        }
    }

    /// Tree node `ino` now holds a lookup of the vault view's inode `holds` (when a secret):
    /// keep exactly one per node.
    fn hold(&self, tree: &Tree, ino: u64, holds: Option<u64>) {
        let Some(inner) = holds else { return };
        let give_back = tree.nodes.lock().hold(ino, inner);
        if let Some(give_back) = give_back {
            self.vault.forget(give_back, 1);
        }
    }

    /// The vault view's inode of the secret behind tree node `ino` (holding it), or what the
    /// node is otherwise.
    async fn secret_of(&self, tree: &Tree, ino: u64) -> Result<(Resolved, Option<u64>), FsError> {
        let resolved = tree.resolve_ino(ino)?;
        let inner = match &resolved {
            Resolved::Secret {
                path,
                secret,
                dir_entry,
                ..
            } => {
                let found = self.vault.lookup(ROOT_INO, secret).await?;
                let inner = found.attr.ino;
                if let Some(dir_entry) = dir_entry {
                    if let Err(error) = self.check_selected(path, secret, dir_entry).await {
                        self.vault.forget(inner, 1);
                        return Err(error);
                    }
                }
                self.hold(tree, ino, Some(inner));
                Some(inner)
            }
            _ => None,
        };
        Ok((resolved, inner))
    }

    pub async fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        changes: SetAttr,
    ) -> Result<Entry, FsError> {
        let Some(tree) = &self.tree else {
            return self.vault.setattr(ino, fh, changes).await;
        };
        if let Some(ino) = vault_ino(ino) {
            return self.vault.setattr(ino, fh, changes).await.map(from_vault);
        }
        let current = self.getattr_as(ino, fh, 0).await?;
        let (resolved, inner) = self.secret_of(tree, ino).await?;
        let path = resolved.path();
        let config_says = |what: &str| FsError::NotPermitted {
            name: path.clone(),
            reason: format!(
                "its {what} is set by the config ({})",
                tree.config_path.display()
            ),
        };
        if changes
            .mode
            .is_some_and(|mode| (mode & 0o7777) as u16 != current.attr.perm)
        {
            warn!(file = %path, "chmod refused: the mode of a projected file is set by its config entry");
            return Err(config_says("mode"));
        }
        if changes.uid.is_some_and(|uid| uid != current.attr.uid)
            || changes.gid.is_some_and(|gid| gid != current.attr.gid)
        {
            warn!(file = %path, "chown refused: the owner of a projected file is set by its config entry");
            return Err(config_says("owner"));
        }
        let rest = SetAttr {
            mode: None,
            uid: None,
            gid: None,
            ..changes
        };
        match (&resolved, inner) {
            (Resolved::Secret { looks, .. }, Some(inner)) => {
                if looks.read_only && (rest.size.is_some() || rest.mtime.is_some()) {
                    return Err(FsError::ReadOnly { name: path });
                }
                let entry = self.vault.setattr(inner, fh, rest).await?;
                Ok(dressed(entry, ino, *looks, self.config().read_only))
            }
            (
                Resolved::Rendered { .. } | Resolved::Grouped { .. } | Resolved::Certificate { .. },
                _,
            ) if rest.size.is_some() || rest.mtime.is_some() => {
                Err(FsError::ReadOnly { name: path })
            }
            _ if rest.size.is_some() || rest.mtime.is_some() => {
                Err(FsError::IsADirectory { name: path })
            }
            _ => Ok(current),
        }
    }

    // ----- namespace --------------------------------------------------------------------

    pub async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        let Some(tree) = &self.tree else {
            return self.vault.unlink(parent, name).await;
        };
        if let Some(parent) = vault_ino(parent) {
            return self.vault.unlink(parent, name).await;
        }
        let key = tree.child_key(parent, name)?;
        match tree.resolve(&key).ok_or_else(|| not_found(name))? {
            Resolved::Secret {
                path,
                secret,
                looks,
                dir_entry,
            } => {
                if looks.read_only {
                    return Err(FsError::ReadOnly { name: path });
                }
                if let Some(dir_entry) = &dir_entry {
                    self.check_selected(&path, &secret, dir_entry).await?;
                }
                info!(file = %path, secret = %secret, "rm of a projected file deletes its secret");
                self.vault.unlink(ROOT_INO, &secret).await
            }
            resolved => Err(resolved.unchangeable()),
        }
    }

    /// Renames stay inside the vault view. Anything else answers EXDEV, so `mv` copies then
    /// removes, through the files' own rules (a rendered source is not removed).
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        if self.tree.is_none() {
            return self
                .vault
                .rename(parent, name, new_parent, new_name, no_replace)
                .await;
        }
        match (vault_ino(parent), vault_ino(new_parent)) {
            (Some(parent), Some(new_parent)) => {
                self.vault
                    .rename(parent, name, new_parent, new_name, no_replace)
                    .await
            }
            _ => Err(FsError::CrossDevice {
                name: name.to_owned(),
                reason: "projected files are renamed by their config, not by mv".into(),
            }),
        }
    }

    // ----- files ------------------------------------------------------------------------

    pub async fn open(&self, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
        let Some(tree) = &self.tree else {
            return self.vault.open(ino, mode).await;
        };
        if let Some(ino) = vault_ino(ino) {
            return self.vault.open(ino, mode).await;
        }
        let writes = mode.write || mode.truncate || mode.append;
        match self.secret_of(tree, ino).await? {
            (Resolved::Secret { path, looks, .. }, Some(inner)) => {
                if looks.read_only && writes {
                    return Err(FsError::ReadOnly { name: path });
                }
                self.vault.open(inner, mode).await
            }
            (
                resolved @ (Resolved::Rendered { .. }
                | Resolved::Grouped { .. }
                | Resolved::Certificate { .. }),
                _,
            ) => {
                if writes {
                    return Err(resolved.unchangeable());
                }
                let shown = self.shown(tree, &resolved).await?;
                let content = Arc::new(Zeroizing::new(shown.content.to_vec()));
                let fh = tree.new_fh();
                tree.handles
                    .lock()
                    .insert(fh, TreeHandle::Rendered(content));
                Ok(Opened {
                    fh,
                    keep_cache: false,
                    direct_io: true,
                })
            }
            (resolved, _) => Err(FsError::IsADirectory {
                name: resolved.path(),
            }),
        }
    }

    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
    ) -> Result<(Entry, Opened), FsError> {
        let Some(tree) = &self.tree else {
            return self.vault.create(parent, name, mode).await;
        };
        if let Some(parent) = vault_ino(parent) {
            let (entry, opened) = self.vault.create(parent, name, mode).await?;
            return Ok((from_vault(entry), opened));
        }
        let key = tree.child_key(parent, name)?;
        let Some(resolved) = tree.resolve(&key) else {
            let path = tree.path_of(&key);
            warn!(
                file = %path,
                config = %tree.config_path.display(),
                "cannot create a file the config does not name; add a [[file]] entry, or create \
                 it in a [[dir]] whose convention maps the name to a secret"
            );
            return Err(FsError::AccessDenied {
                name: path,
                reason: "the config names no such file".into(),
            });
        };
        match resolved {
            Resolved::Secret {
                path,
                secret,
                looks,
                dir_entry,
            } => {
                if looks.read_only {
                    return Err(FsError::ReadOnly { name: path });
                }
                if let Some(tag) = dir_entry.as_ref().and_then(new_secret_needs_tag) {
                    warn!(
                        file = %path,
                        "cannot create a file in a [[dir]] that selects by tag {tag}: the new \
                         secret would not carry the tag; create it with the tag in the vault"
                    );
                    return Err(FsError::AccessDenied {
                        name: path,
                        reason: format!("the directory shows secrets tagged {tag} only"),
                    });
                }
                let (entry, opened) = self.vault.create(ROOT_INO, &secret, mode).await?;
                let inner = entry.attr.ino;
                let ino = {
                    let mut nodes = tree.nodes.lock();
                    let ino = nodes.ino_for(key);
                    nodes.remember(ino);
                    ino
                };
                self.hold(tree, ino, Some(inner));
                Ok((dressed(entry, ino, looks, self.config().read_only), opened))
            }
            resolved => Err(resolved.unchangeable()),
        }
    }

    pub async fn read(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Zeroizing<Vec<u8>>, FsError> {
        let Some(tree) = self.tree_handle(fh) else {
            return self.vault.read(fh, offset, size).await;
        };
        let content = match tree.handles.lock().get(&fh) {
            Some(TreeHandle::Rendered(content)) => content.clone(),
            _ => return Err(FsError::BadHandle { fh }),
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(content.len());
        let end = start.saturating_add(size as usize).min(content.len());
        Ok(Zeroizing::new(content[start..end].to_vec()))
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        match self.tree_handle(fh) {
            None => self.vault.write(fh, offset, data).await,
            // Rendered files are opened read-only.
            Some(_) => Err(FsError::BadHandle { fh }),
        }
    }

    pub async fn flush_by(&self, fh: u64, pid: u32) -> Result<(), FsError> {
        match self.tree_handle(fh) {
            None => self.vault.flush_by(fh, pid).await,
            Some(_) => Ok(()),
        }
    }

    pub async fn fsync(&self, fh: u64) -> Result<(), FsError> {
        match self.tree_handle(fh) {
            None => self.vault.fsync(fh).await,
            Some(_) => Ok(()),
        }
    }

    pub async fn release(&self, fh: u64) -> Result<(), FsError> {
        match self.tree_handle(fh) {
            None => self.vault.release(fh).await,
            Some(tree) => {
                tree.handles.lock().remove(&fh);
                Ok(())
            }
        }
    }

    // ----- extended attributes ----------------------------------------------------------

    /// The vault view's inode for attribute calls on `ino`, or `Err(what it is)` for a tree
    /// node that is not a secret's file.
    async fn xattr_target(&self, ino: u64) -> Result<Result<u64, Resolved>, FsError> {
        let Some(tree) = &self.tree else {
            return Ok(Ok(ino));
        };
        if let Some(ino) = vault_ino(ino) {
            return Ok(Ok(ino));
        }
        Ok(match self.secret_of(tree, ino).await? {
            (_, Some(inner)) => Ok(inner),
            (resolved, None) => Err(resolved),
        })
    }

    pub async fn listxattr(&self, ino: u64) -> Result<Vec<String>, FsError> {
        match self.xattr_target(ino).await? {
            Ok(inner) => self.vault.listxattr(inner).await,
            Err(_) => Ok(Vec::new()),
        }
    }

    pub async fn getxattr(&self, ino: u64, attribute: &str) -> Result<Vec<u8>, FsError> {
        match self.xattr_target(ino).await? {
            Ok(inner) => self.vault.getxattr(inner, attribute).await,
            Err(resolved) => Err(FsError::NoData {
                name: resolved.path(),
                attribute: attribute.to_owned(),
            }),
        }
    }

    pub async fn setxattr_as(
        &self,
        ino: u64,
        attribute: &str,
        value: &[u8],
        how: XattrSet,
    ) -> Result<(), FsError> {
        match self.xattr_target(ino).await? {
            Ok(inner) => {
                self.check_secret_writable(ino)?;
                self.vault.setxattr_as(inner, attribute, value, how).await
            }
            Err(resolved) => Err(resolved.refusal()),
        }
    }

    pub async fn removexattr(&self, ino: u64, attribute: &str) -> Result<(), FsError> {
        match self.xattr_target(ino).await? {
            Ok(inner) => {
                self.check_secret_writable(ino)?;
                self.vault.removexattr(inner, attribute).await
            }
            Err(resolved) => Err(resolved.refusal()),
        }
    }

    /// A read-only secret entry refuses property changes too.
    fn check_secret_writable(&self, ino: u64) -> Result<(), FsError> {
        let Some(tree) = &self.tree else {
            return Ok(());
        };
        if vault_ino(ino).is_some() {
            return Ok(());
        }
        match tree.resolve_ino(ino)? {
            Resolved::Secret { path, looks, .. } if looks.read_only => {
                Err(FsError::ReadOnly { name: path })
            }
            _ => Ok(()),
        }
    }
}

/// The tag a new secret would need to show in a `[[dir]]` that selects by tag.
fn new_secret_needs_tag(entry: &projection::Entry) -> Option<String> {
    match &entry.kind {
        EntryKind::Dir { select, .. } => select.tag().map(|(k, v)| format!("{k}={v}")),
        _ => None,
    }
}

/// Where `projection` gives files (or the tree's directories) to another user than the one
/// running akvfs, which only `--allow-other` lets in: the reason, naming the entry.
pub fn projection_needs_allow_other(
    projection: &Projection,
    file_mode: u16,
    dir_mode: u16,
) -> Option<String> {
    // SAFETY: getuid/getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    projection.needs_allow_other(uid, gid, file_mode, dir_mode)
}

/// A secret's entry of the vault view shown as tree node `ino` with the config's owner and
/// mode. A disabled secret keeps mode 0; a read-only mount has no write bits. A read-only
/// entry shows its configured mode (SPEC §8: writes answer EROFS; EACCES when the mode forbids).
fn dressed(mut entry: Entry, ino: u64, looks: Looks, mount_read_only: bool) -> Entry {
    entry.attr.ino = ino;
    entry.attr.uid = looks.uid;
    entry.attr.gid = looks.gid;
    if entry.attr.perm != 0 {
        entry.attr.perm = if mount_read_only {
            looks.mode & !0o222
        } else {
            looks.mode
        };
    }
    entry
}

fn rendered_entry(
    ino: u64,
    rendered: &super::core::SecretData,
    looks: Looks,
    mounted_at: SystemTime,
) -> Entry {
    let updated = rendered
        .attributes
        .updated
        .filter(|&s| s >= 0)
        .map_or(mounted_at, |s| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s.unsigned_abs())
        });
    Entry {
        attr: Attr {
            ino,
            kind: FileKind::File,
            size: rendered.content.len() as u64,
            perm: looks.mode,
            nlink: 1,
            uid: looks.uid,
            gid: looks.gid,
            mtime: updated,
            ctime: updated,
            crtime: updated,
        },
        ttl: TREE_ATTR_TTL,
    }
}

/// The vault view's invalidations, in the projected mount's inode numbers; an inode a tree
/// node holds is invalidated under the tree's name too.
struct VaultViewNotifier {
    outer: Arc<dyn KernelNotifier>,
    tree: Weak<Tree>,
}

impl KernelNotifier for VaultViewNotifier {
    fn inval_inode(&self, ino: u64) {
        self.outer.inval_inode(ino + VAULT_VIEW_BASE);
        if let Some(tree) = self.tree.upgrade() {
            for held_by in tree.nodes.lock().holders_of(ino) {
                self.outer.inval_inode(held_by);
            }
        }
    }

    fn inval_entry(&self, parent: u64, name: &str) {
        self.outer.inval_entry(parent + VAULT_VIEW_BASE, name);
    }
}
