//! Groups and change hooks of a projected tree (SPEC §9).
//!
//! The files of one `group` show a published set of versions, not each secret's newest: a
//! certificate and its key, set seconds apart by a writer, never show as a mismatched pair.
//! Every second a watcher compares the group's published versions with the members' current
//! ones (from the value cache, which `--refresh` keeps current). When a member changed, the
//! group waits until every member has changed, or until no member has changed for one settle
//! time (2.2 refresh intervals and a second: the walk after the one that saw the change, with room for
//! jitter; two `--cache-ttl` without refresh), then publishes all members at
//! once: the kernel's caches of their files are dropped first, then the group's hook runs.
//! A handle opened earlier keeps the content it opened.
//!
//! Files with their own hook (`on_change`, or `signal` + `pid_file`, on a `[[file]]` outside a
//! group) are watched too: a secret's or a certificate's file by its secret's version, a
//! template or format file by the versions its render read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{info, warn};

use super::tree::TreeKey;
use super::{ProjectedFs, Resolved, Tree};
use crate::fs::core::SecretData;
use crate::fs::FsError;
use crate::hooks::HookRunner;
use crate::projection::{EntryKind, Projection};

/// How often groups and watched files are compared with the cache.
pub(super) const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// The groups and watched files of the current config.
#[derive(Default)]
pub(super) struct Watches {
    groups: Mutex<HashMap<String, Arc<Mutex<GroupState>>>>,
    files: Mutex<HashMap<String, Arc<Mutex<FileWatch>>>>,
}

struct GroupState {
    /// `(path, secret)` of each member file.
    members: Vec<(String, String)>,
    /// What the members show, by path; `None` until the first publication.
    published: Option<HashMap<String, Option<Arc<SecretData>>>>,
    /// Versions seen since a change was first noticed, and when they were last different.
    pending: Option<(Vec<Option<String>>, Instant)>,
    hook: Option<HookRunner>,
}

struct FileWatch {
    /// What the file showed when last looked at (a version, or its render's inputs).
    last: Option<String>,
    hook: HookRunner,
}

impl Watches {
    /// The groups and hooks of `projection` (hooks start on `runtime`).
    pub(super) fn of(projection: &Projection, runtime: Option<&tokio::runtime::Handle>) -> Watches {
        let watches = Watches::default();
        for (name, group) in &projection.groups {
            let members = group
                .members
                .iter()
                .filter_map(|path| match &projection.entries.get(path)?.kind {
                    EntryKind::Secret { name } => Some((path.clone(), name.clone())),
                    _ => None,
                })
                .collect();
            let hook = runtime.zip(group.on_change.as_ref()).map(|(rt, hook)| {
                HookRunner::start(rt, format!("group {name}"), hook.action.clone())
            });
            watches.groups.lock().insert(
                name.clone(),
                Arc::new(Mutex::new(GroupState {
                    members,
                    published: None,
                    pending: None,
                    hook,
                })),
            );
        }
        if let Some(runtime) = runtime {
            for (path, entry) in &projection.entries {
                if let (Some(hook), None) = (&entry.on_change, &entry.group) {
                    let hook =
                        HookRunner::start(runtime, format!("file {path}"), hook.action.clone());
                    watches.files.lock().insert(
                        path.clone(),
                        Arc::new(Mutex::new(FileWatch { last: None, hook })),
                    );
                }
            }
        }
        watches
    }

    pub(super) fn is_empty(&self) -> bool {
        self.groups.lock().is_empty() && self.files.lock().is_empty()
    }
}

impl ProjectedFs {
    /// The content member `path` of `group` shows: the group's published version.
    pub(super) async fn published(
        &self,
        tree: &Tree,
        group: &str,
        path: &str,
    ) -> Result<Arc<SecretData>, FsError> {
        let state = tree.watches().groups.lock().get(group).cloned();
        let Some(state) = state else {
            return Err(FsError::NotFound {
                name: path.to_owned(),
            });
        };
        if state.lock().published.is_none() {
            self.evaluate_group(tree, group, &state).await?;
        }
        let shown = state
            .lock()
            .published
            .as_ref()
            .and_then(|published| published.get(path).cloned())
            .flatten();
        match shown {
            Some(data) if data.enabled => Ok(data),
            Some(data) => Err(FsError::AccessDenied {
                name: data.name.clone(),
                reason: "the secret is disabled".into(),
            }),
            None => Err(FsError::NotFound {
                name: path.to_owned(),
            }),
        }
    }

    /// Compare a group with the cache; publish when it is time (see the module docs).
    async fn evaluate_group(
        &self,
        tree: &Tree,
        group: &str,
        state: &Mutex<GroupState>,
    ) -> Result<(), FsError> {
        let members = state.lock().members.clone();
        let mut current = Vec::with_capacity(members.len());
        for (_, secret) in &members {
            current.push(self.vault.current_value(secret).await?);
        }
        let versions: Vec<Option<String>> = current
            .iter()
            .map(|data| data.as_ref().and_then(|d| d.version.clone()))
            .collect();
        let publish = |state: &mut GroupState| {
            state.published = Some(
                members
                    .iter()
                    .zip(&current)
                    .map(|((path, _), data)| (path.clone(), data.clone()))
                    .collect(),
            );
            state.pending = None;
        };
        let mut state = state.lock();
        let Some(published) = &state.published else {
            publish(&mut state);
            return Ok(());
        };
        let shown: Vec<Option<String>> = members
            .iter()
            .map(|(path, _)| {
                published
                    .get(path)
                    .and_then(|d| d.as_ref().and_then(|d| d.version.clone()))
            })
            .collect();
        let changed = shown.iter().zip(&versions).filter(|(a, b)| a != b).count();
        if changed == 0 {
            state.pending = None;
            return Ok(());
        }
        let settled = match &mut state.pending {
            Some((seen, since)) if *seen == versions => since.elapsed() >= tree.settle,
            pending => {
                *pending = Some((versions.clone(), Instant::now()));
                false
            }
        };
        if changed < members.len() && !settled {
            return Ok(());
        }
        publish(&mut state);
        let paths: Vec<String> = members.iter().map(|(path, _)| path.clone()).collect();
        // The kernel forgets what it showed before anyone can read the new contents.
        tree.invalidate_paths(&paths);
        info!(group, files = %paths.join(" "), "group published: its files changed together");
        if let Some(hook) = &state.hook {
            hook.trigger(&paths.join(" "));
        }
        Ok(())
    }

    /// A file with its own hook: run it when what the file shows changed.
    async fn evaluate_file(&self, tree: &Tree, path: &str, watch: &Mutex<FileWatch>) {
        let Ok(resolved) = tree.resolve_path(path) else {
            return;
        };
        let now = match &resolved {
            Resolved::Secret { secret, .. } => match self.vault.current_value(secret).await {
                Ok(data) => data.and_then(|d| d.version.clone()),
                Err(_) => return,
            },
            Resolved::Certificate { certificate, .. } => {
                match self.vault.certificate_value(certificate).await {
                    Ok(data) => data.version.clone(),
                    Err(_) => return,
                }
            }
            Resolved::Rendered { entry, .. } => match self.render(tree, path, entry).await {
                Ok(_) => tree.renders.fingerprint(path),
                Err(_) => return,
            },
            _ => return,
        };
        let mut watch = watch.lock();
        if watch.last.is_some() && watch.last != now {
            tree.invalidate_paths(&[path.to_owned()]);
            watch.hook.trigger(path);
        }
        watch.last = now;
    }

    /// Watch groups and files with hooks until the filesystem is dropped.
    pub fn start_watching(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let Some(tree) = &self.tree else { return };
        tree.set_runtime(runtime);
        let me = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(WATCH_PERIOD).await;
                let Some(fs) = me.upgrade() else { return };
                let Some(tree) = fs.tree.clone() else { return };
                let watches = tree.watches();
                if watches.is_empty() {
                    continue;
                }
                let groups: Vec<(String, Arc<Mutex<GroupState>>)> = watches
                    .groups
                    .lock()
                    .iter()
                    .map(|(name, state)| (name.clone(), state.clone()))
                    .collect();
                for (name, state) in groups {
                    if let Err(error) = fs.evaluate_group(&tree, &name, &state).await {
                        warn!(group = name.as_str(), %error, "cannot check the group's secrets");
                    }
                }
                let files: Vec<(String, Arc<Mutex<FileWatch>>)> = watches
                    .files
                    .lock()
                    .iter()
                    .map(|(path, watch)| (path.clone(), watch.clone()))
                    .collect();
                for (path, watch) in files {
                    fs.evaluate_file(&tree, &path, &watch).await;
                }
            }
        });
    }
}

impl Tree {
    /// Drop what the kernel cached of the tree's files at `paths`.
    pub(super) fn invalidate_paths(&self, paths: &[String]) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        let nodes = self.nodes.lock();
        for path in paths {
            if let Some(ino) = nodes.lookup(&TreeKey::Path(path.clone())) {
                notifier.inval_inode(ino);
            }
        }
    }
}
