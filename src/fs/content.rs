//! File content ↔ stored secret value: the Azure CLI `file-encoding` tag convention and the
//! service's size limit.

use base64::Engine;
use zeroize::Zeroizing;

use crate::secret_value::SecretValue;
use crate::vault::model::{
    value_length_in_service_units, value_within_service_limit, Tags, FILE_ENCODING_TAG,
    MAX_SECRET_VALUE_CHARS,
};

/// How a file's bytes are stored in the secret value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The value is the content (UTF-8 text).
    Text,
    /// `file-encoding=base64`: the value is the base64 of the content.
    Base64,
    /// `file-encoding=hex`: the value is the hex of the content.
    Hex,
}

impl Encoding {
    /// The encoding a secret's tags declare (`base64`/`hex`, case-insensitive); anything else
    /// (absent, `utf-8`, `ascii`) is text.
    pub fn from_tags(tags: Option<&Tags>) -> Encoding {
        let declared = tags.and_then(|tags| {
            tags.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(FILE_ENCODING_TAG))
                .map(|(_, value)| value.to_ascii_lowercase())
        });
        match declared.as_deref() {
            Some("base64") => Encoding::Base64,
            Some("hex") => Encoding::Hex,
            _ => Encoding::Text,
        }
    }

    pub fn tag_value(self) -> Option<&'static str> {
        match self {
            Encoding::Text => None,
            Encoding::Base64 => Some("base64"),
            Encoding::Hex => Some("hex"),
        }
    }
}

/// A stored value that does not decode as its `file-encoding` tag says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undecodable(pub &'static str);

/// The stored value decoded into file content. ASCII whitespace is ignored in base64 and hex
/// (the Azure CLI stores Python's `encodebytes` output: a newline every 76 characters and one
/// at the end). A value that still does not decode is an error, never shown as other bytes.
pub fn decode(value: &SecretValue, encoding: Encoding) -> Result<Zeroizing<Vec<u8>>, Undecodable> {
    let raw = value.expose();
    if encoding == Encoding::Text {
        return Ok(Zeroizing::new(raw.as_bytes().to_vec()));
    }
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        raw.bytes()
            .filter(|byte| !byte.is_ascii_whitespace())
            .collect(),
    );
    let decoded = match encoding {
        Encoding::Text => unreachable!("handled above"),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(&*compact)
            .map_err(|_| {
                Undecodable(
                    "the value is not valid base64 although it is tagged file-encoding=base64",
                )
            }),
        Encoding::Hex => hex::decode(&*compact).map_err(|_| {
            Undecodable("the value is not valid hex although it is tagged file-encoding=hex")
        }),
    };
    decoded.map(Zeroizing::new)
}

/// The encoding to store `content` with, given the secret's current one: a secret tagged
/// base64/hex keeps it; text that is not valid UTF-8 becomes base64.
pub fn encoding_for(content: &[u8], current: Encoding) -> Encoding {
    match current {
        Encoding::Text if std::str::from_utf8(content).is_err() => Encoding::Base64,
        other => other,
    }
}

/// The stored value for `content`.
pub fn encode(content: &[u8], encoding: Encoding) -> SecretValue {
    let text = match encoding {
        Encoding::Text => match std::str::from_utf8(content) {
            Ok(text) => text.to_owned(),
            // encoding_for never asks for this; be safe rather than lossy.
            Err(_) => base64::engine::general_purpose::STANDARD.encode(content),
        },
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(content),
        Encoding::Hex => hex::encode(content),
    };
    SecretValue::new(text)
}

/// The tags to send with a rewrite: the old ones with `file-encoding` set to match.
pub fn tags_for(old: Option<&Tags>, encoding: Encoding) -> Option<Tags> {
    let mut tags = old.cloned().unwrap_or_default();
    let existing_key = tags
        .keys()
        .find(|key| key.eq_ignore_ascii_case(FILE_ENCODING_TAG))
        .cloned();
    match (encoding.tag_value(), existing_key) {
        (Some(value), Some(key)) => {
            tags.insert(key, value.to_owned());
        }
        (Some(value), None) => {
            tags.insert(FILE_ENCODING_TAG.to_owned(), value.to_owned());
        }
        // Text keeps whatever text tag (`utf-8`, `ascii`) it had.
        (None, _) => {}
    }
    if tags.is_empty() && old.is_none() {
        None
    } else {
        Some(tags)
    }
}

/// Whether `content` stored with the secret's current encoding stays within the service limit
/// (25,600 characters of stored value, counted in UTF-16 code units as the service counts them:
/// see [`value_length_in_service_units`]). Content that ends inside a UTF-8 sequence counts as
/// text still being written, so a multi-byte character split across two writes is not
/// mistaken for binary.
pub fn fits(content: &[u8], current: Encoding) -> bool {
    let limit = MAX_SECRET_VALUE_CHARS;
    match current {
        Encoding::Base64 => content.len().div_ceil(3) * 4 <= limit,
        Encoding::Hex => content.len() * 2 <= limit,
        Encoding::Text => {
            match std::str::from_utf8(content) {
                Ok(text) => value_within_service_limit(text),
                Err(error) if error.error_len().is_none() => {
                    let (valid, rest) = content.split_at(error.valid_up_to());
                    let units = std::str::from_utf8(valid)
                        .map_or(usize::MAX, value_length_in_service_units);
                    units.saturating_add(usize::from(!rest.is_empty())) <= limit
                }
                // Binary: stored as base64.
                Err(_) => content.len().div_ceil(3) * 4 <= limit,
            }
        }
    }
}

/// Largest content length that could possibly fit, to refuse absurd offsets before allocating.
pub const MAX_CONTENT_BYTES: usize = MAX_SECRET_VALUE_CHARS * 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_stored_length() {
        assert!(fits(&[b'a'; 25_600], Encoding::Text));
        assert!(!fits(&[b'a'; 25_601], Encoding::Text));
        assert!(fits(&[0xff; 19_200], Encoding::Text), "binary is base64");
        assert!(!fits(&[0xff; 19_201], Encoding::Text));
        assert!(fits(&[b'a'; 12_800], Encoding::Hex));
        assert!(!fits(&[b'a'; 12_801], Encoding::Hex));
        let snowmen = "☃".repeat(25_600);
        assert!(
            fits(snowmen.as_bytes(), Encoding::Text),
            "characters, not bytes"
        );
        // A write that ends inside a character is still text.
        let cut = &snowmen.as_bytes()[..snowmen.len() - 1];
        assert!(fits(cut, Encoding::Text));
        // Outside the Basic Multilingual Plane a character is two UTF-16 units, as the
        // service counts: 12,800 emoji fit, 12,801 do not.
        assert!(fits("😀".repeat(12_800).as_bytes(), Encoding::Text));
        assert!(!fits("😀".repeat(12_801).as_bytes(), Encoding::Text));
    }

    #[test]
    fn binary_round_trips_through_base64_with_a_tag() {
        let content = [0u8, 0xff, 0x80, 7];
        let encoding = encoding_for(&content, Encoding::Text);
        assert_eq!(encoding, Encoding::Base64);
        let value = encode(&content, encoding);
        let tags = tags_for(None, encoding).expect("tags");
        assert_eq!(
            tags.get(FILE_ENCODING_TAG).map(String::as_str),
            Some("base64")
        );
        assert_eq!(
            decode(&value, Encoding::from_tags(Some(&tags)))
                .expect("decodes")
                .as_slice(),
            &content
        );
    }

    #[test]
    fn base64_and_hex_ignore_ascii_whitespace_and_refuse_anything_else() {
        // Python's base64.encodebytes, as `az keyvault secret set --encoding base64` stores it.
        let wrapped = SecretValue::new(format!("{}\n{}\n", "A".repeat(76), "QUFB"));
        let decoded = decode(&wrapped, Encoding::Base64).expect("wrapped base64");
        assert_eq!(decoded.len(), 60);
        let hex = SecretValue::new("68 69\r\n\t0a".to_owned());
        assert_eq!(
            decode(&hex, Encoding::Hex).expect("hex").as_slice(),
            b"hi\n"
        );
        assert!(decode(&SecretValue::new("not base64!".into()), Encoding::Base64).is_err());
        assert!(decode(&SecretValue::new("6g".into()), Encoding::Hex).is_err());
        let text = SecretValue::new(" spaced \n".into());
        assert_eq!(
            decode(&text, Encoding::Text).expect("text").as_slice(),
            b" spaced \n"
        );
    }

    #[test]
    fn tagged_secrets_keep_their_encoding() {
        assert_eq!(encoding_for(b"text", Encoding::Hex), Encoding::Hex);
        assert_eq!(encode(b"hi", Encoding::Hex).expose(), "6869");
        let mut tags = Tags::new();
        tags.insert("File-Encoding".into(), "HEX".into());
        assert_eq!(Encoding::from_tags(Some(&tags)), Encoding::Hex);
        let kept = tags_for(Some(&tags), Encoding::Hex).expect("tags");
        assert_eq!(kept.len(), 1);
    }
}
