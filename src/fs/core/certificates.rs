//! The `.certificates` view (SPEC §10): `/.certificates/NAME/` for every certificate of the
//! vault, holding `cert.pem`, `chain.pem`, `fullchain.pem`, `key.pem`, `bundle.pem` and
//! `NAME.pfx`, read-only (EROFS).
//!
//! - The directory lists what `GET /certificates` lists (cached for `--list-ttl`, like every
//!   listing).
//! - Every file comes from the certificate's backing secret (`GET /secrets/NAME`, managed by
//!   the vault), read through the values cache like the secret's own file `/NAME`: one get per
//!   `--cache-ttl` whatever is read, and every file of one certificate comes from the version
//!   the cache holds. The files are made from that value by [`crate::certificate_files`] once
//!   per version and kept in the values cache (they count against `--cache-size`).
//! - `key.pem` and `bundle.pem` are there only when the secret holds the key (an exportable
//!   certificate). A secret that cannot be read as a certificate makes its files fail with EIO
//!   and a log line naming the certificate (never the value).
//! - A principal that may get the certificate but not its secret (403 on the secret) sees
//!   `cert.pem` alone, made from the certificate's `cer` (`GET /certificates/NAME`, cached like
//!   a value under a key of its own): the chain and the key are only in the secret. While that
//!   is cached the secret is not asked again; after `--cache-ttl` it is (a permission granted
//!   since shows every file).
//! - mtime is the certificate version's `updated` (the backing secret's); sizes are exact.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::*;
use crate::certificate_files::{self, Part};
use crate::fs::inode::{CERTIFICATES_DIR_INO, CERTIFICATES_DIR_NAME};
use crate::vault::certificate_model::CertificateBundle;
use crate::vault::model::SecretId;

const CERTIFICATES: &str = "certificates";

/// How long the kernel may keep a certificate file's attributes.
const CERTIFICATE_FILE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// A certificate file's content lives in the values cache under a key no secret name can have,
/// per version and source (the secret, or the leaf alone): a version's files never change.
fn part_key(data: &SecretData, part: Part) -> String {
    let source = if is_leaf_only(data) {
        "certificate-leaf"
    } else {
        "certificate"
    };
    format!(
        "\u{0}{source}/{}/{}/{}",
        data.name.to_ascii_lowercase(),
        data.version.as_deref().unwrap_or(""),
        part.as_str()
    )
}

/// Where the certificate's leaf alone is cached, when its secret may not be read.
fn leaf_only_key(name: &str) -> String {
    format!("\u{0}certificate-leaf/{}", name.to_ascii_lowercase())
}

fn is_leaf_only(data: &SecretData) -> bool {
    data.content_type.as_deref() == Some(certificate_files::CONTENT_TYPE_LEAF_ONLY)
}

/// The leaf of certificate bundle `bundle` as the value its files are made from.
fn leaf_only(bundle: CertificateBundle, asked_name: &str) -> Result<SecretData, VaultError> {
    let invalid = |message: &str| VaultError::InvalidResponse {
        name: asked_name.to_owned(),
        message: message.to_owned(),
    };
    let der = bundle
        .cer
        .as_deref()
        .and_then(|cer| STANDARD.decode(cer).ok())
        .ok_or_else(|| invalid("the certificate has no readable `cer`"))?;
    // The certificate's version is its secret's (`sid`).
    let sid = bundle.sid.as_deref().and_then(SecretId::parse);
    let attributes = bundle.attributes.unwrap_or_default();
    Ok(SecretData {
        name: sid
            .as_ref()
            .map_or_else(|| asked_name.to_owned(), |id| id.name.clone()),
        id: bundle.sid.clone(),
        version: sid.and_then(|id| id.version),
        content: Zeroizing::new(der),
        encoding: Encoding::Text,
        enabled: attributes.enabled.unwrap_or(true),
        content_type: Some(certificate_files::CONTENT_TYPE_LEAF_ONLY.to_owned()),
        tags: bundle.tags,
        attributes,
        managed: Some(true),
        undecodable: None,
        read_at: None,
    })
}

impl SecretFs {
    /// The certificates of the vault, as listed (cached for `--list-ttl`).
    pub(super) async fn load_certificate_listing(&self) -> Result<Arc<Listing>, FsError> {
        self.load_listing_as(CERTIFICATES, "certificates", || async {
            let items = self.store.list_certificates().await?;
            let listed = items.into_iter().map(|item| {
                Some(ListedSecret {
                    name: item.name()?,
                    attributes: item.attributes.unwrap_or_default(),
                    version: None,
                    deleted_date: None,
                    tags: item.tags,
                    content_type: None,
                })
            });
            Ok(well_formed(listed, "certificates", None))
        })
        .await
    }

    /// The listed certificate `name` (any case); NotFound when the vault lists none.
    pub(super) async fn listed_certificate(&self, name: &str) -> Result<ListedSecret, FsError> {
        secret_name_or_not_found(name)?;
        let listing = self.load_certificate_listing().await?;
        listing
            .0
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or_else(|| FsError::NotFound {
                name: format!("{CERTIFICATES_DIR_NAME}/{name}"),
            })
    }

    /// What the files of certificate `name` are made from, and for how long it is fresh: the
    /// current version of its backing secret (cached), or its leaf alone when the principal
    /// may get the certificate but not the secret.
    async fn certificate_source(&self, name: &str) -> Result<(Arc<SecretData>, Duration), FsError> {
        secret_name_or_not_found(name)?;
        let leaf_key = leaf_only_key(name);
        // Refused the secret within the TTL: not asked again until then.
        if let Some(Fetched {
            value: Some(leaf),
            valid_for,
            ..
        }) = self.values.peek(&leaf_key)
        {
            return Ok((leaf, valid_for));
        }
        let denied = match self.load_secret(name).await {
            Ok(fetched) => {
                let data = fetched.value.ok_or_else(|| FsError::NotFound {
                    name: name.to_owned(),
                })?;
                return Ok((data, fetched.valid_for));
            }
            Err(denied @ FsError::AccessDenied { .. }) => denied,
            Err(other) => return Err(other),
        };
        let fetched = self
            .values
            .get_or_load(
                &leaf_key,
                || async {
                    match self.store.get_certificate(name).await {
                        Ok(bundle) => leaf_only(bundle, name).map(Some),
                        Err(VaultError::NotFound { .. }) => Ok(None),
                        Err(error) => Err(error),
                    }
                },
                is_transient,
            )
            .await;
        match fetched {
            Ok(Fetched {
                value: Some(leaf),
                valid_for,
                ..
            }) => {
                info!(
                    certificate = name,
                    "the certificate's secret may not be read: only cert.pem is shown, from the \
                     certificate"
                );
                Ok((leaf, valid_for))
            }
            Ok(_) => Err(denied),
            Err(error) => {
                warn!(certificate = name, %error, "cannot get the certificate either");
                Err(denied)
            }
        }
    }

    /// What certificate `name`'s files are made from now (its version is what a hook on one
    /// of them watches).
    pub(crate) async fn certificate_value(&self, name: &str) -> Result<Arc<SecretData>, FsError> {
        Ok(self.certificate_source(name).await?.0)
    }

    /// File `part` of certificate `name`, made from the current version of its backing secret
    /// (cached). `Ok(None)`: the certificate has no such file (no exportable key, or only its
    /// leaf may be read).
    pub(crate) async fn certificate_part(
        &self,
        name: &str,
        part: Part,
    ) -> Result<Option<Arc<SecretData>>, FsError> {
        let (data, _) = self.certificate_source(name).await?;
        self.part_of(&data, part)
    }

    /// File `part` of the certificate whose backing secret's version is `data`.
    pub(crate) fn part_of(
        &self,
        data: &SecretData,
        part: Part,
    ) -> Result<Option<Arc<SecretData>>, FsError> {
        if !data.enabled {
            return Err(FsError::AccessDenied {
                name: data.name.clone(),
                reason: "the certificate is disabled".into(),
            });
        }
        data.readable()?;
        if data.managed != Some(true) {
            // A plain secret of that name is no certificate's.
            return Err(FsError::NotFound {
                name: format!("{CERTIFICATES_DIR_NAME}/{}", data.name),
            });
        }
        let key = part_key(data, part);
        if let Some(kept) = self.values.peek_stale(&key) {
            return Ok(Some(kept));
        }
        let material = certificate_files::read(&data.content, data.content_type.as_deref())
            .map_err(|error| unreadable(&data.name, error))?;
        let Some(content) = material
            .part(part)
            .map_err(|error| unreadable(&data.name, error))?
        else {
            return Ok(None);
        };
        let made = SecretData {
            name: data.name.clone(),
            id: data.id.clone(),
            version: data.version.clone(),
            content,
            encoding: Encoding::Text,
            enabled: true,
            content_type: None,
            tags: None,
            attributes: data.attributes.clone(),
            managed: Some(true),
            undecodable: None,
            read_at: data.read_at,
        };
        Ok(self.values.insert(&key, Some(made)))
    }

    /// `lookup` in `.certificates` and in a certificate's directory.
    pub(super) async fn resolve_certificate(
        &self,
        parent_key: &NodeKey,
        parent_name: &str,
        name: &str,
    ) -> Result<Entry, FsError> {
        match parent_key {
            NodeKey::CertificatesDir => {
                let listed = self.listed_certificate(name).await?;
                let ino = self.inodes.lock().ino_for(
                    NodeKey::CertificateDir(listed.name.to_ascii_lowercase()),
                    &listed.name,
                );
                Ok(self.certificate_dir_entry(ino, &listed))
            }
            NodeKey::CertificateDir(key) => {
                let part =
                    Part::from_file_name(name, parent_name).ok_or_else(|| FsError::NotFound {
                        name: format!("{parent_name}/{name}"),
                    })?;
                let ino = self
                    .inodes
                    .lock()
                    .ino_for(NodeKey::CertificateFile(key.clone(), part), parent_name);
                self.certificate_file_entry(ino, parent_name, part).await
            }
            _ => Err(FsError::NotADirectory {
                name: parent_name.to_owned(),
            }),
        }
    }

    pub(super) fn certificate_dir_entry(&self, ino: u64, listed: &ListedSecret) -> Entry {
        let mut entry = self.dir_entry(ino, false);
        let updated = epoch_seconds(listed.attributes.updated, self.mounted_at);
        entry.attr.mtime = updated;
        entry.attr.ctime = updated;
        entry
    }

    /// The entry of file `part` of certificate `name` (inode `ino`).
    pub(super) async fn certificate_file_entry(
        &self,
        ino: u64,
        name: &str,
        part: Part,
    ) -> Result<Entry, FsError> {
        let (data, valid_for) = self.certificate_source(name).await?;
        let file = self
            .part_of(&data, part)?
            .ok_or_else(|| FsError::NotFound {
                name: format!("{name}/{}", part.file_name(name)),
            })?;
        self.note_version(ino, file.version.as_deref());
        let attr = self.file_attr(
            ino,
            file.content.len() as u64,
            self.config.file_mode & 0o444,
            &file.attributes,
        );
        // A refresh that sees the secret change drops the secret's inode from the kernel's
        // caches, not these: a short TTL bounds how long a stale size can be shown.
        Ok(Entry {
            attr,
            ttl: valid_for
                .min(self.config.cache_ttl)
                .min(CERTIFICATE_FILE_TTL),
        })
    }

    /// Open a certificate file: read-only, one version to the end of the handle.
    pub(super) async fn open_certificate_file(
        &self,
        ino: u64,
        name: &str,
        part: Part,
        mode: OpenMode,
    ) -> Result<Opened, FsError> {
        if mode.write || mode.truncate || mode.append {
            return Err(FsError::ReadOnly {
                name: format!("{CERTIFICATES_DIR_NAME}/{name}/{}", part.file_name(name)),
            });
        }
        let file = self
            .certificate_part(name, part)
            .await?
            .ok_or_else(|| FsError::NotFound {
                name: format!("{name}/{}", part.file_name(name)),
            })?;
        self.note_version(ino, file.version.as_deref());
        let fh = self.register_file(ino, name, mode, Self::snapshot(file, false));
        // Direct I/O: a new version may have another size; the page cache is per inode.
        Ok(Opened {
            fh,
            keep_cache: false,
            direct_io: true,
        })
    }

    /// The listing of `.certificates` and of a certificate's directory.
    pub(super) async fn list_certificates_dir(
        &self,
        key: &NodeKey,
        name: &str,
        names: &mut Vec<(u64, FileKind, String)>,
    ) -> Result<(), FsError> {
        match key {
            NodeKey::CertificatesDir => {
                let listing = self.load_certificate_listing().await?;
                let mut inodes = self.inodes.lock();
                for listed in &listing.0 {
                    let ino = inodes.ino_for(
                        NodeKey::CertificateDir(listed.name.to_ascii_lowercase()),
                        &listed.name,
                    );
                    names.push((ino, FileKind::Directory, listed.name.clone()));
                }
            }
            NodeKey::CertificateDir(cert_key) => {
                let (data, _) = self.certificate_source(name).await?;
                let mut present = Vec::new();
                for part in Part::ALL {
                    if self.part_of(&data, part)?.is_some() {
                        present.push(part);
                    }
                }
                let mut inodes = self.inodes.lock();
                for part in present {
                    let ino =
                        inodes.ino_for(NodeKey::CertificateFile(cert_key.clone(), part), name);
                    names.push((ino, FileKind::File, part.file_name(name)));
                }
            }
            _ => {
                return Err(FsError::NotADirectory {
                    name: name.to_owned(),
                })
            }
        }
        Ok(())
    }

    /// Why nothing can be created, removed or renamed under `.certificates`.
    pub(super) fn certificates_read_only(&self, name: &str) -> FsError {
        FsError::ReadOnly {
            name: format!("{CERTIFICATES_DIR_NAME}/{name}"),
        }
    }

    /// Whether `ino` is `.certificates` or in it.
    pub(super) fn is_certificates_node(key: &NodeKey) -> bool {
        matches!(
            key,
            NodeKey::CertificatesDir | NodeKey::CertificateDir(_) | NodeKey::CertificateFile(..)
        )
    }

    pub(super) fn certificates_dir_entry(&self) -> Entry {
        self.dir_entry(CERTIFICATES_DIR_INO, false)
    }
}

/// A backing secret that cannot be read as a certificate: EIO, logged with the certificate's
/// name and the reason (never the value).
fn unreadable(name: &str, error: certificate_files::MaterialError) -> FsError {
    warn!(
        certificate = name,
        reason = %error,
        "cannot read the certificate's secret; its files answer EIO"
    );
    FsError::Unavailable {
        name: name.to_owned(),
        message: format!("the certificate's secret cannot be read: {error}"),
    }
}
