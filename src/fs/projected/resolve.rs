//! What a node of the projected tree is under the current config ([`Resolved`]), and the
//! tree's state: its config (re-read on SIGHUP), attributes of its directories, paths.

use std::sync::Arc;

use super::*;

/// How a configured file looks: owner and mode.
#[derive(Clone, Copy, Debug)]
pub(super) struct Looks {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u16,
    pub(super) read_only: bool,
}

/// What a tree node is under the current config.
pub(super) enum Resolved {
    /// A directory of the tree ("" = the root).
    Dir(String),
    /// The `[vault] path` directory.
    Vault,
    /// A secret's own file under another name.
    Secret {
        path: String,
        secret: String,
        looks: Looks,
        /// For a `[[dir]]` file: the entry, to check the secret is selected and named so.
        dir_entry: Option<projection::Entry>,
    },
    /// A secret's file in a group: the group's published version, read-only.
    Grouped {
        path: String,
        group: String,
        looks: Looks,
    },
    /// A template or format file.
    Rendered {
        path: String,
        entry: projection::Entry,
        looks: Looks,
    },
    /// A certificate's file (`certificate` + `part`): read-only, made from its backing secret.
    Certificate {
        path: String,
        certificate: String,
        part: crate::certificate_files::Part,
        looks: Looks,
    },
    /// A `[[dir]]` directory.
    ConventionDir {
        path: String,
        entry: projection::Entry,
    },
}

impl Resolved {
    pub(super) fn path(&self) -> String {
        match self {
            Resolved::Dir(path)
            | Resolved::Secret { path, .. }
            | Resolved::Grouped { path, .. }
            | Resolved::Rendered { path, .. }
            | Resolved::Certificate { path, .. }
            | Resolved::ConventionDir { path, .. } => path.clone(),
            Resolved::Vault => "the vault's own layout".into(),
        }
    }

    /// Why a node other than a secret's own file cannot be created, removed or written.
    pub(super) fn unchangeable(&self) -> FsError {
        match self {
            Resolved::Rendered { path, .. }
            | Resolved::Grouped { path, .. }
            | Resolved::Certificate { path, .. } => FsError::ReadOnly { name: path.clone() },
            _ => FsError::IsADirectory { name: self.path() },
        }
    }

    /// Why a property change is refused on a node that is not a secret's file.
    pub(super) fn refusal(&self) -> FsError {
        match self {
            Resolved::Rendered { path, .. }
            | Resolved::Grouped { path, .. }
            | Resolved::Certificate { path, .. } => FsError::ReadOnly { name: path.clone() },
            _ => FsError::NotPermitted {
                name: self.path(),
                reason: "directories of a projected tree have no properties".into(),
            },
        }
    }
}

impl Tree {
    pub(super) fn projection(&self) -> Arc<Projection> {
        self.projection.read().clone()
    }

    pub(super) fn watches(&self) -> Arc<groups::Watches> {
        self.watches.read().clone()
    }

    /// Hooks run on `runtime` from now on: the watches are made again with their hooks.
    pub(super) fn set_runtime(&self, runtime: &tokio::runtime::Handle) {
        if self.runtime.set(runtime.clone()).is_ok() {
            let watches = groups::Watches::of(&self.projection(), Some(runtime));
            *self.watches.write() = Arc::new(watches);
        }
    }

    pub(super) fn resolve_path(&self, path: &str) -> Result<Resolved, FsError> {
        self.resolve(&TreeKey::Path(path.to_owned()))
            .ok_or_else(|| not_found(path))
    }

    pub(super) fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed) | TREE_HANDLE_BIT
    }

    pub(super) fn dir_entry(&self, ino: u64, uid: u32, gid: u32, config: &FsConfig) -> Entry {
        // A read-only `[[dir]]` keeps its mode too: creating in it answers EROFS.
        let perm = if config.read_only {
            config.dir_mode & !0o222
        } else {
            config.dir_mode
        };
        Entry {
            attr: Attr {
                ino,
                kind: FileKind::Directory,
                size: 0,
                perm,
                nlink: 2,
                uid,
                gid,
                mtime: self.mounted_at,
                ctime: self.mounted_at,
                crtime: self.mounted_at,
            },
            ttl: TREE_ATTR_TTL,
        }
    }

    /// The key of `name` inside tree directory `parent`.
    pub(super) fn child_key(&self, parent: u64, name: &str) -> Result<TreeKey, FsError> {
        match self.resolve_ino(parent)? {
            Resolved::Dir(path) => Ok(TreeKey::Path(join(&path, name))),
            Resolved::ConventionDir { path, .. } => Ok(TreeKey::DirFile(path, name.to_owned())),
            resolved => Err(FsError::NotADirectory {
                name: resolved.path(),
            }),
        }
    }

    pub(super) fn path_of(&self, key: &TreeKey) -> String {
        match key {
            TreeKey::Path(path) => path.clone(),
            TreeKey::DirFile(dir, file) => join(dir, file),
        }
    }

    pub(super) fn resolve_ino(&self, ino: u64) -> Result<Resolved, FsError> {
        let key = self
            .nodes
            .lock()
            .key_of(ino)
            .ok_or_else(|| not_found(&format!("inode {ino}")))?;
        self.resolve(&key)
            .ok_or_else(|| not_found(&self.path_of(&key)))
    }

    /// What `key` is under the current config; `None`: nothing.
    pub(super) fn resolve(&self, key: &TreeKey) -> Option<Resolved> {
        let projection = self.projection();
        let file_mode = |entry: &projection::Entry| entry.mode;
        let looks = |entry: &projection::Entry, default_mode: u16| Looks {
            uid: entry.uid,
            gid: entry.gid,
            mode: file_mode(entry).unwrap_or(default_mode),
            read_only: entry.read_only,
        };
        let default_mode = self.file_mode;
        match key {
            TreeKey::Path(path) => match projection.node(path)? {
                projection::Node::Dir => Some(Resolved::Dir(path.clone())),
                projection::Node::Vault => Some(Resolved::Vault),
                projection::Node::Entry(entry) => Some(match &entry.kind {
                    EntryKind::Secret { .. } if entry.group.is_some() => Resolved::Grouped {
                        path: path.clone(),
                        group: entry.group.clone().unwrap_or_default(),
                        looks: looks(entry, default_mode),
                    },
                    EntryKind::Secret { name } => Resolved::Secret {
                        path: path.clone(),
                        secret: name.clone(),
                        looks: looks(entry, default_mode),
                        dir_entry: None,
                    },
                    EntryKind::Template { .. } | EntryKind::Format { .. } => Resolved::Rendered {
                        path: path.clone(),
                        entry: entry.clone(),
                        looks: looks(entry, default_mode),
                    },
                    EntryKind::Dir { .. } => Resolved::ConventionDir {
                        path: path.clone(),
                        entry: entry.clone(),
                    },
                    EntryKind::Certificate { name, part } => Resolved::Certificate {
                        path: path.clone(),
                        certificate: name.clone(),
                        part: *part,
                        looks: looks(entry, default_mode),
                    },
                }),
            },
            TreeKey::DirFile(dir, file) => {
                let projection::Node::Entry(entry) = projection.node(dir)? else {
                    return None;
                };
                let EntryKind::Dir { select, names } = &entry.kind else {
                    return None;
                };
                let secret = select.secret_for(*names, file)?;
                Some(Resolved::Secret {
                    path: join(dir, file),
                    secret,
                    looks: looks(entry, default_mode),
                    dir_entry: Some(entry.clone()),
                })
            }
        }
    }

    /// SIGHUP: the config again. The kernel forgets what it cached of the tree.
    pub(super) fn reload(&self, config: &FsConfig) {
        let projection = match Projection::load(&self.config_path) {
            Ok(projection) => projection,
            Err(error) => {
                warn!(%error, "SIGHUP: the config is refused; the old one stays");
                return;
            }
        };
        if !self.allow_other {
            if let Some(why) =
                projection_needs_allow_other(&projection, config.file_mode, config.dir_mode)
            {
                warn!(reason = %why, "SIGHUP: the config is refused (the mount has no allow_other); the old one stays");
                return;
            }
        }
        *self.watches.write() = Arc::new(groups::Watches::of(&projection, self.runtime.get()));
        *self.projection.write() = Arc::new(projection);
        self.renders.clear();
        let (inodes, entries) = self.nodes.lock().all_names();
        if let Some(notifier) = self.notifier.get() {
            for ino in inodes {
                notifier.inval_inode(ino);
            }
            for (parent, name) in entries {
                notifier.inval_entry(parent, &name);
            }
        }
        info!(config = %self.config_path.display(), "SIGHUP: config re-read");
    }
}
