//! Name conventions (`names = …`, SPEC §8): how a secret name becomes a file name (`[[dir]]`)
//! or a key (formats), and back (a new file in a writable `[[dir]]` creates the secret it maps to).
//!
//! Decisions:
//! - The select prefix is matched ASCII-case-insensitively (Key Vault names are
//!   case-insensitive) and stripped before the convention maps the rest.
//! - The reverse mapping only accepts the *canonical* name: `secret_name_for(f)` is `Some(s)` only
//!   when `project_name(s) == f`. A file created under a non-canonical name would otherwise vanish
//!   from the listing and reappear under another name. So with `env`, `DB_PASSWORD` maps back to
//!   `db-password` (lower-case: Key Vault names are case-insensitive, and lower-case is what the
//!   forward mapping reads back as `DB_PASSWORD`), while `db_password` or `Db_Password` map to
//!   nothing; with `aspnet`, `a__-b` maps back to `a---b` but `a-__b` does not (`--` pairs are
//!   taken from the left).
//! - A name the convention turns into `.`, `..` or the empty string has no projection.

use std::fmt;

use crate::vault::model::is_valid_secret_name;

/// The `names` key of a `[[dir]]` or format entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NameConvention {
    /// The secret name itself.
    #[default]
    Same,
    /// `db-password` → `DB_PASSWORD`.
    Env,
    /// `--` → `__` (ASP.NET Core key-per-file).
    Aspnet,
    /// `--` → `.` (Spring Boot `configtree:`).
    Spring,
    /// `-` → `.`.
    Dots,
}

impl NameConvention {
    /// Every convention, as the config spells it.
    pub const ALL: [NameConvention; 5] = [
        NameConvention::Same,
        NameConvention::Env,
        NameConvention::Aspnet,
        NameConvention::Spring,
        NameConvention::Dots,
    ];

    /// The convention the config names `s`, if any.
    pub fn parse(s: &str) -> Option<NameConvention> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// How the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            NameConvention::Same => "same",
            NameConvention::Env => "env",
            NameConvention::Aspnet => "aspnet",
            NameConvention::Spring => "spring",
            NameConvention::Dots => "dots",
        }
    }

    /// Maps what is left of a secret name (prefix stripped) to a key or file name; `None` when
    /// the result would be empty, `.` or `..`.
    pub fn to_key(self, rest: &str) -> Option<String> {
        let key = match self {
            NameConvention::Same => rest.to_owned(),
            NameConvention::Env => rest.replace('-', "_").to_ascii_uppercase(),
            NameConvention::Aspnet => rest.replace("--", "__"),
            NameConvention::Spring => rest.replace("--", "."),
            NameConvention::Dots => rest.replace('-', "."),
        };
        (!key.is_empty() && key != "." && key != "..").then_some(key)
    }

    /// The inverse of [`to_key`](Self::to_key) on characters only (no canonical check).
    fn key_to_secret_chars(self, key: &str) -> String {
        match self {
            NameConvention::Same => key.to_owned(),
            NameConvention::Env => key.replace('_', "-").to_ascii_lowercase(),
            NameConvention::Aspnet => key.replace("__", "--"),
            NameConvention::Spring => key.replace('.', "--"),
            NameConvention::Dots => key.replace('.', "-"),
        }
    }
}

impl fmt::Display for NameConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Strips `prefix` from `secret` (ASCII-case-insensitively); `None` when it does not start so.
pub fn strip_prefix<'a>(secret: &'a str, prefix: &str) -> Option<&'a str> {
    let head = secret.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &secret[prefix.len()..])
}

/// The key or file name of `secret` in an entry selecting `prefix` (if any) with `names`;
/// `None` when the secret does not start with the prefix or maps to no usable name.
pub fn project_name(secret: &str, prefix: Option<&str>, names: NameConvention) -> Option<String> {
    let rest = match prefix {
        Some(p) => strip_prefix(secret, p)?,
        None => secret,
    };
    names.to_key(rest)
}

/// The secret a new file `file_name` in a `[[dir]]` (selecting `prefix`, named by `names`) would
/// create; `None` when no valid secret name maps to exactly that file name (see the module doc).
pub fn secret_name_for(
    file_name: &str,
    prefix: Option<&str>,
    names: NameConvention,
) -> Option<String> {
    let secret = format!(
        "{}{}",
        prefix.unwrap_or(""),
        names.key_to_secret_chars(file_name)
    );
    if !is_valid_secret_name(&secret) {
        return None;
    }
    (project_name(&secret, prefix, names).as_deref() == Some(file_name)).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::NameConvention::*;
    use super::*;

    #[test]
    fn conventions_map_as_the_spec_says() {
        assert_eq!(Env.to_key("db-password").as_deref(), Some("DB_PASSWORD"));
        assert_eq!(
            Aspnet.to_key("ConnectionStrings--Db").as_deref(),
            Some("ConnectionStrings__Db")
        );
        assert_eq!(
            Spring.to_key("spring--datasource--password").as_deref(),
            Some("spring.datasource.password")
        );
        assert_eq!(Dots.to_key("a-b-c").as_deref(), Some("a.b.c"));
        assert_eq!(Same.to_key("a-b").as_deref(), Some("a-b"));
        assert_eq!(
            project_name("app-greeting", Some("app-"), Env).as_deref(),
            Some("GREETING")
        );
        assert_eq!(
            project_name("APP-greeting", Some("app-"), Same).as_deref(),
            Some("greeting")
        );
        assert_eq!(project_name("other", Some("app-"), Same), None);
    }

    #[test]
    fn names_that_would_be_dot_dotdot_or_empty_have_no_projection() {
        assert_eq!(project_name("app-", Some("app-"), Same), None);
        assert_eq!(Dots.to_key("-"), None);
        assert_eq!(Dots.to_key("--"), None);
        assert_eq!(Spring.to_key("--"), None);
        assert_eq!(Spring.to_key("----"), None);
        assert_eq!(project_name("ap", Some("app-"), Same), None);
    }

    #[test]
    fn reverse_maps_canonical_names_only() {
        assert_eq!(
            secret_name_for("DB_PASSWORD", None, Env).as_deref(),
            Some("db-password")
        );
        assert_eq!(secret_name_for("db_password", None, Env), None);
        assert_eq!(
            secret_name_for("GREETING", Some("app-"), Env).as_deref(),
            Some("app-greeting")
        );
        assert_eq!(
            secret_name_for("a__-b", None, Aspnet).as_deref(),
            Some("a---b")
        );
        assert_eq!(secret_name_for("a-__b", None, Aspnet), None);
        assert_eq!(secret_name_for("a_b", None, Aspnet), None);
        assert_eq!(
            secret_name_for("spring.datasource.password", Some("myapp--"), Spring).as_deref(),
            Some("myapp--spring--datasource--password")
        );
        assert_eq!(secret_name_for("a.b", None, Dots).as_deref(), Some("a-b"));
        assert_eq!(secret_name_for("a b", None, Same), None);
        assert_eq!(secret_name_for("tls.crt", None, Same), None);
        assert_eq!(secret_name_for("", None, Same), None);
        assert_eq!(secret_name_for(&"a".repeat(128), None, Same), None);
    }

    #[test]
    fn forward_then_reverse_is_identity_on_every_convention() {
        for secret in ["db-password", "a--b", "a---b", "x-1--y", "Z9"] {
            for c in NameConvention::ALL {
                let Some(key) = project_name(secret, None, c) else {
                    continue;
                };
                let back = secret_name_for(&key, None, c).unwrap_or_default();
                assert!(
                    back.eq_ignore_ascii_case(secret),
                    "{c} {secret} {key} {back}"
                );
            }
        }
        for c in NameConvention::ALL {
            assert_eq!(NameConvention::parse(c.as_str()), Some(c));
        }
        assert_eq!(NameConvention::parse("ENV"), None);
    }
}
