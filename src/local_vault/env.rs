//! `DIR/env`: everything a client needs to use a local vault, as `export NAME=value` lines that
//! `source DIR/env` understands (values single-quoted when they need it). Written mode 0600.
//!
//! It deliberately sets no `AZURE_CLIENT_SECRET`: with it, MSAL in the official SDKs would try
//! Microsoft's instance discovery and fail offline. The SDKs authenticate through the managed
//! identity endpoint instead (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`) and trust the CA through
//! `REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE`.

use std::path::{Path, PathBuf};

use super::LocalVaultError;
use crate::secret_value::SecretValue;

/// The variables of the env file whose values are credentials: never printed unless asked.
pub const SECRET_VARIABLES: [&str; 3] = [
    "AKVFS_CLIENT_SECRET",
    "AKVFS_ADMIN_TOKEN",
    "IDENTITY_HEADER",
];

#[derive(Clone, Debug)]
pub struct LocalVaultEnv {
    pub vault_url: String,
    pub ca_file: PathBuf,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretValue,
    /// Token endpoint: `{authority_host}/{tenant_id}/oauth2/v2.0/token`.
    pub authority_host: String,
    pub admin_token: SecretValue,
    pub identity_endpoint: String,
    pub identity_header: SecretValue,
}

/// Quotes for POSIX shells when the value holds anything but plainly safe characters.
fn shell_quote(value: &str) -> String {
    let safe = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:@%+=,".contains(&b));
    if safe {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Reverses `shell_quote` (and plain double quotes without escapes).
fn shell_unquote(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => out.push(c),
                    None => return Err("unterminated single quote".into()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => out.push(c),
                        None => return Err("dangling backslash".into()),
                    },
                    Some(c) => out.push(c),
                    None => return Err("unterminated double quote".into()),
                }
            },
            '\\' => match chars.next() {
                Some(c) => out.push(c),
                None => return Err("dangling backslash".into()),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

impl LocalVaultEnv {
    /// `(NAME, value)` in file order.
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        let ca = self.ca_file.display().to_string();
        vec![
            ("AKVFS_VAULT_URL", self.vault_url.clone()),
            ("AKVFS_CA_FILE", ca.clone()),
            ("AKVFS_TENANT_ID", self.tenant_id.clone()),
            ("AKVFS_CLIENT_ID", self.client_id.clone()),
            (
                "AKVFS_CLIENT_SECRET",
                self.client_secret.expose().to_owned(),
            ),
            ("AKVFS_AUTHORITY_HOST", self.authority_host.clone()),
            ("AKVFS_ADMIN_TOKEN", self.admin_token.expose().to_owned()),
            ("REQUESTS_CA_BUNDLE", ca.clone()),
            ("SSL_CERT_FILE", ca),
            ("IDENTITY_ENDPOINT", self.identity_endpoint.clone()),
            ("IDENTITY_HEADER", self.identity_header.expose().to_owned()),
        ]
    }

    /// What `akvfs local-vault` prints at start: the env file's path and every variable that
    /// is not secret (not the client secret, admin token or identity header: standard output
    /// ends up in journals and CI logs). `--print-env` prints the whole file instead.
    pub fn public_summary(&self, env_file: &Path) -> String {
        let mut out = format!(
            "# akvfs local vault: `source {}` to use it (it also holds the secret values: {}; \
             --print-env prints them here)\n",
            shell_quote(&env_file.display().to_string()),
            SECRET_VARIABLES.join(", ")
        );
        for (name, value) in self.variables() {
            if !SECRET_VARIABLES.contains(&name) {
                out.push_str(&format!("export {name}={}\n", shell_quote(&value)));
            }
        }
        out
    }

    /// The value `source DIR/env` would give `name`: lets a credential read this vault's
    /// variables without touching the process environment.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.variables()
            .into_iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    pub fn to_env_file(&self) -> String {
        let mut out = String::from("# akvfs local vault: `source` this file to use the vault.\n");
        for (name, value) in self.variables() {
            out.push_str(&format!("export {name}={}\n", shell_quote(&value)));
        }
        out
    }

    pub fn read_env_file(path: &Path) -> Result<LocalVaultEnv, LocalVaultError> {
        let err = |message: String| LocalVaultError::EnvFile {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// Parses the text of an env file.
    pub fn parse(text: &str) -> Result<LocalVaultEnv, String> {
        let mut vars = std::collections::HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
            let (name, raw) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected NAME=value", i + 1))?;
            let value = shell_unquote(raw).map_err(|e| format!("line {}: {e}", i + 1))?;
            vars.insert(name.trim().to_owned(), value);
        }
        let mut take = |name: &str| {
            vars.remove(name)
                .ok_or_else(|| format!("{name} is missing"))
        };
        Ok(LocalVaultEnv {
            vault_url: take("AKVFS_VAULT_URL")?,
            ca_file: PathBuf::from(take("AKVFS_CA_FILE")?),
            tenant_id: take("AKVFS_TENANT_ID")?,
            client_id: take("AKVFS_CLIENT_ID")?,
            client_secret: SecretValue::new(take("AKVFS_CLIENT_SECRET")?),
            authority_host: take("AKVFS_AUTHORITY_HOST")?,
            admin_token: SecretValue::new(take("AKVFS_ADMIN_TOKEN")?),
            identity_endpoint: take("IDENTITY_ENDPOINT")?,
            identity_header: SecretValue::new(take("IDENTITY_HEADER")?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_awkward_values() {
        for v in [
            "plain",
            "with space",
            "it's",
            "",
            "a\"b",
            "$HOME",
            "https://127.0.0.1:1/x",
        ] {
            assert_eq!(shell_unquote(&shell_quote(v)).expect("unquote"), v, "{v}");
        }
        assert_eq!(shell_quote("https://127.0.0.1:1"), "https://127.0.0.1:1");
    }

    #[test]
    fn env_file_round_trips() {
        let env = LocalVaultEnv {
            vault_url: "https://127.0.0.1:1".into(),
            ca_file: PathBuf::from("/tmp/a dir/ca.pem"),
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: SecretValue::from("s'x"),
            authority_host: "https://127.0.0.1:1".into(),
            admin_token: SecretValue::from("adm"),
            identity_endpoint: "https://127.0.0.1:1/msi/token".into(),
            identity_header: SecretValue::from("ih"),
        };
        let text = env.to_env_file();
        assert!(!text.contains("AZURE_CLIENT_SECRET"));
        assert!(text.contains("export REQUESTS_CA_BUNDLE='/tmp/a dir/ca.pem'\n"));
        let back = LocalVaultEnv::parse(&text).expect("parse");
        assert_eq!(back.ca_file, env.ca_file);
        assert_eq!(back.client_secret.expose(), "s'x");
        assert_eq!(back.identity_endpoint, env.identity_endpoint);

        let summary = env.public_summary(Path::new("/tmp/a dir/env"));
        assert!(summary.contains("source '/tmp/a dir/env'"), "{summary}");
        assert!(summary.contains("export AKVFS_VAULT_URL=https://127.0.0.1:1\n"));
        assert!(summary.contains("export AKVFS_CLIENT_ID=c\n"));
        for secret in ["s'x", "adm", "ih"] {
            assert!(!summary.contains(&format!("={secret}")), "{summary}");
        }
        for name in SECRET_VARIABLES {
            assert!(!summary.contains(&format!("export {name}=")), "{summary}");
        }
    }
}
