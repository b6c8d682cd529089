//! Azure clouds: which Microsoft Entra authority serves which Key Vault DNS suffix.

use crate::vault::model::{
    CHINA_CLOUD_VAULT_SUFFIX, PUBLIC_CLOUD_VAULT_SUFFIX, US_GOVERNMENT_VAULT_SUFFIX,
};

/// One Azure cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cloud {
    /// `public`, `china`, `usgov` (the `--cloud` names).
    pub name: &'static str,
    /// DNS suffix of its vaults, e.g. `vault.azure.net`.
    pub vault_suffix: &'static str,
    /// Its Entra ID (AAD) authority host, e.g. `https://login.microsoftonline.com`.
    pub authority_host: &'static str,
}

pub const AZURE_PUBLIC_CLOUD: Cloud = Cloud {
    name: "public",
    vault_suffix: PUBLIC_CLOUD_VAULT_SUFFIX,
    authority_host: "https://login.microsoftonline.com",
};

pub const AZURE_CHINA_CLOUD: Cloud = Cloud {
    name: "china",
    vault_suffix: CHINA_CLOUD_VAULT_SUFFIX,
    authority_host: "https://login.chinacloudapi.cn",
};

pub const AZURE_US_GOVERNMENT: Cloud = Cloud {
    name: "usgov",
    vault_suffix: US_GOVERNMENT_VAULT_SUFFIX,
    authority_host: "https://login.microsoftonline.us",
};

pub const CLOUDS: [Cloud; 3] = [AZURE_PUBLIC_CLOUD, AZURE_CHINA_CLOUD, AZURE_US_GOVERNMENT];

impl Cloud {
    /// The cloud called `name` (`public`, `china`, `usgov`; case-insensitive).
    pub fn by_name(name: &str) -> Option<Cloud> {
        CLOUDS
            .into_iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The cloud whose vault suffix the host of `vault_url` ends with (`NAME.vault.azure.cn`
    /// → china). `None` for other hosts (a local vault, a private endpoint alias).
    pub fn for_vault_url(vault_url: &str) -> Option<Cloud> {
        let url = url::Url::parse(vault_url).ok()?;
        let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
        CLOUDS
            .into_iter()
            .find(|c| host == c.vault_suffix || host.ends_with(&format!(".{}", c.vault_suffix)))
    }

    /// `https://NAME.{vault_suffix}` for a bare vault name.
    pub fn vault_url(&self, vault_name: &str) -> String {
        format!("https://{vault_name}.{}", self.vault_suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_suffix_picks_the_cloud() {
        let c = |u: &str| Cloud::for_vault_url(u).map(|c| c.authority_host);
        assert_eq!(
            c("https://kv.vault.azure.net"),
            Some("https://login.microsoftonline.com")
        );
        assert_eq!(
            c("https://KV.Vault.Azure.CN/"),
            Some("https://login.chinacloudapi.cn")
        );
        assert_eq!(
            c("https://kv.vault.usgovcloudapi.net:443/x"),
            Some("https://login.microsoftonline.us")
        );
        assert_eq!(c("https://127.0.0.1:8443"), None);
        assert_eq!(c("https://kvvault.azure.net"), None);
        assert_eq!(c("not a url"), None);
    }

    #[test]
    fn clouds_by_name_expand_bare_vault_names() {
        assert_eq!(
            Cloud::by_name("China").map(|c| c.vault_url("kv")),
            Some("https://kv.vault.azure.cn".to_owned())
        );
        assert_eq!(Cloud::by_name("mars"), None);
    }
}
