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
