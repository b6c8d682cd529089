//! Optimisations found with `scripts/bench`, checked on a real mount: they must keep the
//! behaviour and save the kernel round trips they claim to.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{sh_ok, LocalMount};

/// `getxattr(2)`: the value, or the errno.
fn getxattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let path = CString::new(path.as_os_str().as_bytes()).expect("path");
    let name = CString::new(name).expect("name");
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `ls -l` asks for every file's POSIX ACL (`system.posix_acl_access`). With FUSE_POSIX_ACL the
/// kernel caches the answer (no ACL) per inode, so repeated listings do not come to the daemon
/// for it; every other extended attribute still does.
#[test]
fn a_files_missing_acl_is_asked_once_and_other_xattrs_still_answer() {
    let m = LocalMount::start(&[]);
    m.other_set("acl-probe", "value");
    let path = m.path("acl-probe");
    for _ in 0..5 {
        assert_eq!(
            getxattr(&path, "system.posix_acl_access"),
            Err(libc::ENODATA)
        );
        sh_ok(&m.mountpoint, "ls -l >/dev/null");
    }
    let asked = m
        .log_text()
        .lines()
        .filter(|l| l.contains("system.posix_acl_access"))
        .count();
    assert!(
        asked <= 1,
        "the daemon was asked for the ACL {asked} times:\n{}",
        m.log_text()
    );
    // Our own attributes and the errno for unknown ones are unchanged.
    assert_eq!(getxattr(&path, "user.akv.enabled"), Ok(b"true".to_vec()));
    assert_eq!(getxattr(&path, "user.akv.nope"), Err(libc::ENODATA));
    assert_eq!(getxattr(&path, "security.selinux"), Err(libc::ENODATA));
    // Modes still decide (default_permissions, no ACL): 0600 owned by us.
    let mode = std::fs::metadata(&path).expect("stat").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

/// Handles that cannot write are opened with FOPEN_NOFLUSH (the kernel skips their flush at
/// close); a writer's close must still commit, also while readers hold the file open, and
/// readers must still see every committed value.
#[test]
fn closing_a_writer_commits_while_readers_skip_the_flush() {
    use std::io::{Read, Write};
    let m = LocalMount::start(&[]);
    m.other_set("noflush", "old");
    let path = m.path("noflush");
    let mut reader = std::fs::File::open(&path).expect("open reader");
    let mut text = String::new();
    reader.read_to_string(&mut text).expect("read");
    assert_eq!(text, "old");
    for value in ["one", "two", "three"] {
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .expect("open writer");
        writer.write_all(value.as_bytes()).expect("write");
        drop(writer);
        // close() returned: the vault has it (the flush committed it), and a new reader
        // sees it.
        assert_eq!(m.other_get("noflush"), value);
        assert_eq!(std::fs::read_to_string(&path).expect("read back"), value);
    }
    drop(reader);
    assert_eq!(
        m.calls("set_secret"),
        4,
        "one set per writer, plus the seed"
    );
}
