//! The projection config (SPEC §8): the TOML model, and its validation into a checked
//! [`Projection`] — a tree of entries with numeric owners and modes, templates compiled and
//! `template_file`s read. Every refusal is a [`ConfigError`] printed `FILE:LINE: reason`, quoting
//! the offending key or value; nothing is mounted from a config that does not validate.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::formats::Format;
use super::names::NameConvention;
use super::template::Template;
use crate::certificate_files::Part;
use crate::vault::model::{is_valid_secret_name, secret_name_problem};

/// A config refused: `FILE:LINE: reason` (`FILE: reason` when no line applies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file, or the `template_file` a template syntax error is in.
    pub file: String,
    /// 1-based line, when one applies.
    pub line: Option<usize>,
    /// What is wrong, quoting the key or value.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

// ---- The TOML model (exactly the keys of SPEC §8) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    defaults: Option<RawDefaults>,
    vault: Option<RawVault>,
    #[serde(default)]
    file: Vec<Spanned<RawEntry>>,
    #[serde(default)]
    dir: Vec<Spanned<RawEntry>>,
    /// `[group.NAME]`: what to run when a group's files change (§9).
    #[serde(default)]
    group: BTreeMap<String, Spanned<RawHook>>,
}

/// `on_change`, or `signal` + `pid_file`: of a `[group.NAME]` table or a `[[file]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [group.NAME] table")]
struct RawHook {
    on_change: Option<Spanned<String>>,
    signal: Option<Spanned<String>>,
    pid_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [defaults] table")]
struct RawDefaults {
    uid: Option<Spanned<RawScalar>>,
    gid: Option<Spanned<RawScalar>>,
    mode: Option<Spanned<RawScalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [vault] table")]
struct RawVault {
    path: Spanned<String>,
}

/// A `[[file]]` or `[[dir]]` table: one model, so both carry exactly these keys; the keys a
/// `[[dir]]` does not take (`secret`, `template`, `template_file`, `format`, `certificate`,
/// `part`, `group`) are refused
/// by [`Checker::dir`] with the line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawEntry {
    path: Spanned<String>,
    secret: Option<Spanned<String>>,
    template: Option<Spanned<String>>,
    template_file: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    certificate: Option<Spanned<String>>,
    part: Option<Spanned<String>>,
    select: Option<Spanned<RawSelect>>,
    names: Option<Spanned<String>>,
    uid: Option<Spanned<RawScalar>>,
    gid: Option<Spanned<RawScalar>>,
    mode: Option<Spanned<RawScalar>>,
    group: Option<Spanned<String>>,
    read_only: Option<Spanned<bool>>,
    on_change: Option<Spanned<String>>,
    signal: Option<Spanned<String>>,
    pid_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a select table ({ prefix = \"…\" }, { names = [...] } or { tag = \"k=v\" })"
)]
struct RawSelect {
    prefix: Option<String>,
    names: Option<Vec<String>>,
    tag: Option<String>,
}

/// `uid`/`gid` (a name or a number) and `mode` (an octal string; [`Checker::mode`] refuses a
/// number with a hint, as TOML reads `0o440` as 288).
enum RawScalar {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawScalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawScalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawScalar, E> {
                Ok(RawScalar::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawScalar, E> {
                Ok(RawScalar::Number(i64::try_from(v).unwrap_or(-1)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawScalar, E> {
                Ok(RawScalar::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---- The checked projection ----

/// Which secrets an entry covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every secret (no `select`).
    #[default]
    All,
    /// `{ prefix = "…" }`: names starting so (ASCII-case-insensitively); the prefix is stripped
    /// before the name convention maps the rest.
    Prefix(String),
    /// `{ names = [...] }`: exactly these.
    Names(Vec<String>),
    /// `{ tag = "k=v" }`: secrets whose tag `k` is `v`.
    Tag { key: String, value: String },
}

impl Selection {
    /// The prefix to strip before mapping names, if any.
    pub fn prefix(&self) -> Option<&str> {
        match self {
            Selection::Prefix(p) => Some(p),
            _ => None,
        }
    }

    /// The key (format) or file name (`[[dir]]`) of secret `name` with `tags`: `None` when the
    /// selection leaves it out or the convention maps it to no usable name.
    pub fn key_for(
        &self,
        names: NameConvention,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Option<String> {
        if !self.matches(name, tags) {
            return None;
        }
        super::names::project_name(name, self.prefix(), names)
    }

    /// The secret a new file `file_name` in a writable `[[dir]]` creates: `None` when no secret
    /// maps to exactly that name, or when a `names` selection does not list it. With a `tag`
    /// selection the caller must give the new secret that tag ([`Selection::tag`]), or the file
    /// vanishes from the directory.
    pub fn secret_for(&self, names: NameConvention, file_name: &str) -> Option<String> {
        let secret = super::names::secret_name_for(file_name, self.prefix(), names)?;
        match self {
            Selection::Names(listed) if !listed.iter().any(|n| n.eq_ignore_ascii_case(&secret)) => {
                None
            }
            _ => Some(secret),
        }
    }

    /// The tag a secret needs to be selected, for a `tag` selection.
    pub fn tag(&self) -> Option<(&str, &str)> {
        match self {
            Selection::Tag { key, value } => Some((key, value)),
            _ => None,
        }
    }

    /// Whether the secret `name` with `tags` is selected.
    pub fn matches(&self, name: &str, tags: &BTreeMap<String, String>) -> bool {
        match self {
            Selection::All => true,
            Selection::Prefix(p) => super::names::strip_prefix(name, p).is_some(),
            Selection::Names(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
            Selection::Tag { key, value } => tags.get(key) == Some(value),
        }
    }
}

/// What an entry shows.
#[derive(Debug, Clone)]
pub enum EntryKind {
    /// `[[file]]` with `secret`: the secret's own file (read = get, write = set).
    Secret { name: String },
    /// `[[file]]` with `template` or `template_file` (read-only).
    Template {
        template: Template,
        /// Where the text came from: `inline` or the template file's path.
        source: String,
    },
    /// `[[file]]` with `format` (read-only).
    Format {
        format: Format,
        select: Selection,
        names: NameConvention,
    },
    /// `[[file]]` with `certificate` and `part` (read-only): one file of a certificate, made
    /// from its backing secret (SPEC §10).
    Certificate { name: String, part: Part },
    /// `[[dir]]`: one file per selected secret, named by the convention.
    Dir {
        select: Selection,
        names: NameConvention,
    },
}

/// One configured entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative, `/`-separated, checked path.
    pub path: String,
    /// Where the config declares it (for log lines).
    pub line: usize,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits of the file, or of the files a `[[dir]]` shows (the `[[dir]]` itself takes
    /// `uid`/`gid` and the mount's `--dir-mode`); `None` = `[defaults]` gave none, so the mount's
    /// `--file-mode`. `[defaults] mode` is already applied.
    pub mode: Option<u16>,
    /// EROFS on writes: always for templates and formats, `read_only = true` otherwise.
    pub read_only: bool,
    /// §9: files of one group change together.
    pub group: Option<String>,
    /// §9: what to run when this file changes.
    pub on_change: Option<Hook>,
    pub kind: EntryKind,
}

/// What to do when files change (§9): run a command, or signal a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    /// `on_change = "…"`, run with `sh -c`.
    Command(String),
    /// `signal = "HUP"` sent to the pid in `pid_file`.
    Signal {
        name: String,
        number: i32,
        pid_file: PathBuf,
    },
}

/// A hook and where the config declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub action: HookAction,
    pub line: usize,
}

/// `[group.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub on_change: Option<Hook>,
    /// Paths of its files.
    pub members: Vec<String>,
}

/// The signals a hook may send.
const SIGNALS: [(&str, i32); 7] = [
    ("HUP", libc::SIGHUP),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("TERM", libc::SIGTERM),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("WINCH", libc::SIGWINCH),
];

/// What a path of the tree is.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// A directory the tree needs as a parent of entries (owned as `[defaults]`, `--dir-mode`).
    Dir,
    /// The `[vault]` path: the vault's own layout.
    Vault,
    /// A configured entry.
    Entry(&'a Entry),
}

/// A checked config.
#[derive(Debug, Clone)]
pub struct Projection {
    /// The config file, as named in errors and logs.
    pub origin: String,
    /// Owner of the tree's directories and default owner of entries.
    pub uid: u32,
    pub gid: u32,
    /// Line of `[defaults] uid`/`gid` when set (for the `--allow-other` message).
    defaults_line: Option<usize>,
    /// `[defaults] mode`; `None` = the mount's `--file-mode`.
    pub default_mode: Option<u16>,
    /// `[vault] path`.
    pub vault_path: Option<String>,
    /// Entries by path.
    pub entries: BTreeMap<String, Entry>,
    /// Directories implied by entry paths (every proper parent, without the root "").
    pub dirs: BTreeSet<String>,
    /// Groups by name: every `group = …` of a file, with its `[group.NAME]` hook if any.
    pub groups: BTreeMap<String, Group>,
}

impl Projection {
    /// Reads and checks the config at `path`; `template_file`s are read relative to its directory.
    pub fn load(path: &Path) -> Result<Projection, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: origin.clone(),
            line: None,
            reason: format!("cannot read the config: {e}"),
        })?;
        let base = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        Projection::parse(&text, &origin, &base)
    }

    /// Checks config `text` named `origin` in errors; relative `template_file`s are read from
    /// `base_dir`.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Projection, ConfigError> {
        Checker {
            text,
            origin,
            base_dir,
        }
        .check()
    }

    /// What `path` ("" = the root) is, if anything.
    pub fn node(&self, path: &str) -> Option<Node<'_>> {
        if path.is_empty() || self.dirs.contains(path) {
            Some(Node::Dir)
        } else if self.vault_path.as_deref() == Some(path) {
            Some(Node::Vault)
        } else {
            self.entries.get(path).map(Node::Entry)
        }
    }

    /// The names directly inside directory `dir` ("" = the root), sorted, with what each is.
    pub fn children(&self, dir: &str) -> Vec<(String, Node<'_>)> {
        let inside = |p: &str| -> Option<String> {
            let rest = if dir.is_empty() {
                p
            } else {
                p.strip_prefix(dir)?.strip_prefix('/')?
            };
            (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned())
        };
        let mut out: Vec<(String, Node<'_>)> = Vec::new();
        for d in &self.dirs {
            if let Some(name) = inside(d) {
                out.push((name, Node::Dir));
            }
        }
        if let Some(name) = self.vault_path.as_deref().and_then(inside) {
            out.push((name, Node::Vault));
        }
        for (p, e) in &self.entries {
            if let Some(name) = inside(p) {
                out.push((name, Node::Entry(e)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Where the config gives a file (or the tree's directories) to another user than `uid`/`gid`
    /// (the one running akvfs), which needs `--allow-other`: `FILE:LINE: …` naming the first such
    /// entry, or `None`. Another owner counts, and so does another group when the mode (the
    /// entry's, else `[defaults]`, else the mount's `file_mode`/`dir_mode`) gives that group any
    /// permission: without allow_other the kernel lets no other user in at all.
    pub fn needs_allow_other(
        &self,
        uid: u32,
        gid: u32,
        file_mode: u16,
        dir_mode: u16,
    ) -> Option<String> {
        let foreign = |u: u32, g: u32, mode: u16| u != uid || (g != gid && mode & 0o070 != 0);
        if foreign(self.uid, self.gid, dir_mode) {
            return Some(format!(
                "{}:{}: [defaults] gives the tree's directories to uid {} gid {}; mount with --allow-other",
                self.origin,
                self.defaults_line.unwrap_or(1),
                self.uid,
                self.gid
            ));
        }
        self.entries
            .values()
            .find(|e| {
                let default = match e.kind {
                    EntryKind::Dir { .. } => dir_mode,
                    _ => file_mode,
                };
                foreign(e.uid, e.gid, e.mode.unwrap_or(default))
                    || (matches!(e.kind, EntryKind::Dir { .. }) && foreign(e.uid, e.gid, dir_mode))
            })
            .map(|e| {
                format!(
                    "{}:{}: {:?} belongs to uid {} gid {}; mount with --allow-other",
                    self.origin, e.line, e.path, e.uid, e.gid
                )
            })
    }
}

// ---- Checking ----

struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
    base_dir: &'a Path,
}

/// Owner and mode after `[defaults]`.
struct Defaults {
    uid: u32,
    gid: u32,
    mode: Option<u16>,
}

impl Checker<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error<T>(&self, span: &Range<usize>, reason: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.origin.to_owned(),
            line: Some(self.line_of(span)),
            reason: reason.into(),
        })
    }

    fn check(&self) -> Result<Projection, ConfigError> {
        let raw: RawConfig = toml::from_str(self.text).map_err(|e| ConfigError {
            file: self.origin.to_owned(),
            line: e.span().map(|s| self.line_of(&s)),
            reason: e.message().trim_end().to_owned(),
        })?;
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let mut defaults = Defaults {
            uid: euid,
            gid: egid,
            mode: None,
        };
        let mut defaults_line = None;
        if let Some(d) = &raw.defaults {
            if let Some(u) = &d.uid {
                defaults.uid = self.id(u, "uid")?;
                defaults_line = Some(self.line_of(&u.span()));
            }
            if let Some(g) = &d.gid {
                defaults.gid = self.id(g, "gid")?;
                defaults_line = defaults_line.or(Some(self.line_of(&g.span())));
            }
            if let Some(m) = &d.mode {
                defaults.mode = Some(self.mode(m)?);
            }
        }

        // Every path of the tree with its line, to find clashes.
        let mut paths: BTreeMap<String, usize> = BTreeMap::new();
        let mut vault_path = None;
        if let Some(v) = &raw.vault {
            self.path(&v.path, &mut paths)?;
            vault_path = Some(v.path.get_ref().clone());
        }
        let mut entries = BTreeMap::new();
        for f in &raw.file {
            let entry = self.file(f, &defaults)?;
            self.path(&f.get_ref().path, &mut paths)?;
            entries.insert(entry.path.clone(), entry);
        }
        for d in &raw.dir {
            let entry = self.dir(d, &defaults)?;
            self.path(&d.get_ref().path, &mut paths)?;
            entries.insert(entry.path.clone(), entry);
        }

        // A path that is a parent of another must be a directory of the tree, not an entry.
        let mut dirs = BTreeSet::new();
        for (path, line) in &paths {
            let mut parent = path.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                parent = p;
                if let Some(other) = paths.get(parent) {
                    return Err(ConfigError {
                        file: self.origin.to_owned(),
                        line: Some(*line),
                        reason: format!(
                            "path {path:?} needs {parent:?} to be a directory, but line {other} puts an entry there"
                        ),
                    });
                }
                dirs.insert(parent.to_owned());
            }
        }
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for entry in entries.values() {
            if let Some(group) = &entry.group {
                groups
                    .entry(group.clone())
                    .or_insert_with(|| Group {
                        on_change: None,
                        members: Vec::new(),
                    })
                    .members
                    .push(entry.path.clone());
            }
        }
        for (name, raw) in &raw.group {
            let Some(group) = groups.get_mut(name) else {
                return self.error(
                    &raw.span(),
                    format!("[group.{name}]: no [[file]] has group = {name:?}"),
                );
            };
            group.on_change = self.hook(raw.get_ref(), &format!("[group.{name}]"))?;
        }
        Ok(Projection {
            origin: self.origin.to_owned(),
            uid: defaults.uid,
            gid: defaults.gid,
            defaults_line,
            default_mode: defaults.mode,
            vault_path,
            entries,
            dirs,
            groups,
        })
    }

    /// `on_change`, or `signal` with `pid_file`, of a group or a file (`what` names it).
    fn hook(&self, r: &RawHook, what: &str) -> Result<Option<Hook>, ConfigError> {
        match (&r.on_change, &r.signal, &r.pid_file) {
            (None, None, None) => Ok(None),
            (Some(command), None, None) => {
                if command.get_ref().trim().is_empty() {
                    return self.error(&command.span(), format!("{what}: on_change is empty"));
                }
                Ok(Some(Hook {
                    action: HookAction::Command(command.get_ref().clone()),
                    line: self.line_of(&command.span()),
                }))
            }
            (Some(command), _, _) => self.error(
                &command.span(),
                format!("{what}: on_change or signal + pid_file, not both"),
            ),
            (None, Some(signal), Some(pid_file)) => {
                let name = signal
                    .get_ref()
                    .trim_start_matches("SIG")
                    .to_ascii_uppercase();
                let Some(&(_, number)) = SIGNALS.iter().find(|(n, _)| *n == name) else {
                    let known: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
                    return self.error(
                        &signal.span(),
                        format!(
                            "{what}: signal = {:?} is not one of {}",
                            signal.get_ref(),
                            known.join(", ")
                        ),
                    );
                };
                let path = PathBuf::from(pid_file.get_ref());
                if !path.is_absolute() {
                    return self.error(
                        &pid_file.span(),
                        format!(
                            "{what}: pid_file = {:?} must be absolute",
                            pid_file.get_ref()
                        ),
                    );
                }
                Ok(Some(Hook {
                    action: HookAction::Signal {
                        name,
                        number,
                        pid_file: path,
                    },
                    line: self.line_of(&signal.span()),
                }))
            }
            (None, Some(s), None) => {
                self.error(&s.span(), format!("{what}: signal needs pid_file"))
            }
            (None, None, Some(p)) => {
                self.error(&p.span(), format!("{what}: pid_file needs signal"))
            }
        }
    }

    /// Checks one path and records it; refuses a second entry on the same path.
    fn path(
        &self,
        path: &Spanned<String>,
        paths: &mut BTreeMap<String, usize>,
    ) -> Result<(), ConfigError> {
        let p = path.get_ref();
        let problem = if p.is_empty() {
            Some("is empty")
        } else if p.starts_with('/') {
            Some("is absolute; paths are relative to the mount point")
        } else if p.contains('\0') {
            Some("holds NUL")
        } else if p.split('/').any(str::is_empty) {
            Some("has an empty component ('//' or a trailing '/')")
        } else if p.split('/').any(|c| c == "." || c == "..") {
            Some("has a '.' or '..' component")
        } else if p.split('/').any(|c| c.len() > 255) {
            Some("has a component longer than 255 bytes")
        } else {
            None
        };
        if let Some(problem) = problem {
            return self.error(&path.span(), format!("path {p:?} {problem}"));
        }
        let line = self.line_of(&path.span());
        if let Some(other) = paths.insert(p.clone(), line) {
            return self.error(
                &path.span(),
                format!("path {p:?} is already used by the entry at line {other}"),
            );
        }
        Ok(())
    }

    fn mode(&self, m: &Spanned<RawScalar>) -> Result<u16, ConfigError> {
        let RawScalar::Text(text) = m.get_ref() else {
            return self.error(
                &m.span(),
                "mode must be a quoted octal string like \"0440\" (TOML reads a bare number as decimal or 0o…)",
            );
        };
        crate::permissions::parse_mode(text)
            .or_else(|e| self.error(&m.span(), format!("mode: {e}")))
    }

    fn id(&self, id: &Spanned<RawScalar>, key: &str) -> Result<u32, ConfigError> {
        let bad = |reason: String| self.error(&id.span(), format!("{key}: {reason}"));
        match id.get_ref() {
            RawScalar::Number(n) => u32::try_from(*n)
                .ok()
                .filter(|n| *n != u32::MAX)
                .map_or_else(|| bad(format!("{n} is not an id (0 to 4294967294)")), Ok),
            RawScalar::Text(name)
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) =>
            {
                crate::permissions::parse_id(name).or_else(bad)
            }
            RawScalar::Text(name) => {
                let found = if key == "uid" {
                    lookup_user(name)
                } else {
                    lookup_group(name)
                };
                match found {
                    Ok(Some(id)) => Ok(id),
                    Ok(None) => bad(format!(
                        "unknown {} {name:?}",
                        if key == "uid" { "user" } else { "group" }
                    )),
                    Err(e) => bad(format!("cannot look up {name:?}: {e}")),
                }
            }
        }
    }

    fn names(&self, names: Option<&Spanned<String>>) -> Result<NameConvention, ConfigError> {
        let Some(n) = names else {
            return Ok(NameConvention::Same);
        };
        NameConvention::parse(n.get_ref()).map_or_else(
            || {
                self.error(
                    &n.span(),
                    format!(
                        "names = {:?}: not one of same, env, aspnet, spring, dots",
                        n.get_ref()
                    ),
                )
            },
            Ok,
        )
    }

    fn select(&self, select: Option<&Spanned<RawSelect>>) -> Result<Selection, ConfigError> {
        let Some(s) = select else {
            return Ok(Selection::All);
        };
        let span = s.span();
        let r = s.get_ref();
        match (&r.prefix, &r.names, &r.tag) {
            (Some(p), None, None) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    self.error(
                        &span,
                        format!("select prefix {p:?}: no secret name starts so (names are letters, digits and '-')"),
                    )
                } else {
                    Ok(Selection::Prefix(p.clone()))
                }
            }
            (None, Some(names), None) => {
                if names.is_empty() {
                    return self.error(&span, "select names = []: selects nothing");
                }
                for n in names {
                    if let Some(problem) = secret_name_problem(n) {
                        return self.error(&span, format!("select names: {n:?}: {problem}"));
                    }
                }
                Ok(Selection::Names(names.clone()))
            }
            (None, None, Some(tag)) => match tag.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok(Selection::Tag {
                    key: k.to_owned(),
                    value: v.to_owned(),
                }),
                _ => self.error(&span, format!("select tag {tag:?}: expected \"key=value\"")),
            },
            _ => self.error(&span, "select takes exactly one of prefix, names or tag"),
        }
    }

    /// The entry `r` declares, with its owner and mode (or the defaults').
    fn entry(
        &self,
        r: &RawEntry,
        defaults: &Defaults,
        read_only: bool,
        group: Option<String>,
        kind: EntryKind,
    ) -> Result<Entry, ConfigError> {
        Ok(Entry {
            path: r.path.get_ref().clone(),
            line: self.line_of(&r.path.span()),
            uid: r
                .uid
                .as_ref()
                .map_or(Ok(defaults.uid), |u| self.id(u, "uid"))?,
            gid: r
                .gid
                .as_ref()
                .map_or(Ok(defaults.gid), |g| self.id(g, "gid"))?,
            mode: match &r.mode {
                Some(m) => Some(self.mode(m)?),
                None => defaults.mode,
            },
            read_only,
            group,
            on_change: self.hook(
                &RawHook {
                    on_change: r.on_change.clone(),
                    signal: r.signal.clone(),
                    pid_file: r.pid_file.clone(),
                },
                &format!("[[file]] {:?}", r.path.get_ref()),
            )?,
            kind,
        })
    }

    fn file(&self, f: &Spanned<RawEntry>, defaults: &Defaults) -> Result<Entry, ConfigError> {
        let span = f.span();
        let r = f.get_ref();
        let sources: Vec<&str> = [
            ("secret", r.secret.is_some()),
            ("template", r.template.is_some()),
            ("template_file", r.template_file.is_some()),
            ("format", r.format.is_some()),
            ("certificate", r.certificate.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if sources.len() != 1 {
            return self.error(
                &span,
                format!(
                    "[[file]] {:?} needs exactly one of secret, template, template_file, format or certificate{}",
                    r.path.get_ref(),
                    if sources.is_empty() {
                        String::new()
                    } else {
                        format!(" (has {})", sources.join(", "))
                    }
                ),
            );
        }
        if r.format.is_none() {
            for (key, span) in [
                ("select", r.select.as_ref().map(Spanned::span)),
                ("names", r.names.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    return self.error(
                        &span,
                        format!("{key} only goes with format (or in a [[dir]]); {:?} shows one secret or a template", r.path.get_ref()),
                    );
                }
            }
        }
        if let (Some(part), None) = (&r.part, &r.certificate) {
            return self.error(
                &part.span(),
                format!(
                    "part only goes with certificate; {:?} is a {} file",
                    r.path.get_ref(),
                    sources[0]
                ),
            );
        }
        let always_read_only = r.secret.is_none();
        let read_only = match &r.read_only {
            Some(ro) if always_read_only && !*ro.get_ref() => {
                return self.error(
                    &ro.span(),
                    format!(
                        "read_only = false: {:?} is a {} file, always read-only",
                        r.path.get_ref(),
                        sources[0]
                    ),
                )
            }
            Some(ro) => *ro.get_ref(),
            None => always_read_only,
        };
        let group = match &r.group {
            Some(g) if g.get_ref().is_empty() => {
                return self.error(&g.span(), "group = \"\": a group needs a name")
            }
            Some(g) if r.secret.is_none() => {
                return self.error(
                    &g.span(),
                    format!(
                        "group: only secret files form groups; {:?} is a {} file (a render reads its inputs at once)",
                        r.path.get_ref(),
                        sources[0]
                    ),
                )
            }
            Some(g) => Some(g.get_ref().clone()),
            None => None,
        };
        let kind = if let Some(s) = &r.secret {
            if let Some(problem) = secret_name_problem(s.get_ref()) {
                return self.error(&s.span(), format!("secret = {:?}: {problem}", s.get_ref()));
            }
            debug_assert!(is_valid_secret_name(s.get_ref()));
            EntryKind::Secret {
                name: s.get_ref().clone(),
            }
        } else if let Some(t) = &r.template {
            let template = Template::compile(t.get_ref()).map_err(|e| {
                // The first line of a multi-line string after `"""` + newline is the next line.
                let start = t.span().start;
                let rest = self.text.get(start..).unwrap_or("");
                let skip = usize::from(
                    rest.starts_with("\"\"\"\n")
                        || rest.starts_with("'''\n")
                        || rest.starts_with("\"\"\"\r\n")
                        || rest.starts_with("'''\r\n"),
                );
                ConfigError {
                    file: self.origin.to_owned(),
                    line: Some(self.line_of(&t.span()) + skip + e.line - 1),
                    reason: format!(
                        "template syntax error (template line {}): {}",
                        e.line, e.reason
                    ),
                }
            })?;
            EntryKind::Template {
                template,
                source: "inline".to_owned(),
            }
        } else if let Some(tf) = &r.template_file {
            let path = self.base_dir.join(tf.get_ref());
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).or_else(|e| {
                self.error(
                    &tf.span(),
                    format!(
                        "template_file {:?}: cannot read {shown:?}: {e}",
                        tf.get_ref()
                    ),
                )
            })?;
            let template = Template::compile(&text).map_err(|e| ConfigError {
                file: shown.clone(),
                line: Some(e.line),
                reason: format!("template syntax error: {}", e.reason),
            })?;
            EntryKind::Template {
                template,
                source: shown,
            }
        } else if let Some(c) = &r.certificate {
            self.certificate(r, c)?
        } else if let Some(fmt) = &r.format {
            let format = Format::parse(fmt.get_ref()).map_or_else(
                || {
                    self.error(
                        &fmt.span(),
                        format!(
                            "format = {:?}: not one of dotenv, json, properties, yaml",
                            fmt.get_ref()
                        ),
                    )
                },
                Ok,
            )?;
            EntryKind::Format {
                format,
                select: self.select(r.select.as_ref())?,
                names: self.names(r.names.as_ref())?,
            }
        } else {
            return self.error(&span, "unreachable: no source");
        };
        self.entry(r, defaults, read_only, group, kind)
    }

    /// `certificate = "NAME"` with its `part`.
    fn certificate(&self, r: &RawEntry, c: &Spanned<String>) -> Result<EntryKind, ConfigError> {
        if let Some(problem) = secret_name_problem(c.get_ref()) {
            return self.error(
                &c.span(),
                format!("certificate = {:?}: {problem}", c.get_ref()),
            );
        }
        let parts = "cert, chain, fullchain, key, bundle or pfx";
        let Some(part) = &r.part else {
            return self.error(
                &c.span(),
                format!(
                    "[[file]] {:?}: certificate needs part = {parts}",
                    r.path.get_ref()
                ),
            );
        };
        let Some(parsed) = Part::parse(part.get_ref()) else {
            return self.error(
                &part.span(),
                format!("part = {:?}: not one of {parts}", part.get_ref()),
            );
        };
        Ok(EntryKind::Certificate {
            name: c.get_ref().clone(),
            part: parsed,
        })
    }

    fn dir(&self, d: &Spanned<RawEntry>, defaults: &Defaults) -> Result<Entry, ConfigError> {
        let r = d.get_ref();
        for (key, span) in [
            ("secret", r.secret.as_ref().map(Spanned::span)),
            ("template", r.template.as_ref().map(Spanned::span)),
            ("template_file", r.template_file.as_ref().map(Spanned::span)),
            ("format", r.format.as_ref().map(Spanned::span)),
            ("certificate", r.certificate.as_ref().map(Spanned::span)),
            ("part", r.part.as_ref().map(Spanned::span)),
            ("group", r.group.as_ref().map(Spanned::span)),
            ("on_change", r.on_change.as_ref().map(Spanned::span)),
            ("signal", r.signal.as_ref().map(Spanned::span)),
            ("pid_file", r.pid_file.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                return self.error(
                    &span,
                    format!("{key}: not a key of [[dir]] (it takes path, select, names, uid, gid, mode, read_only)"),
                );
            }
        }
        let kind = EntryKind::Dir {
            select: self.select(r.select.as_ref())?,
            names: self.names(r.names.as_ref())?,
        };
        let read_only = r.read_only.as_ref().is_some_and(|ro| *ro.get_ref());
        self.entry(r, defaults, read_only, None, kind)
    }
}

// ---- Users and groups ----

/// The uid of user `name` (getpwnam_r) or, with `group`, the gid of group `name` (getgrnam_r);
/// `Ok(None)` when there is no such entry.
fn lookup_id(name: &str, group: bool) -> std::io::Result<Option<u32>> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    // SAFETY: all-zero passwd and group structs are valid out-parameters.
    let (mut pw, mut gr): (libc::passwd, libc::group) = unsafe { std::mem::zeroed() };
    let mut size = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: every pointer is valid for the call and the buffer length is its own.
        let (rc, found) = unsafe {
            if group {
                let mut result: *mut libc::group = std::ptr::null_mut();
                let rc = libc::getgrnam_r(
                    cname.as_ptr(),
                    &mut gr,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                );
                (rc, !result.is_null())
            } else {
                let mut result: *mut libc::passwd = std::ptr::null_mut();
                let rc = libc::getpwnam_r(
                    cname.as_ptr(),
                    &mut pw,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                );
                (rc, !result.is_null())
            }
        };
        if rc == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        return Ok(found.then_some(if group { gr.gr_gid } else { pw.pw_uid }));
    }
}

/// The uid of user `name`.
pub fn lookup_user(name: &str) -> std::io::Result<Option<u32>> {
    lookup_id(name, false)
}

/// The gid of group `name`.
pub fn lookup_group(name: &str) -> std::io::Result<Option<u32>> {
    lookup_id(name, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Projection, ConfigError> {
        Projection::parse(text, "app.toml", Path::new("/nonexistent"))
    }

    fn refused(text: &str) -> String {
        parse(text).expect_err("refused").to_string()
    }

    /// Asserts `text` is refused with an error starting with `start`.
    fn refused_with(text: &str, start: &str) {
        let said = refused(text);
        assert!(said.starts_with(start), "{said}");
    }

    const SPEC_EXAMPLE: &str = r#"
[defaults]                    # every entry inherits these
uid = "www-data"
gid = "www-data"
mode = "0440"

[vault]
path = "vault"

[[file]]
path = "nginx/tls.crt"
secret = "web-tls-crt"
group = "web-tls"

[[file]]
path = "nginx/tls.key"
secret = "web-tls-key"
mode = "0400"
group = "web-tls"

[[file]]
path = "pg/.pgpass"
uid = 1500
mode = "0600"
template = "db.internal:5432:*:app:{{ secret('db-password') }}\n"

[[file]]
path = "app/appsettings.json"
template_file = "appsettings.json.j2"

[[file]]
path = "app/.env"
format = "dotenv"
select = { prefix = "app-" }
names = "env"

[[dir]]
path = "config"
select = { prefix = "myapp--" }
names = "aspnet"
"#;

    #[test]
    fn the_spec_example_validates_into_a_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("appsettings.json.j2"),
            "{\"Db\": {{ secret('db') | tojson }}}\n",
        )
        .expect("write");
        let p = Projection::parse(SPEC_EXAMPLE, "app.toml", dir.path()).expect("valid");
        assert_eq!((p.uid, p.gid, p.default_mode), (33, 33, Some(0o440)));
        assert_eq!(p.vault_path.as_deref(), Some("vault"));
        let key = &p.entries["nginx/tls.key"];
        assert_eq!(
            (key.uid, key.gid, key.mode, key.line),
            (33, 33, Some(0o400), 16)
        );
        assert!(!key.read_only);
        assert_eq!(key.group.as_deref(), Some("web-tls"));
        assert!(matches!(&key.kind, EntryKind::Secret { name } if name == "web-tls-key"));
        let pgpass = &p.entries["pg/.pgpass"];
        assert_eq!((pgpass.uid, pgpass.mode), (1500, Some(0o600)));
        assert!(pgpass.read_only);
        assert!(matches!(
            &p.entries["app/.env"].kind,
            EntryKind::Format { format: Format::Dotenv, select: Selection::Prefix(pre), names: NameConvention::Env } if pre == "app-"
        ));
        assert!(matches!(
            &p.entries["config"].kind,
            EntryKind::Dir {
                names: NameConvention::Aspnet,
                ..
            }
        ));
        let root: Vec<String> = p.children("").into_iter().map(|c| c.0).collect();
        assert_eq!(root, ["app", "config", "nginx", "pg", "vault"]);
        let app: Vec<String> = p.children("app").into_iter().map(|c| c.0).collect();
        assert_eq!(app, [".env", "appsettings.json"]);
        assert!(matches!(p.node("nginx"), Some(Node::Dir)));
        assert!(matches!(p.node("vault"), Some(Node::Vault)));
        assert!(matches!(p.node("pg/.pgpass"), Some(Node::Entry(_))));
        assert!(p.node("nope").is_none());
        assert!(p
            .needs_allow_other(0, 0, 0o600, 0o700)
            .is_some_and(|m| m.starts_with("app.toml:3: ")));
    }

    #[test]
    fn allow_other_is_needed_for_another_owner_or_a_readable_other_group() {
        let p = parse("[[file]]\npath = \"a\"\nsecret = \"a\"\n\n[[file]]\npath = \"b\"\nsecret = \"b\"\nuid = 1500\n").expect("valid");
        let (u, g) = (p.uid, p.gid);
        let said = p.needs_allow_other(u, g, 0o600, 0o700).unwrap_or_default();
        assert_eq!(
            said,
            "app.toml:6: \"b\" belongs to uid 1500 gid 0; mount with --allow-other"
                .replace("gid 0", &format!("gid {g}"))
        );
        let p = parse("[[file]]\npath = \"a\"\nsecret = \"a\"\ngid = 33\nmode = \"0440\"\n")
            .expect("valid");
        assert!(p.needs_allow_other(p.uid, 0, 0o600, 0o700).is_some());
        let p = parse("[[file]]\npath = \"a\"\nsecret = \"a\"\ngid = 33\nmode = \"0400\"\n")
            .expect("valid");
        assert!(p.needs_allow_other(p.uid, 0, 0o600, 0o700).is_none());
    }

    #[test]
    fn unknown_keys_name_the_line_and_key() {
        for (text, start) in [
            (
                "[[file]]\npath = \"a\"\nsecret = \"a\"\nowner = \"x\"\n",
                "app.toml:4: unknown field `owner`",
            ),
            ("[defaults]\nuser = 1\n", "app.toml:2: unknown field `user`"),
            (
                "[[dir]]\npath = \"a\"\ngroup = \"g\"\n",
                "app.toml:3: group: not a key of [[dir]]",
            ),
            (
                "[[dir]]\npath = \"a\"\nsecret = \"g\"\n",
                "app.toml:3: secret: not a key of [[dir]]",
            ),
            (
                "[[file]]\npath = \"a\"\nsecret = \"a\"\nselect = { prefix = \"x\", suffix = \"y\" }\n",
                "app.toml:4: unknown field `suffix`",
            ),
            ("[mounts]\n", "app.toml:1: unknown field `mounts`"),
            ("[[file]]\nsecret = \"a\"\n", "app.toml:1: missing field `path`"),
            (
                "[[file]]\npath = \"a\"\nsecret = \"a\"\n[[file]\n",
                "app.toml:4: ",
            ),
        ] {
            refused_with(text, start);
        }
    }

    #[test]
    fn bad_paths_are_refused_with_their_line() {
        for (path, why) in [
            ("/etc/x", "absolute"),
            ("a/../b", "'..'"),
            ("a/./b", "'.'"),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("", "is empty"),
            ("a\\u0000b", "NUL"),
        ] {
            let said = refused(&format!("\n[[file]]\npath = \"{path}\"\nsecret = \"a\"\n"));
            assert!(said.starts_with("app.toml:3: path "), "{said}");
            assert!(said.contains(why), "{path}: {said}");
        }
        let said = refused(&format!(
            "[[file]]\npath = \"{}\"\nsecret = \"a\"\n",
            "x".repeat(256)
        ));
        assert!(said.contains("255"), "{said}");
        let said = refused("[vault]\npath = \"v\"\n[[dir]]\npath = \"v\"\n");
        assert_eq!(
            said,
            "app.toml:4: path \"v\" is already used by the entry at line 2"
        );
        let said = refused(
            "[[file]]\npath = \"a/b\"\nsecret = \"a\"\n[[file]]\npath = \"a\"\nsecret = \"b\"\n",
        );
        assert_eq!(said, "app.toml:2: path \"a/b\" needs \"a\" to be a directory, but line 5 puts an entry there");
        refused_with(
            "[[dir]]\npath = \"c\"\n[[file]]\npath = \"c/d/e\"\nsecret = \"b\"\n",
            "app.toml:4: path \"c/d/e\" needs \"c\"",
        );
        refused_with(
            "[vault]\npath = \"v\"\n[[file]]\npath = \"v/x\"\nsecret = \"b\"\n",
            "app.toml:4: path \"v/x\" needs \"v\" to be a directory, but line 2 puts an entry there",
        );
        // Non-ASCII and spaces are fine.
        assert!(parse("[[file]]\npath = \"d\u{e9}j\u{e0} vu/x y\"\nsecret = \"a\"\n").is_ok());
    }

    #[test]
    fn owners_and_modes_are_checked() {
        let said =
            refused("[[file]]\npath = \"a\"\nsecret = \"a\"\nuid = \"no-such-user-akvfs\"\n");
        assert_eq!(said, "app.toml:4: uid: unknown user \"no-such-user-akvfs\"");
        let said = refused("[defaults]\ngid = \"no-such-group-akvfs\"\n");
        assert_eq!(
            said,
            "app.toml:2: gid: unknown group \"no-such-group-akvfs\""
        );
        refused_with("[defaults]\nuid = -1\n", "app.toml:2: uid: -1 is not an id");
        let p = parse("[defaults]\nuid = \"1234\"\ngid = \"nogroup\"\n").expect("valid");
        assert_eq!((p.uid, p.gid), (1234, 65534));
        refused_with(
            "[[file]]\npath = \"a\"\nsecret = \"a\"\nmode = \"4755\"\n",
            "app.toml:4: mode: '4755' has a setuid",
        );
        refused_with(
            "[defaults]\nmode = \"rw\"\n",
            "app.toml:2: mode: 'rw' is not an octal mode",
        );
        refused_with(
            "[defaults]\nmode = 0o440\n",
            "app.toml:2: mode must be a quoted octal string",
        );
    }

    #[test]
    fn certificate_files_name_a_certificate_and_a_part() {
        let p = parse(
            "[[file]]\npath = \"nginx/tls.crt\"\ncertificate = \"web\"\npart = \"fullchain\"\n\
             [[file]]\npath = \"nginx/tls.key\"\ncertificate = \"web\"\npart = \"key\"\nmode = \"0400\"\n",
        )
        .expect("valid");
        let key = &p.entries["nginx/tls.key"];
        assert!(key.read_only);
        assert_eq!(key.mode, Some(0o400));
        assert!(
            matches!(&key.kind, EntryKind::Certificate { name, part: Part::Key } if name == "web")
        );
        refused_with(
            "[[file]]\npath = \"a\"\ncertificate = \"web\"\npart = \"crt\"\n",
            "app.toml:4: part = \"crt\": not one of cert, chain, fullchain, key, bundle or pfx",
        );
        refused_with(
            "[[file]]\npath = \"a\"\ncertificate = \"web\"\n",
            "app.toml:3: [[file]] \"a\": certificate needs part =",
        );
        refused_with(
            "[[file]]\npath = \"a\"\nsecret = \"web\"\npart = \"key\"\n",
            "app.toml:4: part only goes with certificate",
        );
        refused_with(
            "[[file]]\npath = \"a\"\ncertificate = \"web\"\nsecret = \"web\"\npart = \"key\"\n",
            "app.toml:1: [[file]] \"a\" needs exactly one of secret, template, template_file, format or certificate (has secret, certificate)",
        );
        refused_with(
            "[[file]]\npath = \"a\"\ncertificate = \"web_tls\"\npart = \"key\"\n",
            "app.toml:3: certificate = \"web_tls\":",
        );
        refused_with(
            "[[file]]\npath = \"a\"\ncertificate = \"web\"\npart = \"key\"\nread_only = false\n",
            "app.toml:5: read_only = false: \"a\" is a certificate file, always read-only",
        );
        refused_with(
            "[[file]]\npath = \"a\"\ncertificate = \"web\"\npart = \"key\"\ngroup = \"g\"\n",
            "app.toml:5: group: only secret files form groups",
        );
        // A certificate's files change together (one secret version): a hook on one is enough.
        let p = parse(
            "[[file]]\npath = \"a\"\ncertificate = \"web\"\npart = \"key\"\non_change = \"true\"\n",
        )
        .expect("a hook on a certificate file");
        assert!(p.entries["a"].on_change.is_some());
        refused_with(
            "[[dir]]\npath = \"d\"\ncertificate = \"web\"\n",
            "app.toml:3: certificate: not a key of [[dir]]",
        );
    }

    #[test]
    fn an_entry_needs_exactly_one_source_and_only_keys_that_make_sense() {
        refused_with(
            "[[file]]\npath = \"a\"\n",
            "app.toml:1: [[file]] \"a\" needs exactly one of",
        );
        let said = refused("[[file]]\npath = \"a\"\nsecret = \"a\"\nformat = \"json\"\n");
        assert!(said.ends_with("(has secret, format)"), "{said}");
        refused_with(
            "[[file]]\npath = \"a\"\nsecret = \"a\"\nnames = \"env\"\n",
            "app.toml:4: names only goes with format",
        );
        let said =
            refused("[[file]]\npath = \"a\"\ntemplate = \"x\"\nselect = { prefix = \"a\" }\n");
        assert!(
            said.starts_with("app.toml:4: select only goes with format"),
            "{said}"
        );
        refused_with(
            "[[file]]\npath = \"a\"\nformat = \"json\"\nread_only = false\n",
            "app.toml:4: read_only = false",
        );
        refused_with(
            "[[file]]\npath = \"a\"\nformat = \"toml\"\n",
            "app.toml:3: format = \"toml\"",
        );
        refused_with(
            "[[dir]]\npath = \"a\"\nnames = \"camel\"\n",
            "app.toml:3: names = \"camel\"",
        );
        refused_with(
            "[[dir]]\npath = \"a\"\nselect = { prefix = \"a\", tag = \"k=v\" }\n",
            "app.toml:3: select takes exactly one",
        );
        refused_with(
            "[[dir]]\npath = \"a\"\nselect = { prefix = \"app_\" }\n",
            "app.toml:3: select prefix \"app_\"",
        );
        refused_with(
            "[[file]]\npath = \"a\"\nformat = \"json\"\nselect = \"app-\"\n",
            "app.toml:4: invalid type: string \"app-\", expected a select table ({ prefix",
        );
        let said = refused("[[dir]]\npath = \"a\"\nselect = { tag = \"novalue\" }\n");
        assert!(said.contains("key=value"), "{said}");
        let said = refused("[[dir]]\npath = \"a\"\nselect = { names = [\"ok\", \"not_ok\"] }\n");
        assert!(said.contains("\"not_ok\""), "{said}");
        let p = parse("[[file]]\npath = \"a\"\nsecret = \"a\"\nread_only = true\n[[dir]]\npath = \"d\"\nread_only = true\nselect = { tag = \"env=prod\" }\n").expect("valid");
        assert!(p.entries["a"].read_only && p.entries["d"].read_only);
        assert!(
            matches!(&p.entries["d"].kind, EntryKind::Dir { select: Selection::Tag { key, value }, .. } if key == "env" && value == "prod")
        );
    }

    #[test]
    fn selections_map_names_both_ways() {
        use NameConvention::{Dots, Env, Same};
        let none = BTreeMap::new();
        let tags = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        let prefix = Selection::Prefix("app-".into());
        let listed = Selection::Names(vec!["a-b".into()]);
        let tagged = Selection::Tag {
            key: "env".into(),
            value: "prod".into(),
        };
        // (selection, convention, secret, its tags, key or file name)
        for (select, names, secret, t, key) in [
            (&prefix, Env, "app-greeting", &none, Some("GREETING")),
            (&prefix, Env, "other", &none, None),
            (&listed, Dots, "a-b", &none, Some("a.b")),
            (&listed, Dots, "c-d", &none, None),
            (&tagged, Same, "x", &tags, Some("x")),
            (&tagged, Same, "x", &none, None),
        ] {
            assert_eq!(select.key_for(names, secret, t).as_deref(), key, "{secret}");
        }
        // (selection, convention, new file, secret it creates)
        for (select, names, file, secret) in [
            (&prefix, Env, "GREETING", Some("app-greeting")),
            (&listed, Dots, "a.b", Some("a-b")),
            (&listed, Dots, "c.d", None),
            (&tagged, Same, "x", Some("x")),
        ] {
            assert_eq!(select.secret_for(names, file).as_deref(), secret, "{file}");
        }
        assert_eq!(tagged.tag(), Some(("env", "prod")));
        assert!(Selection::All.matches("anything", &none));
    }

    #[test]
    fn secret_names_that_cannot_exist_are_refused() {
        refused_with(
            "[[file]]\npath = \"a\"\nsecret = \"db_password\"\n",
            "app.toml:3: secret = \"db_password\": ",
        );
        let said = refused(&format!(
            "[[file]]\npath = \"a\"\nsecret = \"{}\"\n",
            "a".repeat(128)
        ));
        assert!(said.contains("127"), "{said}");
    }

    #[test]
    fn template_syntax_errors_name_the_line() {
        refused_with(
            "[[file]]\npath = \"a\"\ntemplate = \"{{ secret('x') \"\n",
            "app.toml:3: template syntax error (template line 1): ",
        );
        refused_with(
            "[[file]]\npath = \"a\"\ntemplate = \"\"\"\nok\n{% if %}\n\"\"\"\n",
            "app.toml:5: template syntax error (template line 2): ",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("t.j2"), "line one\n{{ }\n").expect("write");
        let text = "[[file]]\npath = \"a\"\ntemplate_file = \"t.j2\"\n";
        let said = Projection::parse(text, "app.toml", dir.path())
            .expect_err("refused")
            .to_string();
        let t = dir.path().join("t.j2").display().to_string();
        assert!(
            said.starts_with(&format!("{t}:2: template syntax error: ")),
            "{said}"
        );
        let text = "[[file]]\npath = \"a\"\ntemplate_file = \"missing.j2\"\n";
        let said = Projection::parse(text, "app.toml", dir.path())
            .expect_err("refused")
            .to_string();
        assert!(
            said.starts_with("app.toml:3: template_file \"missing.j2\": cannot read"),
            "{said}"
        );
    }

    #[test]
    fn load_reads_the_file_and_template_files_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("t.j2"), "x={{ secret('a') }}\n").expect("write");
        let config = dir.path().join("app.toml");
        std::fs::write(
            &config,
            "[[file]]\npath = \"t\"\ntemplate_file = \"t.j2\"\n",
        )
        .expect("write");
        let p = Projection::load(&config).expect("valid");
        assert!(
            matches!(&p.entries["t"].kind, EntryKind::Template { source, .. } if source.ends_with("/t.j2"))
        );
        let said = Projection::load(&dir.path().join("none.toml"))
            .expect_err("refused")
            .to_string();
        assert!(said.contains("none.toml: cannot read the config"), "{said}");
        assert_eq!(lookup_user("root").ok().flatten(), Some(0));
        assert_eq!(lookup_group("no\0pe").ok().flatten(), None);
    }

    #[test]
    fn groups_collect_their_files_and_hooks_are_checked() {
        let p = parse(
            "[[file]]\npath = \"tls.crt\"\nsecret = \"c\"\ngroup = \"web\"\n\
             [[file]]\npath = \"tls.key\"\nsecret = \"k\"\ngroup = \"web\"\n\
             [[file]]\npath = \"other\"\nsecret = \"o\"\nsignal = \"SIGHUP\"\npid_file = \"/run/x.pid\"\n\
             [group.web]\non_change = \"nginx -s reload\"\n",
        )
        .expect("valid");
        let web = &p.groups["web"];
        assert_eq!(
            web.members,
            vec!["tls.crt".to_owned(), "tls.key".to_owned()]
        );
        assert_eq!(
            web.on_change.as_ref().map(|h| &h.action),
            Some(&HookAction::Command("nginx -s reload".into()))
        );
        assert_eq!(
            p.entries["other"].on_change.as_ref().map(|h| &h.action),
            Some(&HookAction::Signal {
                name: "HUP".into(),
                number: libc::SIGHUP,
                pid_file: "/run/x.pid".into()
            })
        );
        let file = "[[file]]\npath = \"a\"\nsecret = \"s\"\ngroup = \"g\"\n";
        refused_with(
            &format!("{file}[group.h]\non_change = \"x\"\n"),
            "app.toml:5: [group.h]: no [[file]] has group",
        );
        refused_with(
            &format!("{file}[group.g]\non_change = \"x\"\nsignal = \"HUP\"\n"),
            "app.toml:6: [group.g]: on_change or signal + pid_file, not both",
        );
        refused_with(
            &format!("{file}[group.g]\nsignal = \"HUP\"\n"),
            "app.toml:6: [group.g]: signal needs pid_file",
        );
        refused_with(
            &format!("{file}[group.g]\nsignal = \"KILL\"\npid_file = \"/p\"\n"),
            "app.toml:6: [group.g]: signal = \"KILL\" is not one of",
        );
        refused_with(
            &format!("{file}[group.g]\nsignal = \"HUP\"\npid_file = \"p\"\n"),
            "app.toml:7: [group.g]: pid_file = \"p\" must be absolute",
        );
        refused_with(&format!("{file}[group.g]\ncolour = 1\n"), "app.toml:6:");
        refused_with(
            "[[file]]\npath = \"a\"\ntemplate = \"x\"\ngroup = \"g\"\n",
            "app.toml:4: group: only secret files form groups",
        );
        refused_with(
            "[[dir]]\npath = \"a\"\non_change = \"x\"\n",
            "app.toml:3: on_change: not a key of [[dir]]",
        );
    }
}
