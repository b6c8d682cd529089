//! Backup blobs: base64url of HMAC-SHA256 (32 bytes) ‖ JSON of every version, so only this
//! vault restores them and a tampered blob is refused (the service's blobs are opaque too).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;

use crate::local_vault::error::ApiError;
use crate::local_vault::store::BackupData;
use crate::local_vault::Shared;
use crate::secret_value::SecretValue;
use crate::vault::model::is_valid_secret_name;

/// A backup blob: base64url of MAC(32 bytes) ‖ JSON, so only this vault restores it and a
/// tampered blob is refused.
pub(super) fn seal_backup(st: &Shared, data: &BackupData) -> Result<SecretValue, ApiError> {
    let json = serde_json::to_vec(data).map_err(|_| ApiError::internal("backup failed"))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(st.backup_key.expose().as_bytes())
        .map_err(|_| ApiError::internal("backup failed"))?;
    mac.update(&json);
    let mut bytes = mac.finalize().into_bytes().to_vec();
    bytes.extend_from_slice(&json);
    let blob = SecretValue::new(URL_SAFE_NO_PAD.encode(&bytes));
    zeroize::Zeroize::zeroize(&mut bytes);
    Ok(blob)
}

pub(super) fn open_backup(st: &Shared, blob: &str) -> Result<BackupData, ApiError> {
    let bad = || ApiError::bad_parameter("Backup blob contains invalid or corrupt version.");
    let bytes = zeroize::Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(blob.trim_end_matches('='))
            .map_err(|_| bad())?,
    );
    if bytes.len() < 32 {
        return Err(bad());
    }
    let (tag, json) = bytes.split_at(32);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(st.backup_key.expose().as_bytes())
        .map_err(|_| bad())?;
    mac.update(json);
    mac.verify_slice(tag).map_err(|_| bad())?;
    let data: BackupData = serde_json::from_slice(json).map_err(|_| bad())?;
    if !is_valid_secret_name(&data.name) || data.versions.is_empty() {
        return Err(bad());
    }
    Ok(data)
}
