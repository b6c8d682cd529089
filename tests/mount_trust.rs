//! Files you can trust (SPEC §3.3, §7): no torn reads, no partial or lost writes, no needless
//! versions. Real programs on real mounts over the local vault; what the vault holds is read
//! through the REST API (another client) and the vault's counters, never through the mount.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use akvfs::vault::SecretStore;
use common::{py, sh, sh_err, sh_ok, LocalMount};

fn versions(m: &LocalMount, name: &str) -> usize {
    m.block_on(m.other_client().list_properties_of_secret_versions(name))
        .map(|v| v.len())
        .unwrap_or(0)
}

#[test]
fn an_open_handle_reads_the_version_it_opened_to_its_end() {
    let m = LocalMount::start(&[]);
    for (name, new_value, new_len) in [("torn", "B", 12000), ("short", "C", 100)] {
        m.other_set(name, &"A".repeat(12000));
        sh_ok(&m.mountpoint, &format!("cat {name} > /dev/null"));
        let out = py(
            &m,
            &format!(
                r#"
import subprocess
f = open('{name}', 'rb', buffering=0)
first = f.read(4096)
subprocess.run(['sh', '-c', "head -c {new_len} /dev/zero | tr '\\0' {new_value} > {name} && cat {name} > /dev/null"], check=True)
rest = b''
while True:
    chunk = f.read(4096)
    if not chunk:
        break
    rest += chunk
data = first + rest
print(len(data), sorted(set(data.decode())))
"#
            ),
        );
        assert_eq!(out.trim(), "12000 ['A']", "new value {new_value}×{new_len}");
        assert_eq!(m.other_get(name), new_value.repeat(new_len));
        assert_eq!(
            sh_ok(&m.mountpoint, &format!("stat -c %s {name}")).trim(),
            new_len.to_string()
        );
    }
}

#[test]
fn secrets_can_be_mapped_into_memory() {
    let m = LocalMount::start(&[]);
    m.other_set("mapped", "read through mmap");
    let out = py(
        &m,
        "import mmap\nwith open('mapped', 'rb') as f:\n    print(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)[:].decode())",
    );
    assert_eq!(out.trim(), "read through mmap");
}

#[test]
fn tail_f_and_stat_see_a_commit_while_the_file_is_held_open() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    sh_ok(dir, "printf 'a\\n' > grows");
    let out = m.dir.path().join("tail.out");
    let mut tail = Command::new("tail")
        .args(["-f", "-s", "0.2", "grows"])
        .current_dir(dir)
        .stdout(std::fs::File::create(&out).expect("tail output"))
        .spawn()
        .expect("tail -f");
    std::thread::sleep(Duration::from_millis(800));
    sh_ok(dir, "printf 'a\\nb\\n' > grows");
    // stat sees the commit at once, while tail holds the file open.
    assert_eq!(sh_ok(dir, "stat -c %s grows").trim(), "4");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = std::fs::read_to_string(&out).unwrap_or_default();
        if seen == "a\nb\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(seen, "a\nb\n", "tail -f prints the new line");
    assert_eq!(sh_ok(dir, "cat grows"), "a\nb\n");

    // A shorter rewrite: tail sees a truncation, starts over, and prints the new value.
    sh_ok(dir, "printf 'first value\n' > shrinks");
    let out = m.dir.path().join("tail2.out");
    let mut tail = Command::new("tail")
        .args(["-f", "-s", "0.2", "shrinks"])
        .current_dir(dir)
        .stdout(std::fs::File::create(&out).expect("tail output"))
        .stderr(Stdio::null())
        .spawn()
        .expect("tail -f");
    std::thread::sleep(Duration::from_millis(800));
    sh_ok(dir, "printf 'new\n' > shrinks");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        seen = std::fs::read_to_string(&out).unwrap_or_default();
        if seen.ends_with("new\n") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(seen, "first value\nnew\n", "never the old value again");
}

#[test]
fn a_writer_sees_its_own_truncates_and_writes() {
    let m = LocalMount::start(&[]);
    m.other_set("ten", "0123456789");
    let out = py(
        &m,
        r#"
import os
fd = os.open('ten', os.O_RDWR)
os.ftruncate(fd, 4)
end = os.lseek(fd, 0, os.SEEK_END)
os.write(fd, b'XY')
size = os.fstat(fd).st_size
back = os.pread(fd, 100, 0)
os.close(fd)
fd = os.open('fresh', os.O_CREAT | os.O_WRONLY)
os.write(fd, b'hello')
fresh = os.fstat(fd).st_size
os.close(fd)
print(end, size, back.decode(), fresh)
"#,
    );
    assert_eq!(out.trim(), "4 6 0123XY 5");
    assert_eq!(m.other_get("ten"), "0123XY");
    assert_eq!(m.other_get("fresh"), "hello");
}

#[test]
fn one_redirection_makes_one_version_whatever_its_children_close() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    m.other_set("block", "old");
    m.reset_counters();
    sh_ok(
        dir,
        "{ echo header; /bin/true; echo middle; /bin/true; echo footer; } > block",
    );
    assert_eq!(m.other_get("block"), "header\nmiddle\nfooter\n");
    assert_eq!(m.calls("set_secret"), 1, "one set");
    assert_eq!(versions(&m, "block"), 2, "the old version and one new one");

    // A child that forked before an oversize write commits nothing when it exits.
    m.reset_counters();
    let out = py(
        &m,
        r#"
import os, time
fd = os.open('block', os.O_WRONLY | os.O_TRUNC)
pid = os.fork()
if pid == 0:
    time.sleep(0.5)
    os._exit(0)
try:
    os.write(fd, b'x' * 30000)
    print('written')
except OSError as e:
    print('write', e.errno)
try:
    os.close(fd)
    print('closed')
except OSError as e:
    print('close', e.errno)
os.waitpid(pid, 0)
"#,
    );
    assert!(out.contains("write 27"), "EFBIG at write: {out}");
    assert_eq!(m.other_get("block"), "header\nmiddle\nfooter\n");
    assert_eq!(m.calls("set_secret"), 0, "nothing committed: {out}");
}

#[test]
fn a_writer_killed_by_a_signal_commits_nothing_and_a_normal_exit_commits() {
    let m = LocalMount::start(&[]);
    m.other_set("victim", "intact");
    m.reset_counters();
    let ready = m.dir.path().join("ready");
    let mut writer = Command::new("python3")
        .arg("-c")
        .arg(format!(
            r#"
import os, time
fd = os.open('victim', os.O_WRONLY | os.O_TRUNC)
os.write(fd, b'PARTIAL-')
open({ready:?}, 'w').close()
time.sleep(60)
"#,
            ready = ready.display().to_string()
        ))
        .current_dir(&m.mountpoint)
        .stdout(Stdio::null())
        .spawn()
        .expect("writer");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready.exists(), "the writer wrote");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(writer.id() as i32, libc::SIGKILL) };
    let _ = writer.wait();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(m.other_get("victim"), "intact");
    assert_eq!(m.calls("set_secret"), 0, "no partial value committed");
    assert_eq!(sh_ok(&m.mountpoint, "cat victim"), "intact");
    assert!(
        m.log_text().contains("killed by a signal"),
        "{}",
        m.log_text()
    );

    // Exiting without closing commits.
    py(
        &m,
        "import os\nfd = os.open('victim', os.O_WRONLY | os.O_TRUNC)\nos.write(fd, b'complete')\nos._exit(0)",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(m.other_get("victim"), "complete");
}

#[test]
fn a_write_during_rm_is_refused_at_once_or_creates_the_secret_afterwards() {
    // The vault takes 3 s to finish a deletion; rm waits for it.
    let m = LocalMount::start(&["--deletion-delay", "3s"]);
    for (name, flags) in [
        ("doomed", "os.O_CREAT | os.O_TRUNC | os.O_WRONLY"),
        ("gone", "os.O_TRUNC | os.O_WRONLY"),
    ] {
        write_during_rm(&m, name, flags);
    }
}

fn write_during_rm(m: &LocalMount, name: &str, flags: &str) {
    let dir = m.mountpoint.clone();
    m.other_set(name, "old");
    sh_ok(&dir, &format!("cat {name} > /dev/null"));
    let rm = {
        let (dir, name) = (dir.clone(), name.to_owned());
        std::thread::spawn(move || sh(&dir, &format!("rm {name}")))
    };
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    let out = py(
        m,
        &format!(
            r#"
import os
try:
    fd = os.open('{name}', {flags})
except OSError as e:
    print('open refused', e.errno)
    raise SystemExit
try:
    os.write(fd, b'after-rm')
    os.close(fd)
    print('written')
except OSError as e:
    print('acknowledged open, then failed', e.errno)
"#
        ),
    );
    let took = started.elapsed();
    let rm = rm.join().expect("rm thread");
    assert!(rm.status.success(), "rm: {rm:?}");
    match out.trim() {
        "written" => {
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(
                m.other_get(name),
                "after-rm",
                "the write was kept ({flags})"
            );
            assert!(!m.log_text().contains("discarding writes"));
        }
        "open refused 16" => assert!(took < Duration::from_secs(2), "EBUSY at once: {took:?}"),
        // Without O_CREAT, an open the kernel held until the deletion ended finds no file.
        "open refused 2" if !flags.contains("O_CREAT") => {}
        other => panic!("{flags}: {other}"),
    }
}

#[test]
fn a_handle_with_unsaved_writes_follows_its_file_through_mv() {
    let m = LocalMount::start(&[]);
    m.other_set("before", "saved");
    let out = py(
        &m,
        r#"
import os
fd = os.open('before', os.O_WRONLY | os.O_TRUNC)
os.write(fd, b'unsaved-')
os.rename('before', 'after')
os.write(fd, b'more')
os.close(fd)
print('ok')
"#,
    );
    assert_eq!(out.trim(), "ok");
    assert_eq!(m.other_get("after"), "unsaved-more");
    assert_eq!(sh_ok(&m.mountpoint, "cat after"), "unsaved-more");
    assert!(m
        .block_on(m.other_client().get_secret("before", None))
        .is_err());
}

#[test]
fn concurrent_writers_combine_as_on_a_local_disk() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    sh_ok(
        dir,
        "for i in 0 1 2 3 4 5 6 7 8 9; do echo line$i >> lines & done; wait",
    );
    let value = m.other_get("lines");
    let mut lines: Vec<&str> = value.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        (0..10).map(|i| format!("line{i}")).collect::<Vec<_>>(),
        "{value:?}"
    );
    assert_eq!(sh_ok(dir, "cat lines"), value, "mount and vault agree");

    m.other_set("offsets", "0123456789");
    py(
        &m,
        r#"
import os
a = os.open('offsets', os.O_WRONLY)
b = os.open('offsets', os.O_WRONLY)
os.pwrite(a, b'AB', 0)
os.pwrite(b, b'YZ', 8)
os.close(a)
os.close(b)
"#,
    );
    assert_eq!(m.other_get("offsets"), "AB234567YZ");

    sh_ok(
        dir,
        "for i in 1 2 3 4 5 6 7 8; do printf value$i > eight & done; wait",
    );
    assert_eq!(sh_ok(dir, "cat eight"), m.other_get("eight"));
}

#[test]
fn exclusive_creates_ask_the_vault_and_backups_work() {
    let m = LocalMount::start(&["--negative-ttl", "60s"]);
    let dir = &m.mountpoint;
    assert!(sh(dir, "stat late").status.code() != Some(0));
    m.other_set("late", "theirs");
    let out = py(
        &m,
        r#"
import os
try:
    os.open('late', os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    print('created')
except OSError as e:
    print(e.errno)
"#,
    );
    assert_eq!(out.trim(), "17", "EEXIST");
    assert_eq!(m.other_get("late"), "theirs");

    m.other_set("kept", "v1");
    let src = m.dir.path().join("src");
    std::fs::write(&src, "v2").expect("src");
    sh_ok(
        dir,
        &format!("cp --backup=simple {} kept && cat kept", src.display()),
    );
    assert_eq!(m.other_get("kept"), "v2");
    assert_eq!(sh_ok(dir, "cat kept~"), "v1");
    std::fs::write(&src, "v3").expect("src");
    sh_ok(dir, &format!("install -b -m 600 {} kept", src.display()));
    assert_eq!(m.other_get("kept"), "v3");
    sh_ok(dir, "echo v4 > new4 && mv -b new4 kept");
    assert_eq!(m.other_get("kept"), "v4\n");
    let deleted = m
        .block_on(m.other_client().list_deleted_secrets())
        .expect("deleted");
    assert!(
        deleted
            .iter()
            .all(|d| !d.item.id.as_deref().unwrap_or("").ends_with("/kept")),
        "kept was never deleted"
    );
}

#[test]
fn a_placeholder_renamed_over_a_secret_sets_it_empty() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    m.other_set("target", "full");
    m.reset_counters();
    sh_ok(dir, "touch empty && mv empty target");
    assert_eq!(m.other_get("target"), "");
    assert_eq!(m.calls("set_secret"), 1);
    assert_eq!(sh_ok(dir, "stat -c %s target").trim(), "0");
    assert_eq!(sh_ok(dir, "cat target"), "");
}

#[test]
fn writing_the_bytes_a_secret_holds_makes_no_version() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    sh_ok(dir, "printf same > steady");
    m.reset_counters();
    sh_ok(
        dir,
        "printf same > steady; cp steady /dev/null; printf same > steady",
    );
    assert_eq!(m.calls("set_secret"), 0);
    assert_eq!(versions(&m, "steady"), 1);
}

#[test]
fn names_errors_and_in_memory_files_are_reported_clearly() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    let name = format!("{}é", "a".repeat(126));
    let out = py(
        &m,
        &format!(
            "import os\ntry:\n    os.open({name:?}, os.O_CREAT | os.O_WRONLY)\nexcept OSError as e:\n    print(e.errno)"
        ),
    );
    assert_eq!(out.trim(), "22", "EINVAL, not ENAMETOOLONG");
    let err = sh_err(dir, &format!("touch {}", "b".repeat(128)));
    assert!(err.contains("File name too long"), "{err}");

    sh_ok(dir, "echo A=1 > .env && echo B=2 >> .env && cat .env");
    let log = m.log_text();
    assert_eq!(
        log.matches("\".env\" is kept in memory on this mount only")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn cp_within_the_mount_works_and_logs_no_warning() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    m.other_set("original", "copied value");
    sh_ok(
        dir,
        "cp original duplicate && cp --sparse=always original sparse",
    );
    sh_ok(
        dir,
        "python3 -c \"import os; f = os.open('original', os.O_RDONLY); os.lseek(f, 0, os.SEEK_DATA)\" || true",
    );
    assert_eq!(m.other_get("duplicate"), "copied value");
    assert_eq!(m.other_get("sparse"), "copied value");
    let log = m.log_text();
    assert!(!log.contains("Not Implemented"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn a_writer_on_a_file_replaced_by_mv_does_not_overwrite_it() {
    let m = LocalMount::start(&[]);
    m.other_set("incoming", "new content");
    m.other_set("current", "old content");
    let out = py(
        &m,
        r#"
import os
fd = os.open('current', os.O_WRONLY | os.O_TRUNC)
os.write(fd, b'late writer')
os.rename('incoming', 'current')
os.close(fd)
print(open('current').read())
"#,
    );
    assert_eq!(out.trim(), "new content");
    assert_eq!(m.other_get("current"), "new content");
}
