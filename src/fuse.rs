//! Thin `fuser::Filesystem` adapter over the filesystem core.
//!
//! Each handler decodes its arguments, hands the core operation to [`FuseAdapter::dispatch`]
//! (answered inline when cached, else finished as a task on the tokio runtime), and replies.
//! Errors become errnos in one place, [`errno`]. A panic in the core answers EIO, so the mount
//! survives.

use std::ffi::OsStr;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;
use tracing::{debug, error};
use zeroize::Zeroizing;

use crate::fs::{
    Attr, FileKind, FsError, KernelNotifier, OpenMode, Opened, ProjectedFs, SetAttr, XattrSet,
};

/// The errno for each core error (SPEC §3.9). Exhaustive on purpose: a new error must pick one.
pub fn errno(error: &FsError) -> Errno {
    match error {
        FsError::NotFound { .. } => Errno::ENOENT,
        FsError::InvalidName { .. } => Errno::EINVAL,
        FsError::NameTooLong { .. } => Errno::ENAMETOOLONG,
        FsError::AccessDenied { .. } => Errno::EACCES,
        FsError::ReadOnly { .. } => Errno::EROFS,
        FsError::TooLarge { .. } => Errno::EFBIG,
        FsError::NoSpace { .. } => Errno::ENOSPC,
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
        FsError::CrossDevice { .. } => Errno::EXDEV,
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
        pid: 0,
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
    fs: Arc<ProjectedFs>,
    runtime: Handle,
}

fn to_errno<T>(operation: &'static str, result: Result<T, FsError>) -> Result<T, Errno> {
    result.map_err(|error| {
        debug!(operation, %error, "operation failed");
        errno(&error)
    })
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
    }
}

impl FuseAdapter {
    pub fn new(fs: Arc<ProjectedFs>, runtime: Handle) -> FuseAdapter {
        FuseAdapter { fs, runtime }
    }

    /// Run a core operation and answer with `respond`. The operation is polled once right
    /// here: cached answers (the common case) reply without leaving this thread. One that has
    /// to wait for the vault continues as a task on the runtime and replies from there, so a
    /// slow secret never holds a FUSE worker and never blocks other secrets. A panic answers
    /// EIO (a reply dropped unsent answers EIO too), so the mount survives.
    fn dispatch<T, F, R>(&self, operation: &'static str, future: F, respond: R)
    where
        T: Send + 'static,
        F: Future<Output = Result<T, FsError>> + Send + 'static,
        R: FnOnce(Result<T, Errno>) + Send + 'static,
    {
        let mut future = Box::pin(future);
        let polled = {
            // Tokio resources (timers, I/O, locks) need the runtime's context when polled.
            let _context = self.runtime.enter();
            let mut cx = Context::from_waker(Waker::noop());
            catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)))
        };
        match polled {
            Ok(Poll::Ready(result)) => respond(to_errno(operation, result)),
            Ok(Poll::Pending) => {
                self.runtime.spawn(async move {
                    // Polled again here with the task's waker.
                    respond(to_errno(operation, future.await));
                });
            }
            Err(_) => {
                error!(
                    operation,
                    "internal error: the operation panicked; answering EIO"
                );
                respond(Err(Errno::EIO));
            }
        }
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC arrives with open() instead of as a separate setattr.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Lookups in the top directory run in parallel: without this the kernel serializes
        // them, and one slow secret would hold up every other name.
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        // The kernel then caches each inode's (absent) POSIX ACL instead of asking us for
        // `system.posix_acl_access` on every `ls -l` of every file. Permission checks stay the
        // same: there are no ACLs, so the kernel checks the modes (default_permissions).
        let _ = config.add_capabilities(InitFlags::FUSE_POSIX_ACL);
        // Secret files use direct I/O (each handle reads its own version); programs that map
        // files (mmap) must still be able to read them.
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        // Readahead and other background requests: allow many in flight (default 16).
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name_str(name).map(str::to_owned) else {
            return reply.error(Errno::ENOENT);
        };
        let fs = self.fs.clone();
        self.dispatch(
            "lookup",
            async move { fs.lookup(parent.0, &name).await },
            move |result| match result {
                Ok(entry) => reply.entry(&entry.ttl, &file_attr(&entry.attr), Generation(0)),
                Err(errno) => reply.error(errno),
            },
        );
    }

    /// The kernel dropped lookups of an inode: the core forgets it once none are left.
    /// No reply, no vault call. (fuser's `batch_forget` calls this for each inode.)
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = self.fs.clone();
        let pid = req.pid();
        self.dispatch(
            "getattr",
            async move { fs.getattr_as(ino.0, fh.map(|fh| fh.0), pid).await },
            move |result| match result {
                Ok(entry) => reply.attr(&entry.ttl, &file_attr(&entry.attr)),
                Err(errno) => reply.error(errno),
            },
        );
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
        mtime: Option<TimeOrNow>,
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
            mtime: mtime.map(|time| match time {
                TimeOrNow::SpecificTime(time) => time,
                TimeOrNow::Now => SystemTime::now(),
            }),
        };
        let fs = self.fs.clone();
        self.dispatch(
            "setattr",
            async move { fs.setattr(ino.0, fh.map(|fh| fh.0), changes).await },
            move |result| match result {
                Ok(entry) => reply.attr(&entry.ttl, &file_attr(&entry.attr)),
                Err(errno) => reply.error(errno),
            },
        );
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
        let Some(name) = name_str(name).map(str::to_owned) else {
            return reply.error(Errno::ENOENT);
        };
        let fs = self.fs.clone();
        self.dispatch(
            "unlink",
            async move { fs.unlink(parent.0, &name).await },
            move |result| reply_empty(reply, result),
        );
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
        let (Some(name), Some(newname)) = (
            name_str(name).map(str::to_owned),
            name_str(newname).map(str::to_owned),
        ) else {
            return reply.error(Errno::ENOENT);
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let fs = self.fs.clone();
        self.dispatch(
            "rename",
            async move {
                fs.rename(parent.0, &name, newparent.0, &newname, no_replace)
                    .await
            },
            move |result| reply_empty(reply, result),
        );
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

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        let mode = OpenMode {
            pid: req.pid(),
            ..open_mode(flags.0)
        };
        // A handle that cannot write has nothing to commit: its flush would answer Ok without
        // doing anything, so the kernel need not send one at every close.
        let no_flush = if mode.write {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_NOFLUSH
        };
        self.dispatch(
            "open",
            async move { fs.open(ino.0, mode).await },
            move |result| match result {
                Ok(opened) => reply.opened(FileHandle(opened.fh), open_flags(opened) | no_flush),
                Err(errno) => reply.error(errno),
            },
        );
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
        let fs = self.fs.clone();
        self.dispatch(
            "read",
            async move { fs.read(fh.0, offset, size).await },
            move |result| match result {
                Ok(data) => reply.data(&data),
                Err(errno) => reply.error(errno),
            },
        );
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
        let fs = self.fs.clone();
        let data = Zeroizing::new(data.to_vec());
        self.dispatch(
            "write",
            async move { fs.write(fh.0, offset, &data).await },
            move |result| match result {
                Ok(written) => reply.written(written),
                Err(errno) => reply.error(errno),
            },
        );
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let pid = req.pid();
        self.dispatch(
            "flush",
            async move { fs.flush_by(fh.0, pid).await },
            move |result| reply_empty(reply, result),
        );
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
        let fs = self.fs.clone();
        self.dispatch(
            "release",
            async move { fs.release(fh.0).await },
            move |result| reply_empty(reply, result),
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.dispatch(
            "fsync",
            async move { fs.fsync(fh.0).await },
            move |result| reply_empty(reply, result),
        );
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
        let fs = self.fs.clone();
        self.dispatch(
            "readdir",
            async move { fs.readdir(ino.0, fh.0, offset).await },
            move |result| match result {
                Ok(entries) => {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX);
                    for entry in entries.iter().skip(start) {
                        let full = reply.add(
                            INodeNo(entry.ino),
                            entry.offset,
                            file_type(entry.kind),
                            &entry.name,
                        );
                        if full {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(errno) => reply.error(errno),
            },
        );
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
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let Some(name) = name_str(name).map(str::to_owned) else {
            return reply.error(Errno::EOPNOTSUPP);
        };
        let how = if flags & libc::XATTR_CREATE != 0 {
            XattrSet::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrSet::Replace
        } else {
            XattrSet::Any
        };
        let fs = self.fs.clone();
        let value = value.to_vec();
        self.dispatch(
            "setxattr",
            async move { fs.setxattr_as(ino.0, &name, &value, how).await },
            move |result| reply_empty(reply, result),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name_str(name).map(str::to_owned) else {
            return reply.error(Errno::ENODATA);
        };
        let fs = self.fs.clone();
        self.dispatch(
            "getxattr",
            async move { fs.getxattr(ino.0, &name).await },
            move |result| match result {
                Ok(value) => reply_xattr(reply, size, &value),
                Err(errno) => reply.error(errno),
            },
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        self.dispatch(
            "listxattr",
            async move { fs.listxattr(ino.0).await },
            move |result| match result {
                Ok(names) => {
                    let mut list = Vec::new();
                    for name in names {
                        list.extend_from_slice(name.as_bytes());
                        list.push(0);
                    }
                    reply_xattr(reply, size, &list);
                }
                Err(errno) => reply.error(errno),
            },
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name_str(name).map(str::to_owned) else {
            return reply.error(Errno::ENODATA);
        };
        let fs = self.fs.clone();
        self.dispatch(
            "removexattr",
            async move { fs.removexattr(ino.0, &name).await },
            move |result| reply_empty(reply, result),
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(name) = name_str(name).map(str::to_owned) else {
            return reply.error(Errno::EINVAL);
        };
        let fs = self.fs.clone();
        let mode = OpenMode {
            pid: req.pid(),
            ..open_mode(flags)
        };
        self.dispatch(
            "create",
            async move { fs.create(parent.0, &name, mode).await },
            move |result| match result {
                Ok((entry, opened)) => reply.created(
                    &entry.ttl,
                    &file_attr(&entry.attr),
                    Generation(0),
                    FileHandle(opened.fh),
                    open_flags(opened),
                ),
                Err(errno) => reply.error(errno),
            },
        );
    }

    /// `statvfs`: Key Vault's name limit as `f_namemax` (127), so tools that ask
    /// (`pathconf(_PC_NAME_MAX)`, `getconf NAME_MAX`) know it. The size and free space are
    /// those of `--scratch-space`, the memory that files kept on this mount only may take
    /// (a vault has no byte quota; values themselves are bounded per secret). A vault has no
    /// count quota, so inodes are plentiful. Answered here, without a vault call.
    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (limit, used) = self.fs.scratch_space();
        let blocks = limit / u64::from(BLOCK_SIZE);
        let free = limit.saturating_sub(used) / u64::from(BLOCK_SIZE);
        reply.statfs(
            blocks,
            free,
            free,
            STATFS_FILES,
            STATFS_FILES,
            BLOCK_SIZE,
            crate::vault::model::MAX_SECRET_NAME_LEN as u32,
            BLOCK_SIZE,
        );
    }

    /// Operations a secret file has no use for, answered ENOSYS quietly (fuser's defaults log
    /// a WARN for each): the kernel then stops asking (lseek's SEEK_DATA/SEEK_HOLE, poll,
    /// copy_file_range) or reports "not supported" (fallocate), and `cp` falls back to plain
    /// reads and writes.
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// No ioctl means anything on a secret: ENOTTY, what a regular file on a local disk
    /// answers to `isatty`'s TCGETS (which every Python `open()` sends), without a log line.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        debug!(cmd, "ioctl: not a terminal or device; ENOTTY");
        reply.error(Errno::ENOTTY);
    }
}

/// `statfs` inodes: 2^32, all free.
const STATFS_FILES: u64 = 1 << 32;

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(errno) => reply.error(errno),
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
