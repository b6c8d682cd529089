//! The filesystem core against the in-memory store: behaviour and vault call counts.

use std::sync::Arc;
use std::time::Duration;

use super::memory_store::MemoryStore;
use super::*;
use crate::vault::model::FILE_ENCODING_TAG;

fn config() -> FsConfig {
    FsConfig {
        uid: 1000,
        gid: 1000,
        ..FsConfig::default()
    }
}

fn setup(config: FsConfig) -> (Arc<MemoryStore>, Arc<SecretFs>) {
    let store = Arc::new(MemoryStore::new());
    let fs = SecretFs::new(store.clone(), config);
    (store, fs)
}

const WRITE: OpenMode = OpenMode {
    read: false,
    write: true,
    truncate: true,
    append: false,
    exclusive: false,
    pid: 0,
};
const READ: OpenMode = OpenMode {
    read: true,
    write: false,
    truncate: false,
    append: false,
    exclusive: false,
    pid: 0,
};

async fn read_all(fs: &SecretFs, name: &str) -> Result<Vec<u8>, FsError> {
    let entry = fs.lookup(ROOT_INO, name).await?;
    let opened = fs.open(entry.attr.ino, READ).await?;
    let data = fs.read(opened.fh, 0, 1 << 20).await?;
    fs.release(opened.fh).await?;
    Ok(data.to_vec())
}

/// `echo VALUE > NAME` as the kernel does it: create (or open with O_TRUNC), write, flush,
/// release.
async fn write_file(fs: &SecretFs, name: &str, value: &[u8]) -> Result<(), FsError> {
    let fh = match fs.lookup(ROOT_INO, name).await {
        Ok(entry) => fs.open(entry.attr.ino, WRITE).await?.fh,
        Err(FsError::NotFound { .. }) => fs.create(ROOT_INO, name, WRITE).await?.1.fh,
        Err(error) => return Err(error),
    };
    let written = fs.write(fh, 0, value).await;
    let flushed = fs.flush(fh).await;
    let released = fs.release(fh).await;
    written?;
    flushed?;
    released
}

#[tokio::test]
async fn lookup_of_an_impossible_name_costs_no_call() {
    let (store, fs) = setup(config());
    let error = fs.lookup(ROOT_INO, "no_such.txt").await.unwrap_err();
    assert!(matches!(error, FsError::NotFound { .. }));
    assert_eq!(store.total_calls(), 0);
}

#[tokio::test]
async fn lookup_is_case_insensitive_and_reports_the_exact_size() {
    let (store, fs) = setup(config());
    store.seed("Foo", "hello", &[]);
    let entry = fs.lookup(ROOT_INO, "FOO").await.expect("lookup");
    assert_eq!(entry.attr.size, 5);
    assert_eq!(entry.attr.perm, 0o600);
    assert_eq!(entry.attr.uid, 1000);
    assert_eq!(read_all(&fs, "foo").await.expect("read"), b"hello");
    assert_eq!(
        store.calls("get"),
        1,
        "lookup and read share one cached get"
    );
}

#[tokio::test]
async fn chunked_write_is_one_set_and_flush_without_change_is_none() {
    let (store, fs) = setup(config());
    let (_, opened) = fs.create(ROOT_INO, "big", WRITE).await.expect("create");
    let chunk = [b'a'; 4096];
    for i in 0..5u64 {
        fs.write(opened.fh, i * 4096, &chunk).await.expect("write");
    }
    fs.flush(opened.fh).await.expect("flush");
    fs.flush(opened.fh).await.expect("second flush");
    fs.release(opened.fh).await.expect("release");
    assert_eq!(store.calls("set"), 1);
    assert_eq!(store.current("big").expect("set").0.len(), 20 * 1024);
    // Read-your-writes without another get.
    let before = store.calls("get");
    assert_eq!(read_all(&fs, "big").await.expect("read").len(), 20 * 1024);
    assert_eq!(store.calls("get"), before);
}

#[tokio::test]
async fn echo_into_a_new_name_is_one_get_and_one_set() {
    let (store, fs) = setup(config());
    write_file(&fs, "new-secret", b"x\n").await.expect("echo");
    assert_eq!(store.calls("get"), 1, "the lookup's 404");
    assert_eq!(store.calls("set"), 1);
    assert_eq!(store.total_calls(), 2);
    assert_eq!(store.current("new-secret").expect("set").0, "x\n");
}

#[tokio::test]
async fn over_the_limit_fails_with_efbig_and_keeps_the_old_value() {
    let (store, fs) = setup(config());
    store.seed("s", "old", &[]);
    let ino = fs.lookup(ROOT_INO, "s").await.expect("lookup").attr.ino;
    let fh = fs.open(ino, WRITE).await.expect("open").fh;
    let value = vec![b'a'; 25_601];
    let mut result = Ok(0);
    for (i, chunk) in value.chunks(4096).enumerate() {
        result = fs.write(fh, (i * 4096) as u64, chunk).await;
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(FsError::TooLarge { .. })));
    assert!(matches!(fs.flush(fh).await, Err(FsError::TooLarge { .. })));
    let _ = fs.release(fh).await;
    assert_eq!(store.calls("set"), 0);
    assert_eq!(store.current("s").expect("kept").0, "old");
    assert_eq!(read_all(&fs, "s").await.expect("read"), b"old");
    // Exactly at the limit is fine.
    write_file(&fs, "s", &[b'b'; 25_600])
        .await
        .expect("at the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_cold_reads_cost_one_get() {
    let (store, fs) = setup(config());
    store.seed("cold", "value", &[]);
    store.set_get_delay(Duration::from_millis(50));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let fs = fs.clone();
        tasks.push(tokio::spawn(async move { read_all(&fs, "cold").await }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("join").expect("read"), b"value");
    }
    assert_eq!(store.calls("get"), 1);
}

#[tokio::test]
async fn readdir_costs_list_calls_only() {
    let (store, fs) = setup(config());
    for i in 0..60 {
        store.seed(&format!("secret-{i:02}"), "v", &[]);
    }
    let fh = fs.opendir(ROOT_INO).expect("opendir");
    let entries = fs.readdir(ROOT_INO, fh, 0).await.expect("readdir");
    fs.releasedir(fh);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        &names[..5],
        &[".", "..", ".versions", ".deleted", ".certificates"]
    );
    assert_eq!(names.len(), 65);
    assert_eq!(store.calls("list_pages"), 3);
    assert_eq!(store.calls("get"), 0);
    // Inside list_ttl: free.
    let fh = fs.opendir(ROOT_INO).expect("opendir");
    fs.readdir(ROOT_INO, fh, 0).await.expect("readdir");
    assert_eq!(store.calls("list_pages"), 3);
}

#[tokio::test]
async fn a_missing_secret_is_remembered_for_the_negative_ttl() {
    let (store, fs) = setup(FsConfig {
        negative_ttl: Duration::from_millis(100),
        ..config()
    });
    for _ in 0..3 {
        assert!(fs.lookup(ROOT_INO, "missing").await.is_err());
    }
    assert_eq!(store.calls("get"), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    store.seed("missing", "now here", &[]);
    assert_eq!(
        fs.lookup(ROOT_INO, "missing")
            .await
            .expect("found")
            .attr
            .size,
        8
    );
    assert_eq!(store.calls("get"), 2);
}

#[tokio::test]
async fn expired_values_are_fetched_again_with_the_new_size() {
    let (store, fs) = setup(FsConfig {
        cache_ttl: Duration::from_millis(100),
        ..config()
    });
    store.seed("s", "short", &[]);
    let entry = fs.lookup(ROOT_INO, "s").await.expect("lookup");
    assert_eq!(entry.attr.size, 5);
    assert!(
        entry.ttl <= Duration::from_millis(100),
        "kernel TTL within the cache TTL"
    );
    store.seed("s", "a longer value", &[]); // another client writes
    assert_eq!(
        fs.getattr(entry.attr.ino).await.expect("cached").attr.size,
        5
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        fs.getattr(entry.attr.ino).await.expect("fresh").attr.size,
        14
    );
    assert_eq!(store.calls("get"), 2);
}

#[tokio::test]
async fn writing_a_deleted_name_recovers_it_then_sets() {
    let (store, fs) = setup(config());
    store.seed("gone", "v1", &[]);
    fs.lookup(ROOT_INO, "gone").await.expect("lookup");
    fs.unlink(ROOT_INO, "gone").await.expect("rm");
    assert_eq!(store.calls("delete"), 1);
    assert!(matches!(
        fs.lookup(ROOT_INO, "gone").await,
        Err(FsError::NotFound { .. })
    ));
    write_file(&fs, "gone", b"v2")
        .await
        .expect("write after rm");
    assert_eq!(store.calls("recover"), 1);
    assert_eq!(
        store.calls("set"),
        2,
        "the refused set and the one after recovery"
    );
    assert_eq!(store.current("gone").expect("back").0, "v2");
    assert_eq!(store.version_count("gone"), 2, "history kept");
}

#[tokio::test]
async fn fail_policy_answers_eexist_at_create() {
    let (store, fs) = setup(FsConfig {
        on_deleted_conflict: DeletedConflictPolicy::Fail,
        ..config()
    });
    store.seed("gone", "v1", &[]);
    fs.unlink(ROOT_INO, "gone").await.expect("rm");
    let error = fs.create(ROOT_INO, "gone", WRITE).await.unwrap_err();
    assert!(matches!(error, FsError::Exists { .. }));
    assert_eq!(store.calls("set"), 0);
    assert_eq!(store.calls("recover"), 0);
}

#[tokio::test]
async fn binary_content_round_trips_as_base64_with_the_tag() {
    let (store, fs) = setup(config());
    let binary = [0u8, 159, 146, 150, 255];
    write_file(&fs, "bin", &binary).await.expect("write");
    let (value, tags) = store.current("bin").expect("set");
    assert_eq!(value, "AJ+Slv8=");
    assert_eq!(
        tags.expect("tags")
            .get(FILE_ENCODING_TAG)
            .map(String::as_str),
        Some("base64")
    );
    fs.drop_caches();
    assert_eq!(read_all(&fs, "bin").await.expect("read"), binary);
    assert_eq!(fs.lookup(ROOT_INO, "bin").await.expect("stat").attr.size, 5);
    // Rewriting with text keeps base64.
    write_file(&fs, "bin", b"text").await.expect("rewrite");
    assert_eq!(store.current("bin").expect("set").0, "dGV4dA==");
}

#[tokio::test]
async fn tags_survive_a_rewrite() {
    let (store, fs) = setup(config());
    store.seed("tagged", "v1", &[("env", "prod")]);
    write_file(&fs, "tagged", b"v2").await.expect("write");
    let (value, tags) = store.current("tagged").expect("set");
    assert_eq!(value, "v2");
    assert_eq!(
        tags.expect("tags").get("env").map(String::as_str),
        Some("prod")
    );
}

#[tokio::test]
async fn values_are_evicted_by_size() {
    let (store, fs) = setup(FsConfig {
        cache_size: 10_000,
        ..config()
    });
    for i in 0..5 {
        store.seed(&format!("s{i}"), &"x".repeat(3000), &[]);
    }
    for i in 0..5 {
        read_all(&fs, &format!("s{i}")).await.expect("read");
    }
    assert!(fs.cached_bytes() <= 10_000);
    assert_eq!(store.calls("get"), 5);
    read_all(&fs, "s0").await.expect("read again");
    assert_eq!(store.calls("get"), 6, "s0 was evicted");
    read_all(&fs, "s4").await.expect("read again");
    assert_eq!(store.calls("get"), 6, "s4 is still cached");
}

#[tokio::test]
async fn touch_makes_a_placeholder_and_the_first_write_creates_the_secret() {
    let (store, fs) = setup(config());
    let (entry, opened) = fs.create(ROOT_INO, "later", WRITE).await.expect("create");
    assert_eq!(entry.attr.size, 0);
    fs.release(opened.fh).await.expect("release");
    assert_eq!(store.calls("set"), 0);
    assert_eq!(
        fs.lookup(ROOT_INO, "later")
            .await
            .expect("visible")
            .attr
            .size,
        0
    );
    let fh = fs.opendir(ROOT_INO).expect("opendir");
    let entries = fs.readdir(ROOT_INO, fh, 0).await.expect("readdir");
    assert!(entries.iter().any(|e| e.name == "later"));
    write_file(&fs, "later", b"now").await.expect("write");
    assert_eq!(store.calls("set"), 1);
    assert_eq!(store.current("later").expect("set").0, "now");
    // rm of a placeholder costs nothing.
    let (_, opened) = fs.create(ROOT_INO, "probe", WRITE).await.expect("create");
    fs.release(opened.fh).await.expect("release");
    let before = store.total_calls();
    fs.unlink(ROOT_INO, "probe").await.expect("rm");
    assert_eq!(store.total_calls(), before);
}

#[tokio::test]
async fn invalid_names_are_refused_at_create() {
    let (store, fs) = setup(config());
    assert!(matches!(
        fs.create(ROOT_INO, "bad_name.txt", WRITE).await,
        Err(FsError::InvalidName { .. })
    ));
    assert!(matches!(
        fs.create(ROOT_INO, &"a".repeat(128), WRITE).await,
        Err(FsError::NameTooLong { .. })
    ));
    assert_eq!(store.total_calls(), 0);
}

#[tokio::test]
async fn read_only_mounts_refuse_every_write_path() {
    let (store, fs) = setup(FsConfig {
        read_only: true,
        ..config()
    });
    store.seed("s", "v", &[]);
    let entry = fs.lookup(ROOT_INO, "s").await.expect("lookup");
    assert_eq!(entry.attr.perm, 0o400);
    assert!(matches!(
        fs.open(entry.attr.ino, WRITE).await,
        Err(FsError::ReadOnly { .. })
    ));
    assert!(matches!(
        fs.create(ROOT_INO, "n", WRITE).await,
        Err(FsError::ReadOnly { .. })
    ));
    assert!(matches!(
        fs.unlink(ROOT_INO, "s").await,
        Err(FsError::ReadOnly { .. })
    ));
    assert_eq!(store.calls("set") + store.calls("delete"), 0);
}

#[tokio::test]
async fn disabled_secrets_show_mode_zero_and_refuse_reads() {
    let (store, fs) = setup(config());
    store.seed("off", "v", &[]);
    store.disable("off");
    let entry = fs.lookup(ROOT_INO, "off").await.expect("lookup");
    assert_eq!(entry.attr.perm, 0);
    assert!(matches!(
        fs.open(entry.attr.ino, READ).await,
        Err(FsError::AccessDenied { .. })
    ));
}

#[tokio::test]
async fn partial_overwrite_and_append_start_from_the_current_value() {
    let (store, fs) = setup(config());
    store.seed("s", "hello world", &[]);
    let ino = fs.lookup(ROOT_INO, "s").await.expect("lookup").attr.ino;
    let fh = fs
        .open(
            ino,
            OpenMode {
                write: true,
                ..OpenMode::default()
            },
        )
        .await
        .expect("open")
        .fh;
    fs.write(fh, 0, b"HELLO").await.expect("write");
    fs.release(fh).await.expect("release");
    assert_eq!(store.current("s").expect("set").0, "HELLO world");
    let fh = fs
        .open(
            ino,
            OpenMode {
                write: true,
                append: true,
                ..OpenMode::default()
            },
        )
        .await
        .expect("open")
        .fh;
    fs.write(fh, 0, b"!").await.expect("append");
    fs.release(fh).await.expect("release");
    assert_eq!(store.current("s").expect("set").0, "HELLO world!");
}

#[tokio::test]
async fn truncate_by_path_commits_once() {
    let (store, fs) = setup(config());
    store.seed("s", "hello", &[]);
    let ino = fs.lookup(ROOT_INO, "s").await.expect("lookup").attr.ino;
    let entry = fs
        .setattr(
            ino,
            None,
            SetAttr {
                size: Some(2),
                ..SetAttr::default()
            },
        )
        .await
        .expect("truncate");
    assert_eq!(entry.attr.size, 2);
    assert_eq!(store.calls("set"), 1);
    assert_eq!(store.current("s").expect("set").0, "he");
    assert!(matches!(
        fs.setattr(
            ino,
            None,
            SetAttr {
                mode: Some(0o644),
                ..SetAttr::default()
            }
        )
        .await,
        Err(FsError::NotPermitted { .. })
    ));
}

#[tokio::test]
async fn a_failed_commit_fails_close_and_keeps_the_old_value() {
    let (store, fs) = setup(config());
    store.seed("s", "old", &[]);
    let ino = fs.lookup(ROOT_INO, "s").await.expect("lookup").attr.ino;
    let fh = fs.open(ino, WRITE).await.expect("open").fh;
    fs.write(fh, 0, b"new").await.expect("write");
    store.fail_with(Some(crate::vault::VaultError::Unavailable {
        name: "s".into(),
        message: "503".into(),
    }));
    assert!(matches!(
        fs.flush(fh).await,
        Err(FsError::Unavailable { .. })
    ));
    store.fail_with(None);
    assert!(
        fs.release(fh).await.is_err(),
        "release reports it, never retries"
    );
    assert_eq!(store.current("s").expect("kept").0, "old");
    assert_eq!(read_all(&fs, "s").await.expect("read"), b"old");
}

#[tokio::test]
async fn stale_values_are_served_when_the_vault_is_down() {
    let (store, fs) = setup(FsConfig {
        cache_ttl: Duration::from_millis(20),
        stale_if_error: Some(Duration::from_secs(60)),
        ..config()
    });
    store.seed("s", "cached", &[]);
    read_all(&fs, "s").await.expect("warm");
    tokio::time::sleep(Duration::from_millis(40)).await;
    store.fail_with(Some(crate::vault::VaultError::Unavailable {
        name: "s".into(),
        message: "down".into(),
    }));
    assert_eq!(read_all(&fs, "s").await.expect("stale"), b"cached");
    assert!(matches!(
        read_all(&fs, "other").await,
        Err(FsError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn versions_and_deleted_views_list_and_read() {
    let (store, fs) = setup(config());
    store.seed("s", "v1", &[]);
    store.seed("s", "v2", &[]);
    store.seed("d", "x", &[]);
    let versions_of = fs
        .lookup(VERSIONS_DIR_INO, "S")
        .await
        .expect("versions dir");
    let fh = fs.opendir(versions_of.attr.ino).expect("opendir");
    let entries = fs
        .readdir(versions_of.attr.ino, fh, 0)
        .await
        .expect("readdir");
    let versions: Vec<String> = entries.iter().skip(2).map(|e| e.name.clone()).collect();
    assert_eq!(versions.len(), 2);
    let first = fs
        .lookup(versions_of.attr.ino, &versions[0])
        .await
        .expect("version");
    assert_eq!(first.attr.size, 2);
    let opened = fs.open(first.attr.ino, READ).await.expect("open");
    assert_eq!(
        fs.read(opened.fh, 0, 100).await.expect("read").as_slice(),
        b"v1"
    );
    fs.release(opened.fh).await.expect("release");

    fs.unlink(ROOT_INO, "d").await.expect("rm");
    let fh = fs.opendir(DELETED_DIR_INO).expect("opendir");
    let entries = fs.readdir(DELETED_DIR_INO, fh, 0).await.expect("readdir");
    assert!(entries.iter().any(|e| e.name == "d"));
    assert!(matches!(
        fs.unlink(DELETED_DIR_INO, "d").await,
        Err(FsError::NotPermitted { .. })
    ));
    fs.rename(DELETED_DIR_INO, "d", ROOT_INO, "d", false)
        .await
        .expect("recover");
    assert_eq!(read_all(&fs, "d").await.expect("recovered"), b"x");
}

#[tokio::test]
async fn rename_copies_then_deletes() {
    let (store, fs) = setup(config());
    store.seed("a", "value", &[("k", "v")]);
    fs.rename(ROOT_INO, "a", ROOT_INO, "b", false)
        .await
        .expect("mv");
    let (value, tags) = store.current("b").expect("b");
    assert_eq!(value, "value");
    assert_eq!(tags.expect("tags").get("k").map(String::as_str), Some("v"));
    assert!(store.current("a").is_none());
    assert_eq!(read_all(&fs, "b").await.expect("read"), b"value");
}

#[tokio::test]
async fn commit_pending_commits_open_dirty_handles() {
    let (store, fs) = setup(config());
    let (_, opened) = fs.create(ROOT_INO, "pending", WRITE).await.expect("create");
    fs.write(opened.fh, 0, b"data").await.expect("write");
    assert_eq!(fs.commit_pending().await, 0);
    assert_eq!(store.current("pending").expect("set").0, "data");
    fs.release(opened.fh).await.expect("release");
    assert_eq!(store.calls("set"), 1);
}

#[tokio::test]
async fn properties_show_and_change_as_extended_attributes() {
    let (store, fs) = setup(config());
    store.seed("s", "v", &[("env", "prod")]);
    let ino = fs.lookup(ROOT_INO, "s").await.expect("lookup").attr.ino;
    let names = fs.listxattr(ino).await.expect("list");
    assert!(names.contains(&"user.akv.tags.env".to_owned()));
    assert!(names.contains(&"user.akv.version".to_owned()));
    assert_eq!(
        fs.getxattr(ino, "user.akv.tags.env").await.expect("get"),
        b"prod"
    );
    assert_eq!(
        fs.getxattr(ino, "user.akv.enabled").await.expect("get"),
        b"true"
    );
    let before = store.total_calls();
    assert!(matches!(
        fs.getxattr(ino, "security.selinux").await,
        Err(FsError::NoData { .. })
    ));
    assert_eq!(
        store.total_calls(),
        before,
        "foreign namespaces cost nothing"
    );
    fs.setxattr(ino, "user.akv.tags.team", b"blue")
        .await
        .expect("set tag");
    fs.setxattr(ino, "user.akv.content_type", b"text/plain")
        .await
        .expect("set content type");
    assert_eq!(store.calls("update"), 2);
    assert_eq!(store.calls("set"), 0, "no new version");
    let tags = store.current("s").expect("s").1.expect("tags");
    assert_eq!(tags.get("team").map(String::as_str), Some("blue"));
    assert_eq!(tags.get("env").map(String::as_str), Some("prod"));
    fs.removexattr(ino, "user.akv.tags.env")
        .await
        .expect("remove");
    assert!(!store
        .current("s")
        .expect("s")
        .1
        .expect("tags")
        .contains_key("env"));
    assert!(matches!(
        fs.setxattr(ino, "user.akv.version", b"x").await,
        Err(FsError::NotPermitted { .. })
    ));
    assert!(matches!(
        fs.setxattr(ino, "user.akv.expires", b"soon").await,
        Err(FsError::InvalidArgument { .. })
    ));
    // The value is still served from the cache after property changes.
    assert_eq!(read_all(&fs, "s").await.expect("read"), b"v");

    // Old versions show their properties, read-only.
    let versions_of = fs.lookup(VERSIONS_DIR_INO, "s").await.expect("versions");
    let fh = fs.opendir(versions_of.attr.ino).expect("opendir");
    let entries = fs
        .readdir(versions_of.attr.ino, fh, 0)
        .await
        .expect("readdir");
    let version = entries.last().expect("a version").clone();
    assert_eq!(
        fs.getxattr(version.ino, "user.akv.version")
            .await
            .expect("version xattr"),
        version.name.as_bytes()
    );
    assert!(matches!(
        fs.setxattr(version.ino, "user.akv.tags.x", b"y").await,
        Err(FsError::NotPermitted { .. })
    ));
}

/// vim with default settings (backupcopy=auto → rename): swap file, the `4913` probe, rename
/// of the original to `NAME~`, a fresh `NAME` written and fsynced, the backup removed.
#[tokio::test]
async fn vim_style_save_sets_one_version_and_deletes_nothing() {
    let (store, fs) = setup(config());
    store.seed("conf", "old value\n", &[("env", "prod")]);
    assert_eq!(read_all(&fs, "conf").await.expect("read"), b"old value\n");
    // Swap file.
    let (_, swap) = fs.create(ROOT_INO, ".conf.swp", WRITE).await.expect("swap");
    fs.write(swap.fh, 0, &[0u8; 4096])
        .await
        .expect("swap write");
    fs.fsync(swap.fh).await.expect("swap fsync");
    // Probe whether the directory allows creating files.
    let (_, probe) = fs
        .create(
            ROOT_INO,
            "4913",
            OpenMode {
                exclusive: true,
                ..WRITE
            },
        )
        .await
        .expect("probe");
    fs.release(probe.fh).await.expect("probe close");
    fs.unlink(ROOT_INO, "4913").await.expect("probe rm");
    // Backup by rename, then write the new file.
    fs.rename(ROOT_INO, "conf", ROOT_INO, "conf~", false)
        .await
        .expect("backup rename");
    assert!(fs.lookup(ROOT_INO, "conf").await.is_err(), "renamed away");
    let (_, new_file) = fs.create(ROOT_INO, "conf", WRITE).await.expect("create");
    fs.write(new_file.fh, 0, b"new value\n")
        .await
        .expect("write");
    fs.fsync(new_file.fh).await.expect("fsync");
    fs.release(new_file.fh).await.expect("close");
    fs.unlink(ROOT_INO, "conf~").await.expect("remove backup");
    fs.release(swap.fh).await.expect("swap close");
    fs.unlink(ROOT_INO, ".conf.swp").await.expect("swap rm");

    let (value, tags) = store.current("conf").expect("conf");
    assert_eq!(value, "new value\n");
    assert_eq!(
        tags.expect("tags").get("env").map(String::as_str),
        Some("prod")
    );
    assert_eq!(store.calls("set"), 1, "exactly one new version");
    assert_eq!(store.calls("delete"), 0, "no secret deleted");
    assert_eq!(store.version_count("conf"), 2);
    assert!(
        store.current("4913").is_none(),
        "no scratch name reached the vault"
    );
    assert_eq!(read_all(&fs, "conf").await.expect("read"), b"new value\n");
}

#[tokio::test]
async fn a_temporary_file_renamed_over_a_secret_is_one_set() {
    let (store, fs) = setup(config());
    store.seed("conf", "old", &[]);
    let (_, tmp) = fs
        .create(ROOT_INO, ".goutputstream-ABC123", WRITE)
        .await
        .expect("tmp");
    fs.write(tmp.fh, 0, b"replaced").await.expect("write");
    fs.release(tmp.fh).await.expect("close");
    assert_eq!(store.calls("set"), 0);
    fs.rename(ROOT_INO, ".goutputstream-ABC123", ROOT_INO, "conf", false)
        .await
        .expect("rename over");
    assert_eq!(store.calls("set"), 1);
    assert_eq!(store.current("conf").expect("conf").0, "replaced");
    assert!(fs.lookup(ROOT_INO, ".goutputstream-ABC123").await.is_err());
    assert!(matches!(
        fs.create(ROOT_INO, "not_scratch.txt", WRITE).await,
        Err(FsError::InvalidName { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ls_long_fetches_sizes_concurrently_once_and_cat_after_ls_costs_one_get() {
    let (store, fs) = setup(config());
    for i in 0..60 {
        store.seed(&format!("s{i:02}"), &"v".repeat(i), &[]);
    }
    store.set_get_delay(Duration::from_millis(20));
    let fh = fs.opendir(ROOT_INO).expect("opendir");
    let entries = fs.readdir(ROOT_INO, fh, 0).await.expect("readdir");
    fs.releasedir(fh);
    // A few cats after ls: one get each.
    read_all(&fs, "s05").await.expect("cat");
    read_all(&fs, "s40").await.expect("cat");
    read_all(&fs, "s41").await.expect("cat");
    assert_eq!(store.calls("get"), 3);
    // ls -l: a lookup of every name, in order.
    let started = std::time::Instant::now();
    for entry in entries.iter().filter(|e| e.kind == FileKind::File) {
        let found = fs.lookup(ROOT_INO, &entry.name).await.expect("lookup");
        assert_eq!(found.attr.size, entry.name[1..].parse::<u64>().expect("n"));
    }
    let elapsed = started.elapsed();
    assert_eq!(store.calls("get"), 60, "each value fetched exactly once");
    assert!(
        elapsed < Duration::from_millis(60 * 20 / 2),
        "sizes were fetched concurrently ({elapsed:?})"
    );
}

#[tokio::test]
async fn purge_needs_allow_purge() {
    let (store, fs) = setup(FsConfig {
        allow_purge: true,
        ..config()
    });
    store.seed("gone", "v", &[]);
    fs.unlink(ROOT_INO, "gone").await.expect("rm");
    let entry = fs
        .lookup(DELETED_DIR_INO, "GONE")
        .await
        .expect("deleted entry");
    assert_eq!(entry.attr.size, 0);
    fs.unlink(DELETED_DIR_INO, "gone").await.expect("purge");
    assert_eq!(store.calls("purge"), 1);
    assert!(fs.lookup(DELETED_DIR_INO, "gone").await.is_err());
    // The name is free again: no recovery needed.
    write_file(&fs, "gone", b"fresh").await.expect("write");
    assert_eq!(store.calls("recover"), 0);
}

#[tokio::test]
async fn vault_failures_map_to_the_documented_errors() {
    use crate::vault::VaultError;
    let (store, fs) = setup(config());
    for (error, check) in [
        (
            VaultError::Throttled { name: "s".into() },
            (|e: &FsError| matches!(e, FsError::Throttled { .. })) as fn(&FsError) -> bool,
        ),
        (
            VaultError::Timeout {
                what: "get s".into(),
            },
            |e| matches!(e, FsError::TimedOut { .. }),
        ),
        (
            VaultError::Forbidden {
                name: "s".into(),
                message: "no get".into(),
            },
            |e| matches!(e, FsError::AccessDenied { .. }),
        ),
        (VaultError::BeingDeleted { name: "s".into() }, |e| {
            matches!(e, FsError::Busy { .. })
        }),
    ] {
        store.fail_with(Some(error.clone()));
        let result = fs.lookup(ROOT_INO, "s").await;
        assert!(
            result.as_ref().is_err_and(check),
            "{error:?} gave {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_writers_and_readers_neither_deadlock_nor_see_partial_values() {
    let (store, fs) = setup(config());
    store.seed("hot", &"a".repeat(100), &[]);
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let (fs, store) = (fs.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..20 {
                if i % 2 == 0 {
                    let value = vec![b'b' + (i % 20); 50 + round];
                    write_file(&fs, "hot", &value).await.expect("write");
                } else {
                    // Concurrent writers share the file's content, as on a local disk, so a
                    // committed value may combine their bytes; but a reader reads exactly one
                    // committed version, never pieces of two.
                    let content = read_all(&fs, "hot").await.expect("read");
                    let content = String::from_utf8(content).expect("text");
                    assert!(
                        store.values_of("hot").contains(&content),
                        "a reader saw bytes of two versions: {content:?}"
                    );
                }
                if round % 5 == 0 {
                    let fh = fs.opendir(ROOT_INO).expect("opendir");
                    fs.readdir(ROOT_INO, fh, 0).await.expect("readdir");
                    fs.releasedir(fh);
                }
            }
        }));
    }
    let all = async {
        for task in tasks {
            task.await.expect("task");
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("no deadlock");
    // Writers open at the same time share the file's content (as on a local disk): a close
    // that finds the value unchanged sets nothing.
    assert!((1..=8 * 20).contains(&store.calls("set")));
    let (latest, _) = store.current("hot").expect("set");
    assert_eq!(read_all(&fs, "hot").await.expect("read"), latest.as_bytes());
}

/// Random writes, truncations and appends on handles, checked against a plain `Vec<u8>`.
#[tokio::test]
async fn random_writes_match_a_reference_model() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (store, fs) = setup(config());
    store.seed("model", "start", &[]);
    let mut model: Vec<u8> = b"start".to_vec();
    let ino = fs.lookup(ROOT_INO, "model").await.expect("lookup").attr.ino;
    for round in 0..50 {
        let append = rng.gen_bool(0.2);
        let truncate = rng.gen_bool(0.1);
        let fh = fs
            .open(
                ino,
                OpenMode {
                    read: true,
                    write: true,
                    truncate,
                    append,
                    exclusive: false,
                    pid: 0,
                },
            )
            .await
            .expect("open")
            .fh;
        if truncate {
            model.clear();
        }
        for _ in 0..rng.gen_range(0..5) {
            if rng.gen_bool(0.2) && !append {
                let size = rng.gen_range(0..model.len() + 20);
                fs.setattr(
                    ino,
                    Some(fh),
                    SetAttr {
                        size: Some(size as u64),
                        ..SetAttr::default()
                    },
                )
                .await
                .expect("ftruncate");
                model.resize(size, 0);
            } else {
                let data: Vec<u8> = (0..rng.gen_range(0..64))
                    .map(|_| rng.gen_range(b'a'..=b'z'))
                    .collect();
                let offset = if append {
                    model.len()
                } else {
                    rng.gen_range(0..model.len() + 10)
                };
                fs.write(fh, offset as u64, &data).await.expect("write");
                if model.len() < offset + data.len() {
                    model.resize(offset + data.len(), 0);
                }
                model[offset..offset + data.len()].copy_from_slice(&data);
            }
            let seen = fs.read(fh, 0, 1 << 20).await.expect("read own writes");
            assert_eq!(seen.as_slice(), model.as_slice(), "round {round}");
        }
        fs.release(fh).await.expect("close");
        assert_eq!(
            read_all(&fs, "model").await.expect("read"),
            model,
            "round {round}"
        );
        let (value, tags) = store.current("model").expect("model");
        let stored = match tags.as_ref().and_then(|t| t.get(FILE_ENCODING_TAG)) {
            Some(_) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .expect("base64")
            }
            None => value.into_bytes(),
        };
        assert_eq!(stored, model, "round {round}");
    }
}

#[tokio::test]
async fn a_placeholder_gives_way_to_a_secret_another_client_created() {
    let (store, fs) = setup(FsConfig {
        negative_ttl: Duration::from_millis(50),
        ..config()
    });
    let (_, opened) = fs.create(ROOT_INO, "later", WRITE).await.expect("touch");
    fs.release(opened.fh).await.expect("close");
    store.seed("later", "from elsewhere", &[]);
    assert_eq!(
        fs.lookup(ROOT_INO, "later")
            .await
            .expect("placeholder")
            .attr
            .size,
        0
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        fs.lookup(ROOT_INO, "later")
            .await
            .expect("secret")
            .attr
            .size,
        14
    );
}

#[tokio::test]
async fn writes_to_a_file_removed_while_open_go_nowhere() {
    let (store, fs) = setup(config());
    store.seed("s", "v", &[]);
    let ino = fs.lookup(ROOT_INO, "s").await.expect("lookup").attr.ino;
    let fh = fs.open(ino, WRITE).await.expect("open").fh;
    fs.write(fh, 0, b"late").await.expect("write");
    fs.unlink(ROOT_INO, "s").await.expect("rm");
    fs.release(fh).await.expect("close");
    assert_eq!(store.calls("set"), 0);
    assert_eq!(store.calls("recover"), 0, "the secret was not brought back");
    assert!(store.current("s").is_none());
}

#[tokio::test]
async fn a_shell_redirection_over_a_secret_is_one_version_not_an_empty_one_first() {
    let (store, fs) = setup(config());
    store.seed("s", "old", &[]);
    let ino = fs.lookup(ROOT_INO, "s").await.expect("lookup").attr.ino;
    let truncating = OpenMode {
        write: true,
        truncate: true,
        ..OpenMode::default()
    };
    // `printf new > s`: open(O_TRUNC), dup2 + close (a flush), write, close.
    let fh = fs.open(ino, truncating).await.expect("open").fh;
    fs.flush(fh).await.expect("flush after dup2");
    assert_eq!(store.calls("set"), 0, "no empty version");
    fs.write(fh, 0, b"new").await.expect("write");
    fs.flush(fh).await.expect("flush");
    fs.release(fh).await.expect("release");
    assert_eq!(store.calls("set"), 1);
    assert_eq!(store.current("s").expect("s").0, "new");
    // `: > s` still empties it, once, at release.
    let fh = fs.open(ino, truncating).await.expect("open").fh;
    fs.flush(fh).await.expect("flush");
    fs.release(fh).await.expect("release");
    assert_eq!(store.calls("set"), 2);
    assert_eq!(store.current("s").expect("s").0, "");
}

/// What the kernel forgets goes from the inode table (a long-running daemon does not grow
/// with every name it saw), except what an open handle, a placeholder or a scratch file needs.
#[tokio::test]
async fn the_inode_table_forgets_what_the_kernel_forgets() {
    let (_store, fs) = setup(config());
    let start = fs.inode_count();
    for i in 0..200 {
        // A placeholder (created, never written), a secret and a scratch file, each created,
        // removed, then forgotten by the kernel.
        for name in [format!("p{i}"), format!("s{i}"), format!(".x{i}.swp")] {
            let (entry, opened) = fs.create(ROOT_INO, &name, WRITE).await.expect("create");
            if name.starts_with('s') {
                fs.write(opened.fh, 0, b"v").await.expect("write");
            }
            fs.release(opened.fh).await.expect("close");
            fs.unlink(ROOT_INO, &name).await.expect("rm");
            fs.forget(entry.attr.ino, 1);
        }
    }
    assert_eq!(fs.inode_count(), start, "every forgotten inode went");

    // Looked up twice, forgotten once: still there.
    write_file(&fs, "kept", b"v").await.expect("write");
    let ino = fs.lookup(ROOT_INO, "kept").await.expect("lookup").attr.ino;
    fs.lookup(ROOT_INO, "kept").await.expect("lookup");
    fs.forget(ino, 1);
    assert!(fs.getattr(ino).await.is_ok(), "one lookup is still held");
    // Forgotten while open: it stays until the handle closes.
    let opened = fs.open(ino, READ).await.expect("open");
    fs.forget(ino, 2);
    assert!(
        fs.getattr(ino).await.is_ok(),
        "an open file keeps its inode"
    );
    fs.release(opened.fh).await.expect("close");
    assert!(fs.getattr(ino).await.is_err(), "gone once closed");
    // A placeholder keeps its inode while it exists, forgotten or not.
    let (entry, opened) = fs
        .create(ROOT_INO, "placeholder", WRITE)
        .await
        .expect("create");
    fs.release(opened.fh).await.expect("close");
    fs.forget(entry.attr.ino, 1);
    assert!(fs.getattr(entry.attr.ino).await.is_ok());
    // Looking the name up again gives an inode (a new one for a forgotten name).
    let again = fs.lookup(ROOT_INO, "kept").await.expect("lookup again");
    assert_ne!(again.attr.ino, ino, "numbers are never reused");
}

/// A self-signed P-256 certificate with its key, as the PEM a certificate's secret holds.
fn certificate_pem(cn: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec![cn.to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    format!("{}{}", key.serialize_pem(), cert.pem())
}

/// The names directory `ino` lists, without `.` and `..`.
async fn names_in(fs: &SecretFs, ino: u64) -> Vec<String> {
    let fh = fs.opendir(ino).expect("opendir");
    let entries = fs.readdir(ino, fh, 0).await.expect("readdir");
    fs.releasedir(fh);
    entries
        .iter()
        .map(|e| e.name.clone())
        .filter(|name| name != "." && name != "..")
        .collect()
}

async fn read_ino(fs: &SecretFs, ino: u64) -> Result<Vec<u8>, FsError> {
    let opened = fs.open(ino, READ).await?;
    let data = fs.read(opened.fh, 0, 1 << 20).await?;
    fs.release(opened.fh).await?;
    Ok(data.to_vec())
}

#[tokio::test]
async fn certificates_show_their_files_from_one_get_of_the_backing_secret() {
    use crate::fs::inode::CERTIFICATES_DIR_INO;
    let (store, fs) = setup(config());
    let pem = certificate_pem("web.test");
    store.seed_certificate("Web", &pem, "application/x-pem-file");
    store.seed("plain", "x", &[]);
    let fh = fs.opendir(CERTIFICATES_DIR_INO).expect("opendir");
    let names: Vec<String> = fs
        .readdir(CERTIFICATES_DIR_INO, fh, 0)
        .await
        .expect("readdir")
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, [".", "..", "Web"]);
    assert_eq!(store.calls("list_certificates"), 1);
    let dir = fs.lookup(CERTIFICATES_DIR_INO, "web").await.expect("dir");
    assert_eq!(dir.attr.kind, FileKind::Directory);
    let files = names_in(&fs, dir.attr.ino).await;
    assert_eq!(
        files,
        [
            "cert.pem",
            "chain.pem",
            "fullchain.pem",
            "key.pem",
            "bundle.pem",
            "Web.pfx"
        ]
    );
    let key = fs.lookup(dir.attr.ino, "key.pem").await.expect("key");
    assert_eq!(key.attr.perm, 0o400);
    let key_text = read_ino(&fs, key.attr.ino).await.expect("read key");
    assert_eq!(key.attr.size, key_text.len() as u64);
    assert!(key_text.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
    let cert = fs.lookup(dir.attr.ino, "cert.pem").await.expect("cert");
    let cert_text = read_ino(&fs, cert.attr.ino).await.expect("read cert");
    assert!(pem.ends_with(std::str::from_utf8(&cert_text).expect("text")));
    let pfx = fs.lookup(dir.attr.ino, "web.PFX").await;
    assert!(matches!(pfx, Err(FsError::NotFound { .. })));
    let pfx = fs.lookup(dir.attr.ino, "web.pfx").await.expect("pfx");
    assert!(pfx.attr.size > 0);
    assert_eq!(store.calls("get"), 1, "every file from one get");
    // Read-only.
    let write = fs.open(key.attr.ino, WRITE).await;
    assert!(matches!(write, Err(FsError::ReadOnly { .. })), "{write:?}");
    assert!(matches!(
        fs.unlink(dir.attr.ino, "key.pem").await,
        Err(FsError::ReadOnly { .. })
    ));
    assert!(matches!(
        fs.create(dir.attr.ino, "new.pem", WRITE).await,
        Err(FsError::ReadOnly { .. })
    ));
    // A plain secret is no certificate.
    assert!(fs.lookup(CERTIFICATES_DIR_INO, "plain").await.is_err());
    // The backing secret stays a plain file too.
    assert_eq!(read_all(&fs, "Web").await.expect("read"), pem.as_bytes());
}

#[tokio::test]
async fn a_certificate_without_its_key_has_no_key_or_bundle() {
    use crate::fs::inode::CERTIFICATES_DIR_INO;
    let (store, fs) = setup(config());
    let pem = certificate_pem("nokey.test");
    let certs_only = &pem[pem.find("-----BEGIN CERTIFICATE").expect("cert")..];
    store.seed_certificate("nokey", certs_only, "application/x-pem-file");
    store.seed_certificate("broken", "not base64 %%", "application/x-pkcs12");
    let dir = fs.lookup(CERTIFICATES_DIR_INO, "nokey").await.expect("dir");
    assert!(matches!(
        fs.lookup(dir.attr.ino, "key.pem").await,
        Err(FsError::NotFound { .. })
    ));
    assert!(fs.lookup(dir.attr.ino, "bundle.pem").await.is_err());
    assert!(fs.lookup(dir.attr.ino, "fullchain.pem").await.is_ok());
    // An unreadable secret: EIO, not a panic.
    let dir = fs
        .lookup(CERTIFICATES_DIR_INO, "broken")
        .await
        .expect("dir");
    assert!(matches!(
        fs.lookup(dir.attr.ino, "cert.pem").await,
        Err(FsError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn a_certificate_whose_secret_is_forbidden_shows_its_leaf_alone() {
    use crate::fs::inode::CERTIFICATES_DIR_INO;
    let (store, fs) = setup(config());
    let pem = certificate_pem("leaf.test");
    store.seed_certificate("Leaf", &pem, "application/x-pem-file");
    store.forbid_secret("leaf");
    let dir = fs.lookup(CERTIFICATES_DIR_INO, "leaf").await.expect("dir");
    let files = names_in(&fs, dir.attr.ino).await;
    assert_eq!(
        files,
        ["cert.pem"],
        "only the leaf is known without the secret"
    );
    let cert = fs.lookup(dir.attr.ino, "cert.pem").await.expect("cert");
    let cert_text = read_ino(&fs, cert.attr.ino).await.expect("read cert");
    assert_eq!(cert.attr.size, cert_text.len() as u64);
    assert!(cert_text.starts_with(b"-----BEGIN CERTIFICATE-----\n"));
    assert!(pem.ends_with(std::str::from_utf8(&cert_text).expect("text")));
    for absent in [
        "key.pem",
        "bundle.pem",
        "chain.pem",
        "fullchain.pem",
        "Leaf.pfx",
    ] {
        assert!(
            matches!(
                fs.lookup(dir.attr.ino, absent).await,
                Err(FsError::NotFound { .. })
            ),
            "{absent}"
        );
    }
    // Refused once, then the certificate answers until the TTL: no get per file.
    assert_eq!(store.calls("get"), 1);
    assert_eq!(store.calls("get_certificate"), 1);
    // The secret's own file stays forbidden.
    assert!(matches!(
        read_all(&fs, "Leaf").await,
        Err(FsError::AccessDenied { .. })
    ));
}

#[tokio::test]
async fn a_forbidden_secret_without_a_certificate_stays_forbidden() {
    use crate::fs::inode::CERTIFICATES_DIR_INO;
    let (store, fs) = setup(config());
    store.seed_certificate(
        "gone",
        &certificate_pem("gone.test"),
        "application/x-pem-file",
    );
    let dir = fs.lookup(CERTIFICATES_DIR_INO, "gone").await.expect("dir");
    // Deleted since it was listed, and its secret forbidden: the 403 is what the file says.
    crate::vault::SecretStore::delete_secret(&*store, "gone")
        .await
        .expect("delete");
    store.forbid_secret("gone");
    let result = fs.lookup(dir.attr.ino, "cert.pem").await;
    assert!(
        matches!(result, Err(FsError::AccessDenied { .. })),
        "{result:?}"
    );
    assert_eq!(
        store.calls("get_certificate"),
        1,
        "the certificate was asked"
    );
}
