//! A secret's properties as extended attributes (`user.akv.*`, SPEC §3.6). Changing one is an
//! update-secret call (no new version).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::core::SecretData;
use crate::vault::model::{SecretAttributes, SecretUpdateParameters};

pub const PREFIX: &str = "user.akv.";
const TAG_PREFIX: &str = "user.akv.tags.";

/// Why an attribute cannot be set or removed.
#[derive(Debug, PartialEq, Eq)]
pub enum XattrRefusal {
    /// Not one of ours.
    Unknown,
    /// One of the read-only ones (`id`, `version`, `created`, …).
    ReadOnly,
    /// The value does not parse (`enabled` must be true/false, dates RFC 3339).
    BadValue(&'static str),
}

fn rfc3339(seconds: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

fn parse_date(value: &str) -> Result<i64, XattrRefusal> {
    OffsetDateTime::parse(value.trim(), &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| XattrRefusal::BadValue("expected an RFC 3339 date, e.g. 2030-01-31T00:00:00Z"))
}

/// Every attribute the secret has, with its value.
pub fn all(data: &SecretData) -> Vec<(String, String)> {
    let a = &data.attributes;
    let mut out = Vec::new();
    let mut push = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            out.push((format!("{PREFIX}{name}"), value));
        }
    };
    push("content_type", data.content_type.clone());
    push("enabled", Some(data.enabled.to_string()));
    push("not_before", a.nbf.and_then(rfc3339));
    push("expires", a.exp.and_then(rfc3339));
    push("id", data.id.clone());
    push("version", data.version.clone());
    push("created", a.created.and_then(rfc3339));
    push("updated", a.updated.and_then(rfc3339));
    push("recovery_level", a.recovery_level.clone());
    push("managed", data.managed.map(|m| m.to_string()));
    for (key, value) in data.tags.iter().flatten() {
        out.push((format!("{TAG_PREFIX}{key}"), value.clone()));
    }
    out
}

pub fn get(data: &SecretData, name: &str) -> Option<String> {
    all(data)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value)
}

/// The update call that sets `name` to `value`.
pub fn set(
    data: &SecretData,
    name: &str,
    value: &str,
) -> Result<SecretUpdateParameters, XattrRefusal> {
    let mut update = SecretUpdateParameters::default();
    if let Some(key) = name.strip_prefix(TAG_PREFIX) {
        if key.is_empty() {
            return Err(XattrRefusal::BadValue(
                "a tag needs a name: user.akv.tags.KEY",
            ));
        }
        let mut tags = data.tags.clone().unwrap_or_default();
        tags.insert(key.to_owned(), value.to_owned());
        update.tags = Some(tags);
        return Ok(update);
    }
    let attributes = |f: &dyn Fn(&mut SecretAttributes)| {
        let mut a = SecretAttributes::default();
        f(&mut a);
        Some(a)
    };
    match name.strip_prefix(PREFIX) {
        Some("content_type") => {
            if value.chars().count() > MAX_CONTENT_TYPE_CHARS {
                return Err(XattrRefusal::BadValue(
                    "a content type is at most 255 characters (the service's limit)",
                ));
            }
            update.content_type = Some(value.to_owned());
        }
        Some("enabled") => {
            let enabled = match value.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(XattrRefusal::BadValue("expected true or false")),
            };
            update.attributes = attributes(&|a| a.enabled = Some(enabled));
        }
        Some("not_before") => {
            let nbf = parse_date(value)?;
            update.attributes = attributes(&|a| a.nbf = Some(nbf));
        }
        Some("expires") => {
            let exp = parse_date(value)?;
            update.attributes = attributes(&|a| a.exp = Some(exp));
        }
        Some("id" | "version" | "created" | "updated" | "recovery_level" | "managed") => {
            return Err(XattrRefusal::ReadOnly)
        }
        _ => return Err(XattrRefusal::Unknown),
    }
    Ok(update)
}

/// The dates `setfattr -x` can remove (with a new version: see `core/properties.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClearableDate {
    NotBefore,
    Expires,
}

pub fn clearable_date(name: &str) -> Option<ClearableDate> {
    match name.strip_prefix(PREFIX) {
        Some("not_before") => Some(ClearableDate::NotBefore),
        Some("expires") => Some(ClearableDate::Expires),
        _ => None,
    }
}

/// The service's limit on a content type.
pub const MAX_CONTENT_TYPE_CHARS: usize = 255;

/// The update call that removes `name` (only tags can be removed).
pub fn remove(data: &SecretData, name: &str) -> Result<SecretUpdateParameters, XattrRefusal> {
    let Some(key) = name.strip_prefix(TAG_PREFIX) else {
        return Err(if name.starts_with(PREFIX) {
            XattrRefusal::ReadOnly
        } else {
            XattrRefusal::Unknown
        });
    };
    let mut tags = data.tags.clone().unwrap_or_default();
    if tags.remove(key).is_none() {
        return Err(XattrRefusal::Unknown);
    }
    Ok(SecretUpdateParameters {
        tags: Some(tags),
        ..SecretUpdateParameters::default()
    })
}
