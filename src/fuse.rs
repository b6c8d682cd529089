//! Thin `fuser::Filesystem` adapter over the filesystem core.
//!
//! Each handler decodes its arguments, runs the core operation with `Handle::block_on` (on a
//! fuser worker thread, never inside a tokio task), and replies. Errors become errnos in one
//! place, [`errno`]. A panic in the core is caught and answered with EIO, so the mount survives.

use std::ffi::OsStr;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use tokio::runtime::Handle;
use tracing::{debug, error};

use crate::fs::{Attr, FileKind, FsError, KernelNotifier, OpenMode, Opened, SecretFs, SetAttr};

/// The errno for each core error (SPEC §3.9). Exhaustive on purpose: a new error must pick one.
pub fn errno(error: &FsError) -> Errno {
    match error {
        FsError::NotFound { .. } => Errno::ENOENT,
        FsError::InvalidName { .. } => Errno::EINVAL,
        FsError::NameTooLong { .. } => Errno::ENAMETOOLONG,
        FsError::AccessDenied { .. } => Errno::EACCES,
        FsError::ReadOnly { .. } => Errno::EROFS,
        FsError::TooLarge { .. } => Errno::EFBIG,
        FsError::Exists { .. } => Errno::EEXIST,
        FsError::Busy { .. } => Errno::EBUSY,
        FsError::NotPermitted { .. } => Errno::EPERM,
        FsError::Throttled { .. } => Errno::EAGAIN,
        FsError::Unavailable { .. } => Errno::EIO,
        FsError::TimedOut { .. } => Errno::ETIMEDOUT,
        FsError::InvalidArgument { .. } => Errno::EINVAL,
        FsError::NoData { .. } => Errno::ENODATA,
        FsError::NotADirectory { .. } => Errno::ENOTDIR,
        FsError::IsADirectory { .. } => Errno::EISDIR,
        FsError::Unsupported { .. } => Errno::EOPNOTSUPP,
        FsError::BadHandle { .. } => Errno::EBADF,
    }
}

const BLOCK_SIZE: u32 = 4096;

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: attr.crtime,
        kind: match attr.kind {
            FileKind::File => FileType::RegularFile,
            FileKind::Directory => FileType::Directory,
        },
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

fn open_flags(opened: Opened) -> FopenFlags {
    let mut flags = FopenFlags::empty();
    if opened.keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if opened.direct_io {
        flags |= FopenFlags::FOPEN_DIRECT_IO;
    }
    flags
}

fn open_mode(flags: i32) -> OpenMode {
    let access = flags & libc::O_ACCMODE;
    OpenMode {
        read: access == libc::O_RDONLY || access == libc::O_RDWR,
        write: access == libc::O_WRONLY || access == libc::O_RDWR,
        truncate: flags & libc::O_TRUNC != 0,
        append: flags & libc::O_APPEND != 0,
        exclusive: flags & libc::O_EXCL != 0,
    }
}

/// Names the kernel hands us are bytes; secret names are ASCII, so anything else is simply
/// not a secret.
fn name_str(name: &OsStr) -> Option<&str> {
    name.to_str()
}

/// Kernel cache invalidations, queued and sent from their own thread: a notification written
/// from inside a request handler can deadlock against the kernel waiting for that handler.
pub struct QueuedNotifier {
    sender: parking_lot::Mutex<mpsc::Sender<Invalidation>>,
}

enum Invalidation {
    Inode(u64),
    Entry(u64, String),
}

impl QueuedNotifier {
    /// Start the sending thread. `notifier` is filled in once the session exists.
    pub fn start(notifier: Arc<OnceLock<fuser::Notifier>>) -> std::io::Result<QueuedNotifier> {
        let (sender, receiver) = mpsc::channel::<Invalidation>();
        std::thread::Builder::new()
            .name("akvfs-notify".into())
            .spawn(move || {
                // Ends when the filesystem (which owns the sender) is dropped.
                while let Ok(invalidation) = receiver.recv() {
                    let Some(notifier) = notifier.get() else {
                        continue;
                    };
                    let result = match &invalidation {
                        Invalidation::Inode(ino) => notifier.inval_inode(INodeNo(*ino), 0, 0),
                        Invalidation::Entry(parent, name) => {
                            notifier.inval_entry(INodeNo(*parent), OsStr::new(name))
                        }
                    };
                    // ENOENT: the kernel did not hold it; nothing to drop.
                    if let Err(error) = result {
                        debug!(%error, "kernel cache invalidation not applied");
                    }
                }
            })?;
        Ok(QueuedNotifier {
            sender: parking_lot::Mutex::new(sender),
        })
    }
}

impl KernelNotifier for QueuedNotifier {
    fn inval_inode(&self, ino: u64) {
        let _ = self.sender.lock().send(Invalidation::Inode(ino));
    }

    fn inval_entry(&self, parent: u64, name: &str) {
        let _ = self
            .sender
            .lock()
            .send(Invalidation::Entry(parent, name.to_owned()));
    }
}

pub struct FuseAdapter {
    fs: Arc<SecretFs>,
    runtime: Handle,
}

impl FuseAdapter {
    pub fn new(fs: Arc<SecretFs>, runtime: Handle) -> FuseAdapter {
        FuseAdapter { fs, runtime }
    }

    /// Run a core operation to completion on the runtime, mapping its error to an errno.
    fn run<T>(
        &self,
        operation: &str,
        future: impl Future<Output = Result<T, FsError>>,
    ) -> Result<T, Errno> {
        match catch_unwind(AssertUnwindSafe(|| self.runtime.block_on(future))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                debug!(operation, %error, "operation failed");
                Err(errno(&error))
            }
            Err(_) => {
                error!(
                    operation,
                    "internal error: the operation panicked; answering EIO"
                );
                Err(Errno::EIO)
            }
        }
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC arrives with open() instead of as a separate setattr.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        match self.run("lookup", self.fs.lookup(parent.0, name)) {
            Ok(entry) => reply.entry(&entry.ttl, &file_attr(&entry.attr), Generation(0)),
            Err(errno) => reply.error(errno),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.run("getattr", self.fs.getattr(ino.0)) {
            Ok(entry) => reply.attr(&entry.ttl, &file_attr(&entry.attr)),
            Err(errno) => reply.error(errno),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changes = SetAttr {
            size,
            mode,
            uid,
            gid,
        };
        match self.run(
            "setattr",
            self.fs.setattr(ino.0, fh.map(|fh| fh.0), changes),
        ) {
            Ok(entry) => reply.attr(&entry.ttl, &file_attr(&entry.attr)),
            Err(errno) => reply.error(errno),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        match self.run("unlink", self.fs.unlink(parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (Some(name), Some(newname)) = (name_str(name), name_str(newname)) else {
            return reply.error(Errno::ENOENT);
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self.run(
            "rename",
            self.fs
                .rename(parent.0, name, newparent.0, newname, no_replace),
        ) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.run("open", self.fs.open(ino.0, open_mode(flags.0))) {
            Ok(opened) => reply.opened(FileHandle(opened.fh), open_flags(opened)),
            Err(errno) => reply.error(errno),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.run("read", self.fs.read(fh.0, offset, size)) {
            Ok(data) => reply.data(&data),
            Err(errno) => reply.error(errno),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.run("write", self.fs.write(fh.0, offset, data)) {
            Ok(written) => reply.written(written),
            Err(errno) => reply.error(errno),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.run("flush", self.fs.flush(fh.0)) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.run("release", self.fs.release(fh.0)) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.run("fsync", self.fs.fsync(fh.0)) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.run("readdir", self.fs.readdir(ino.0, fh.0, offset)) {
            Ok(entries) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                for entry in entries.iter().skip(start) {
                    let kind = match entry.kind {
                        FileKind::File => FileType::RegularFile,
                        FileKind::Directory => FileType::Directory,
                    };
                    if reply.add(INodeNo(entry.ino), entry.offset, kind, &entry.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::EOPNOTSUPP);
        };
        match self.run("setxattr", self.fs.setxattr(ino.0, name, value)) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::ENODATA);
        };
        match self.run("getxattr", self.fs.getxattr(ino.0, name)) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(errno) => reply.error(errno),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.run("listxattr", self.fs.listxattr(ino.0)) {
            Ok(names) => {
                let mut list = Vec::new();
                for name in names {
                    list.extend_from_slice(name.as_bytes());
                    list.push(0);
                }
                reply_xattr(reply, size, &list);
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::ENODATA);
        };
        match self.run("removexattr", self.fs.removexattr(ino.0, name)) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::EINVAL);
        };
        match self.run("create", self.fs.create(parent.0, name, open_mode(flags))) {
            Ok((entry, opened)) => reply.created(
                &entry.ttl,
                &file_attr(&entry.attr),
                Generation(0),
                FileHandle(opened.fh),
                open_flags(opened),
            ),
            Err(errno) => reply.error(errno),
        }
    }
}

/// The xattr protocol: size 0 asks for the length; a too-small buffer is ERANGE.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    let Ok(len) = u32::try_from(value.len()) else {
        return reply.error(Errno::E2BIG);
    };
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_decode() {
        let mode = open_mode(libc::O_WRONLY | libc::O_TRUNC | libc::O_CREAT);
        assert!(mode.write && mode.truncate && !mode.read && !mode.append);
        let mode = open_mode(libc::O_RDWR | libc::O_APPEND | libc::O_EXCL);
        assert!(mode.read && mode.write && mode.append && mode.exclusive);
    }

    #[test]
    fn errors_map_to_the_spec_errnos() {
        let name = "x".to_owned();
        assert_eq!(
            errno(&FsError::TooLarge { name: name.clone() }),
            Errno::EFBIG
        );
        assert_eq!(
            errno(&FsError::Throttled { name: name.clone() }),
            Errno::EAGAIN
        );
        assert_eq!(errno(&FsError::ReadOnly { name }), Errno::EROFS);
    }
}
