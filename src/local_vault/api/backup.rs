//! Backup blobs, opaque and encrypted as the service's are: base64url of
//! `version (1 byte) ‖ nonce (12 bytes) ‖ ChaCha20-Poly1305(JSON of every version) ‖ tag`.
//!
//! The key (32 random bytes) is generated in the data directory on the first backup
//! (`DIR/backup.key`, mode 0600) and kept there, so a blob restores only into the vault of the
//! data directory that made it; a blob of another data directory, a tampered or a truncated one
//! fails authentication and is refused. Each blob has a fresh random nonce. The AEAD is `ring`'s
//! (already the TLS stack's crypto provider).

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::local_vault::error::ApiError;
use crate::local_vault::files::{open_private_file, PRIVATE_MODE};
use crate::local_vault::store::BackupData;
use crate::local_vault::Shared;
use crate::secret_value::SecretValue;
use crate::vault::model::is_valid_secret_name;

/// File name of the backup key in the data directory.
pub const BACKUP_KEY_FILE: &str = "backup.key";
const KEY_LEN: usize = 32;
const VERSION: u8 = 1;
/// Binds a blob to its purpose and format.
const AAD: &[u8] = b"akvfs local vault secret backup v1";

/// The data directory's backup key: zeroed on drop, never printed.
pub struct BackupKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the service answers for a blob it cannot restore (the message is the one the Azure SDK
/// for JavaScript's tests expect for malformed backup bytes; the 400 `BadParameter` status and
/// code are unconfirmed: no recording shows it).
fn bad_blob() -> ApiError {
    ApiError::bad_parameter("Backup blob contains invalid or corrupt version.")
}

/// The data directory's backup key, read or (with `create`) generated on first use.
/// `Ok(None)`: there is none yet (and `create` is false).
fn load_key(dir: &Path, create: bool) -> Result<Option<BackupKey>, ApiError> {
    use std::io::{Read, Write};
    let path = dir.join(BACKUP_KEY_FILE);
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(path = %path.display(), error = %e, "{what} the backup key");
        ApiError::internal(format!("{what} the local vault's backup key failed."))
    };
    if !create && !path.exists() {
        return Ok(None);
    }
    // Created 0600 (and made 0600 if it exists); read back whatever is there.
    let mut file = open_private_file(&path).map_err(|e| failed("opening", &e))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .map_err(|e| failed("reading", &e))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.is_empty() {
        SystemRandom::new()
            .fill(&mut key[..])
            .map_err(|_| failed("generating", &"no randomness"))?;
        file.write_all(&key[..])
            .and_then(|()| file.sync_all())
            .map_err(|e| failed("writing", &e))?;
        tracing::info!(path = %path.display(), mode = format_args!("{PRIVATE_MODE:o}"), "backup key generated");
    } else if bytes.len() == KEY_LEN {
        key.copy_from_slice(&bytes);
    } else {
        return Err(failed(
            "reading",
            &format!("{} bytes, not {KEY_LEN}", bytes.len()),
        ));
    }
    Ok(Some(BackupKey(key)))
}

/// The key, loaded once (under the lock, so two first backups make one key).
fn key(st: &Shared, create: bool) -> Result<Option<LessSafeKey>, ApiError> {
    let mut slot = st.backup_key.lock();
    if slot.is_none() {
        *slot = load_key(&st.data_dir, create)?;
    }
    match slot.as_ref() {
        Some(bytes) => {
            let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes.0[..])
                .map_err(|_| ApiError::internal("backup key unusable"))?;
            Ok(Some(LessSafeKey::new(unbound)))
        }
        None => Ok(None),
    }
}

pub(super) fn seal_backup(st: &Shared, data: &BackupData) -> Result<SecretValue, ApiError> {
    let failed = || ApiError::internal("The backup failed.");
    let key = key(st, true)?.ok_or_else(failed)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| failed())?;
    let mut sealed = Zeroizing::new(serde_json::to_vec(data).map_err(|_| failed())?);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(AAD),
        &mut *sealed,
    )
    .map_err(|_| failed())?;
    let mut blob = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    blob.push(VERSION);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    Ok(SecretValue::new(URL_SAFE_NO_PAD.encode(&blob)))
}

pub(super) fn open_backup(st: &Shared, blob: &str) -> Result<BackupData, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(blob.trim_end_matches('='))
        .map_err(|_| bad_blob())?;
    let Some((&VERSION, rest)) = bytes.split_first() else {
        return Err(bad_blob());
    };
    if rest.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
        return Err(bad_blob());
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad_blob())?;
    // No key yet: this vault never made a backup, so the blob is another vault's.
    let key = key(st, false)?.ok_or_else(bad_blob)?;
    let mut buffer = Zeroizing::new(sealed.to_vec());
    let json = key
        .open_in_place(nonce, Aad::from(AAD), &mut buffer[..])
        .map_err(|_| bad_blob())?;
    let data: BackupData = serde_json::from_slice(json).map_err(|_| bad_blob())?;
    if !is_valid_secret_name(&data.name) || data.versions.is_empty() {
        return Err(bad_blob());
    }
    Ok(data)
}
