//! The kernel side of a mount, owned by akvfs rather than by fuser: `mount(2)` (or
//! `fusermount3` for other users), what `/proc/self/mountinfo` says is mounted where, whether a
//! FUSE mount still has a live daemon, and unmounting exactly the mount we made.
//!
//! fuser can mount too, but it unmounts *the path* again when its session ends: after an
//! external `umount` that either fails ("Failed to umount filesystem: Invalid argument") or
//! removes whatever is mounted under us. So akvfs mounts itself, hands fuser the `/dev/fuse`
//! descriptor (`Session::from_fd`), and unmounts only the mount whose id it recorded.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fuser::MountOption;
use tracing::{debug, warn};

/// How long a live-looking FUSE mount may take to answer `statfs` before we give up on it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id (unique while it is mounted).
    pub id: u64,
    /// The mountpoint, unescaped.
    pub point: Vec<u8>,
    /// The filesystem type; a FUSE mount by root with plain type `fuse` and source `akvfs` is
    /// reported as `fuse.akvfs`.
    pub kind: String,
}

impl MountEntry {
    pub fn is_fuse(&self) -> bool {
        self.kind == "fuse" || self.kind == "fuseblk" || self.kind.starts_with("fuse.")
    }

    pub fn is_akvfs(&self) -> bool {
        self.kind == "fuse.akvfs"
    }
}

/// Parse one mountinfo line (`ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS…] - TYPE SOURCE …`).
fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (mount, filesystem) = line.split_once(" - ")?;
    let mut fields = mount.split(' ');
    let id = fields.next()?.parse().ok()?;
    let point = unescape_mountinfo(fields.nth(3)?);
    let mut fields = filesystem.split(' ');
    let (kind, source) = (fields.next()?, fields.next().unwrap_or_default());
    // Mounted by root with mount(2) and type `fuse` (as fuser does), the kernel shows our
    // source `akvfs` only.
    let kind = if kind == "fuse" && source == "akvfs" {
        "fuse.akvfs"
    } else {
        kind
    };
    Some(MountEntry {
        id,
        point,
        kind: kind.to_owned(),
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
pub fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Every mount at `point` (a path as [`mountinfo_path`] gives it), bottom first.
pub fn mounts_at(point: &Path) -> io::Result<Vec<MountEntry>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let wanted = point.as_os_str().as_encoded_bytes();
    Ok(mountinfo
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|entry| entry.point == wanted)
        .collect())
}

/// The mount on top at `point`, if anything is mounted there.
pub fn top_mount(point: &Path) -> io::Result<Option<MountEntry>> {
    Ok(mounts_at(point)?.pop())
}

/// `path` as mountinfo spells it (absolute, symlinks resolved), found without looking inside
/// the directory itself: a mount there may be dead (every `stat` through it answers ENOTCONN
/// once the kernel's cached attributes expire) or hung.
pub fn mountinfo_path(path: &Path) -> io::Result<PathBuf> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    // readlink answers from the directory entry, never from the filesystem mounted there.
    let is_symlink = std::fs::read_link(path).is_ok();
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !is_symlink => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok(std::fs::canonicalize(parent).map_err(named)?.join(name))
        }
        _ => std::fs::canonicalize(path).map_err(named),
    }
}

/// What a FUSE mount's daemon did when asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It answered.
    Live,
    /// The kernel answered for it: the connection is gone (ENOTCONN / ECONNABORTED).
    Dead,
    /// No answer within the timeout: a daemon that is there but stuck.
    Hung,
}

/// Ask the filesystem at `point` for `statfs`. The kernel never answers that from its caches
/// (unlike `stat`, which it answers from cached attributes for as long as their TTL runs,
/// even after the daemon died), so a dead connection shows at once.
pub fn probe(point: &Path) -> Liveness {
    let Ok(path) = c_path(point) else {
        return Liveness::Live;
    };
    let (sender, receiver) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("akvfs-probe".into())
        .spawn(move || {
            let _ = sender.send(statfs(&path));
        });
    if spawned.is_err() {
        return Liveness::Live;
    }
    match receiver.recv_timeout(PROBE_TIMEOUT) {
        Ok(Err(error))
            if matches!(
                error.raw_os_error(),
                Some(libc::ENOTCONN | libc::ECONNABORTED)
            ) =>
        {
            Liveness::Dead
        }
        Ok(_) => Liveness::Live,
        Err(_) => Liveness::Hung,
    }
}

/// `statfs(path)`: asks the filesystem's daemon, never the kernel's caches.
fn statfs(path: &CString) -> io::Result<()> {
    // SAFETY: statfs fills the zeroed struct we own; the path is NUL-terminated.
    let mut buffer: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(path.as_ptr(), &mut buffer) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `umount2(point, flags)` as root, else `fusermount3 -u [-z]` (users unmount their own FUSE
/// mounts through the setuid helper). Unmounts the top mount at `point`.
pub fn unmount_top(point: &Path, lazy: bool) -> io::Result<()> {
    if is_root() {
        let path = c_path(point)?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // SAFETY: a valid NUL-terminated path; umount2 does not keep the pointer.
        return if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        };
    }
    let mut command = Command::new("fusermount3");
    command.arg("-u");
    if lazy {
        command.arg("-z");
    }
    let output = command
        .arg("--")
        .arg(point)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run fusermount3: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if said.contains("busy") {
        Err(io::Error::from_raw_os_error(libc::EBUSY))
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -u failed ({}): {said}",
            output.status
        )))
    }
}

/// A mount this process made, identified by its mountinfo id.
#[derive(Debug)]
pub struct KernelMount {
    point: PathBuf,
    /// `None` when mountinfo did not show it (no /proc): then unmount by path alone.
    id: Option<u64>,
    /// With `auto_unmount`, fusermount3 waits on this socket and unmounts when it closes.
    auto_unmount: Option<(UnixStream, Child)>,
}

/// The result of [`KernelMount::unmount`].
#[derive(Debug, PartialEq, Eq)]
pub enum Unmounted {
    /// We unmounted it.
    Now,
    /// It was no longer mounted (unmounted by someone else, e.g. `akvfs unmount`).
    Already,
}

impl KernelMount {
    /// Unmount this mount, and only it: nothing when it is gone already, an error when
    /// another mount now covers it (unmounting the path would remove that one).
    pub fn unmount(&self, lazy: bool) -> io::Result<Unmounted> {
        if let Some(id) = self.id {
            let mounts = mounts_at(&self.point)?;
            match mounts.iter().rposition(|m| m.id == id) {
                None => return Ok(Unmounted::Already),
                Some(position) if position + 1 != mounts.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        format!(
                            "another filesystem is mounted on top of this one at {}; unmount it \
                             first",
                            self.point.display()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        unmount_top(&self.point, lazy)?;
        Ok(Unmounted::Now)
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        if let Some((socket, mut child)) = self.auto_unmount.take() {
            drop(socket);
            let _ = child.wait();
        }
    }
}

/// Mount a FUSE filesystem at `point` (a [`mountinfo_path`]); returns the `/dev/fuse`
/// descriptor for the session and the mount. `allow_other` lets other users (and root) in.
pub fn mount(
    point: &Path,
    options: &[MountOption],
    allow_other: bool,
) -> io::Result<(OwnedFd, KernelMount)> {
    let auto_unmount = options.contains(&MountOption::AutoUnmount);
    let (fd, helper) = if is_root() && !auto_unmount {
        match mount_syscall(point, options, allow_other) {
            Ok(fd) => (fd, None),
            // Root without CAP_SYS_ADMIN here (a user namespace): the helper may still work.
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                debug!(%error, "mount(2) refused; trying fusermount3");
                mount_fusermount(point, options, allow_other)?
            }
            Err(error) => return Err(error),
        }
    } else {
        mount_fusermount(point, options, allow_other)?
    };
    let id = match top_mount(point) {
        Ok(Some(entry)) if entry.is_fuse() => Some(entry.id),
        other => {
            warn!(mountpoint = %point.display(), ?other, "cannot find the new mount in /proc/self/mountinfo; unmounting by path");
            None
        }
    };
    Ok((
        fd,
        KernelMount {
            point: point.to_owned(),
            id,
            auto_unmount: helper,
        },
    ))
}

fn source_and_subtype(options: &[MountOption]) -> (String, Option<String>) {
    let mut source = "akvfs".to_owned();
    let mut subtype = None;
    for option in options {
        match option {
            MountOption::FSName(name) => source = name.clone(),
            MountOption::Subtype(name) => subtype = Some(name.clone()),
            _ => {}
        }
    }
    (source, subtype)
}

/// Root: open /dev/fuse and mount(2) it, as libfuse does.
fn mount_syscall(point: &Path, options: &[MountOption], allow_other: bool) -> io::Result<OwnedFd> {
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open /dev/fuse: {e} (is the fuse module loaded?)"),
            )
        })?;
    let root_mode = std::fs::metadata(point)?.mode() & libc::S_IFMT;
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={root_mode:o},user_id={uid},group_id={gid}",
        device.as_raw_fd()
    );
    let mut flags: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;
    for option in options {
        match option {
            MountOption::DefaultPermissions => data.push_str(",default_permissions"),
            MountOption::CUSTOM(custom) => {
                data.push(',');
                data.push_str(custom);
            }
            // Never dev or suid, whatever the caller asked (see `parse_extra_options`).
            MountOption::Dev | MountOption::Suid | MountOption::NoDev | MountOption::NoSuid => {}
            MountOption::RO => flags |= libc::MS_RDONLY,
            MountOption::RW => flags &= !libc::MS_RDONLY,
            MountOption::Exec => flags &= !libc::MS_NOEXEC,
            MountOption::NoExec => flags |= libc::MS_NOEXEC,
            MountOption::Atime => flags &= !libc::MS_NOATIME,
            MountOption::NoAtime => flags |= libc::MS_NOATIME,
            MountOption::Sync => flags |= libc::MS_SYNCHRONOUS,
            MountOption::Async => flags &= !libc::MS_SYNCHRONOUS,
            MountOption::DirSync => flags |= libc::MS_DIRSYNC,
            MountOption::FSName(_) | MountOption::Subtype(_) | MountOption::AutoUnmount => {}
        }
    }
    if allow_other {
        data.push_str(",allow_other");
    }
    let (source, subtype) = source_and_subtype(options);
    let target = c_path(point)?;
    let source =
        CString::new(source).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let data = CString::new(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let try_mount = |kind: &str| -> io::Result<()> {
        let kind =
            CString::new(kind).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let result = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                kind.as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    match subtype {
        // `fuse.SUBTYPE` names the filesystem in mountinfo; kernels without subtypes say ENODEV.
        Some(subtype) => match try_mount(&format!("fuse.{subtype}")) {
            Err(error) if error.raw_os_error() == Some(libc::ENODEV) => try_mount("fuse"),
            other => other,
        },
        None => try_mount("fuse"),
    }?;
    Ok(OwnedFd::from(device))
}

/// Other users: `fusermount3` mounts and passes the /dev/fuse descriptor back over a socket
/// (`_FUSE_COMMFD`). With `auto_unmount` it stays, waiting on the socket, and unmounts when
/// this process goes away.
fn mount_fusermount(
    point: &Path,
    options: &[MountOption],
    allow_other: bool,
) -> io::Result<(OwnedFd, Option<(UnixStream, Child)>)> {
    let mut strings: Vec<String> = Vec::new();
    let mut auto_unmount = false;
    for option in options {
        strings.push(match option {
            MountOption::FSName(name) => format!("fsname={name}"),
            MountOption::Subtype(name) => format!("subtype={name}"),
            MountOption::CUSTOM(custom) => custom.clone(),
            MountOption::AutoUnmount => {
                auto_unmount = true;
                "auto_unmount".into()
            }
            MountOption::DefaultPermissions => "default_permissions".into(),
            // Never dev or suid (fusermount3 forces this for users; we do for everyone).
            MountOption::Dev | MountOption::NoDev => "nodev".into(),
            MountOption::Suid | MountOption::NoSuid => "nosuid".into(),
            MountOption::RO => "ro".into(),
            MountOption::RW => "rw".into(),
            MountOption::Exec => "exec".into(),
            MountOption::NoExec => "noexec".into(),
            MountOption::Atime => "atime".into(),
            MountOption::NoAtime => "noatime".into(),
            MountOption::DirSync => "dirsync".into(),
            MountOption::Sync => "sync".into(),
            MountOption::Async => "async".into(),
        });
    }
    if allow_other {
        strings.push("allow_other".into());
    }
    let (ours, theirs) = UnixStream::pair()?;
    let theirs_fd: RawFd = theirs.as_raw_fd();
    let mut command = Command::new("fusermount3");
    command
        .arg("-o")
        .arg(strings.join(","))
        .arg("--")
        .arg(point)
        .env("_FUSE_COMMFD", theirs_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only fcntl (async-signal-safe) runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // The helper must inherit its end of the socket.
            if libc::fcntl(theirs_fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot run fusermount3 (Debian package fuse3): {e}"),
        )
    })?;
    drop(theirs);
    let received = receive_fd(&ours);
    let fd = match received {
        Ok(fd) => fd,
        Err(error) => {
            drop(ours);
            let mut said = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut said);
            }
            let _ = child.wait();
            let said = said.trim();
            return Err(if said.is_empty() {
                io::Error::new(error.kind(), format!("fusermount3 failed: {error}"))
            } else if said.contains("user_allow_other") {
                io::Error::new(io::ErrorKind::PermissionDenied, said.to_owned())
            } else {
                io::Error::other(said.to_owned())
            });
        }
    };
    if auto_unmount {
        Ok((fd, Some((ours, child))))
    } else {
        drop(ours);
        let _ = child.wait();
        Ok((fd, None))
    }
}

/// Receive one descriptor sent with SCM_RIGHTS.
fn receive_fd(socket: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // Room for one cmsghdr carrying one int, suitably aligned.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; we point it at buffers that outlive the call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control) as _;
    let received = loop {
        // SAFETY: the msghdr describes valid buffers.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    if received == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "fusermount3 sent no descriptor",
        ));
    }
    // SAFETY: CMSG_FIRSTHDR reads the msghdr recvmsg filled in.
    let header = unsafe { libc::CMSG_FIRSTHDR(&message) };
    // SAFETY: a non-null header points into `control`.
    if header.is_null()
        || unsafe { (*header).cmsg_level } != libc::SOL_SOCKET
        || unsafe { (*header).cmsg_type } != libc::SCM_RIGHTS
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "fusermount3 sent no SCM_RIGHTS descriptor",
        ));
    }
    // SAFETY: an SCM_RIGHTS message carries at least one int after the header.
    let fd: RawFd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(header).cast()) };
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "fusermount3 sent an invalid descriptor",
        ));
    }
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let line =
            "46 27 0:41 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:1 - fuse akvfs rw,user_id=0";
        assert_eq!(
            parse_mountinfo_line(line),
            Some(MountEntry {
                id: 46,
                point: b"/tmp/a b".to_vec(),
                kind: "fuse.akvfs".into(),
            })
        );
        let entry = parse_mountinfo_line("50 27 0:45 / /x rw - fuse.sshfs host: rw").expect("line");
        assert!(entry.is_fuse() && !entry.is_akvfs());
        let entry = parse_mountinfo_line("51 27 0:46 / /y rw - tmpfs tmpfs rw").expect("line");
        assert!(!entry.is_fuse());
        assert_eq!(parse_mountinfo_line("garbage"), None);
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), b"/mnt/a b");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
        assert!(top_mount(Path::new("/")).expect("mountinfo").is_some());
    }

    #[test]
    fn mountinfo_path_does_not_look_inside_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inside = dir.path().join("m");
        std::fs::create_dir(&inside).expect("mkdir");
        let canonical = std::fs::canonicalize(&inside).expect("canonical");
        assert_eq!(mountinfo_path(&inside).expect("path"), canonical);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&inside, &link).expect("symlink");
        assert_eq!(mountinfo_path(&link).expect("path"), canonical);
        assert_eq!(
            mountinfo_path(&inside.join(".")).expect("path"),
            canonical,
            "a trailing /. names the same directory"
        );
    }
}
