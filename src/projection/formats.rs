//! The built-in formats (`format = "dotenv" | "json" | "properties" | "yaml"`, SPEC §8): a
//! selection of secrets rendered so that the format's own reader gives back the exact bytes of
//! every value, or an error naming the secret (the file then fails with EIO; never text that a
//! reader misreads). Errors name secrets, never values.

use std::fmt::{self, Write as _};

use zeroize::Zeroizing;

/// One secret of a format file: its name (for errors), its key in the file, its value.
#[derive(Clone, Copy)]
pub struct FormatEntry<'a> {
    /// The secret's name, named by errors.
    pub secret: &'a str,
    /// The key the name convention made of it.
    pub key: &'a str,
    /// The secret's value.
    pub value: &'a str,
}

impl fmt::Debug for FormatEntry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormatEntry")
            .field("secret", &self.secret)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A built-in format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `KEY='value'` lines, read back exactly by python-dotenv and by `set -a; . FILE`.
    Dotenv,
    /// One JSON object of strings.
    Json,
    /// Java `.properties` (ISO-8859-1 with `\uXXXX` escapes, as `Properties.load(InputStream)`).
    Properties,
    /// One YAML mapping of double-quoted strings.
    Yaml,
}

impl Format {
    /// Every format, as the config spells it.
    pub const ALL: [Format; 4] = [
        Format::Dotenv,
        Format::Json,
        Format::Properties,
        Format::Yaml,
    ];

    /// The format the config names `s`, if any.
    pub fn parse(s: &str) -> Option<Format> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// How the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Dotenv => "dotenv",
            Format::Json => "json",
            Format::Properties => "properties",
            Format::Yaml => "yaml",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a selection cannot be rendered; names the secret, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The key the secret maps to cannot be written in this format.
    #[error("secret {secret}: key {key:?} {reason}")]
    Key {
        secret: String,
        key: String,
        reason: &'static str,
    },
    /// Two secrets map to the same key.
    #[error("secrets {first} and {second} both map to key {key:?}")]
    DuplicateKey {
        first: String,
        second: String,
        key: String,
    },
    /// The value cannot be written so that every reader of the format gives it back.
    #[error("secret {secret}: {reason}")]
    Value {
        secret: String,
        reason: &'static str,
    },
}

/// Renders `entries` (in the given order) as `format`.
pub fn render(
    format: Format,
    entries: &[FormatEntry<'_>],
) -> Result<Zeroizing<String>, FormatError> {
    for (i, e) in entries.iter().enumerate() {
        if e.key.is_empty() {
            return Err(key_error(e, "is empty"));
        }
        if let Some(first) = entries[..i].iter().find(|o| o.key == e.key) {
            return Err(FormatError::DuplicateKey {
                first: first.secret.to_owned(),
                second: e.secret.to_owned(),
                key: e.key.to_owned(),
            });
        }
    }
    match format {
        Format::Dotenv => dotenv(entries),
        Format::Json => json(entries),
        Format::Properties => Ok(properties(entries)),
        Format::Yaml => Ok(yaml(entries)),
    }
}

fn key_error(e: &FormatEntry<'_>, reason: &'static str) -> FormatError {
    FormatError::Key {
        secret: e.secret.to_owned(),
        key: e.key.to_owned(),
        reason,
    }
}

/// Whether `key` is a shell variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Quotes `value` for the right-hand side of a dotenv line, read back exactly by python-dotenv 1.x
/// (interpolation on; its quoted-value grammar takes `\` together with the next character, then
/// decodes `\\` and `\'` inside single quotes, and `\\`, `\'`, `\"`, `\a\b\f\n\r\t\v` inside
/// double quotes) and by POSIX `sh` (`set -a; . FILE`):
/// - single quotes when the value holds no `'`, no `\\` and does not end in `\` (`sh` decodes
///   nothing inside single quotes);
/// - otherwise double quotes with `\` and `"` escaped (both readers decode exactly those pairs),
///   which needs a value without `$` and backquote (`sh` expands them, python-dotenv keeps `\$`;
///   a `$` before a space is literal in dash and bash, but POSIX leaves it unspecified, so every
///   `$` counts);
/// - anything else is refused: `'`, `\\` or a trailing `\` together with `$` or a backquote (no
///   quoting, and no unquoted text, reads the same in both); `${` with a later `}` (a superset of
///   python-dotenv's `${NAME[:-DEFAULT]}`, interpolated in every quoting); a carriage return
///   (python reads with universal newlines); NUL (no shell variable holds it).
///
/// SPEC §8 lists `${`, and `'` with `$`, a backquote or `\`. Refined here, each side tested
/// against both readers (tests/projection_formats.rs): `${` without a later `}` and `'` with `\`
/// (double quotes) are carried; `\\` or a trailing `\` with `$` is refused too.
///
/// `Err` carries the reason; the caller names the secret.
pub fn dotenv_quote(value: &str) -> Result<String, &'static str> {
    if value.find("${").is_some_and(|at| value[at..].contains('}')) {
        return Err(
            "a dotenv value cannot hold \"${\" followed by \"}\" (python-dotenv interpolates it)",
        );
    }
    if value.contains('\r') {
        return Err(
            "a dotenv value cannot hold a carriage return (python-dotenv reads it as a newline)",
        );
    }
    if value.contains('\0') {
        return Err("a dotenv value cannot hold NUL");
    }
    let ends_in_backslash = value.ends_with('\\');
    if !value.contains('\'') && !value.contains("\\\\") && !ends_in_backslash {
        return Ok(format!("'{value}'"));
    }
    if !value.contains('$') && !value.contains('`') {
        let mut out = String::with_capacity(value.len() + 8);
        out.push('"');
        for c in value.chars() {
            if c == '\\' || c == '"' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        return Ok(out);
    }
    Err("no dotenv text carries this value for both python-dotenv and sh (it holds ', two backslashes or a trailing backslash together with $ or a backquote)")
}

fn dotenv(entries: &[FormatEntry<'_>]) -> Result<Zeroizing<String>, FormatError> {
    let mut out = Zeroizing::new(String::new());
    for e in entries {
        if !is_env_key(e.key) {
            return Err(key_error(
                e,
                "is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*)",
            ));
        }
        let quoted =
            Zeroizing::new(dotenv_quote(e.value).map_err(|reason| FormatError::Value {
                secret: e.secret.to_owned(),
                reason,
            })?);
        out.push_str(e.key);
        out.push('=');
        out.push_str(&quoted);
        out.push('\n');
    }
    Ok(out)
}

fn json(entries: &[FormatEntry<'_>]) -> Result<Zeroizing<String>, FormatError> {
    let mut out = Zeroizing::new(Vec::<u8>::new());
    out.push(b'{');
    for (i, e) in entries.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n  " } else { b",\n  " });
        serde_json::to_writer(&mut *out, e.key)
            .map_err(|_| key_error(e, "cannot be written as JSON"))?;
        out.extend_from_slice(b": ");
        serde_json::to_writer(&mut *out, e.value).map_err(|_| FormatError::Value {
            secret: e.secret.to_owned(),
            reason: "cannot be written as JSON",
        })?;
    }
    out.extend_from_slice(if entries.is_empty() { b"}\n" } else { b"\n}\n" });
    // serde_json writes UTF-8 only; the fallback never runs.
    Ok(Zeroizing::new(
        String::from_utf8(std::mem::take(&mut *out)).unwrap_or_default(),
    ))
}

/// Escapes for `Properties.load(InputStream)` (ISO-8859-1; everything outside printable ASCII
/// as `\uXXXX` UTF-16 code units, as `Properties.store` writes it). `key` escapes every space;
/// a value escapes its leading space only (load drops leading whitespace of a value).
fn properties_escape(out: &mut String, s: &str, key: bool) {
    for (i, c) in s.chars().enumerate() {
        match c {
            ' ' if key || i == 0 => out.push_str("\\ "),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x0c' => out.push_str("\\f"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04X}");
                }
            }
        }
    }
}

fn properties(entries: &[FormatEntry<'_>]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for e in entries {
        properties_escape(&mut out, e.key, true);
        out.push('=');
        properties_escape(&mut out, e.value, false);
        out.push('\n');
    }
    out
}

/// A YAML double-quoted scalar (YAML 1.1 escapes, which PyYAML and every YAML 1.2 reader
/// decode). Written by hand: serde_yaml is unmaintained, and a double-quoted scalar with every
/// non-printable or line-breaking character escaped is the one quoting every reader agrees on.
fn yaml_quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            // Printable in YAML and no line break (U+0085, U+2028, U+2029 are breaks; U+FEFF a BOM).
            ' '..='~'
            | '\u{a0}'..='\u{2027}'
            | '\u{202a}'..='\u{d7ff}'
            | '\u{e000}'..='\u{fefe}'
            | '\u{ff00}'..='\u{fffd}'
            | '\u{10000}'.. => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
}

fn yaml(entries: &[FormatEntry<'_>]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    if entries.is_empty() {
        out.push_str("{}\n");
    }
    for e in entries {
        yaml_quote(&mut out, e.key);
        out.push_str(": ");
        yaml_quote(&mut out, e.value);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(format: Format, key: &str, value: &str) -> Result<String, FormatError> {
        render(
            format,
            &[FormatEntry {
                secret: "s",
                key,
                value,
            }],
        )
        .map(|z| z.to_string())
    }

    #[test]
    fn dotenv_prefers_single_quotes_then_double_then_refuses() {
        assert_eq!(
            one(Format::Dotenv, "A", "x $y #z").as_deref(),
            Ok("A='x $y #z'\n")
        );
        assert_eq!(
            one(Format::Dotenv, "A", "it's").as_deref(),
            Ok("A=\"it's\"\n")
        );
        assert_eq!(
            one(Format::Dotenv, "A", "a\\\\b\"c").as_deref(),
            Ok("A=\"a\\\\\\\\b\\\"c\"\n")
        );
        for bad in ["${HOME}", "it's $5", "a`b`'", "$ ends\\", "cr\r", "nul\0"] {
            let err = one(Format::Dotenv, "A", bad).unwrap_err();
            assert!(matches!(&err, FormatError::Value { secret, .. } if secret == "s"));
            assert!(!err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn dotenv_refuses_keys_that_are_not_variable_names() {
        for bad in ["db-password", "1A", "A.B", ""] {
            assert!(
                matches!(one(Format::Dotenv, bad, "v"), Err(FormatError::Key { .. })),
                "{bad}"
            );
        }
        assert!(is_env_key("_A1"));
    }

    #[test]
    fn duplicate_keys_name_both_secrets() {
        let e = [
            FormatEntry {
                secret: "a-b",
                key: "A_B",
                value: "1",
            },
            FormatEntry {
                secret: "A-B",
                key: "A_B",
                value: "2",
            },
        ];
        let err = render(Format::Json, &e).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secrets a-b and A-B both map to key \"A_B\""
        );
    }

    #[test]
    fn json_is_one_object_of_strings() {
        let e = [
            FormatEntry {
                secret: "a",
                key: "a",
                value: "x\"\n\u{e9}",
            },
            FormatEntry {
                secret: "b",
                key: "b",
                value: "",
            },
        ];
        let text = render(Format::Json, &e).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v["a"], "x\"\n\u{e9}");
        assert_eq!(v["b"], "");
        assert_eq!(
            render(Format::Json, &[]).as_deref().map(|s| s.as_str()),
            Ok("{}\n")
        );
    }

    #[test]
    fn properties_escapes_as_store_does() {
        assert_eq!(
            one(Format::Properties, "a b:c", " x=y:#!\\\n\u{e9}\u{1f600}").as_deref(),
            Ok("a\\ b\\:c=\\ x\\=y\\:\\#\\!\\\\\\n\\u00E9\\uD83D\\uDE00\n")
        );
    }

    #[test]
    fn yaml_escapes_breaks_and_controls() {
        assert_eq!(
            one(Format::Yaml, "k", "a\"b\\\n\u{1}\u{85}\u{2028}\u{e9}").as_deref(),
            Ok("\"k\": \"a\\\"b\\\\\\n\\x01\\x85\\u2028\u{e9}\"\n")
        );
        assert_eq!(
            render(Format::Yaml, &[]).as_deref().map(|s| s.as_str()),
            Ok("{}\n")
        );
    }

    #[test]
    fn format_names_parse() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("toml"), None);
    }
}
