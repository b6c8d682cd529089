//! The whole vault from a shell (issue 5), on real mounts of the real local vault with real
//! tools: `.versions`, `.deleted`, `user.akv.*` attributes, binary values with the Azure CLI
//! `file-encoding` convention, disabled secrets.

mod common;

use akvfs::secret_value::SecretValue;
use akvfs::vault::model::{SecretAttributes, SecretSetParameters, SecretUpdateParameters, Tags};
use akvfs::vault::{SecretStore, VaultError};
use base64::Engine;
use common::{need_tool, sh_err, sh_ok, LocalMount};

fn random_binary(len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
    // Never valid UTF-8, whatever the draw.
    bytes[0] = 0xff;
    bytes
}

fn file_encoding_tag(value: &str) -> Tags {
    let mut tags = Tags::new();
    tags.insert("file-encoding".into(), value.into());
    tags
}

#[test]
fn three_writes_list_three_versions_newest_first_by_ls_t_each_cat_right() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    for (i, value) in ["one", "two", "three"].iter().enumerate() {
        if i > 0 {
            // Distinct `created` seconds without sleeping: the vault's clock moves on.
            m.block_on(m.admin().advance_clock(10))
                .expect("advance clock");
        }
        sh_ok(dir, &format!("printf %s {value} > NAME"));
    }
    let listed = sh_ok(dir, "ls .versions/NAME");
    assert_eq!(listed.lines().count(), 3, "{listed}");
    let vault_versions = m
        .block_on(m.other_client().list_properties_of_secret_versions("NAME"))
        .expect("versions");
    for item in &vault_versions {
        let id = item.id.as_deref().expect("id");
        let version = id.rsplit('/').next().expect("version");
        assert!(listed.contains(version), "{version} not in {listed}");
    }

    let newest_first = sh_ok(dir, "ls -t .versions/NAME");
    let values: Vec<String> = newest_first
        .lines()
        .map(|version| sh_ok(dir, &format!("cat .versions/NAME/{version}")))
        .collect();
    assert_eq!(values, ["three", "two", "one"], "ls -t:\n{newest_first}");

    // mtime = that version's `created`.
    let oldest = newest_first.lines().last().expect("oldest");
    let mtime: i64 = sh_ok(dir, &format!("stat -c %Y .versions/NAME/{oldest}"))
        .trim()
        .parse()
        .expect("mtime");
    let created = m
        .block_on(m.other_client().get_secret("NAME", Some(oldest)))
        .expect("get oldest")
        .attributes
        .and_then(|a| a.created)
        .expect("created");
    assert_eq!(mtime, created);

    // Versions are read-only.
    let error = sh_err(dir, &format!("echo x > .versions/NAME/{oldest}"));
    assert!(
        error.contains("Read-only") || error.contains("Permission denied"),
        "{error}"
    );
    assert_eq!(m.other_get("NAME"), "three");
}

#[test]
fn rm_then_ls_deleted_shows_it_mv_brings_it_back_with_history_rm_deleted_is_eperm() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    sh_ok(dir, "printf v1 > NAME && printf v2 > NAME");
    sh_ok(dir, "rm NAME");
    let deleted = sh_ok(dir, "ls .deleted");
    assert!(deleted.lines().any(|l| l == "NAME"), "{deleted}");
    assert!(!sh_ok(dir, "ls").lines().any(|l| l == "NAME"));
    // mtime = deletedDate.
    let mtime: i64 = sh_ok(dir, "stat -c %Y .deleted/NAME")
        .trim()
        .parse()
        .expect("mtime");
    let bundle = m
        .block_on(m.other_client().get_deleted_secret("NAME"))
        .expect("deleted in the vault");
    assert_eq!(Some(mtime), bundle.deleted_date);

    sh_ok(dir, "mv .deleted/NAME NAME");
    assert_eq!(sh_ok(dir, "cat NAME"), "v2");
    assert_eq!(m.other_get("NAME"), "v2", "recovered in the vault");
    assert_eq!(
        sh_ok(dir, "ls .versions/NAME").lines().count(),
        2,
        "history kept"
    );
    assert_eq!(m.calls("recover_deleted_secret"), 1);
    assert!(!sh_ok(dir, "ls .deleted").lines().any(|l| l == "NAME"));

    sh_ok(dir, "rm NAME");
    let error = sh_err(dir, "rm .deleted/NAME");
    assert!(error.contains("Operation not permitted"), "{error}");
    assert_eq!(m.calls("purge_deleted_secret"), 0);
    assert!(m
        .block_on(m.other_client().get_deleted_secret("NAME"))
        .is_ok());
    let log = m.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("NAME") && l.contains("--allow-purge")),
        "no log line names the secret and the flag:\n{log}"
    );
}

#[test]
fn rm_deleted_purges_with_allow_purge() {
    let m = LocalMount::start(&["--allow-purge"]);
    let dir = &m.mountpoint;
    sh_ok(dir, "printf old > NAME && rm NAME && rm .deleted/NAME");
    assert_eq!(m.calls("purge_deleted_secret"), 1);
    assert!(!sh_ok(dir, "ls .deleted").lines().any(|l| l == "NAME"));
    let gone = m.block_on(m.other_client().get_deleted_secret("NAME"));
    assert!(matches!(gone, Err(VaultError::NotFound { .. })), "{gone:?}");
    // Purged: the name starts afresh, nothing to recover.
    sh_ok(dir, "printf new > NAME");
    assert_eq!(m.calls("recover_deleted_secret"), 0);
    assert_eq!(sh_ok(dir, "ls .versions/NAME").lines().count(), 1);
}

#[test]
fn setfattr_tag_shows_in_getfattr_dump_without_a_new_version_and_enabled_false_makes_cat_eacces() {
    need_tool("setfattr", "attr");
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    sh_ok(dir, "printf v > NAME");
    let version = sh_ok(dir, "getfattr --only-values -n user.akv.version NAME");
    assert_eq!(version.len(), 32, "{version}");
    m.reset_counters();

    sh_ok(dir, "setfattr -n user.akv.tags.env -v prod NAME");
    let dump = sh_ok(dir, "getfattr -d NAME");
    assert!(dump.contains("user.akv.tags.env=\"prod\""), "{dump}");
    assert!(
        dump.contains(&format!("user.akv.version=\"{version}\"")),
        "{dump}"
    );
    assert_eq!(m.calls("set_secret"), 0, "no new version");
    assert_eq!(m.calls("update_secret"), 1);
    assert_eq!(sh_ok(dir, "ls .versions/NAME").lines().count(), 1);
    let tags = m
        .block_on(m.other_client().get_secret("NAME", None))
        .expect("get")
        .tags
        .expect("tags");
    assert_eq!(tags.get("env").map(String::as_str), Some("prod"));
    assert_eq!(sh_ok(dir, "cat NAME"), "v", "the value is untouched");

    let error = sh_err(dir, "getfattr -n user.akv.nope NAME");
    assert!(error.contains("No such attribute"), "{error}");
    sh_ok(dir, "setfattr -x user.akv.tags.env NAME");
    assert!(!sh_ok(dir, "getfattr -d NAME").contains("user.akv.tags.env"));

    sh_ok(dir, "setfattr -n user.akv.enabled -v false NAME");
    let error = sh_err(dir, "cat NAME");
    assert!(error.contains("Permission denied"), "{error}");
    let long = sh_ok(dir, "ls -l NAME");
    assert!(long.starts_with("----------"), "{long}");
    assert_eq!(m.calls("set_secret"), 0, "still no new version");
}

#[test]
fn a_disabled_secret_is_mode_0000_in_ls_l_and_cat_is_eacces() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    m.other_set("off", "hidden");
    m.other_set("on", "shown");
    m.block_on(m.other_client().update_secret_properties(
        "off",
        None,
        SecretUpdateParameters {
            attributes: Some(SecretAttributes {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        },
    ))
    .expect("disable");
    let long = sh_ok(dir, "ls -l");
    let line = |name: &str| {
        long.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{long}"))
            .to_owned()
    };
    assert!(line("off").starts_with("---------- "), "{long}");
    assert!(line("on").starts_with("-rw------- "), "{long}");
    let error = sh_err(dir, "cat off");
    assert!(error.contains("Permission denied"), "{error}");
    assert_eq!(sh_ok(dir, "cat on"), "shown");
}

#[test]
fn a_random_4_kib_binary_file_copied_in_and_out_is_byte_identical_and_stored_as_base64() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    let bytes = random_binary(4096);
    std::fs::write(m.dir.path().join("in.bin"), &bytes).expect("write in.bin");
    sh_ok(
        dir,
        "cp ../in.bin blob && cp blob ../out.bin && cmp ../in.bin ../out.bin",
    );
    assert_eq!(sh_ok(dir, "stat -c %s blob").trim(), "4096");
    assert_eq!(m.calls("set_secret"), 1);

    let bundle = m
        .block_on(m.other_client().get_secret("blob", None))
        .expect("get");
    let tags = bundle.tags.expect("tags");
    assert_eq!(
        tags.get("file-encoding").map(String::as_str),
        Some("base64")
    );
    let stored = bundle.value.expect("value");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(stored.expose())
        .expect("the vault holds base64");
    assert_eq!(decoded, bytes);
}

#[test]
fn a_secret_set_like_az_cli_file_encoding_base64_or_hex_reads_back_as_the_raw_bytes() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    let bytes = random_binary(4096);
    // What `az keyvault secret set --file f --encoding base64|hex` stores.
    for (name, value, encoding) in [
        (
            "b64",
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            "base64",
        ),
        ("hexed", hex::encode(&bytes), "hex"),
    ] {
        m.block_on(m.other_client().set_secret(
            name,
            SecretSetParameters {
                value: SecretValue::new(value),
                tags: Some(file_encoding_tag(encoding)),
                ..Default::default()
            },
        ))
        .expect("set like az");
        let out = std::process::Command::new("cat")
            .arg(m.path(name))
            .output()
            .expect("cat");
        assert!(out.status.success());
        assert_eq!(out.stdout, bytes, "{name} reads back as the raw bytes");
        assert_eq!(sh_ok(dir, &format!("stat -c %s {name}")).trim(), "4096");
    }
    // Rewritten through the mount, the secret keeps its encoding (what `az … download
    // --encoding base64` expects).
    sh_ok(dir, "printf hello > b64");
    let bundle = m
        .block_on(m.other_client().get_secret("b64", None))
        .expect("get");
    assert_eq!(bundle.value.expect("value").expose(), "aGVsbG8=");
    assert_eq!(
        bundle
            .tags
            .expect("tags")
            .get("file-encoding")
            .map(String::as_str),
        Some("base64")
    );
}

#[test]
fn mv_a_b_sets_b_with_a_s_value_content_type_and_tags_then_deletes_a() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    let mut tags = Tags::new();
    tags.insert("env".into(), "prod".into());
    m.block_on(m.other_client().set_secret(
        "a",
        SecretSetParameters {
            value: SecretValue::from("moved value"),
            tags: Some(tags),
            content_type: Some("text/plain".into()),
            ..Default::default()
        },
    ))
    .expect("set a");
    m.reset_counters();
    sh_ok(dir, "mv a b");
    assert_eq!(sh_ok(dir, "cat b"), "moved value");
    assert!(!sh_ok(dir, "ls").lines().any(|l| l == "a"));
    let b = m
        .block_on(m.other_client().get_secret("b", None))
        .expect("b in the vault");
    assert_eq!(b.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        b.tags.expect("tags").get("env").map(String::as_str),
        Some("prod")
    );
    assert!(
        m.block_on(m.other_client().get_deleted_secret("a")).is_ok(),
        "a was deleted, and the deletion had completed when mv returned"
    );
    assert_eq!(m.calls("set_secret"), 1);
    assert_eq!(m.calls("delete_secret"), 1);
}
