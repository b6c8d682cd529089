//! Directories: opendir, readdir snapshots, the listing of each view.

use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::fs::inode::{CERTIFICATES_DIR_INO, CERTIFICATES_DIR_NAME};

impl SecretFs {
    // ----- directories ------------------------------------------------------------------

    pub fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let (key, name) = self.node(ino)?;
        match key {
            NodeKey::Secret(_)
            | NodeKey::Version(..)
            | NodeKey::Deleted(_)
            | NodeKey::Scratch(_)
            | NodeKey::CertificateFile(..) => Err(FsError::NotADirectory { name }),
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

    pub(super) async fn list_dir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
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
                names.push((
                    CERTIFICATES_DIR_INO,
                    FileKind::Directory,
                    CERTIFICATES_DIR_NAME.into(),
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
                let scratch: Vec<(String, u64)> = self
                    .scratch
                    .lock()
                    .iter()
                    .map(|(name, file)| (name.clone(), file.ino))
                    .collect();
                // A scratch file (a tool's temporary) named like a secret listed since is
                // what lookup finds: one entry, the scratch file's.
                names.retain(|(_, kind, name)| {
                    *kind == FileKind::Directory
                        || !(shadowed.contains(&name.to_ascii_lowercase())
                            || scratch.iter().any(|(scratch, _)| scratch == name))
                });
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
            NodeKey::CertificatesDir | NodeKey::CertificateDir(_) => {
                self.list_certificates_dir(&key, &name, &mut names).await?;
            }
            NodeKey::Secret(_)
            | NodeKey::Version(..)
            | NodeKey::Deleted(_)
            | NodeKey::Scratch(_)
            | NodeKey::CertificateFile(..) => return Err(FsError::NotADirectory { name }),
        }
        Ok(DirEntry::numbered(names))
    }
}
