//! TLS material of the local vault: a local CA and a leaf certificate for `localhost`,
//! `127.0.0.1`, `::1` and the configured host names, kept in the data dir (`ca.pem`, `ca-key.pem`,
//! `tls.pem`, `tls-key.pem`, `tls.names`; keys mode 0600, the rest 0644 whatever the umask)
//! and reused on restart. Clients trust `ca.pem`
//! (`AKVFS_CA_FILE`). The leaf is re-issued by the same CA when the host names change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::files::{set_mode, write_private_file, write_public_file, PRIVATE_MODE, PUBLIC_MODE};
use super::LocalVaultError;

pub struct TlsMaterial {
    pub ca_file: PathBuf,
    pub server_config: Arc<rustls::ServerConfig>,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> LocalVaultError {
    move |source| LocalVaultError::Io { what, source }
}

fn tls_err(what: &str) -> impl FnOnce(rcgen::Error) -> LocalVaultError + '_ {
    move |e| LocalVaultError::Tls(format!("{what}: {e}"))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "akvfs local vault CA");
    dn.push(DnType::OrganizationName, "akvfs");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Fixed validity so re-deriving the issuer from the same key gives the same certificate
    // identity (subject + key) as the stored one.
    params.not_before = time::macros::datetime!(2024-01-01 0:00 UTC);
    params.not_after = time::macros::datetime!(2049-12-31 0:00 UTC);
    params
}

/// All names the leaf must cover, sorted and deduplicated.
fn leaf_names(hostnames: &[String]) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(hostnames.iter().map(|h| h.to_ascii_lowercase()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Loads the material from `dir`, creating what is missing.
pub fn load_or_create(dir: &Path, hostnames: &[String]) -> Result<TlsMaterial, LocalVaultError> {
    let ca_file = dir.join("ca.pem");
    let ca_key_file = dir.join("ca-key.pem");
    let leaf_file = dir.join("tls.pem");
    let leaf_key_file = dir.join("tls-key.pem");
    let names_file = dir.join("tls.names");

    let ca_key = if ca_file.exists() && ca_key_file.exists() {
        let pem = std::fs::read_to_string(&ca_key_file)
            .map_err(io_err(format!("reading {}", ca_key_file.display())))?;
        KeyPair::from_pem(&pem).map_err(tls_err("parsing the CA key"))?
    } else {
        let key = KeyPair::generate().map_err(tls_err("generating the CA key"))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(tls_err("signing the CA"))?;
        write_private_file(&ca_key_file, key.serialize_pem().as_bytes())?;
        write_public_file(&ca_file, cert.pem().as_bytes())?;
        // A new CA invalidates any old leaf.
        let _ = std::fs::remove_file(&leaf_file);
        key
    };

    let names = leaf_names(hostnames);
    let names_line = names.join("\n");
    let stored_names = std::fs::read_to_string(&names_file).unwrap_or_default();
    if !(leaf_file.exists() && leaf_key_file.exists() && stored_names == names_line) {
        let issuer = ca_params()
            .self_signed(&ca_key)
            .map_err(tls_err("re-deriving the CA"))?;
        let mut params = CertificateParams::new(names.clone()).map_err(tls_err("leaf names"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "akvfs local vault");
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let key = KeyPair::generate().map_err(tls_err("generating the TLS key"))?;
        let cert = params
            .signed_by(&key, &issuer, &ca_key)
            .map_err(tls_err("signing the leaf"))?;
        write_private_file(&leaf_key_file, key.serialize_pem().as_bytes())?;
        write_public_file(&leaf_file, cert.pem().as_bytes())?;
        write_public_file(&names_file, names_line.as_bytes())?;
    }

    // Files kept from an earlier start get their modes again, whatever made them.
    for (file, mode) in [
        (&ca_file, PUBLIC_MODE),
        (&leaf_file, PUBLIC_MODE),
        (&names_file, PUBLIC_MODE),
        (&ca_key_file, PRIVATE_MODE),
        (&leaf_key_file, PRIVATE_MODE),
    ] {
        set_mode(file, mode)?;
    }
    let server_config = server_config(&leaf_file, &leaf_key_file)?;
    Ok(TlsMaterial {
        ca_file,
        server_config,
    })
}

fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, LocalVaultError> {
    let cert_pem =
        std::fs::read(cert_file).map_err(io_err(format!("reading {}", cert_file.display())))?;
    let key_pem =
        std::fs::read(key_file).map_err(io_err(format!("reading {}", key_file.display())))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(format!("parsing {}", cert_file.display())))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(io_err(format!("parsing {}", key_file.display())))?
        .ok_or_else(|| LocalVaultError::Tls(format!("no private key in {}", key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LocalVaultError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| LocalVaultError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
