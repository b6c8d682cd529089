//! A Key Vault certificate as files (SPEC §10): the value of its backing secret (base64 of a
//! PKCS#12 archive, `application/x-pkcs12`, or PEM text, `application/x-pem-file`) read into a
//! private key, a leaf and the rest of the chain, and written as the files TLS servers take:
//! `cert.pem`, `chain.pem`, `fullchain.pem`, `key.pem`, `bundle.pem` and `NAME.pfx`.
//!
//! Pure: no vault, no kernel. Nothing parses ASN.1 by hand: PKCS#12 is read and written by
//! `p12-keystore` (its raw [`p12_keystore::Pkcs12Archive`] keeps the stored order of the
//! certificates), PEM is read by `rustls-pemfile` and written by `pem`, an RSA key in PKCS#1
//! form is wrapped as PKCS#8 by `pkcs8`. Key material lives in [`Zeroizing`] buffers and never
//! appears in an error or a log line.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pkcs8::der::Encode;
use zeroize::Zeroizing;

/// `contentType` of a PFX-backed certificate's secret (base64 of the PKCS#12 bytes).
pub const CONTENT_TYPE_PKCS12: &str = "application/x-pkcs12";
/// `contentType` of a PEM-backed certificate's secret (key, then certificates).
pub const CONTENT_TYPE_PEM: &str = "application/x-pem-file";
/// Not a secret's: marks the DER of a leaf alone, the certificate's `cer`, read when the
/// principal may get the certificate but not its secret. Only `cert.pem` comes from it (the
/// chain and the key are in the secret).
pub const CONTENT_TYPE_LEAF_ONLY: &str = "application/pkix-cert";

/// One file of a certificate's directory, and the `part` of a projection entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// `cert.pem`: the leaf certificate.
    Cert,
    /// `chain.pem`: every other certificate stored with it, in stored order.
    Chain,
    /// `fullchain.pem`: the leaf, then the chain.
    Fullchain,
    /// `key.pem`: the private key, unencrypted PKCS#8.
    Key,
    /// `bundle.pem`: the key, then the leaf, then the chain (nginx, HAProxy).
    Bundle,
    /// `NAME.pfx`: PKCS#12 without a password.
    Pfx,
}

impl Part {
    /// In the order a directory lists them.
    pub const ALL: [Part; 6] = [
        Part::Cert,
        Part::Chain,
        Part::Fullchain,
        Part::Key,
        Part::Bundle,
        Part::Pfx,
    ];

    /// The `part = "…"` of a projection entry.
    pub fn parse(text: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Cert => "cert",
            Part::Chain => "chain",
            Part::Fullchain => "fullchain",
            Part::Key => "key",
            Part::Bundle => "bundle",
            Part::Pfx => "pfx",
        }
    }

    /// The file's name in `.certificates/NAME/`.
    pub fn file_name(self, certificate: &str) -> String {
        match self {
            Part::Pfx => format!("{certificate}.pfx"),
            other => format!("{}.pem", other.as_str()),
        }
    }

    /// The part a file of `.certificates/NAME/` is (the name as the vault spells it or in
    /// another case: certificate names are case-insensitive).
    pub fn from_file_name(file: &str, certificate: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| match p {
            Part::Pfx => file
                .strip_suffix(".pfx")
                .is_some_and(|base| base.eq_ignore_ascii_case(certificate)),
            other => file == other.file_name(certificate),
        })
    }

    /// Only there when the secret holds the private key.
    pub fn needs_key(self) -> bool {
        matches!(self, Part::Key | Part::Bundle)
    }
}

/// Why a backing secret's value cannot be read as a certificate. The texts never quote the
/// value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error("the value is not base64 of a PKCS#12 archive")]
    NotBase64,
    #[error("the PKCS#12 archive cannot be read without a password")]
    Pkcs12,
    #[error("the PEM text cannot be read")]
    Pem,
    #[error("the value holds no certificate")]
    NoCertificate,
    #[error(
        "the private key is in a form not served as PKCS#8 (only PKCS#8 and RSA PKCS#1 keys are)"
    )]
    KeyForm,
    #[error("cannot write the PKCS#12 archive")]
    WritePkcs12,
}

/// A certificate's key and chain, read from its backing secret.
pub struct CertificateMaterial {
    /// PKCS#8 DER of the private key; `None` when the key is not exportable.
    key: Option<Zeroizing<Vec<u8>>>,
    /// DER of the leaf certificate.
    leaf: Vec<u8>,
    /// DER of every other certificate, in stored order.
    chain: Vec<Vec<u8>>,
    /// The archive itself, when the secret is one (the service's have no password).
    pfx: Option<Zeroizing<Vec<u8>>>,
    /// Whether this is the leaf alone (the certificate's `cer`, not its secret): then the
    /// chain is unknown and only `cert.pem` is there.
    leaf_only: bool,
}

impl std::fmt::Debug for CertificateMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateMaterial")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("chain", &self.chain.len())
            .field("leaf_only", &self.leaf_only)
            .finish()
    }
}

/// Read a backing secret's `value` by its `content_type` (either of the two above; another or
/// none: PEM when it looks like PEM, else base64 PKCS#12), or the leaf's DER alone
/// ([`CONTENT_TYPE_LEAF_ONLY`]).
pub fn read(
    value: &[u8],
    content_type: Option<&str>,
) -> Result<CertificateMaterial, MaterialError> {
    let looks_pem = value.trim_ascii_start().starts_with(b"-----BEGIN");
    match content_type {
        Some(CONTENT_TYPE_LEAF_ONLY) => read_leaf_der(value),
        Some(CONTENT_TYPE_PEM) => read_pem(value),
        Some(CONTENT_TYPE_PKCS12) => read_pkcs12_base64(value),
        _ if looks_pem => read_pem(value),
        _ => read_pkcs12_base64(value),
    }
}

fn read_pkcs12_base64(value: &[u8]) -> Result<CertificateMaterial, MaterialError> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        value
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect(),
    );
    let bytes = Zeroizing::new(
        STANDARD
            .decode(&*compact)
            .map_err(|_| MaterialError::NotBase64)?,
    );
    read_pkcs12(bytes)
}

fn read_pkcs12(bytes: Zeroizing<Vec<u8>>) -> Result<CertificateMaterial, MaterialError> {
    let archive =
        p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, "").map_err(|_| MaterialError::Pkcs12)?;
    let key_bag = archive.keys.first();
    // The leaf is the certificate that names the key's local key id, else the first stored.
    let leaf_at = key_bag
        .and_then(|k| k.local_key_id.as_ref())
        .and_then(|id| {
            archive
                .certs
                .iter()
                .position(|c| c.local_key_id.as_deref() == Some(id.0.as_slice()))
        })
        .unwrap_or(0);
    let leaf = archive
        .certs
        .get(leaf_at)
        .ok_or(MaterialError::NoCertificate)?
        .cert
        .as_der()
        .to_vec();
    let chain = archive
        .certs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leaf_at)
        .map(|(_, c)| c.cert.as_der().to_vec())
        .collect();
    Ok(CertificateMaterial {
        key: key_bag.map(|k| Zeroizing::new(k.key.as_der().to_vec())),
        leaf,
        chain,
        pfx: Some(bytes),
        leaf_only: false,
    })
}

/// The certificates of a PEM text, in order, and its first private key as PKCS#8 (an RSA
/// PKCS#1 key is wrapped; an EC key in SEC1 form is `KeyForm`). Shared by the mount and the
/// local vault's import.
pub struct PemContents {
    pub key: Option<Zeroizing<Vec<u8>>>,
    pub certs: Vec<Vec<u8>>,
}

pub fn read_pem_contents(text: &[u8]) -> Result<PemContents, MaterialError> {
    use rustls_pemfile::Item;
    let mut reader = text;
    let mut key: Option<Zeroizing<Vec<u8>>> = None;
    let mut certs = Vec::new();
    loop {
        let item = match rustls_pemfile::read_one(&mut reader) {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => return Err(MaterialError::Pem),
        };
        match item {
            Item::X509Certificate(der) => certs.push(der.as_ref().to_vec()),
            Item::Pkcs8Key(k) if key.is_none() => {
                key = Some(Zeroizing::new(k.secret_pkcs8_der().to_vec()));
            }
            Item::Pkcs1Key(k) if key.is_none() => {
                key = Some(pkcs1_to_pkcs8(k.secret_pkcs1_der())?);
            }
            Item::Sec1Key(_) if key.is_none() => return Err(MaterialError::KeyForm),
            _ => {}
        }
    }
    Ok(PemContents { key, certs })
}

fn read_leaf_der(der: &[u8]) -> Result<CertificateMaterial, MaterialError> {
    p12_keystore::Certificate::from_der(der).map_err(|_| MaterialError::NoCertificate)?;
    Ok(CertificateMaterial {
        key: None,
        leaf: der.to_vec(),
        chain: Vec::new(),
        pfx: None,
        leaf_only: true,
    })
}

fn read_pem(text: &[u8]) -> Result<CertificateMaterial, MaterialError> {
    let PemContents { key, certs } = read_pem_contents(text)?;
    let mut certs = certs.into_iter();
    let leaf = certs.next().ok_or(MaterialError::NoCertificate)?;
    Ok(CertificateMaterial {
        key,
        leaf,
        chain: certs.collect(),
        pfx: None,
        leaf_only: false,
    })
}

/// `RSA PRIVATE KEY` (PKCS#1) wrapped as PKCS#8.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
    use pkcs8::der::asn1::{Null, OctetStringRef};
    use pkcs8::spki::AlgorithmIdentifier;
    let rsa = pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    let algorithm = AlgorithmIdentifier {
        oid: rsa,
        parameters: Some(pkcs8::der::AnyRef::from(Null)),
    };
    let private_key = OctetStringRef::new(pkcs1).map_err(|_| MaterialError::KeyForm)?;
    let info = pkcs8::PrivateKeyInfoRef::new(algorithm, private_key);
    info.to_der()
        .map(Zeroizing::new)
        .map_err(|_| MaterialError::KeyForm)
}

fn pem_text(blocks: &[(&str, &[u8])]) -> Zeroizing<Vec<u8>> {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let mut out = Zeroizing::new(String::new());
    for (tag, der) in blocks {
        // `pem::Pem` holds its own copy: zeroed before it is dropped.
        let block = pem::Pem::new(*tag, der.to_vec());
        out.push_str(&pem::encode_config(&block, config));
        zeroize::Zeroize::zeroize(&mut block.into_contents());
    }
    Zeroizing::new(out.as_bytes().to_vec())
}

impl CertificateMaterial {
    /// Whether the secret holds the private key (an exportable certificate).
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Whether the certificate has file `part`: all but the key's when the key is not
    /// exportable, only `cert.pem` when this is the leaf alone.
    pub fn has(&self, part: Part) -> bool {
        if self.leaf_only {
            return part == Part::Cert;
        }
        !part.needs_key() || self.has_key()
    }

    /// The parts this certificate has, in listing order.
    pub fn parts(&self) -> impl Iterator<Item = Part> + '_ {
        Part::ALL.into_iter().filter(|p| self.has(*p))
    }

    /// DER of the leaf certificate.
    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf
    }

    /// The content of `part`; `Ok(None)` when the certificate has no such part (see
    /// [`CertificateMaterial::has`]).
    pub fn part(&self, part: Part) -> Result<Option<Zeroizing<Vec<u8>>>, MaterialError> {
        if !self.has(part) {
            return Ok(None);
        }
        const CERT: &str = "CERTIFICATE";
        let chain = self.chain.iter().map(|der| (CERT, der.as_slice()));
        let leaf = std::iter::once((CERT, self.leaf.as_slice()));
        let key = self.key.as_ref().map(|k| ("PRIVATE KEY", k.as_slice()));
        Ok(Some(match part {
            Part::Cert => pem_text(&leaf.collect::<Vec<_>>()),
            Part::Chain => pem_text(&chain.collect::<Vec<_>>()),
            Part::Fullchain => pem_text(&leaf.chain(chain).collect::<Vec<_>>()),
            Part::Key => match key {
                Some(key) => pem_text(&[key]),
                None => return Ok(None),
            },
            Part::Bundle => match key {
                Some(key) => pem_text(
                    &std::iter::once(key)
                        .chain(leaf)
                        .chain(chain)
                        .collect::<Vec<_>>(),
                ),
                None => return Ok(None),
            },
            Part::Pfx => match &self.pfx {
                Some(pfx) => pfx.clone(),
                None => self.write_pkcs12()?,
            },
        }))
    }

    /// A PKCS#12 archive without a password, written as the service writes its own (3DES,
    /// SHA-1 MAC, 2,000 iterations; the key's local key id `01000000`), which every PKCS#12
    /// reader takes.
    fn write_pkcs12(&self) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
        use p12_keystore::{
            Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm,
            PrivateKeyChain,
        };
        let certs = std::iter::once(&self.leaf)
            .chain(&self.chain)
            .map(|der| Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| MaterialError::WritePkcs12)?;
        let mut store = KeyStore::new();
        match &self.key {
            Some(key) => {
                let key = p12_keystore::PrivateKey::from_der(key)
                    .map_err(|_| MaterialError::WritePkcs12)?;
                let chain = PrivateKeyChain::new(vec![1u8, 0, 0, 0], key, certs);
                store.add_entry("1", KeyStoreEntry::PrivateKeyChain(chain));
            }
            None => {
                // Aliases order the entries: zero-padded, they keep the stored order.
                for (i, cert) in certs.into_iter().enumerate() {
                    store.add_entry(&format!("{i:06}"), KeyStoreEntry::Certificate(cert));
                }
            }
        }
        store
            .writer("")
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .encryption_iterations(2000)
            .mac_algorithm(MacAlgorithm::HmacSha1)
            .mac_iterations(2000)
            .write()
            .map(Zeroizing::new)
            .map_err(|_| MaterialError::WritePkcs12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// root → int → leaf, with the leaf's key (PKCS#8 DER) and the chain's DERs.
    fn chain_of_three(
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (Zeroizing<Vec<u8>>, Vec<Vec<u8>>) {
        let ca_params = |name: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
        };
        let root_key = rcgen::KeyPair::generate_for(alg).expect("key");
        let root = ca_params("root").self_signed(&root_key).expect("root");
        let int_key = rcgen::KeyPair::generate_for(alg).expect("key");
        let int = ca_params("int")
            .signed_by(&int_key, &root, &root_key)
            .expect("int");
        let leaf_key = rcgen::KeyPair::generate_for(alg).expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["leaf.test".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &int, &int_key)
            .expect("leaf");
        (
            Zeroizing::new(leaf_key.serialize_der()),
            vec![leaf.der().to_vec(), int.der().to_vec(), root.der().to_vec()],
        )
    }

    fn pem_of(key: &[u8], certs: &[Vec<u8>]) -> String {
        let mut text = pem::encode(&pem::Pem::new("PRIVATE KEY", key.to_vec()));
        for der in certs {
            text.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())));
        }
        text
    }

    fn ders(pem_text: &[u8]) -> Vec<(String, Vec<u8>)> {
        pem::parse_many(pem_text)
            .expect("pem")
            .into_iter()
            .map(|p| (p.tag().to_owned(), p.contents().to_vec()))
            .collect()
    }

    #[test]
    fn a_pem_secret_gives_every_part_in_stored_order() {
        let (key, certs) = chain_of_three(&rcgen::PKCS_ECDSA_P256_SHA256);
        let text = pem_of(&key, &certs);
        let material = read(text.as_bytes(), Some(CONTENT_TYPE_PEM)).expect("reads");
        assert!(material.has_key());
        assert_eq!(material.parts().count(), 6);
        let part = |p| material.part(p).expect("part").expect("present");
        let cert = ders(&part(Part::Cert));
        assert_eq!(cert, vec![("CERTIFICATE".into(), certs[0].clone())]);
        let chain: Vec<Vec<u8>> = ders(&part(Part::Chain)).into_iter().map(|d| d.1).collect();
        assert_eq!(chain, certs[1..].to_vec());
        let full: Vec<Vec<u8>> = ders(&part(Part::Fullchain))
            .into_iter()
            .map(|d| d.1)
            .collect();
        assert_eq!(full, certs);
        let key_pem = ders(&part(Part::Key));
        assert_eq!(key_pem, vec![("PRIVATE KEY".into(), key.to_vec())]);
        let bundle = ders(&part(Part::Bundle));
        assert_eq!(bundle.len(), 4);
        assert_eq!(bundle[0].0, "PRIVATE KEY");
        assert_eq!(bundle[1].1, certs[0]);
        // The PFX written for a PEM secret reads back to the same material.
        let pfx = part(Part::Pfx);
        let again =
            read(STANDARD.encode(&*pfx).as_bytes(), Some(CONTENT_TYPE_PKCS12)).expect("pfx reads");
        assert_eq!(again.leaf, certs[0]);
        assert_eq!(again.chain, certs[1..].to_vec());
        assert_eq!(
            again.key.as_ref().map(|k| k.as_slice()),
            Some(key.as_slice())
        );
        // The archive of a PFX secret is served as it is.
        assert_eq!(
            again
                .part(Part::Pfx)
                .expect("pfx")
                .as_ref()
                .map(|p| p.as_slice()),
            Some(&pfx[..])
        );
    }

    #[test]
    fn without_the_key_there_is_no_key_or_bundle() {
        let (_, certs) = chain_of_three(&rcgen::PKCS_ECDSA_P384_SHA384);
        let mut text = String::new();
        for der in &certs {
            text.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())));
        }
        let material = read(text.as_bytes(), None).expect("reads");
        assert!(!material.has_key());
        assert_eq!(
            material.parts().collect::<Vec<_>>(),
            vec![Part::Cert, Part::Chain, Part::Fullchain, Part::Pfx]
        );
        assert!(material.part(Part::Key).expect("no error").is_none());
        let pfx = material.part(Part::Pfx).expect("pfx").expect("present");
        let again = read(STANDARD.encode(&*pfx).as_bytes(), None).expect("reads");
        assert!(!again.has_key());
        assert_eq!(again.leaf, certs[0]);
        assert_eq!(again.chain, certs[1..].to_vec());
    }

    #[test]
    fn unreadable_values_are_refused_without_quoting_them() {
        let said = read(b"c2VjcmV0LXRleHQ=", Some(CONTENT_TYPE_PKCS12)).expect_err("not pfx");
        assert_eq!(said, MaterialError::Pkcs12);
        assert!(!said.to_string().contains("secret-text"));
        assert_eq!(
            read(b"%%%", Some(CONTENT_TYPE_PKCS12)).expect_err("not base64"),
            MaterialError::NotBase64
        );
        assert_eq!(
            read(b"-----BEGIN PRIVATE KEY-----\n", Some(CONTENT_TYPE_PEM)).expect_err("no cert"),
            MaterialError::Pem
        );
    }

    #[test]
    fn file_names_and_parts() {
        assert_eq!(Part::Pfx.file_name("Web"), "Web.pfx");
        assert_eq!(Part::from_file_name("web.pfx", "Web"), Some(Part::Pfx));
        assert_eq!(Part::from_file_name("key.pem", "Web"), Some(Part::Key));
        assert_eq!(Part::from_file_name("other.pfx", "Web"), None);
        assert_eq!(Part::parse("fullchain"), Some(Part::Fullchain));
        assert_eq!(Part::parse("crt"), None);
    }
}
