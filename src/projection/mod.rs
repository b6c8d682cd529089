//! Projections (SPEC §8, `akvfs mount VAULT DIR --config FILE`): the tree of files a legacy
//! application expects, described by a TOML config. Pure: nothing here talks to the vault or the
//! kernel; the filesystem wires it in.
//!
//! - [`config`]: the TOML model and its validation into a checked [`Projection`] (`FILE:LINE:
//!   reason` errors), [`Projection::needs_allow_other`].
//! - [`names`]: the name conventions `same`, `env`, `aspnet`, `spring`, `dots`, both ways.
//! - [`formats`]: `dotenv`, `json`, `properties`, `yaml`, read back exactly by their readers.
//! - [`template`]: minijinja templates with `secret(name[, version])` and the five filters.
//! - [`render_format`]: a format file's contents from the secrets the caller listed.
//!
//! The config keys (every one; anything else is refused with its line):
//!
//! | table | key | meaning |
//! | --- | --- | --- |
//! | `[defaults]` | `uid`, `gid` | owner of the tree's directories and of every entry that names none: a user/group name or a number (default: the user running akvfs) |
//! | `[defaults]` | `mode` | octal string (`"0440"`), no setuid/setgid/sticky bit (default: the mount's `--file-mode`) |
//! | `[vault]` | `path` | where the vault's own layout appears (absent: not shown) |
//! | `[[file]]` | `path` | relative, `/`-separated, no empty, `.` or `..` component, no NUL; parents become directories |
//! | `[[file]]` | `secret` \| `template` \| `template_file` \| `format` \| `certificate` | exactly one: the secret's own file; a template (inline, or read from a file relative to the config's directory); a built-in format; a certificate's file (SPEC §10) |
//! | `[[file]]` | `part` | with `certificate` only (and required there): `cert` (leaf), `chain` (the other certificates, stored order), `fullchain` (leaf + chain), `key` (PKCS#8; absent without an exportable key), `bundle` (key, leaf, chain), `pfx` (PKCS#12, no password); read-only, no `group` or hook |
//! | `[[file]]` | `select`, `names` | with `format` only: `{ prefix = "…" }`, `{ names = [...] }` or `{ tag = "k=v" }` (default every secret); the name convention (default `same`) |
//! | `[[file]]` | `uid`, `gid`, `mode` | as `[defaults]`, for this file |
//! | `[[file]]` | `group` | §9: files of one group change together |
//! | `[[file]]` | `read_only` | `true` makes a `secret` file read-only; templates and formats always are |
//! | `[[dir]]` | `path`, `select`, `names`, `uid`, `gid`, `mode`, `read_only` | one file per selected secret named by the convention; `mode` is the files' mode; writable unless `read_only` |

pub mod config;
pub mod formats;
pub mod names;
pub mod template;

use std::collections::BTreeMap;

use zeroize::Zeroizing;

pub use config::{ConfigError, Entry, EntryKind, Node, Projection, Selection};
pub use formats::{Format, FormatEntry, FormatError};
pub use names::NameConvention;
pub use template::{
    Prefetched, RenderError, Rendered, SecretInput, SecretSource, SourceError, Template,
    TemplateSyntaxError,
};

/// One enabled secret of the vault, as the caller listed and read it.
#[derive(Clone, Copy)]
pub struct ListedSecret<'a> {
    pub name: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub value: &'a str,
}

/// The contents of a `format` file: the secrets `select` takes, keyed by `names`, sorted by key.
/// Secrets the selection leaves out, or whose name maps to no key, are not in the file; a key or
/// value the format cannot carry is an error naming the secret.
pub fn render_format(
    format: Format,
    select: &Selection,
    names: NameConvention,
    secrets: &[ListedSecret<'_>],
) -> Result<Zeroizing<String>, FormatError> {
    let keyed: Vec<(String, &ListedSecret<'_>)> = secrets
        .iter()
        .filter_map(|s| Some((select.key_for(names, s.name, s.tags)?, s)))
        .collect();
    let mut entries: Vec<FormatEntry<'_>> = keyed
        .iter()
        .map(|(key, s)| FormatEntry {
            secret: s.name,
            key,
            value: s.value,
        })
        .collect();
    entries.sort_by(|a, b| a.key.cmp(b.key).then(a.secret.cmp(b.secret)));
    formats::render(format, &entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_file_over_a_prefix_selection_with_env_names() {
        let none = BTreeMap::new();
        let listed = [
            ListedSecret {
                name: "app-greeting",
                tags: &none,
                value: "hello world",
            },
            ListedSecret {
                name: "other",
                tags: &none,
                value: "x",
            },
            ListedSecret {
                name: "app-db-url",
                tags: &none,
                value: "it's",
            },
        ];
        let text = render_format(
            Format::Dotenv,
            &Selection::Prefix("app-".into()),
            NameConvention::Env,
            &listed,
        )
        .expect("renders");
        assert_eq!(text.as_str(), "DB_URL=\"it's\"\nGREETING='hello world'\n");
        let err = render_format(
            Format::Dotenv,
            &Selection::All,
            NameConvention::Same,
            &listed,
        )
        .expect_err("app-greeting is no variable name");
        assert!(
            err.to_string().starts_with("secret app-db-url: key"),
            "{err}"
        );
    }
}
