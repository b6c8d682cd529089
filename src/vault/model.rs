//! Serde types mirroring the Key Vault secrets wire JSON (REST API 7.x), shared by the client and
//! the local vault. Names follow the REST spec (`SecretBundle`, `SecretItem`, …). Absent fields are
//! omitted on output, never `null` — except `nextLink`, which the service sends as `null` on the
//! last page.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret_value::SecretValue;

/// The service's limit on a stored value, counted in characters: "Secret is beyond the maximum
/// permitted length of 25600 characters."
pub const MAX_SECRET_VALUE_CHARS: usize = 25_600;
/// How long `value` is for the service's limit ([`MAX_SECRET_VALUE_CHARS`]): its length in
/// UTF-16 code units. The service is .NET, whose `string.Length` counts UTF-16 code units, so a
/// character outside the Basic Multilingual Plane (an emoji) counts twice: 25,600 emoji are
/// 51,200 units. Unconfirmed against the live service (no recording sends such a value); it is
/// the stricter reading, so a value accepted here is accepted there. The local vault's set and
/// seed checks, the in-memory store and the mount's EFBIG check all count with this function.
pub fn value_length_in_service_units(value: &str) -> usize {
    value.encode_utf16().count()
}

/// Whether `value` is within the service's limit, counted as [`value_length_in_service_units`].
pub fn value_within_service_limit(value: &str) -> bool {
    // UTF-16 units never exceed UTF-8 bytes: skip counting when the bytes fit.
    value.len() <= MAX_SECRET_VALUE_CHARS
        || value_length_in_service_units(value) <= MAX_SECRET_VALUE_CHARS
}

/// DNS suffix of the public cloud's vaults (its Key Vault audience is `https://vault.azure.net`).
pub const PUBLIC_CLOUD_VAULT_SUFFIX: &str = "vault.azure.net";
/// DNS suffix of Azure China's vaults.
pub const CHINA_CLOUD_VAULT_SUFFIX: &str = "vault.azure.cn";
/// DNS suffix of Azure US Government's vaults.
pub const US_GOVERNMENT_VAULT_SUFFIX: &str = "vault.usgovcloudapi.net";
/// Every cloud's vault DNS suffix: `https://SUFFIX` is that cloud's Key Vault audience.
pub const CLOUD_VAULT_SUFFIXES: [&str; 3] = [
    PUBLIC_CLOUD_VAULT_SUFFIX,
    CHINA_CLOUD_VAULT_SUFFIX,
    US_GOVERNMENT_VAULT_SUFFIX,
];

/// The cloud vault suffix `host` is a name under (`kv.vault.azure.cn` → `vault.azure.cn`,
/// `kv.privatelink.vault.azure.net` → `vault.azure.net`); `None` for the suffix itself and for
/// any other host (ASCII case-insensitive, a trailing dot ignored).
pub fn cloud_vault_suffix(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    CLOUD_VAULT_SUFFIXES.into_iter().find(|suffix| {
        host.strip_suffix(suffix)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty())
    })
}

/// Longest secret name.
pub const MAX_SECRET_NAME_LEN: usize = 127;
/// Longest `contentType`.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// Largest and default `maxresults` of a list call.
pub const MAX_PAGE_SIZE: usize = 25;

/// Tag written by `az keyvault secret set --encoding` and honoured by akvfs.
pub const FILE_ENCODING_TAG: &str = "file-encoding";

pub type Tags = BTreeMap<String, String>;

/// `^[0-9A-Za-z-]{1,127}$`
pub fn is_valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SECRET_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Why a name cannot be a secret name; `None` when it can.
pub fn secret_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a secret name cannot be empty")
    } else if name.len() > MAX_SECRET_NAME_LEN {
        Some("a secret name is at most 127 characters")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Some("a secret name may only contain letters, digits and '-' (^[0-9A-Za-z-]{1,127}$)")
    } else {
        None
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// not before, seconds since the epoch
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// expires, seconds since the epoch
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoverable_days: Option<i64>,
}

/// A secret version with its value (`GET /secrets/{name}[/{version}]`, `PUT`, `PATCH`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretBundle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<SecretValue>,
    /// `https://HOST/secrets/NAME/VERSION`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<SecretAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

/// `DELETE /secrets/{name}` and `GET /deletedsecrets/{name}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedSecretBundle {
    #[serde(flatten)]
    pub secret: SecretBundle,
    /// Absent when soft delete is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_purge_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<i64>,
}

/// One entry of `GET /secrets` (base id, no value) or `GET /secrets/{name}/versions`
/// (versioned id).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<SecretAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

/// One entry of `GET /deletedsecrets`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedSecretItem {
    #[serde(flatten)]
    pub item: SecretItem,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_purge_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<i64>,
}

/// A page of a list call. `nextLink` is `null` on the last page (serialized, not omitted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPage<T> {
    #[serde(default)]
    pub value: Vec<T>,
    #[serde(default)]
    pub next_link: Option<String>,
}

/// Body of `PUT /secrets/{name}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSetParameters {
    pub value: SecretValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<SecretAttributes>,
}

/// Body of `PATCH /secrets/{name}/{version}` (no new version is made).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretUpdateParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<SecretAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `{"error":{"code","message","innererror"?}}`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVaultErrorBody {
    pub error: KeyVaultErrorDetail,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVaultErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub innererror: Option<Box<KeyVaultErrorDetail>>,
}

impl KeyVaultErrorDetail {
    /// The innermost code, e.g. `ObjectIsDeletedButRecoverable` under `Conflict`.
    pub fn innermost_code(&self) -> &str {
        match &self.innererror {
            Some(inner) if !inner.code.is_empty() => inner.innermost_code(),
            _ => &self.code,
        }
    }
}

/// A parsed secret identifier: `https://HOST[:PORT]/secrets/NAME[/VERSION]` (also
/// `/deletedsecrets/NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretId {
    /// `https://HOST[:PORT]` without a trailing slash.
    pub vault_url: String,
    pub name: String,
    pub version: Option<String>,
}

impl SecretId {
    pub fn parse(id: &str) -> Option<SecretId> {
        let url = url::Url::parse(id).ok()?;
        let host = url.host_str()?;
        let vault_url = match url.port() {
            Some(port) => format!("{}://{}:{}", url.scheme(), host, port),
            None => format!("{}://{}", url.scheme(), host),
        };
        let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
        let collection = segments.next()?;
        if collection != "secrets" && collection != "deletedsecrets" {
            return None;
        }
        let name = segments.next()?.to_owned();
        let version = segments.next().map(str::to_owned);
        if segments.next().is_some() {
            return None;
        }
        Some(SecretId {
            vault_url,
            name,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_under_a_clouds_vault_suffix() {
        assert_eq!(
            cloud_vault_suffix("kv.vault.azure.net"),
            Some("vault.azure.net")
        );
        assert_eq!(
            cloud_vault_suffix("KV.Vault.Azure.CN."),
            Some("vault.azure.cn")
        );
        assert_eq!(
            cloud_vault_suffix("kv.privatelink.vault.azure.net"),
            Some("vault.azure.net")
        );
        assert_eq!(
            cloud_vault_suffix("kv.vault.usgovcloudapi.net"),
            Some("vault.usgovcloudapi.net")
        );
        for other in [
            "vault.azure.net",
            "kvvault.azure.net",
            "kv.vault.azure.net.evil.com",
            "127.0.0.1",
        ] {
            assert_eq!(cloud_vault_suffix(other), None, "{other}");
        }
    }

    #[test]
    fn values_are_measured_in_utf16_code_units_as_the_service_counts() {
        assert_eq!(value_length_in_service_units("abc"), 3);
        assert_eq!(value_length_in_service_units("é€"), 2);
        assert_eq!(value_length_in_service_units("😀"), 2);
        let emoji = "😀".repeat(MAX_SECRET_VALUE_CHARS);
        assert_eq!(value_length_in_service_units(&emoji), 51_200);
        assert!(!value_within_service_limit(&emoji));
        assert!(value_within_service_limit(&"😀".repeat(12_800)));
        assert!(!value_within_service_limit(&"😀".repeat(12_801)));
        assert!(value_within_service_limit(
            &"€".repeat(MAX_SECRET_VALUE_CHARS)
        ));
        assert!(!value_within_service_limit(
            &"a".repeat(MAX_SECRET_VALUE_CHARS + 1)
        ));
    }

    #[test]
    fn names_follow_the_service_rule() {
        assert!(is_valid_secret_name("my-Secret-1"));
        assert!(is_valid_secret_name(&"a".repeat(127)));
        assert!(!is_valid_secret_name(&"a".repeat(128)));
        assert!(!is_valid_secret_name(""));
        assert!(!is_valid_secret_name("no_such.txt"));
        assert!(!is_valid_secret_name(".swp"));
        assert_eq!(secret_name_problem("ok"), None);
    }

    #[test]
    fn secret_ids_parse_with_and_without_version_and_port() {
        let id = SecretId::parse("https://v.vault.azure.net:443/secrets/Foo/0123abcd").expect("id");
        assert_eq!(id.name, "Foo");
        assert_eq!(id.version.as_deref(), Some("0123abcd"));
        let id = SecretId::parse("https://127.0.0.1:8443/secrets/bar").expect("id");
        assert_eq!(id.vault_url, "https://127.0.0.1:8443");
        assert_eq!(id.version, None);
        assert!(SecretId::parse("https://h/keys/x").is_none());
    }

    #[test]
    fn recorded_bundle_round_trips_without_nulls() {
        let body = r#"{"value":"v","id":"https://h/secrets/n/abc","attributes":{"enabled":true,"created":1,"updated":2,"recoveryLevel":"Recoverable+Purgeable","recoverableDays":90},"tags":{}}"#;
        let bundle: SecretBundle = serde_json::from_str(body).expect("parse");
        let again = serde_json::to_string(&bundle).expect("ser");
        assert!(!again.contains("null"));
        assert_eq!(
            serde_json::from_str::<SecretBundle>(&again).expect("reparse"),
            bundle
        );
    }

    #[test]
    fn last_page_serializes_next_link_null() {
        let page: ListPage<SecretItem> = ListPage::default();
        assert_eq!(
            serde_json::to_string(&page).expect("ser"),
            r#"{"value":[],"nextLink":null}"#
        );
    }

    #[test]
    fn innermost_code_finds_the_conflict_reason() {
        let body = r#"{"error":{"code":"Conflict","message":"m","innererror":{"code":"ObjectIsDeletedButRecoverable"}}}"#;
        let e: KeyVaultErrorBody = serde_json::from_str(body).expect("parse");
        assert_eq!(e.error.innermost_code(), "ObjectIsDeletedButRecoverable");
    }
}
