//! Key Vault certificates as files (SPEC §10) on a real mount over the local vault: another
//! client imports certificates (PFX or PEM, built with openssl: root → int1 → int2 → leaf), and
//! the mount's `.certificates/NAME/` files and projected `certificate` files are checked with
//! `openssl x509`/`openssl pkey`/`openssl verify`/`openssl pkcs12`, and served by nginx.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use common::programs::{sha256_fingerprint, Nginx};
use common::{need_tool, sh, sh_ok, LocalMount};

use akvfs::secret_value::SecretValue;
use akvfs::vault::certificate_model::{
    CertificateBundle, CertificateImportParameters, CertificatePolicy, KeyProperties,
    SecretProperties,
};

const PKCS12: &str = "application/x-pkcs12";
const PEM: &str = "application/x-pem-file";

/// The key algorithm of a generated chain.
#[derive(Clone, Copy)]
enum Alg {
    Rsa,
    Ec,
}

/// A chain made by openssl in `dir`: `root.pem`, `int1.pem`, `int2.pem`, `leaf.pem`,
/// `leaf.key` (PKCS#8), `chain.pem` (int2 then int1), `leaf.pfx` (password `pw`, leaf + chain).
/// `tag` goes into every subject, so two chains differ.
struct Chain {
    dir: PathBuf,
}

impl Chain {
    fn make(dir: &Path, alg: Alg, tag: &str) -> Chain {
        need_tool("openssl", "openssl");
        std::fs::create_dir_all(dir).expect("mkdir chain dir");
        let newkey = match alg {
            Alg::Rsa => "-newkey rsa:2048",
            Alg::Ec => "-newkey ec -pkeyopt ec_paramgen_curve:P-256",
        };
        let script = format!(
            r#"set -e
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > ca.ext
printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > leaf.ext
openssl req -x509 -new -nodes {newkey} -keyout root.key -out root.pem -days 30 \
  -subj "/CN=akvfs test root {tag}" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
prev=root
for i in 1 2; do
  openssl req -new -nodes {newkey} -keyout int$i.key -out int$i.csr \
    -subj "/CN=akvfs test intermediate $i {tag}" 2>/dev/null
  openssl x509 -req -in int$i.csr -CA $prev.pem -CAkey $prev.key -CAcreateserial \
    -out int$i.pem -days 30 -extfile ca.ext 2>/dev/null
  prev=int$i
done
openssl req -new -nodes {newkey} -keyout leaf.key -out leaf.csr -subj "/CN=localhost" 2>/dev/null
openssl x509 -req -in leaf.csr -CA int2.pem -CAkey int2.key -CAcreateserial -out leaf.pem \
  -days 30 -extfile leaf.ext 2>/dev/null
cat int2.pem int1.pem > chain.pem
openssl pkcs12 -export -inkey leaf.key -in leaf.pem -certfile chain.pem -passout pass:pw \
  -out leaf.pfx
"#
        );
        sh_ok(dir, &script);
        Chain {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn text(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read chain file")
    }

    /// The PEM an import takes: key, leaf, then the chain.
    fn pem_import(&self) -> String {
        format!(
            "{}{}{}",
            self.text("leaf.key"),
            self.text("leaf.pem"),
            self.text("chain.pem")
        )
    }

    fn pfx_base64(&self) -> String {
        let bytes = std::fs::read(self.path("leaf.pfx")).expect("read pfx");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

/// Another client imports `value` as certificate `name`, the backing secret's content type
/// `content_type`.
fn import(
    m: &LocalMount,
    name: &str,
    value: &str,
    password: Option<&str>,
    content_type: &str,
    exportable: bool,
) -> CertificateBundle {
    let parameters = CertificateImportParameters {
        value: SecretValue::from(value),
        pwd: password.map(SecretValue::from),
        policy: Some(CertificatePolicy {
            key_props: Some(KeyProperties {
                exportable: Some(exportable),
                ..Default::default()
            }),
            secret_props: Some(SecretProperties {
                content_type: Some(content_type.to_owned()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let client = m.other_client();
    m.block_on(client.import_certificate(name, &parameters))
        .expect("import certificate")
}

/// `openssl ARGS` in `dir`: its stdout; panics with its stderr on failure.
fn openssl(dir: &Path, args: &str) -> String {
    sh_ok(dir, &format!("openssl {args}"))
}

/// The subjects of every certificate in a PEM file, in order.
fn subjects(dir: &Path, file: &Path) -> Vec<String> {
    let out = sh_ok(
        dir,
        &format!(
            "openssl crl2pkcs7 -nocrl -certfile '{}' | openssl pkcs7 -print_certs -noout",
            file.display()
        ),
    );
    out.lines()
        .filter_map(|l| l.strip_prefix("subject="))
        .map(|s| s.trim().to_owned())
        .collect()
}

fn subject_of(dir: &Path, pem: &Path) -> String {
    openssl(
        dir,
        &format!(
            "x509 -in '{}' -noout -subject -nameopt RFC2253",
            pem.display()
        ),
    )
    .trim()
    .trim_start_matches("subject=")
    .to_owned()
}

/// Checks every file of `.certificates/NAME/` against the chain it was imported from.
fn assert_parts_match(m: &LocalMount, name: &str, chain: &Chain) {
    let dir = m.path(&format!(".certificates/{name}"));
    let work = &chain.dir;
    let file = |f: &str| dir.join(f);
    let mut listed: Vec<String> = std::fs::read_dir(&dir)
        .expect("ls certificate dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut expected = vec![
        "bundle.pem".to_owned(),
        "cert.pem".to_owned(),
        "chain.pem".to_owned(),
        "fullchain.pem".to_owned(),
        "key.pem".to_owned(),
        format!("{name}.pfx"),
    ];
    expected.sort();
    assert_eq!(listed, expected);

    // Exact sizes, read-only modes.
    for f in &expected {
        let meta = std::fs::metadata(file(f)).expect("stat");
        let content = std::fs::read(file(f)).expect("read");
        assert_eq!(meta.len(), content.len() as u64, "{f}: size");
        assert_eq!(meta.mode() & 0o222, 0, "{f}: no write bit");
    }

    // cert.pem is the leaf, byte for byte as openssl wrote it.
    assert_eq!(
        std::fs::read_to_string(file("cert.pem")).expect("cert"),
        chain.text("leaf.pem")
    );
    assert_eq!(subject_of(work, &file("cert.pem")), "CN=localhost");
    // chain.pem: int2 then int1, as stored; fullchain.pem: leaf + chain.
    let chain_subjects = subjects(work, &file("chain.pem"));
    assert_eq!(chain_subjects.len(), 2, "{chain_subjects:?}");
    assert!(
        chain_subjects[0].contains("intermediate 2"),
        "{chain_subjects:?}"
    );
    assert!(
        chain_subjects[1].contains("intermediate 1"),
        "{chain_subjects:?}"
    );
    assert_eq!(
        std::fs::read_to_string(file("fullchain.pem")).expect("fullchain"),
        format!("{}{}", chain.text("leaf.pem"), chain.text("chain.pem"))
    );
    // The chain verifies up to the root.
    let verified = openssl(
        work,
        &format!(
            "verify -CAfile root.pem -untrusted '{}' '{}'",
            file("chain.pem").display(),
            file("cert.pem").display()
        ),
    );
    assert!(verified.contains(": OK"), "{verified}");

    // key.pem is unencrypted PKCS#8 and the leaf's key.
    let key_text = std::fs::read_to_string(file("key.pem")).expect("key");
    assert!(
        key_text.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "PKCS#8"
    );
    let cert_public = openssl(
        work,
        &format!("x509 -in '{}' -noout -pubkey", file("cert.pem").display()),
    );
    let key_public = openssl(
        work,
        &format!("pkey -in '{}' -pubout", file("key.pem").display()),
    );
    assert_eq!(cert_public, key_public, "key.pem is the certificate's key");
    let original_public = openssl(work, "pkey -in leaf.key -pubout");
    assert_eq!(key_public, original_public);

    // bundle.pem: key, leaf, chain.
    let bundle = std::fs::read_to_string(file("bundle.pem")).expect("bundle");
    assert_eq!(
        bundle,
        format!(
            "{key_text}{}{}",
            chain.text("leaf.pem"),
            chain.text("chain.pem")
        )
    );
    let bundle_public = openssl(
        work,
        &format!("pkey -in '{}' -pubout", file("bundle.pem").display()),
    );
    assert_eq!(bundle_public, cert_public);

    // NAME.pfx: PKCS#12 without a password, holding the key and the three certificates.
    let pfx = file(&format!("{name}.pfx"));
    let certs = openssl(
        work,
        &format!("pkcs12 -in '{}' -passin pass: -nokeys", pfx.display()),
    );
    assert_eq!(certs.matches("BEGIN CERTIFICATE").count(), 3, "{certs}");
    let pfx_public = sh_ok(
        work,
        &format!(
            "openssl pkcs12 -in '{}' -passin pass: -nocerts -nodes | openssl pkey -pubout",
            pfx.display()
        ),
    );
    assert_eq!(pfx_public, cert_public);
}

/// The reads of one certificate's files cost one get of its backing secret; its files are
/// read-only (EROFS) and their mtime is the certificate's `updated`.
fn assert_one_get_read_only_and_dated(m: &LocalMount, name: &str, bundle: &CertificateBundle) {
    let dir = m.path(&format!(".certificates/{name}"));
    let updated = bundle
        .attributes
        .as_ref()
        .and_then(|a| a.updated)
        .expect("updated");
    let meta = std::fs::metadata(dir.join("cert.pem")).expect("stat");
    assert_eq!(meta.mtime(), updated, "mtime = the certificate's updated");
    for (script, what) in [
        ("echo x > key.pem", "write"),
        ("rm cert.pem", "rm"),
        ("touch new.pem", "create"),
        (": > chain.pem", "truncate"),
    ] {
        let out = sh(&dir, script);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Read-only file system"),
            "{what} should answer EROFS: {err}"
        );
    }
}

#[test]
fn an_rsa_certificate_imported_as_pfx_with_two_intermediates_reads_as_every_part() {
    let m = LocalMount::start(&["--cache-ttl", "60s"]);
    let chain = Chain::make(&m.dir.path().join("rsa"), Alg::Rsa, "rsa");
    let bundle = import(&m, "web-rsa", &chain.pfx_base64(), Some("pw"), PKCS12, true);
    let listed = sh_ok(&m.mountpoint, "ls -a .certificates");
    assert!(listed.lines().any(|l| l == "web-rsa"), "{listed}");
    m.reset_counters();
    assert_parts_match(&m, "web-rsa", &chain);
    assert_one_get_read_only_and_dated(&m, "web-rsa", &bundle);
    assert_eq!(
        m.calls("get_secret"),
        1,
        "every file of one certificate from one get of its secret"
    );
    // The backing secret stays a plain file: the base64 PFX the vault keeps.
    let plain = std::fs::read_to_string(m.path("web-rsa")).expect("read backing secret");
    assert!(base64::engine::general_purpose::STANDARD
        .decode(plain.trim())
        .is_ok());
    // Writing it is the vault's to refuse (a managed secret): fsync reports EACCES.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path("web-rsa"))
        .expect("open the backing secret for writing");
    std::io::Write::write_all(&mut file, b"x").expect("write (pending)");
    let error = file.sync_all().expect_err("the vault refuses the set");
    assert_eq!(error.raw_os_error(), Some(libc::EACCES), "{error}");
    drop(file);
    assert_eq!(
        std::fs::read_to_string(m.path("web-rsa")).expect("read"),
        plain
    );
}

#[test]
fn an_ec_certificate_imported_as_pem_reads_as_every_part() {
    let m = LocalMount::start(&[]);
    let chain = Chain::make(&m.dir.path().join("ec"), Alg::Ec, "ec");
    let bundle = import(&m, "web-ec", &chain.pem_import(), None, PEM, true);
    assert_parts_match(&m, "web-ec", &chain);
    assert_one_get_read_only_and_dated(&m, "web-ec", &bundle);
    let key = std::fs::read_to_string(m.path(".certificates/web-ec/key.pem")).expect("key");
    let text = openssl(
        &chain.dir,
        &format!(
            "pkey -in '{}' -noout -text",
            m.path(".certificates/web-ec/key.pem").display()
        ),
    );
    assert!(
        text.contains("P-256") || text.contains("prime256v1"),
        "{text}"
    );
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn a_certificate_whose_key_is_not_exportable_has_no_key_or_bundle() {
    let m = LocalMount::start(&[]);
    let chain = Chain::make(&m.dir.path().join("nx"), Alg::Ec, "nx");
    import(&m, "sealed", &chain.pfx_base64(), Some("pw"), PKCS12, false);
    let listed = sh_ok(&m.path(".certificates/sealed"), "ls");
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort();
    assert_eq!(
        names,
        ["cert.pem", "chain.pem", "fullchain.pem", "sealed.pfx"]
    );
    let missing = sh(&m.path(".certificates/sealed"), "cat key.pem");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("No such file"));
    assert_eq!(
        subject_of(&chain.dir, &m.path(".certificates/sealed/cert.pem")),
        "CN=localhost"
    );
}

/// A principal that may get certificates but not secrets (an access policy with certificate
/// permissions only, as often given to TLS terminators that need no key) sees `cert.pem` alone,
/// made from the certificate's `cer`: the key, the chain and the archive are only in the
/// secret. The secret is asked once, the certificate once, whatever is read.
#[test]
fn a_principal_that_may_get_the_certificate_but_not_its_secret_sees_cert_pem_alone() {
    let vault = LocalMount::start(&[]);
    let chain = Chain::make(&vault.dir.path().join("pub"), Alg::Rsa, "pub");
    import(
        &vault,
        "public-only",
        &chain.pfx_base64(),
        Some("pw"),
        PKCS12,
        true,
    );
    let m = vault.mount_as(
        &["list", "certificates/get", "certificates/list"],
        &["--cache-ttl", "60s"],
    );
    vault.reset_counters();
    let dir = m.path(".certificates/public-only");
    assert_eq!(sh_ok(&dir, "ls"), "cert.pem\n");
    for _ in 0..3 {
        assert_eq!(
            std::fs::read_to_string(dir.join("cert.pem")).expect("cert.pem"),
            chain.text("leaf.pem"),
            "cert.pem is the leaf, byte for byte"
        );
    }
    let meta = std::fs::metadata(dir.join("cert.pem")).expect("stat");
    assert_eq!(
        meta.len(),
        chain.text("leaf.pem").len() as u64,
        "exact size"
    );
    assert_eq!(
        subject_of(&chain.dir, &dir.join("cert.pem")),
        "CN=localhost"
    );
    for absent in [
        "key.pem",
        "bundle.pem",
        "chain.pem",
        "fullchain.pem",
        "public-only.pfx",
    ] {
        let out = sh(&dir, &format!("cat {absent}"));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("No such file"),
            "{absent}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let c = vault.counters();
    assert_eq!(
        c.count_status("get_secret", 403),
        1,
        "the secret asked once"
    );
    assert_eq!(c.count_status("get_secret", 200), 0);
    assert_eq!(
        c.count_status("get_certificate", 200),
        1,
        "the certificate once"
    );
    // The secret's own file says what the vault said.
    let out = sh(&m.mountpoint, "cat public-only");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        m.log_text().contains("only cert.pem is shown"),
        "the fallback is logged"
    );
}

/// Waits (up to 30 s) until `path` reads `expected`.
fn wait_for_contents(path: &Path, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} does not read the expected text yet",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// nginx serves a certificate imported as PFX through projected `tls.crt` (fullchain) and
/// `tls.key` (key) of one `certificate`; curl verifies it up to the root. After another client
/// imports a new version, SIGHUP to akvfs and `nginx -s reload` serve the new one.
#[test]
fn nginx_serves_a_pfx_certificate_through_projected_files_and_its_new_version_after_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("web.toml");
    std::fs::write(
        &config,
        r#"
[[file]]
path = "nginx/tls.crt"
certificate = "web-tls"
part = "fullchain"
mode = "0444"

[[file]]
path = "nginx/tls.key"
certificate = "web-tls"
part = "key"
mode = "0400"
"#,
    )
    .expect("write config");
    let first = Chain::make(&dir.path().join("v1"), Alg::Rsa, "v1");
    let second = Chain::make(&dir.path().join("v2"), Alg::Ec, "v2");
    let config_arg = config.display().to_string();
    let m = LocalMount::start_in(dir, &["--config", &config_arg, "--cache-ttl", "1h"]);
    import(&m, "web-tls", &first.pfx_base64(), Some("pw"), PKCS12, true);

    let (crt, key) = (m.path("nginx/tls.crt"), m.path("nginx/tls.key"));
    assert_eq!(
        std::fs::metadata(&key).expect("stat key").mode() & 0o7777,
        0o400
    );
    let nginx = Nginx::start(&crt, &key);
    let out = nginx.curl(&first.path("root.pem"));
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first_leaf = sha256_fingerprint(first.text("leaf.pem").as_bytes());
    assert_eq!(nginx.served_fingerprint(), first_leaf);

    // Another client imports a new version (another key, another CA).
    import(
        &m,
        "web-tls",
        &second.pfx_base64(),
        Some("pw"),
        PKCS12,
        true,
    );
    // The cache holds the old version for an hour: SIGHUP drops it.
    let pid = m.pid().expect("pid");
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    let new_fullchain = format!("{}{}", second.text("leaf.pem"), second.text("chain.pem"));
    wait_for_contents(&crt, &new_fullchain);
    let key_public = openssl(
        &second.dir,
        &format!("pkey -in '{}' -pubout", key.display()),
    );
    assert_eq!(
        key_public,
        openssl(&second.dir, "pkey -in leaf.key -pubout")
    );
    nginx.reload();
    nginx.wait_for_fingerprint(&sha256_fingerprint(second.text("leaf.pem").as_bytes()));
    let out = nginx.curl(&second.path("root.pem"));
    assert!(
        out.status.success(),
        "curl after the rotation: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        nginx.error_log()
    );
}

/// With the refresh and a hook on the certificate file, a new version imported by another
/// client reaches nginx by itself: the hook reloads it.
#[test]
fn a_hook_on_a_projected_certificate_reloads_nginx_when_a_new_version_is_imported() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("web.toml");
    let files = "[[file]]\npath = \"nginx/tls.crt\"\ncertificate = \"web-tls\"\npart = \"fullchain\"\nmode = \"0444\"\n\
                 [[file]]\npath = \"nginx/tls.key\"\ncertificate = \"web-tls\"\npart = \"key\"\nmode = \"0400\"\n";
    std::fs::write(&config, files).expect("write config");
    let first = Chain::make(&dir.path().join("v1"), Alg::Ec, "v1");
    let second = Chain::make(&dir.path().join("v2"), Alg::Rsa, "v2");
    let config_arg = config.display().to_string();
    let m = LocalMount::start_in(dir, &["--config", &config_arg, "--refresh", "1s"]);
    import(&m, "web-tls", &first.pfx_base64(), Some("pw"), PKCS12, true);
    let (crt, key) = (m.path("nginx/tls.crt"), m.path("nginx/tls.key"));
    let nginx = Nginx::start(&crt, &key);
    assert_eq!(
        nginx.served_fingerprint(),
        sha256_fingerprint(first.text("leaf.pem").as_bytes())
    );
    // The hook needs this nginx's command line: give the running mount the config (SIGHUP).
    let hooked = files.replacen(
        "mode = \"0444\"\n",
        &format!(
            "mode = \"0444\"\non_change = \"{}\"\n",
            nginx
                .reload_command()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        ),
        1,
    );
    std::fs::write(&config, hooked).expect("write config");
    let pid = m.pid().expect("pid");
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !m.log_text().contains("config re-read") {
        assert!(std::time::Instant::now() < deadline, "{}", m.log_text());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Let the watcher note what the file shows now, then another client imports a new version.
    std::thread::sleep(std::time::Duration::from_secs(2));
    import(
        &m,
        "web-tls",
        &second.pfx_base64(),
        Some("pw"),
        PKCS12,
        true,
    );
    nginx.wait_for_fingerprint(&sha256_fingerprint(second.text("leaf.pem").as_bytes()));
    let out = nginx.curl(&second.path("root.pem"));
    assert!(
        out.status.success(),
        "curl after the rotation: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        nginx.error_log()
    );
    assert_eq!(
        m.log_text().matches("on change: command ran").count(),
        1,
        "{}",
        m.log_text()
    );
}
