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
        let (_, name) = self.node(ino)?;
        let owner_change = changes.uid.is_some_and(|uid| uid != current.attr.uid)
            || changes.gid.is_some_and(|gid| gid != current.attr.gid);
        let mode_change = changes
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
        self.getattr_as(ino, fh, 0).await
    }
}
