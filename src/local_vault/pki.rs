//! Certificate material for the local vault's certificates data plane: reading what an import
//! brings (PKCS#12 or PEM, with or without a password), writing the backing secret's value as the
//! service does (a password-less PFX, or a PEM with the PKCS#8 key first), and the facts of a
//! certificate that bundles and policies show (thumbprint, validity, subject, usages, key type).
//!
//! Nothing here parses ASN.1 by hand: PKCS#12 is `p12-keystore`'s, PKCS#8 and its encryption
//! `pkcs8`'s, PEM `rustls-pemfile`'s (reading) and `pem`'s (writing), X.509 `x509-parser`'s.
//! Key material lives in [`Zeroizing`] buffers and is never formatted into a message.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use p12_keystore::{
    EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, Pkcs12ImportPolicy, PrivateKeyChain,
};
use pkcs8::der::Decode;
use zeroize::Zeroizing;

use crate::certificate_files::{read_pem_contents, PemContents};

/// `contentType` of a PFX-backed certificate's secret (base64 of the PKCS#12 bytes).
pub const CONTENT_TYPE_PKCS12: &str = "application/x-pkcs12";
/// `contentType` of a PEM-backed certificate's secret (key, then certificates).
pub const CONTENT_TYPE_PEM: &str = "application/x-pem-file";

/// Why an import's content cannot be read. The texts are the service's (see docs/LOCAL_VAULT.md);
/// none quotes the content or the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaterialError {
    /// Not PKCS#12, a wrong password, or a PKCS#12 without a private key and its certificate.
    Pkcs12,
    /// Not PEM, or a PEM without a private key or a certificate, or a key that cannot be read.
    Pem,
    /// The private key is not the certificate's.
    KeyMismatch,
}

impl MaterialError {
    pub fn message(self) -> &'static str {
        match self {
            MaterialError::Pkcs12 => {
                "The specified PKCS#12 X.509 certificate content can not be read. Please check if \
                 certificate is in valid PKCS#12 format."
            }
            MaterialError::Pem => {
                "The specified PEM X.509 certificate content is in an unexpected format. Please \
                 check if certificate is in valid PEM format."
            }
            MaterialError::KeyMismatch => {
                "The specified X.509 certificate content does not match the private key."
            }
        }
    }
}

/// A private key (PKCS#8 DER) with its certificate chain (DER, leaf first, in stored order).
pub struct Material {
    pub key: Zeroizing<Vec<u8>>,
    pub chain: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("key", &"<redacted>")
            .field("chain", &self.chain.len())
            .finish()
    }
}

/// What an import's `value` holds, as the service reads it: PEM text (given as is or base64),
/// else base64 of PKCS#12 bytes. `pem_expected` is the policy's `contentType` saying PEM.
pub fn read_import(
    value: &str,
    password: Option<&str>,
    pem_expected: bool,
) -> Result<Material, MaterialError> {
    let trimmed = value.trim();
    if trimmed.starts_with("-----BEGIN") {
        return read_pem(trimmed.as_bytes(), password);
    }
    let failure = if pem_expected {
        MaterialError::Pem
    } else {
        MaterialError::Pkcs12
    };
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = Zeroizing::new(STANDARD.decode(compact.as_bytes()).map_err(|_| failure)?);
    if bytes.starts_with(b"-----BEGIN") {
        return read_pem(&bytes, password);
    }
    read_pkcs12(&bytes, password.unwrap_or(""))
}

fn read_pkcs12(bytes: &[u8], password: &str) -> Result<Material, MaterialError> {
    let store = KeyStore::from_pkcs12(bytes, password, Pkcs12ImportPolicy::Strict)
        .map_err(|_| MaterialError::Pkcs12)?;
    let (_, chain) = store.private_key_chain().ok_or(MaterialError::Pkcs12)?;
    let material = Material {
        key: Zeroizing::new(chain.key().as_der().to_vec()),
        chain: chain.certs().iter().map(|c| c.as_der().to_vec()).collect(),
    };
    if material.chain.is_empty() {
        return Err(MaterialError::Pkcs12);
    }
    check_key_matches(&material)?;
    Ok(material)
}

fn read_pem(text: &[u8], password: Option<&str>) -> Result<Material, MaterialError> {
    let PemContents {
        mut key,
        certs: chain,
    } = read_pem_contents(text).map_err(|_| MaterialError::Pem)?;
    if key.is_none() {
        key = encrypted_pem_key(text, password)?;
    }
    let material = Material {
        key: key.ok_or(MaterialError::Pem)?,
        chain,
    };
    if material.chain.is_empty() {
        return Err(MaterialError::Pem);
    }
    check_key_matches(&material)?;
    Ok(material)
}

/// An `ENCRYPTED PRIVATE KEY` block (PKCS#8 with PBES2), decrypted with the import's password.
fn encrypted_pem_key(
    text: &[u8],
    password: Option<&str>,
) -> Result<Option<Zeroizing<Vec<u8>>>, MaterialError> {
    let blocks = pem::parse_many(text).map_err(|_| MaterialError::Pem)?;
    let Some(block) = blocks.iter().find(|b| b.tag() == "ENCRYPTED PRIVATE KEY") else {
        return Ok(None);
    };
    let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(block.contents())
        .map_err(|_| MaterialError::Pem)?;
    let document = info
        .decrypt(password.unwrap_or("").as_bytes())
        .map_err(|_| MaterialError::Pem)?;
    Ok(Some(Zeroizing::new(document.as_bytes().to_vec())))
}

/// The leaf certificate's public key must be the private key's, as the service checks.
fn check_key_matches(material: &Material) -> Result<(), MaterialError> {
    let leaf = material.chain.first().ok_or(MaterialError::Pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|_| MaterialError::KeyMismatch)?;
    let cert_public = cert.public_key().subject_public_key.data.as_ref();
    let key_public = public_key_of(&material.key).ok_or(MaterialError::KeyMismatch)?;
    if key_public.as_slice() == cert_public {
        Ok(())
    } else {
        Err(MaterialError::KeyMismatch)
    }
}

/// The public key (the SubjectPublicKeyInfo bit string's bytes) of an RSA or EC PKCS#8 key.
fn public_key_of(pkcs8_der: &[u8]) -> Option<Vec<u8>> {
    use ring::signature::{self, KeyPair};
    if let Ok(pair) = signature::RsaKeyPair::from_pkcs8(pkcs8_der) {
        return Some(pair.public_key().as_ref().to_vec());
    }
    let rng = ring::rand::SystemRandom::new();
    for alg in [
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
    ] {
        if let Ok(pair) = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8_der, &rng) {
            return Some(pair.public_key().as_ref().to_vec());
        }
    }
    if let Ok(pair) = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der) {
        return Some(pair.public_key().as_ref().to_vec());
    }
    None
}

/// The backing secret's value: base64 of a PKCS#12 without password (3DES, SHA-1 MAC, as the
/// service writes them), or the PEM text (PKCS#8 key, then each certificate). Without
/// `exportable` the key stays out: the certificates alone.
pub fn secret_value(
    material: &Material,
    content_type: &str,
    exportable: bool,
) -> Result<Zeroizing<String>, ()> {
    if content_type == CONTENT_TYPE_PEM {
        let mut blocks = Vec::new();
        if exportable {
            blocks.push(pem::Pem::new("PRIVATE KEY", material.key.to_vec()));
        }
        blocks.extend(
            material
                .chain
                .iter()
                .map(|der| pem::Pem::new("CERTIFICATE", der.clone())),
        );
        let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        let text = Zeroizing::new(pem::encode_many_config(&blocks, config));
        for block in blocks {
            zeroize::Zeroize::zeroize(&mut block.into_contents());
        }
        return Ok(text);
    }
    let certs = material
        .chain
        .iter()
        .map(|der| p12_keystore::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ())?;
    let mut store = KeyStore::new();
    if exportable {
        let key = p12_keystore::PrivateKey::from_der(&material.key).map_err(|_| ())?;
        // The service's PFX names its key with the local key id 01 00 00 00.
        let chain = PrivateKeyChain::new(vec![1u8, 0, 0, 0], key, certs);
        store.add_entry("1", KeyStoreEntry::PrivateKeyChain(chain));
    } else {
        for (i, cert) in certs.into_iter().enumerate() {
            store.add_entry(&i.to_string(), KeyStoreEntry::Certificate(cert));
        }
    }
    let bytes = Zeroizing::new(
        store
            .writer("")
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .encryption_iterations(2000)
            .mac_algorithm(MacAlgorithm::HmacSha1)
            .mac_iterations(2000)
            .write()
            .map_err(|_| ())?,
    );
    Ok(Zeroizing::new(STANDARD.encode(&*bytes)))
}

/// Key properties of a certificate's policy (`key_props`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    /// `RSA` or `EC` (anything else: the algorithm's OID).
    pub kty: String,
    pub key_size: Option<u32>,
    /// `P-256`, `P-384`, `P-521`, `P-256K` for EC keys.
    pub crv: Option<String>,
}

/// What bundles and policies show of a leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafFacts {
    /// base64url (no padding) of the SHA-1 of the DER.
    pub x5t: String,
    pub not_before: i64,
    pub not_after: i64,
    pub subject: String,
    pub dns_names: Vec<String>,
    pub emails: Vec<String>,
    pub upns: Vec<String>,
    pub ekus: Vec<String>,
    pub key_usage: Vec<String>,
    pub ca: Option<bool>,
    pub key: KeyFacts,
}

pub fn x5t(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

pub fn leaf_facts(der: &[u8]) -> Option<LeafFacts> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::public_key::PublicKey;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let validity = cert.validity();
    let mut facts = LeafFacts {
        x5t: x5t(der),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        subject: cert.subject().to_string(),
        dns_names: Vec::new(),
        emails: Vec::new(),
        upns: Vec::new(),
        ekus: Vec::new(),
        key_usage: Vec::new(),
        ca: None,
        key: KeyFacts {
            kty: String::new(),
            key_size: None,
            crv: None,
        },
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => facts.dns_names.push((*n).to_owned()),
                GeneralName::RFC822Name(n) => facts.emails.push((*n).to_owned()),
                _ => {}
            }
        }
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        let e = eku.value;
        for (on, oid) in [
            (e.server_auth, "1.3.6.1.5.5.7.3.1"),
            (e.client_auth, "1.3.6.1.5.5.7.3.2"),
            (e.code_signing, "1.3.6.1.5.5.7.3.3"),
            (e.email_protection, "1.3.6.1.5.5.7.3.4"),
            (e.time_stamping, "1.3.6.1.5.5.7.3.8"),
            (e.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
            (e.any, "2.5.29.37.0"),
        ] {
            if on {
                facts.ekus.push(oid.to_owned());
            }
        }
        facts
            .ekus
            .extend(e.other.iter().map(|oid| oid.to_id_string()));
    }
    if let Ok(Some(ku)) = cert.key_usage() {
        let k = ku.value;
        for (on, name) in [
            (k.digital_signature(), "digitalSignature"),
            (k.non_repudiation(), "nonRepudiation"),
            (k.key_encipherment(), "keyEncipherment"),
            (k.data_encipherment(), "dataEncipherment"),
            (k.key_agreement(), "keyAgreement"),
            (k.key_cert_sign(), "keyCertSign"),
            (k.crl_sign(), "cRLSign"),
            (k.encipher_only(), "encipherOnly"),
            (k.decipher_only(), "decipherOnly"),
        ] {
            if on {
                facts.key_usage.push(name.to_owned());
            }
        }
    }
    if let Ok(Some(bc)) = cert.basic_constraints() {
        facts.ca = Some(bc.value.ca);
    }
    let spki = cert.public_key();
    facts.key = match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => KeyFacts {
            kty: "RSA".to_owned(),
            key_size: u32::try_from(rsa.key_size()).ok(),
            crv: None,
        },
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            let (crv, size) = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => (Some("P-256"), Some(256)),
                Some("1.3.132.0.34") => (Some("P-384"), Some(384)),
                Some("1.3.132.0.35") => (Some("P-521"), Some(521)),
                Some("1.3.132.0.10") => (Some("P-256K"), Some(256)),
                _ => (None, None),
            };
            KeyFacts {
                kty: "EC".to_owned(),
                key_size: size,
                crv: crv.map(str::to_owned),
            }
        }
        _ => KeyFacts {
            kty: spki.algorithm.algorithm.to_id_string(),
            key_size: None,
            crv: None,
        },
    };
    Some(facts)
}

/// Whole months from `not_before` to `not_after`, a started month counting as one (the service
/// shows a certificate valid one year and ten minutes as `validity_months: 13`).
pub fn validity_months(not_before: i64, not_after: i64) -> i64 {
    use time::OffsetDateTime;
    let (Ok(a), Ok(b)) = (
        OffsetDateTime::from_unix_timestamp(not_before),
        OffsetDateTime::from_unix_timestamp(not_after),
    ) else {
        return 0;
    };
    if b <= a {
        return 0;
    }
    let mut months = (i64::from(b.year()) - i64::from(a.year())) * 12 + i64::from(b.month() as u8)
        - i64::from(a.month() as u8);
    let rest = |t: OffsetDateTime| (t.day(), t.hour(), t.minute(), t.second());
    if rest(b) > rest(a) {
        months += 1;
    }
    months.max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["example.test".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "example");
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn pem_import_round_trips_through_pem_and_pfx() {
        let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let text = format!("{key}{cert}");
        let m = read_import(&text, None, true).expect("pem");
        assert_eq!(m.chain.len(), 1);
        let pem_text = secret_value(&m, CONTENT_TYPE_PEM, true).expect("pem out");
        assert!(pem_text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem_text.ends_with("-----END CERTIFICATE-----\n"));
        let again = read_import(&STANDARD.encode(pem_text.as_bytes()), None, true).expect("b64");
        assert_eq!(again.chain, m.chain);
        assert_eq!(*again.key, *m.key);

        let pfx = secret_value(&m, CONTENT_TYPE_PKCS12, true).expect("pfx");
        let back = read_import(&pfx, None, false).expect("pfx back");
        assert_eq!(back.chain, m.chain);
        assert_eq!(*back.key, *m.key);
    }

    #[test]
    fn facts_of_an_ec_leaf() {
        let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let m = read_import(&format!("{cert}{key}"), None, true).expect("pem");
        let f = leaf_facts(&m.chain[0]).expect("facts");
        assert_eq!(f.key.kty, "EC");
        assert_eq!(f.key.crv.as_deref(), Some("P-256"));
        assert_eq!(f.dns_names, ["example.test"]);
        assert_eq!(f.ekus, ["1.3.6.1.5.5.7.3.1"]);
        assert_eq!(f.key_usage, ["digitalSignature"]);
        assert_eq!(f.subject, "CN=example");
        assert_eq!(f.x5t.len(), 27);
    }

    #[test]
    fn a_foreign_key_or_garbage_is_refused() {
        let (cert, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            read_import(&format!("{other_key}{cert}"), None, true).expect_err("mismatch"),
            MaterialError::KeyMismatch
        );
        assert_eq!(
            read_import(&cert, None, true).expect_err("no key"),
            MaterialError::Pem
        );
        assert_eq!(
            read_import("AAAA", None, false).expect_err("not pfx"),
            MaterialError::Pkcs12
        );
        assert_eq!(
            read_import("%%%", None, false).expect_err("not base64"),
            MaterialError::Pkcs12
        );
    }

    #[test]
    fn validity_months_round_up_a_started_month() {
        // The service's own example: 2022-11-14 17:57:54 → 2023-11-14 18:07:54 is 13 months.
        assert_eq!(validity_months(1_668_448_674, 1_699_985_274), 13);
        assert_eq!(validity_months(1_668_448_674, 1_668_448_674 + 86_400), 1);
        assert_eq!(validity_months(10, 5), 0);
    }
}
