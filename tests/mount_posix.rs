//! POSIX calls real tools make, on real mounts: `cp -p`, `chmod`/`chown` to what a file already
//! has, `mv` out of `.deleted`, and a `file-encoding` tag changed with `setfattr`.

mod common;

use std::os::unix::fs::PermissionsExt;

use akvfs::vault::SecretStore;
use common::{need_tool, sh, sh_err, sh_ok, LocalMount};

#[test]
fn cp_p_succeeds_when_the_mode_is_the_mounts_and_reports_only_the_mode_otherwise() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    let outside = m.dir.path();
    for (name, mode) in [("p600", 0o600), ("p644", 0o644)] {
        let src = outside.join(name);
        std::fs::write(&src, format!("value of {name}")).expect("src");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    // The mount's files are 0600: preserving 0600 (and root's ownership) changes nothing.
    sh_ok(
        dir,
        &format!("cp -p {} p600", outside.join("p600").display()),
    );
    assert_eq!(m.other_get("p600"), "value of p600");
    sh_ok(
        dir,
        "python3 -c \"import os; os.chmod('p600', 0o600); os.chown('p600', 0, 0)\"",
    );

    // Another mode cannot be kept: cp says so, and the value is written all the same.
    let out = sh(
        dir,
        &format!("cp -p {} p644", outside.join("p644").display()),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("preserving permissions"), "{stderr}");
    assert_eq!(m.other_get("p644"), "value of p644");
    let err = sh_err(dir, "chmod 644 p644");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(m.log_text().contains("--file-mode"), "{}", m.log_text());
}

#[test]
fn mv_out_of_deleted_under_another_name_is_refused_clearly() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    sh_ok(dir, "echo kept > old-name && rm old-name");
    let err = sh_err(dir, "mv .deleted/old-name new-name");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(!err.contains("subdirectory"), "{err}");
    let log = m.log_text();
    assert!(
        log.contains("recovers under its own name only"),
        "the log says how to recover: {log}"
    );
    assert!(sh(dir, "test -e new-name").status.code() != Some(0));
    assert_eq!(sh_ok(dir, "ls .deleted"), "old-name\n");
    sh_ok(dir, "mv .deleted/old-name old-name");
    assert_eq!(sh_ok(dir, "cat old-name"), "kept\n");
}

#[test]
fn a_file_encoding_tag_applies_to_the_next_open() {
    need_tool("setfattr", "attr");
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    m.other_set("encoded", "aGVsbG8=");
    assert_eq!(sh_ok(dir, "cat encoded"), "aGVsbG8=");
    sh_ok(
        dir,
        "setfattr -n user.akv.tags.file-encoding -v base64 encoded",
    );
    assert_eq!(sh_ok(dir, "cat encoded"), "hello");
    assert_eq!(sh_ok(dir, "stat -c %s encoded").trim(), "5");
    sh_ok(dir, "setfattr -x user.akv.tags.file-encoding encoded");
    assert_eq!(sh_ok(dir, "cat encoded"), "aGVsbG8=");
    assert_eq!(
        m.other_get("encoded"),
        "aGVsbG8=",
        "the value never changed"
    );
}

#[test]
fn times_set_with_utimes_are_kept_so_rsync_t_writes_nothing_the_second_time() {
    need_tool("rsync", "rsync");
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    m.other_set("dated", "value");
    m.reset_counters();
    sh_ok(dir, "touch -d '2020-01-01 00:00:00 UTC' dated");
    assert_eq!(sh_ok(dir, "stat -c %Y dated").trim(), "1577836800");
    assert_eq!(m.calls("set_secret"), 0, "times are not a new version");
    assert_eq!(m.other_get("dated"), "value");

    let src = m.dir.path().join("src");
    std::fs::create_dir(&src).expect("src");
    std::fs::write(src.join("alpha"), "first").expect("alpha");
    std::fs::write(src.join("beta"), "second").expect("beta");
    let rsync = format!("rsync -rt {}/ ./", src.display());
    sh_ok(dir, &rsync);
    assert_eq!(m.other_get("alpha"), "first");
    assert_eq!(m.other_get("beta"), "second");
    m.reset_counters();
    sh_ok(dir, &rsync);
    assert_eq!(m.calls("set_secret"), 0, "nothing changed, nothing written");
    std::fs::write(src.join("beta"), "changed").expect("beta");
    sh_ok(dir, &rsync);
    assert_eq!(m.calls("set_secret"), 1);
    assert_eq!(m.other_get("beta"), "changed");
    let listed = sh_ok(dir, "ls -A");
    assert!(
        !listed.contains(".alpha") && !listed.contains(".beta"),
        "{listed}"
    );

    // A new version has the vault's time again.
    sh_ok(dir, "printf new > dated");
    let mtime: u64 = sh_ok(dir, "stat -c %Y dated")
        .trim()
        .parse()
        .expect("mtime");
    assert!(mtime > 1_700_000_000, "{mtime}");
}

/// Names in the vault, live and deleted.
fn vault_names(m: &LocalMount) -> (Vec<String>, Vec<String>) {
    let client = m.other_client();
    let name_of = |id: Option<String>| id.and_then(|id| id.rsplit('/').next().map(str::to_owned));
    let live = m
        .block_on(client.list_properties_of_secrets())
        .expect("list")
        .into_iter()
        .filter_map(|item| name_of(item.id))
        .collect();
    let deleted = m
        .block_on(client.list_deleted_secrets())
        .expect("list deleted")
        .into_iter()
        .filter_map(|item| name_of(item.item.id))
        .collect();
    (live, deleted)
}

#[test]
fn sed_perl_and_python_temporary_files_leave_one_version_and_no_copy() {
    need_tool("perl", "perl");
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    let edits = [
        ("sed -i 's/old/sed/' edited", "sed value\n"),
        ("perl -pi -e 's/sed/perl/' edited", "perl value\n"),
        (
            "python3 -c \"import os, tempfile\nfd, p = tempfile.mkstemp(dir='.')\nos.write(fd, b'mkstemp value')\nos.close(fd)\nos.replace(p, 'edited')\"",
            "mkstemp value",
        ),
        (
            "python3 -c \"import os, tempfile\nf = tempfile.NamedTemporaryFile(dir='.', delete=False)\nf.write(b'named value')\nf.close()\nos.replace(f.name, 'edited')\"",
            "named value",
        ),
    ];
    m.other_set("edited", "old value\n");
    for (round, (command, expected)) in edits.iter().enumerate() {
        // Python's random names: run each a few times so names with and without `_` occur.
        let runs = if command.starts_with("python3") { 5 } else { 1 };
        m.reset_counters();
        for _ in 0..runs {
            sh_ok(dir, command);
        }
        assert_eq!(m.other_get("edited"), *expected, "{command}");
        assert_eq!(
            m.calls("set_secret"),
            1,
            "one version per edit (repeats change nothing): {command}"
        );
        assert_eq!(m.calls("delete_secret"), 0, "{command}");
        let (live, deleted) = vault_names(&m);
        assert_eq!(live, ["edited"], "round {round}: {command}");
        assert!(deleted.is_empty(), "round {round}: {deleted:?}");
        assert_eq!(sh_ok(dir, "ls"), "edited\n");
    }
    let versions = m
        .block_on(
            m.other_client()
                .list_properties_of_secret_versions("edited"),
        )
        .expect("versions");
    assert_eq!(versions.len(), 1 + edits.len());
    let log = m.log_text();
    assert!(!log.contains("kept in memory on this mount only"), "{log}");

    // A secret that happens to have such a name is still a secret.
    m.other_set("sedabc123", "real");
    assert_eq!(sh_ok(dir, "cat sedabc123"), "real");
    sh_ok(dir, "printf changed > sedabc123");
    assert_eq!(m.other_get("sedabc123"), "changed");
}

#[test]
fn xattrs_follow_posix_flags_limits_and_removal() {
    need_tool("setfattr", "attr");
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    m.other_set("props", "value");
    let out = sh_ok(
        dir,
        r#"python3 -c "
import os
def errno_of(f):
    try:
        f()
        return 0
    except OSError as e:
        return e.errno
print(errno_of(lambda: os.setxattr('props', 'user.akv.tags.team', b'blue', os.XATTR_CREATE)))
print(errno_of(lambda: os.setxattr('props', 'user.akv.tags.team', b'red', os.XATTR_CREATE)))
print(errno_of(lambda: os.setxattr('props', 'user.akv.tags.none', b'x', os.XATTR_REPLACE)))
print(errno_of(lambda: os.setxattr('props', 'user.akv.tags.team', b'green', os.XATTR_REPLACE)))
print(errno_of(lambda: os.setxattr('props', 'user.akv.content_type', b'x' * 256)))
""#,
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "17", "61", "0", "22"]
    );
    let bundle = m
        .block_on(m.other_client().get_secret("props", None))
        .expect("get");
    let tags = bundle.tags.clone().unwrap_or_default();
    assert_eq!(tags.get("team").map(String::as_str), Some("green"));
    assert_eq!(
        bundle.content_type, None,
        "the long content type was refused"
    );
    assert!(
        m.log_text().contains("at most 255 characters"),
        "{}",
        m.log_text()
    );

    for (attribute, field) in [("expires", "exp"), ("not_before", "nbf")] {
        sh_ok(
            dir,
            &format!("setfattr -n user.akv.{attribute} -v 2030-01-01T00:00:00Z props"),
        );
        let date = |m: &LocalMount| {
            let bundle = m
                .block_on(m.other_client().get_secret("props", None))
                .expect("get");
            let a = bundle.attributes.unwrap_or_default();
            if field == "exp" {
                a.exp
            } else {
                a.nbf
            }
        };
        assert_eq!(date(&m), Some(1_893_456_000), "{attribute} set");
        let removed = sh(dir, &format!("setfattr -x user.akv.{attribute} props"));
        assert!(removed.status.success(), "{removed:?}\n{}", m.log_text());
        assert_eq!(date(&m), None, "{attribute} cleared in the vault");
        assert!(
            sh(dir, &format!("getfattr -n user.akv.{attribute} props"))
                .status
                .code()
                != Some(0)
        );
        assert_eq!(m.other_get("props"), "value");
        let err = sh_err(dir, &format!("setfattr -x user.akv.{attribute} props"));
        assert!(err.contains("No such attribute"), "ENODATA: {err}");
    }
    let bundle = m
        .block_on(m.other_client().get_secret("props", None))
        .expect("get");
    let tags = bundle.tags.unwrap_or_default();
    assert_eq!(
        tags.get("team").map(String::as_str),
        Some("green"),
        "tags kept"
    );
}
