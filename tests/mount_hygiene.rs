//! Hygiene and strictness of the mount (issue 11): files kept in memory are bounded, the mount
//! can never carry a setuid program, and a value the daemon no longer needs is not left in its
//! memory (scanned through /proc/PID/mem, as root).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{akvfs_bin, py, sh_ok, LocalMount};

/// `os.statvfs` of the mount: (size, available) in bytes.
fn space(m: &LocalMount) -> (u64, u64) {
    let out = sh_ok(
        &m.mountpoint,
        "python3 -c \"import os; s = os.statvfs('.'); print(s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize)\"",
    );
    let mut numbers = out
        .split_whitespace()
        .map(|n| n.parse::<u64>().expect("number"));
    (
        numbers.next().expect("size"),
        numbers.next().expect("available"),
    )
}

/// A Python program's output, trimmed.
fn py_line(m: &LocalMount, program: &str) -> String {
    py(m, program).trim().to_owned()
}

const MIB: u64 = 1024 * 1024;

#[test]
fn scratch_files_and_placeholders_share_a_bounded_space_that_statfs_reports() {
    let m = LocalMount::start(&["--scratch-space", "1048576"]);
    let (size, available) = space(&m);
    assert_eq!(size, MIB, "statfs reports --scratch-space as the size");
    assert_eq!(available, MIB, "and nothing used yet");

    // Editor scratch files: three of 300 kB fit in 1 MiB, the fourth does not.
    let written = py_line(
        &m,
        r#"
import errno
for n in "abcd":
    try:
        with open(f".{n}.swp", "wb") as f:
            f.write(b"s" * 300000)
    except OSError as e:
        print(n, errno.errorcode[e.errno])
        break
"#,
    );
    assert_eq!(written, "d ENOSPC");
    assert!(
        m.log_text().contains("--scratch-space"),
        "the refusal is logged naming the option:\n{}",
        m.log_text()
    );
    let (_, available) = space(&m);
    assert!(
        available < MIB - 900_000,
        "statfs shows the space taken: {available} bytes left"
    );
    sh_ok(&m.mountpoint, "rm -f .a.swp .b.swp .c.swp .d.swp");
    assert_eq!(space(&m).1, MIB, "removing them gives the space back");

    // Placeholders (created, never written) cost space too: a million `touch`es cannot grow
    // the daemon without bound.
    m.reset_counters();
    let created = py_line(
        &m,
        r#"
import errno
for i in range(5000):
    try:
        open(f"p{i}", "x").close()
    except OSError as e:
        print(i, errno.errorcode[e.errno])
        break
"#,
    );
    let (count, errno) = created.split_once(' ').expect("ENOSPC before 5000");
    let count: u64 = count.parse().expect("count");
    assert_eq!(errno, "ENOSPC");
    assert!(
        (1500..=2048).contains(&count),
        "about 1 MiB / 512 bytes of placeholders: {count}"
    );
    assert_eq!(m.calls("set"), 0, "placeholders never reach the vault");
    py(
        &m,
        "import os\nfor n in os.listdir('.'):\n    n.startswith('p') and os.unlink(n)",
    );
    assert_eq!(
        space(&m).1,
        MIB,
        "forgotten placeholders give the space back"
    );
    // Writing a secret works again.
    sh_ok(&m.mountpoint, "printf v > after");
    assert_eq!(m.other_get("after"), "v");
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(akvfs_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run akvfs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn setuid_modes_and_suid_or_dev_options_are_usage_errors_and_the_mount_is_nosuid_nodev() {
    let dir = tempfile::tempdir().expect("tempdir");
    let point = dir.path().join("m");
    std::fs::create_dir(&point).expect("mkdir");
    let point = point.to_str().expect("utf-8 path");
    let (code, stderr) = run(&[
        "mount",
        "local",
        point,
        "--file-mode",
        "4755",
        "-o",
        "suid,exec",
        "--allow-other",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--file-mode") && stderr.contains("setuid"),
        "{stderr}"
    );
    for option in ["suid", "dev", "exec,suid"] {
        let (code, stderr) = run(&["mount", "local", point, "-o", option]);
        assert_eq!(code, Some(2), "-o {option}: {stderr}");
        assert!(stderr.contains("nosuid,nodev"), "-o {option}: {stderr}");
    }
    for (flag, value) in [
        ("--dir-mode", "1777"),
        ("--threads", "0"),
        ("--threads", "100000"),
    ] {
        let (code, stderr) = run(&["mount", "local", point, flag, value]);
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
    }
    assert!(!common::is_mountpoint(std::path::Path::new(point)));

    // Even when asked for `exec`, the kernel mount is nosuid,nodev.
    let m = LocalMount::start(&["-o", "exec,nosuid"]);
    let wanted = m.mountpoint.to_string_lossy().replace(' ', "\\040");
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(wanted.as_str()))
        .expect("the mount is listed");
    let options: Vec<&str> = line
        .split(' ')
        .nth(3)
        .expect("options")
        .split(',')
        .collect();
    assert!(
        options.contains(&"nosuid") && options.contains(&"nodev"),
        "{line}"
    );
}

/// How many times `needle` occurs in the writable memory of process `pid` (needs root).
fn occurrences_in_memory(pid: u32, needle: &[u8]) -> usize {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem (root)");
    let finder = memchr::memmem::Finder::new(needle);
    let mut count = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        // Values live in heap, stacks and anonymous mappings: all writable.
        if !perms.starts_with("rw") || line.ends_with("[vvar]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        let mut region = vec![0u8; (end - start) as usize];
        if mem.read_exact_at(&mut region, start).is_ok() {
            count += finder.find_iter(&region).count();
        }
    }
    count
}

/// A value of 20,000 characters holding `marker` 100 times.
fn marked_value(marker: &str) -> String {
    let chunk = format!("{marker}{}", "x".repeat(200 - marker.len()));
    chunk.repeat(100)
}

fn random_marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("MARK-{what}-{nanos:x}-{}", std::process::id())
}

/// The daemon's memory holds no piece of a value it no longer needs: one evicted from the
/// cache, one overwritten through the mount, one deleted through the mount. (The values come
/// from another client, so the only copies are the ones this daemon made: responses, parsing,
/// cache, handles.) The scan first finds the cached values, so it can fail.
#[test]
fn no_piece_of_an_evicted_overwritten_or_deleted_value_stays_in_the_daemons_memory() {
    let vault = LocalMount::start(&[]);
    let m = vault.mount_as(
        &["get", "list", "set", "delete", "recover"],
        &["--cache-size", "65536"],
    );
    let pid = m.pid().expect("pid");
    let markers: Vec<String> = ["evicted", "overwritten", "deleted"]
        .iter()
        .map(|what| random_marker(what))
        .collect();
    for (name, marker) in ["evicted", "overwritten", "deleted"].iter().zip(&markers) {
        vault.other_set(name, &marked_value(marker));
        assert_eq!(
            std::fs::read_to_string(m.path(name)).expect("read"),
            marked_value(marker)
        );
    }
    for marker in &markers {
        let found = occurrences_in_memory(pid, marker.as_bytes());
        assert!(
            found >= 100,
            "the scan finds the cached value of {marker} ({found} times)"
        );
    }

    // Overwrite and delete through the mount.
    std::fs::write(m.path("overwritten"), "a short new value").expect("overwrite");
    std::fs::remove_file(m.path("deleted")).expect("rm");
    // Evict: read other values until the 64 KiB cache has no room for the first one.
    for i in 0..6 {
        let name = format!("filler{i}");
        vault.other_set(&name, &"f".repeat(20_000));
        assert_eq!(std::fs::read(m.path(&name)).expect("read").len(), 20_000);
    }
    assert_eq!(
        std::fs::read_to_string(m.path("overwritten")).expect("read"),
        "a short new value"
    );
    // The HTTP connection that carried them is closed (and its buffers freed) once idle.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left: Vec<usize>;
    loop {
        std::thread::sleep(Duration::from_secs(2));
        left = markers
            .iter()
            .map(|marker| occurrences_in_memory(pid, marker.as_bytes()))
            .collect();
        if left.iter().all(|n| *n == 0) || Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(
        left,
        [0, 0, 0],
        "pieces of the evicted, overwritten and deleted values stay in the daemon's memory"
    );
}

/// The service counts a value's length in UTF-16 code units (.NET): an emoji counts twice.
/// The mount refuses at write time what the vault would refuse at close, keeping the old value.
#[test]
fn the_efbig_check_counts_utf16_units_as_the_service_does() {
    let m = LocalMount::start(&[]);
    m.other_set("emoji", "old");
    let outcome = py_line(
        &m,
        r#"
import errno
try:
    with open("emoji", "w", encoding="utf-8") as f:
        f.write("\U0001F600" * 12801)
    print("written")
except OSError as e:
    print(errno.errorcode[e.errno])
"#,
    );
    assert_eq!(outcome, "EFBIG");
    assert_eq!(m.other_get("emoji"), "old", "the old value stays");
    py(
        &m,
        "open('emoji', 'w', encoding='utf-8').write('\\U0001F600' * 12800)",
    );
    assert_eq!(m.other_get("emoji"), "😀".repeat(12_800));
}
