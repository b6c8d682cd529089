//! Committing a value: one set call per commit, the deleted-but-recoverable policy, and what
//! every reader on this mount sees afterwards.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::handles::{OpenFile, SharedWrite, WriteState};
use super::*;

impl SecretFs {
    /// Commit the file's pending content, if live writers changed it since the last commit.
    pub(super) async fn commit(
        &self,
        file: &OpenFile,
        shared: &SharedWrite,
        state: &mut WriteState,
    ) -> Result<(), FsError> {
        if state.poisoned() {
            return Err(FsError::TooLarge {
                name: file.name.clone(),
            });
        }
        let Some(content) = state.uncommitted() else {
            return state.failure();
        };
        if shared.unlinked.load(Ordering::SeqCst) {
            debug!(
                secret = file.name.as_str(),
                "discarding writes to a removed file"
            );
            let base = state.base.clone();
            state.committed(base);
            return Ok(());
        }
        let content = Zeroizing::new(content.to_vec());
        // The handle follows its file: after `mv a b` it commits to b.
        let name = self
            .node(file.ino)
            .map(|(_, name)| name)
            .unwrap_or_else(|_| file.name.clone());
        let base = state.base.clone();
        match self
            .store_value(file.ino, &name, base.as_ref(), content)
            .await
        {
            Ok(data) => {
                state.committed(data);
                Ok(())
            }
            Err(error) => {
                state.commit_failed(error.clone());
                Err(error)
            }
        }
    }

    /// Set `content` as the new value of the secret behind `ino` (one set call), keeping the
    /// base version's encoding, tags, content type and attributes; then make every reader on
    /// this mount see it.
    pub(super) async fn store_value(
        &self,
        ino: u64,
        asked_name: &str,
        base: Option<&Arc<SecretData>>,
        content: Zeroizing<Vec<u8>>,
    ) -> Result<Option<Arc<SecretData>>, FsError> {
        // The vault's spelling, unless the file was renamed since its base was read.
        let name = match base {
            Some(b) if b.name.eq_ignore_ascii_case(asked_name) => b.name.as_str(),
            _ => asked_name,
        };
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
        if let Some(base) = base.filter(|b| b.content[..] == content[..] && b.encoding == encoding)
        {
            debug!(secret = name, "the value is unchanged: no new version");
            return Ok(Some(base.clone()));
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
    pub(super) async fn set_secret(
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
}
