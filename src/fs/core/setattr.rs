//! `setattr`: truncate, and the owner/mode/time changes a secret file accepts.

use tracing::warn;

use super::*;

impl SecretFs {
    // ----- setattr ----------------------------------------------------------------------

    pub async fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        changes: SetAttr,
    ) -> Result<Entry, FsError> {
        let current = self.getattr(ino).await?;
        let (key, name) = self.node(ino)?;
        if Self::is_certificates_node(&key) && (changes.size.is_some() || changes.mtime.is_some()) {
            return Err(self.certificates_read_only(&name));
        }
        let owner_change = changes.uid.is_some_and(|uid| uid != current.attr.uid)
            || changes.gid.is_some_and(|gid| gid != current.attr.gid);
        // A scratch file's mode is the mount's, like the secret it will be renamed over: tools
        // that set the mode of their temporary file before the rename (rsync 3.5 fchmods it to
        // the source's mode) are let through, and the mode stays what it was.
        let scratch = matches!(key, NodeKey::Scratch(_));
        let mode_change = !scratch
            && changes
                .mode
                .is_some_and(|mode| (mode & 0o7777) as u16 != current.attr.perm);
        if owner_change || mode_change {
            warn!(
                name,
                "chmod/chown refused: owner and mode are set for the whole mount \
                 (--uid, --gid, --file-mode); changing a file to what it already has succeeds"
            );
            return Err(FsError::NotPermitted {
                name,
                reason: "owner and mode are set for the whole mount (--uid, --gid, --file-mode)"
                    .into(),
            });
        }
        if let Some(mtime) = changes.mtime {
            self.keep_mtime(ino, mtime).await?;
        }
        let Some(size) = changes.size else {
            return self.getattr_as(ino, fh, 0).await;
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
        self.getattr_as(ino, fh, 0).await
    }

    /// `touch -d`, `utimes`: the vault keeps its own `updated` and no such attribute, so the
    /// time is kept in memory on this mount for the version it was set on (`stat` shows it
    /// until the content changes or the mount ends). `rsync -t` then finds size and time equal
    /// on its next run and writes nothing.
    async fn keep_mtime(&self, ino: u64, mtime: std::time::SystemTime) -> Result<(), FsError> {
        let (key, name) = self.node(ino)?;
        match key {
            NodeKey::Secret(key) => {
                let version = if self.placeholders.lock().contains_key(&key) {
                    None
                } else {
                    self.load_secret(&name)
                        .await?
                        .value
                        .and_then(|data| data.version.clone())
                };
                self.times.lock().insert(ino, (version, mtime));
            }
            NodeKey::Scratch(scratch_name) => {
                let file = self.scratch_file(&scratch_name)?;
                *file.modified.lock() = mtime;
                *file.utimes.lock() = Some(mtime);
            }
            // Directories, versions and deleted secrets: their times are the vault's.
            _ => {}
        }
        Ok(())
    }
}
