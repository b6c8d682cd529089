//! A secret value that never shows itself: `Debug`/`Display` print `<redacted>` and the bytes are
//! zeroed when dropped.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// The text of a secret as the vault stores it. Zeroed on drop; redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        SecretValue(Zeroizing::new(value))
    }

    /// The secret text. Callers must not log it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of characters (Unicode scalar values), which is what the service limit counts.
    pub fn char_count(&self) -> usize {
        self.0.chars().count()
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        SecretValue::new(value)
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        SecretValue::new(value.to_owned())
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretValue::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let v = SecretValue::from("hunter2");
        assert_eq!(format!("{v:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(v.clone())), "Some(<redacted>)");
        assert_eq!(v.expose(), "hunter2");
    }

    #[test]
    fn serde_is_a_plain_string() {
        let v: SecretValue = serde_json::from_str("\"abc\"").expect("parse");
        assert_eq!(v.expose(), "abc");
        assert_eq!(serde_json::to_string(&v).expect("ser"), "\"abc\"");
    }
}
