//! Template and format files: rendered from the vault view's values (the same caches as the
//! secrets' own files), once per change of their inputs. A render remembers the version of
//! every secret it read; the next access reads those secrets again (from the cache while it is
//! fresh: no vault call) and keeps the rendered text when no version changed. The text lives
//! in the values cache, so it counts against `--cache-size`.
//!
//! The inputs of one render change together (SPEC §9), as a group's files do: when some of
//! the inputs a render read changed and others not yet (a writer sets a certificate and its
//! key seconds apart), the file keeps its render until every input changed or none changed
//! for the settle time (2.2 refresh intervals and a second).
//!
//! A render that cannot read a secret (missing, disabled, forbidden, not text) fails that one
//! file with EIO and a log line naming the file and the secret, never a value.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::{ProjectedFs, Tree};
use crate::fs::core::SecretData;
use crate::fs::FsError;
use crate::projection::{self, EntryKind, Prefetched, RenderError, SecretInput, SourceError};
use crate::vault::model::Tags;

static NO_TAGS: Tags = BTreeMap::new();

/// What each rendered file read, by path.
#[derive(Default)]
pub(super) struct Renders {
    seen: Mutex<HashMap<String, Vec<Seen>>>,
    /// Files some of whose inputs changed: the versions seen, and since when.
    pending: Mutex<HashMap<String, (Vec<Seen>, Instant)>>,
}

impl Renders {
    pub(super) fn clear(&self) {
        self.seen.lock().clear();
        self.pending.lock().clear();
    }

    /// Whether `path` keeps its render a while: some but not all of its `previous` inputs
    /// changed (`now` has what they are now), and that state is younger than `settle`.
    fn waits(&self, path: &str, previous: &[Seen], now: Vec<Seen>, settle: Duration) -> bool {
        // A pinned version (`secret(name, version)`) never changes: only current ones count.
        let current = |s: &&Seen| s.input.version.is_none();
        let total = previous.iter().filter(current).count();
        let changed = previous
            .iter()
            .zip(&now)
            .filter(|(a, b)| current(a) && a != b)
            .count();
        let mut pending = self.pending.lock();
        if changed == 0 || changed == total {
            pending.remove(path);
            return false;
        }
        match pending.get(path) {
            Some((seen, since)) if *seen == now => since.elapsed() < settle,
            _ => {
                pending.insert(path.to_owned(), (now, Instant::now()));
                true
            }
        }
    }

    /// The versions the last render of `path` read, as one string (to notice a change).
    pub(super) fn fingerprint(&self, path: &str) -> Option<String> {
        let seen = self.seen.lock();
        let inputs = seen.get(path)?;
        Some(
            inputs
                .iter()
                .map(|s| format!("{}={}", s.input, s.version.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// One input of a render and the version it had.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    input: SecretInput,
    version: Option<String>,
}

/// A secret as a render reads it.
struct Got {
    value: Result<Zeroizing<String>, SourceError>,
    version: Option<String>,
    updated: Option<i64>,
}

/// A `[[dir]]` or format selection's tags of a listed secret.
pub(super) fn tags_of(tags: Option<&Tags>) -> &Tags {
    tags.unwrap_or(&NO_TAGS)
}

impl ProjectedFs {
    /// The content of the template or format file at `path`, rendered again only when an
    /// input changed.
    pub(super) async fn render(
        &self,
        tree: &Tree,
        path: &str,
        entry: &projection::Entry,
    ) -> Result<Arc<SecretData>, FsError> {
        let previous = tree.renders.seen.lock().get(path).cloned();
        // Taken before the inputs are read: storing them may sweep an expired render.
        let kept = self.vault.rendered(path);
        let mut got: BTreeMap<SecretInput, Got> = BTreeMap::new();
        let result = match &entry.kind {
            EntryKind::Template { template, .. } => {
                if let Some(previous) = &previous {
                    for seen in previous {
                        got.insert(seen.input.clone(), self.read_input(&seen.input).await);
                    }
                    if let Some(kept) = self.kept_if_unchanged(path, kept.clone(), previous, &got) {
                        return Ok(kept);
                    }
                    let now: Vec<Seen> = previous
                        .iter()
                        .map(|seen| Seen {
                            input: seen.input.clone(),
                            version: got.get(&seen.input).and_then(|g| g.version.clone()),
                        })
                        .collect();
                    if let Some(kept) = kept {
                        if tree.renders.waits(path, previous, now, tree.settle) {
                            return Ok(kept);
                        }
                    }
                }
                self.render_template(path, template, &mut got).await
            }
            EntryKind::Format {
                format,
                select,
                names,
            } => {
                let listing = self.vault.listed_secrets().await?;
                let mut selected = Vec::new();
                for listed in listing.items() {
                    let tags = tags_of(listed.tags());
                    if listed.enabled() && select.key_for(*names, listed.name(), tags).is_some() {
                        let input = SecretInput {
                            name: listed.name().to_owned(),
                            version: None,
                        };
                        got.insert(input.clone(), self.read_input(&input).await);
                        selected.push((input, tags.clone()));
                    }
                }
                let seen = seen_of(&got);
                if previous.as_ref() == Some(&seen) {
                    if let Some(kept) = self.kept_if_unchanged(path, kept, &seen, &got) {
                        return Ok(kept);
                    }
                }
                render_selection(path, *format, select, *names, &selected, &got)
            }
            _ => {
                return Err(FsError::IsADirectory {
                    name: path.to_owned(),
                })
            }
        };
        let text = result.inspect_err(|error| {
            warn!(file = path, %error, "cannot render the file; reads answer EIO");
        })?;
        let seen = seen_of(&got);
        let updated = got.values().filter_map(|g| g.updated).max();
        info!(
            file = path,
            inputs = seen.len(),
            bytes = text.len(),
            "rendered"
        );
        let kept =
            self.vault
                .keep_rendered(path, Zeroizing::new(text.as_bytes().to_vec()), updated);
        tree.renders.seen.lock().insert(path.to_owned(), seen);
        tree.renders.pending.lock().remove(path);
        Ok(kept)
    }

    /// The kept render of `path`, when every input it read still has the version it had
    /// (kept again, as fresh as the inputs just read).
    fn kept_if_unchanged(
        &self,
        path: &str,
        kept: Option<Arc<SecretData>>,
        previous: &[Seen],
        got: &BTreeMap<SecretInput, Got>,
    ) -> Option<Arc<SecretData>> {
        let unchanged = previous.iter().all(|seen| {
            got.get(&seen.input)
                .is_some_and(|g| g.value.is_ok() && g.version == seen.version)
        });
        let kept = kept.filter(|_| unchanged)?;
        if self
            .vault
            .rendered(path)
            .is_some_and(|now| Arc::ptr_eq(&now, &kept))
        {
            return Some(kept);
        }
        let content = Zeroizing::new(kept.content.to_vec());
        Some(
            self.vault
                .keep_rendered(path, content, kept.attributes.updated),
        )
    }

    /// Render, reading each secret the template asks for as it asks (the engine is
    /// synchronous: a render stops at the first secret not read yet, which is then read).
    async fn render_template(
        &self,
        path: &str,
        template: &projection::Template,
        got: &mut BTreeMap<SecretInput, Got>,
    ) -> Result<Zeroizing<String>, FsError> {
        // Each pass reads one more secret; a template names finitely many.
        for _ in 0..=MAX_TEMPLATE_INPUTS {
            let mut prefetched = Prefetched::default();
            for (input, g) in got.iter() {
                prefetched.insert(input.clone(), g.value.clone());
            }
            match template.render(Arc::new(prefetched)) {
                Ok(rendered) => {
                    // Only what this render read counts as its inputs.
                    got.retain(|input, _| rendered.inputs.contains(input));
                    return Ok(rendered.text);
                }
                Err(RenderError::Secret {
                    input,
                    cause: SourceError::NotFetched,
                }) if !got.contains_key(&input) => {
                    let read = self.read_input(&input).await;
                    got.insert(input, read);
                }
                Err(error) => return Err(render_failure(path, &error.to_string())),
            }
        }
        Err(render_failure(
            path,
            &format!("the template reads more than {MAX_TEMPLATE_INPUTS} secrets"),
        ))
    }

    /// One secret (or version) as templates and formats read it: text, or why not.
    async fn read_input(&self, input: &SecretInput) -> Got {
        let read = match &input.version {
            None => self.vault.current_value(&input.name).await,
            Some(version) => self.vault.version_value(&input.name, version).await,
        };
        let data = match read {
            Ok(Some(data)) => data,
            Ok(None) | Err(FsError::NotFound { .. }) => return missing(SourceError::NotFound),
            Err(FsError::AccessDenied { .. }) => return missing(SourceError::Forbidden),
            Err(error) => return missing(SourceError::Other(error.to_string())),
        };
        let value = if !data.enabled {
            Err(SourceError::Disabled)
        } else if data.undecodable.is_some() {
            Err(SourceError::Other(
                "the value does not decode as its file-encoding tag says".into(),
            ))
        } else {
            match std::str::from_utf8(&data.content) {
                Ok(text) => Ok(Zeroizing::new(text.to_owned())),
                Err(_) => Err(SourceError::Other("the value is not UTF-8 text".into())),
            }
        };
        Got {
            value,
            version: data.version.clone(),
            updated: data.attributes.updated,
        }
    }
}

/// A template reading more secrets than this is refused (a loop over names, by mistake).
const MAX_TEMPLATE_INPUTS: usize = 1000;

fn missing(cause: SourceError) -> Got {
    Got {
        value: Err(cause),
        version: None,
        updated: None,
    }
}

fn seen_of(got: &BTreeMap<SecretInput, Got>) -> Vec<Seen> {
    got.iter()
        .map(|(input, g)| Seen {
            input: input.clone(),
            version: g.version.clone(),
        })
        .collect()
}

fn render_failure(path: &str, reason: &str) -> FsError {
    FsError::Unavailable {
        name: path.to_owned(),
        message: format!("cannot render: {reason}"),
    }
}

/// A format file over the selected secrets read into `got`.
fn render_selection(
    path: &str,
    format: projection::Format,
    select: &projection::Selection,
    names: projection::NameConvention,
    selected: &[(SecretInput, Tags)],
    got: &BTreeMap<SecretInput, Got>,
) -> Result<Zeroizing<String>, FsError> {
    let mut listed = Vec::with_capacity(selected.len());
    for (input, tags) in selected {
        match got.get(input).map(|g| &g.value) {
            Some(Ok(value)) => listed.push(projection::ListedSecret {
                name: &input.name,
                tags,
                value,
            }),
            Some(Err(cause)) => {
                return Err(render_failure(path, &format!("secret {input}: {cause}")))
            }
            None => return Err(render_failure(path, &format!("secret {input}: not read"))),
        }
    }
    projection::render_format(format, select, names, &listed)
        .map_err(|error| render_failure(path, &error.to_string()))
}
