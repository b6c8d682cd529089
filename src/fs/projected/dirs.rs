//! Directories of a projected mount: the tree's own (its configured entries; a `[[dir]]`'s
//! files named by its convention) and the vault view's, translated to this mount's inodes.

use std::sync::Arc;

use super::*;

impl ProjectedFs {
    pub fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let Some(tree) = &self.tree else {
            return self.vault.opendir(ino);
        };
        if let Some(ino) = vault_ino(ino) {
            return self.vault.opendir(ino);
        }
        match tree.resolve_ino(ino)? {
            Resolved::Dir(_) | Resolved::ConventionDir { .. } => {
                let fh = tree.new_fh();
                tree.handles.lock().insert(fh, TreeHandle::Dir(None));
                Ok(fh)
            }
            resolved => Err(FsError::NotADirectory {
                name: resolved.path(),
            }),
        }
    }

    pub fn releasedir(&self, fh: u64) {
        match &self.tree {
            None => self.vault.releasedir(fh),
            Some(tree) if fh & TREE_HANDLE_BIT != 0 => {
                tree.handles.lock().remove(&fh);
            }
            Some(tree) => {
                tree.vault_dirs.lock().remove(&fh);
                self.vault.releasedir(fh);
            }
        }
    }

    /// Entries from `offset` on; the listing is taken when reading starts (offset 0).
    pub async fn readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> Result<Arc<Vec<DirEntry>>, FsError> {
        let Some(tree) = &self.tree else {
            return self.vault.readdir(ino, fh, offset).await;
        };
        if let Some(inner_ino) = vault_ino(ino) {
            let entries = self.vault.readdir(inner_ino, fh, offset).await?;
            let mut translated = tree.vault_dirs.lock();
            if let Some((inner, outer)) = translated.get(&fh) {
                if Arc::ptr_eq(inner, &entries) {
                    return Ok(outer.clone());
                }
            }
            let outer: Arc<Vec<DirEntry>> = Arc::new(
                entries
                    .iter()
                    .map(|e| DirEntry {
                        ino: e.ino + VAULT_VIEW_BASE,
                        ..e.clone()
                    })
                    .collect(),
            );
            translated.insert(fh, (entries, outer.clone()));
            return Ok(outer);
        }
        if offset > 0 {
            if let Some(TreeHandle::Dir(Some(entries))) = tree.handles.lock().get(&fh) {
                return Ok(entries.clone());
            }
        }
        let entries = Arc::new(self.list_tree_dir(tree, ino).await?);
        if let Some(TreeHandle::Dir(slot)) = tree.handles.lock().get_mut(&fh) {
            *slot = Some(entries.clone());
        }
        Ok(entries)
    }

    async fn list_tree_dir(&self, tree: &Tree, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let mut names: Vec<(u64, FileKind, String)> = vec![
            (ino, FileKind::Directory, ".".into()),
            (ROOT_INO, FileKind::Directory, "..".into()),
        ];
        match tree.resolve_ino(ino)? {
            Resolved::Dir(path) => {
                let projection = tree.projection();
                let children = projection.children(&path);
                // A configured secret's file is there when the secret is (a listing, no get).
                let listed = if children.iter().any(|(_, node)| is_secret_entry(node)) {
                    self.vault.listed_secrets().await.ok()
                } else {
                    None
                };
                for (name, node) in children {
                    let child = join(&path, &name);
                    let kind = match node {
                        projection::Node::Dir => FileKind::Directory,
                        projection::Node::Vault => {
                            names.push((VAULT_VIEW_BASE + ROOT_INO, FileKind::Directory, name));
                            continue;
                        }
                        projection::Node::Entry(entry) => match &entry.kind {
                            EntryKind::Dir { .. } => FileKind::Directory,
                            EntryKind::Secret { name: secret } => {
                                let there = listed.as_ref().is_none_or(|listing| {
                                    listing
                                        .items()
                                        .iter()
                                        .any(|l| l.name().eq_ignore_ascii_case(secret))
                                });
                                if !there {
                                    continue;
                                }
                                FileKind::File
                            }
                            EntryKind::Template { .. }
                            | EntryKind::Format { .. }
                            | EntryKind::Certificate { .. } => FileKind::File,
                        },
                    };
                    let child_ino = tree.nodes.lock().ino_for(TreeKey::Path(child));
                    names.push((child_ino, kind, name));
                }
            }
            Resolved::ConventionDir { path, entry } => {
                let EntryKind::Dir {
                    select,
                    names: convention,
                } = &entry.kind
                else {
                    return Err(FsError::NotADirectory { name: path });
                };
                let listing = self.vault.listed_secrets().await?;
                let mut seen = std::collections::HashSet::new();
                let mut nodes = tree.nodes.lock();
                for listed in listing.items() {
                    let tags = render::tags_of(listed.tags());
                    let Some(file) = select.key_for(*convention, listed.name(), tags) else {
                        continue;
                    };
                    if !seen.insert(file.clone()) {
                        continue;
                    }
                    let child_ino = nodes.ino_for(TreeKey::DirFile(path.clone(), file.clone()));
                    names.push((child_ino, FileKind::File, file));
                }
            }
            resolved => {
                return Err(FsError::NotADirectory {
                    name: resolved.path(),
                })
            }
        }
        Ok(DirEntry::numbered(names))
    }
}

fn is_secret_entry(node: &projection::Node<'_>) -> bool {
    matches!(node, projection::Node::Entry(e) if matches!(e.kind, EntryKind::Secret { .. }))
}
