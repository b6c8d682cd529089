//! What the projected tree (`fs::projected`, `--config`) reads from the vault view: current
//! values, pinned versions and the listing, all through the same caches as the vault's own
//! files; and a place for rendered files in the values cache, so that they count against
//! `--cache-size` like the values they were made from.

use std::sync::Arc;
use std::time::Duration;

use super::*;

/// How long a rendered file's text is kept at most (its inputs are checked at each use).
const RENDERED_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

/// Rendered files live in the values cache under a key no secret name can have.
fn rendered_key(path: &str) -> String {
    format!("\u{0}rendered/{path}")
}

impl ListedSecret {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn enabled(&self) -> bool {
        self.attributes.enabled.unwrap_or(true)
    }

    pub(crate) fn tags(&self) -> Option<&Tags> {
        self.tags.as_ref()
    }
}

impl Listing {
    pub(crate) fn items(&self) -> &[ListedSecret] {
        &self.0
    }
}

impl SecretFs {
    /// The current version of `name` (cached like a read of its file); `None`: no such secret.
    pub(crate) async fn current_value(
        &self,
        name: &str,
    ) -> Result<Option<Arc<SecretData>>, FsError> {
        secret_name_or_not_found(name)?;
        Ok(self.load_secret(name).await?.value)
    }

    /// Version `version` of `name` (immutable, cached); `None`: no such version.
    pub(crate) async fn version_value(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Arc<SecretData>>, FsError> {
        secret_name_or_not_found(name)?;
        if !is_valid_version_id(version) {
            return Ok(None);
        }
        Ok(self.load_version(name, version).await?.value)
    }

    /// Every secret of the vault, as listed (cached for `--list-ttl`).
    pub(crate) async fn listed_secrets(&self) -> Result<Arc<Listing>, FsError> {
        self.load_listing().await
    }

    /// Keep a rendered file's content (in the values cache: it counts against `--cache-size`
    /// and may be evicted like any value, which only costs a new render).
    pub(crate) fn keep_rendered(
        &self,
        path: &str,
        content: Zeroizing<Vec<u8>>,
        updated: Option<i64>,
    ) -> Arc<SecretData> {
        let mut data = SecretData::empty(path);
        data.content = content;
        data.attributes.updated = updated;
        let key = rendered_key(path);
        let kept = self
            .values
            .insert(&key, Some(data))
            .unwrap_or_else(|| Arc::new(SecretData::empty(path)));
        // Valid while its inputs are unchanged, which the caller checks at each use: it must
        // not expire (and be swept) with the values' TTL, only go when the cache is full.
        self.values.renew(&key, RENDERED_VALIDITY, |_| true);
        kept
    }

    /// A rendered file's content as last kept, if the cache still holds it (fresh or not: the
    /// caller checks its inputs).
    pub(crate) fn rendered(&self, path: &str) -> Option<Arc<SecretData>> {
        self.values.peek_stale(&rendered_key(path))
    }
}
