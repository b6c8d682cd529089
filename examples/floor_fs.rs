//! The benchmark floor (SPEC §6): the smallest FUSE filesystem that serves one file from
//! memory, mounted with the same fuser configuration as akvfs (mount options, worker threads,
//! cloned descriptors, init capabilities, entry/attr TTL, `FOPEN_KEEP_CACHE`, and
//! `FOPEN_NOFLUSH` as akvfs gives read-only handles). Whatever a warm
//! read through it costs is what the kernel and fuser cost; akvfs's warm read is measured
//! against it.
//!
//! `floor_fs MOUNTPOINT [SIZE]` serves `MOUNTPOINT/secret` (SIZE bytes, default 1024) until
//! unmounted (`umount MOUNTPOINT`).

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, Request, SessionACL,
};

/// akvfs answers lookups and getattr of a cached secret with its `--cache-ttl` (default 30 s).
const TTL: Duration = Duration::from_secs(30);
const FILE: INodeNo = INodeNo(2);
const NAME: &str = "secret";

struct FloorFs {
    content: Vec<u8>,
    uid: u32,
    gid: u32,
    started: SystemTime,
}

impl FloorFs {
    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let (kind, perm, size, nlink) = if ino == INodeNo::ROOT {
            (FileType::Directory, 0o700, 0, 2)
        } else if ino == FILE {
            (FileType::RegularFile, 0o600, self.content.len() as u64, 1)
        } else {
            return None;
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

impl Filesystem for FloorFs {
    // The same capabilities akvfs asks for (src/fuse.rs).
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.attr(FILE) {
            Some(attr) if parent == INodeNo::ROOT && name == NAME => {
                reply.entry(&TTL, &attr, Generation(0))
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == FILE {
            // Nothing to flush: the kernel need not ask at every close (akvfs does the same
            // for handles that cannot write).
            reply.opened(
                FileHandle(1),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
            );
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.content.len());
        let end = start.saturating_add(size as usize).min(self.content.len());
        reply.data(&self.content[start..end]);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == INodeNo::ROOT {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::ENOTDIR);
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (FILE, FileType::RegularFile, NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(mountpoint) = args.next() else {
        eprintln!("usage: floor_fs MOUNTPOINT [SIZE]");
        std::process::exit(2);
    };
    let size = match args.next().map(|s| s.to_string_lossy().parse::<usize>()) {
        None => 1024,
        Some(Ok(size)) => size,
        Some(Err(e)) => {
            eprintln!("floor_fs: SIZE: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let fs = FloorFs {
        content: vec![b'x'; size],
        uid,
        gid,
        started: SystemTime::now(),
    };
    // The configuration of src/mount.rs with akvfs's defaults (8 workers, owner-only access).
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("floor".into()),
        MountOption::Subtype("floor".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::RW,
    ];
    config.acl = SessionACL::Owner;
    config.n_threads = Some(8);
    config.clone_fd = true;
    fuser::Session::new(fs, &mountpoint, &config)?.run()
}
