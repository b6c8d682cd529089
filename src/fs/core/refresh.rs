//! `--refresh INTERVAL` (SPEC §9): a background revalidation by listing. Each walk lists the
//! vault (⌈N/25⌉ calls: list pages carry every secret's `updated`, `enabled`, `contentType` and
//! `tags`), renews the cached values whose entry did not change (they stay fresh until the
//! walk after next, so reading never costs a get while the refresh keeps up), re-gets the
//! cached secrets whose entry changed (one get each), and forgets the ones that are gone. The
//! cost per interval does not depend on how often files are read.
//!
//! `updated` has one-second resolution and list items carry no version: a value read in the
//! second it was updated is read again by the next walk (it could hide a second change in that
//! second); otherwise two changes within a second are one change.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tracing::{debug, info, warn};

use super::*;

/// What one walk did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revalidation {
    /// Secrets listed.
    pub listed: usize,
    /// Cached values confirmed unchanged (renewed).
    pub confirmed: usize,
    /// Cached secrets whose entry changed, read again.
    pub changed: Vec<String>,
    /// Cached secrets no longer listed, forgotten.
    pub gone: Vec<String>,
}

/// Re-gets of changed secrets in flight at once: the refresh never takes more than a share
/// of the vault's budget from readers.
const REFRESH_CONCURRENCY: usize = 4;

/// How long a walk in progress keeps cached values served at least (the default request
/// deadline, retries included).
const WALK_GRACE: Duration = Duration::from_secs(30);

/// A walk refused with 429 waits this many intervals more each time, up to the cap.
const MAX_BACKOFF_INTERVALS: u32 = 8;

/// Whether the cached `data` is what the listing says the secret is now. `updated` counts whole
/// seconds: a value read in the very second of its update (or before it, by a clock behind the
/// vault's) could hide a second change in that second, so it is not confirmed but read again,
/// once, by this walk.
fn unchanged(data: &SecretData, listed: &ListedSecret) -> bool {
    let tags = |t: Option<&Tags>| t.filter(|t| !t.is_empty()).cloned();
    let ambiguous = data.enabled
        && data
            .read_at
            .zip(data.attributes.updated)
            .is_some_and(|(read, updated)| read <= updated);
    !ambiguous
        && data.attributes.updated == listed.attributes.updated
        && data.enabled == listed.attributes.enabled.unwrap_or(true)
        && (!data.enabled || data.content_type == listed.content_type)
        && (!data.enabled || tags(data.tags.as_ref()) == tags(listed.tags.as_ref()))
}

impl SecretFs {
    /// One revalidation walk. Values confirmed by it stay fresh for `fresh_for`.
    pub async fn revalidate(&self, fresh_for: Duration) -> Result<Revalidation, FsError> {
        // What is cached stays served while this walk runs (a throttled listing, retried as
        // `Retry-After` says, can take a while): the walk itself says which values changed.
        self.keep_cached_values(fresh_for.max(WALK_GRACE));
        let items = self
            .store
            .list_properties_of_secrets()
            .await
            .map_err(FsError::from)?;
        let listed = well_formed(
            items.into_iter().map(|item| listed_from_item(item, None)),
            "secrets",
            None,
        );
        let by_key: HashMap<String, &ListedSecret> = listed
            .iter()
            .map(|l| (l.name.to_ascii_lowercase(), l))
            .collect();
        let mut report = Revalidation {
            listed: listed.len(),
            ..Revalidation::default()
        };
        let mut changed: Vec<String> = Vec::new();
        for (key, holds_value) in self.values.keys() {
            // Versions never change; rendered files follow their inputs.
            if !is_valid_secret_name(&key) {
                continue;
            }
            match by_key.get(&key) {
                Some(l) => {
                    if self
                        .values
                        .renew(&key, fresh_for, |data| unchanged(data, l))
                    {
                        report.confirmed += 1;
                    } else {
                        changed.push(l.name.clone());
                    }
                }
                None if holds_value => {
                    self.values.invalidate(&key);
                    self.forget_gone(&key);
                    report.gone.push(key);
                }
                // An absence, still absent.
                None => {}
            }
        }
        // The walk is also a fresh listing: `ls` needs no call of its own.
        self.listings
            .insert(ALL_SECRETS, Some(Listing(listed.clone())));
        self.listings.renew(ALL_SECRETS, fresh_for, |_| true);
        let mut really_changed = Vec::new();
        if let Some(me) = self.me.upgrade() {
            for batch in changed.chunks(REFRESH_CONCURRENCY) {
                let mut loads = tokio::task::JoinSet::new();
                for name in batch {
                    let (fs, name) = (me.clone(), name.clone());
                    loads.spawn(async move {
                        let key = name.to_ascii_lowercase();
                        let before = fs.values.peek_stale(&key).map(|d| d.version.clone());
                        fs.values.invalidate(&key);
                        match fs.load_secret(&name).await {
                            Ok(fetched) => {
                                // As fresh as the values this walk confirmed.
                                fs.values.renew(&key, fresh_for, |_| true);
                                let after = fetched.value.map(|d| d.version.clone());
                                // Read again only because of `updated`'s resolution: the same.
                                let same = before.is_some() && before == after;
                                if !same {
                                    debug!(secret = name.as_str(), "changed elsewhere; read again");
                                }
                                (!same).then_some(name)
                            }
                            Err(error) => {
                                warn!(secret = name.as_str(), %error, "changed elsewhere; cannot read it again");
                                Some(name)
                            }
                        }
                    });
                }
                while let Some(done) = loads.join_next().await {
                    if let Ok(Some(name)) = done {
                        really_changed.push(name);
                    }
                }
            }
        }
        really_changed.sort();
        report.changed = really_changed;
        if !report.changed.is_empty() || !report.gone.is_empty() {
            if let Some(listener) = self.change_listener.get() {
                let names: Vec<String> =
                    report.changed.iter().chain(&report.gone).cloned().collect();
                listener(&names);
            }
        }
        Ok(report)
    }

    /// Keep every cached value fresh for `fresh_for` from now (the refresh is throttled: until
    /// it can confirm them, a get per value would only make the throttling worse). Answers how
    /// many.
    fn keep_cached_values(&self, fresh_for: Duration) -> usize {
        self.values
            .keys()
            .into_iter()
            .filter(|(key, holds_value)| *holds_value && is_valid_secret_name(key))
            .filter(|(key, _)| self.values.renew(key, fresh_for, |_| true))
            .count()
    }

    /// A secret the listing no longer shows: the kernel forgets what it cached of its file.
    fn forget_gone(&self, key: &str) {
        let ino = self.inodes.lock().lookup(&NodeKey::Secret(key.to_owned()));
        if let Some(ino) = ino {
            self.inval_inode(ino);
            let name = self
                .inodes
                .lock()
                .get(ino)
                .map_or_else(|| key.to_owned(), |node| node.name.clone());
            self.inval_entry(ROOT_INO, &name);
        }
    }

    /// Run [`SecretFs::revalidate`] every `interval` (the first after a random part of it, so a
    /// fleet started together does not list together) until the filesystem is dropped. A 429
    /// stretches the wait (the client already honoured `Retry-After` for the call itself).
    pub fn start_refresh(self: &Arc<Self>, runtime: &tokio::runtime::Handle, interval: Duration) {
        let me = Arc::downgrade(self);
        runtime.spawn(async move {
            let first = interval.mul_f64(rand::thread_rng().gen_range(0.5..1.0));
            tokio::time::sleep(first).await;
            let mut backoff = 1u32;
            loop {
                let Some(fs) = me.upgrade() else { return };
                // Confirmed values stay fresh until the walk after next is due.
                let fresh_for = interval * 2 + interval / 2;
                match fs.revalidate(fresh_for).await {
                    Ok(report) => {
                        backoff = 1;
                        if report.changed.is_empty() && report.gone.is_empty() {
                            debug!(
                                listed = report.listed,
                                confirmed = report.confirmed,
                                "revalidated"
                            );
                        } else {
                            info!(
                                listed = report.listed,
                                confirmed = report.confirmed,
                                changed = report.changed.len(),
                                gone = report.gone.len(),
                                "revalidated: secrets changed elsewhere"
                            );
                        }
                    }
                    Err(FsError::Throttled { .. }) => {
                        backoff = (backoff * 2).min(MAX_BACKOFF_INTERVALS);
                        // While the refresh holds back, readers must not take its place: what
                        // is cached stays served until the next walk is due.
                        let kept = fs.keep_cached_values(interval * backoff + interval / 2);
                        warn!(
                            backoff_intervals = backoff,
                            kept,
                            "the vault throttles the refresh; waiting longer, serving what is cached"
                        );
                    }
                    Err(error) => warn!(%error, "refresh failed; cached values expire as usual"),
                }
                drop(fs);
                let jitter = rand::thread_rng().gen_range(0.9..1.1);
                tokio::time::sleep(interval.mul_f64(jitter) * backoff).await;
            }
        });
    }
}
