//! Mount a filesystem core with fuser: options, worker threads, kernel cache invalidation.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::fs::{FsConfig, ProjectedFs, SecretFs};
use crate::fuse::{FuseAdapter, QueuedNotifier};
use crate::hooks::HookRunner;
use crate::projection::config::HookAction;
use crate::projection::Projection;
use crate::vault::SecretStore;

mod kernel;

/// Where and how to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    pub allow_other: bool,
    pub allow_root: bool,
    /// `-o a,b,c` as in fstab; each element may itself hold several comma-separated options.
    pub extra_options: Vec<String>,
    /// FUSE worker threads (each runs one request at a time).
    pub worker_threads: usize,
    /// `--config FILE`: the projected tree, checked, and the file it came from (SIGHUP
    /// re-reads it). `None`: the vault's own layout.
    pub projection: Option<(PathBuf, Projection)>,
    /// `--on-change CMD`: run when a refresh finds secrets read through the mount changed.
    pub on_change: Option<String>,
}

impl MountOptions {
    pub fn new(mountpoint: impl Into<PathBuf>) -> MountOptions {
        MountOptions {
            mountpoint: mountpoint.into(),
            allow_other: false,
            allow_root: false,
            extra_options: Vec::new(),
            worker_threads: 8,
            projection: None,
            on_change: None,
        }
    }
}

/// The mount options and filesystem settings `-o` asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct ParsedOptions {
    mount_options: Vec<MountOption>,
    allow_other: bool,
    allow_root: bool,
    read_only: bool,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// Parse fstab-style `-o` options. Options that only matter to `mount(8)`/fstab (`noauto`,
/// `user`, `_netdev`, `x-…`) are accepted and ignored; unknown ones are refused by name, since
/// the kernel would refuse the whole mount with a bare EINVAL.
fn parse_extra_options(extra: &[String]) -> io::Result<ParsedOptions> {
    let mut parsed = ParsedOptions::default();
    for option in extra.iter().flat_map(|o| o.split(',')).map(str::trim) {
        let (key, value) = match option.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (option, None),
        };
        let number = |value: Option<&str>| -> io::Result<u32> {
            value
                .and_then(|v| crate::permissions::parse_id(v).ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("mount option {option:?} needs a number, e.g. {key}=1000"),
                    )
                })
        };
        match key {
            ""
            | "rw"
            | "default_permissions"
            | "defaults"
            | "auto"
            | "noauto"
            | "user"
            | "nouser"
            | "users"
            | "_netdev"
            | "nofail" => {}
            _ if key.starts_with("x-") || key.starts_with("comment=") => {}
            "ro" => parsed.read_only = true,
            "allow_other" => parsed.allow_other = true,
            "allow_root" => parsed.allow_root = true,
            "auto_unmount" => parsed.mount_options.push(MountOption::AutoUnmount),
            "uid" => parsed.uid = Some(number(value)?),
            "gid" => parsed.gid = Some(number(value)?),
            // Always nosuid,nodev: whoever can set a secret must not plant a setuid program
            // or a device node that another user then runs or opens.
            "nodev" | "nosuid" => {}
            "dev" | "suid" => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "mount option {option:?} is refused: akvfs always mounts nosuid,nodev \
                         (anyone who can set a secret could otherwise plant a setuid program)"
                    ),
                ))
            }
            "exec" => parsed.mount_options.push(MountOption::Exec),
            "noexec" => parsed.mount_options.push(MountOption::NoExec),
            "atime" => parsed.mount_options.push(MountOption::Atime),
            "noatime" => parsed.mount_options.push(MountOption::NoAtime),
            "sync" => parsed.mount_options.push(MountOption::Sync),
            "async" => parsed.mount_options.push(MountOption::Async),
            "dirsync" => parsed.mount_options.push(MountOption::DirSync),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "unknown mount option {option:?}; known: ro, rw, allow_other, allow_root, \
                         auto_unmount, uid=N, gid=N, nodev, nosuid, [no]exec, [no]atime, \
                         sync, async, dirsync (and fstab-only ones such as noauto, _netdev)"
                    ),
                ))
            }
        }
    }
    Ok(parsed)
}

/// Check `-o` options without mounting (the mount helper and `akvfs mount` refuse bad ones
/// before starting anything).
pub fn check_options(extra: &[String]) -> io::Result<()> {
    parse_extra_options(extra).map(|_| ())
}

/// A running mount. Dropping it unmounts (best effort); prefer [`MountHandle::unmount`].
pub struct MountHandle {
    fs: Arc<ProjectedFs>,
    runtime: Handle,
    mountpoint: PathBuf,
    /// The kernel mount we made; `None` once unmounted.
    kernel: Mutex<Option<kernel::KernelMount>>,
    session: Mutex<Option<JoinHandle<io::Result<()>>>>,
    ended: watch::Receiver<bool>,
}

/// Mount `store` at `options.mountpoint`. Call it outside the runtime's async context (a plain
/// thread or `spawn_blocking`): the FUSE handshake blocks.
///
/// A dead mount left at the mountpoint by a killed akvfs is detached first; a live akvfs mount
/// there is refused ([`prepare_mountpoint`]). Any failure once the kernel mount exists unmounts
/// it again, so a failed start leaves nothing mounted.
pub fn mount(
    store: Arc<dyn SecretStore>,
    runtime: Handle,
    mut fs_config: FsConfig,
    options: MountOptions,
) -> io::Result<MountHandle> {
    let parsed = parse_extra_options(&options.extra_options)?;
    fs_config.read_only |= parsed.read_only;
    if let Some(uid) = parsed.uid {
        fs_config.uid = uid;
    }
    if let Some(gid) = parsed.gid {
        fs_config.gid = gid;
    }
    let mut mount_options = vec![
        MountOption::FSName("akvfs".into()),
        MountOption::Subtype("akvfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    mount_options.extend(parsed.mount_options.iter().cloned());
    mount_options.push(if fs_config.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    let acl = if options.allow_other || parsed.allow_other {
        SessionACL::All
    } else if options.allow_root || parsed.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    if mount_options.contains(&MountOption::AutoUnmount) && acl == SessionACL::Owner {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "auto_unmount needs allow_other or allow_root (fusermount3 requires it)",
        ));
    }
    let mut config = Config::default();
    config.acl = acl;
    config.n_threads = Some(options.worker_threads.max(1));
    // Each worker reads its own /dev/fuse clone: no contention on one descriptor.
    config.clone_fd = true;

    let point = prepare_mountpoint(&options.mountpoint)?;

    let allow_other = acl == SessionACL::All;
    let refresh = fs_config.refresh;
    let vault = SecretFs::new(store, fs_config);
    if let Some(interval) = refresh {
        vault.start_refresh(&runtime, interval);
    }
    if let Some(command) = options.on_change {
        let hook = HookRunner::start(&runtime, "--on-change".into(), HookAction::Command(command));
        vault.set_change_listener(Box::new(move |names| hook.trigger(&names.join(" "))));
    }
    let fs = match options.projection {
        None => ProjectedFs::vault_only(vault),
        Some((path, projection)) => ProjectedFs::projected(vault, projection, path, allow_other),
    };
    fs.start_watching(&runtime);
    let notifications = Arc::new(OnceLock::new());
    fs.set_notifier(Arc::new(QueuedNotifier::start(notifications.clone())?));
    let adapter = FuseAdapter::new(fs.clone(), runtime.clone());
    let (device, kernel) = kernel::mount(&point, &mount_options, acl != SessionACL::Owner)?;
    // From here on the mount exists: any failure unmounts it before returning.
    let started = (|| -> io::Result<_> {
        let session = fuser::Session::from_fd(adapter, device, acl, config)?;
        let _ = notifications.set(session.notifier());
        let (ended_tx, ended) = watch::channel(false);
        let session = std::thread::Builder::new()
            .name("akvfs-session".into())
            .spawn(move || {
                let result = session.run();
                let _ = ended_tx.send(true);
                result
            })?;
        Ok((session, ended))
    })();
    let (session, ended) = match started {
        Ok(started) => started,
        Err(error) => {
            if let Err(unmount_error) = kernel.unmount(true) {
                warn!(mountpoint = %options.mountpoint.display(), %unmount_error, "cannot unmount after a failed start");
            }
            return Err(io::Error::new(
                error.kind(),
                format!(
                    "cannot start the FUSE session on {}: {error}",
                    options.mountpoint.display()
                ),
            ));
        }
    };
    info!(mountpoint = %options.mountpoint.display(), "mounted");
    Ok(MountHandle {
        fs,
        runtime,
        mountpoint: options.mountpoint,
        kernel: Mutex::new(Some(kernel)),
        session: Mutex::new(Some(session)),
        ended,
    })
}

/// Make `mountpoint` ready for a new akvfs mount and return it as mountinfo spells it.
///
/// - A dead FUSE mount there (its daemon killed: "Transport endpoint is not connected") is
///   detached, layer by layer. Dead is what the kernel says when asked something it cannot
///   answer from its caches (`statfs`): a `stat` keeps answering from cached attributes for
///   as long as their TTL runs after the daemon died.
/// - A live akvfs mount there is refused (AlreadyExists), naming the mountpoint: mounting on
///   top would hide it and leave two daemons behind one path.
/// - A FUSE mount that does not answer within 5 s is refused too.
/// - Anything else (a plain directory, tmpfs, another live filesystem) is mounted over, as
///   mount(8) does.
pub fn prepare_mountpoint(mountpoint: &Path) -> io::Result<PathBuf> {
    let point = kernel::mountinfo_path(mountpoint)?;
    // Bounded: each pass removes one dead layer.
    for _ in 0..32 {
        let Some(top) = kernel::top_mount(&point)? else {
            return Ok(point);
        };
        if !top.is_fuse() {
            return Ok(point);
        }
        match kernel::probe(&point) {
            kernel::Liveness::Dead => {
                warn!(mountpoint = %mountpoint.display(), kind = %top.kind, "found a dead mount (its daemon is gone); detaching it");
                kernel::unmount_top(&point, true).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "{} holds a dead mount (its daemon is gone) that cannot be detached: \
                             {e}; run `fusermount3 -uz {}` (or `umount -l` as root)",
                            mountpoint.display(),
                            mountpoint.display()
                        ),
                    )
                })?;
            }
            kernel::Liveness::Live if top.is_akvfs() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} is already an akvfs mount with a running daemon; unmount it first \
                         (`akvfs unmount {}`) or choose another directory",
                        mountpoint.display(),
                        mountpoint.display()
                    ),
                ));
            }
            kernel::Liveness::Live => return Ok(point),
            kernel::Liveness::Hung => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} is a {} mount whose daemon does not answer; stop it or detach the \
                         mount (`fusermount3 -uz {}`) first",
                        mountpoint.display(),
                        top.kind,
                        mountpoint.display()
                    ),
                ));
            }
        }
    }
    Err(io::Error::other(format!(
        "{}: too many dead mounts stacked here",
        mountpoint.display()
    )))
}

/// The filesystem type of the mount at `mountpoint` (as `/proc/self/mountinfo` says, e.g.
/// `fuse.akvfs`), or `None` when nothing is mounted there.
pub fn mounted_type(mountpoint: &Path) -> io::Result<Option<String>> {
    Ok(kernel::top_mount(mountpoint)?.map(|entry| entry.kind))
}

/// `akvfs unmount`: unmount the akvfs filesystem on top at `mountpoint` (one layer; its daemon
/// then commits nothing more and exits), or detach a dead one. Refuses other filesystems by
/// name.
pub fn unmount_mountpoint(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let path = kernel::mountinfo_path(mountpoint)?;
    let top = kernel::top_mount(&path)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a mountpoint", path.display()),
        )
    })?;
    if top.is_fuse() && kernel::probe(&path) == kernel::Liveness::Dead {
        info!(mountpoint = %path.display(), "detaching a dead mount (its daemon is gone)");
        return kernel::unmount_top(&path, true).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot detach {}: {e}", path.display()))
        });
    }
    if !top.is_akvfs() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a {} mount, not akvfs; use umount(8) for it",
                path.display(),
                top.kind
            ),
        ));
    }
    kernel::unmount_top(&path, lazy).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            io::Error::new(
                e.kind(),
                format!(
                    "{} is busy (files open or a shell inside it); close them or use --lazy",
                    path.display()
                ),
            )
        } else {
            io::Error::new(e.kind(), format!("cannot unmount {}: {e}", path.display()))
        }
    })
}

/// Run `future` to completion from any context, including inside the runtime (on a helper
/// thread, since `block_on` must not run on a runtime thread).
fn block_on_anywhere<T: Send>(runtime: &Handle, future: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(future))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl MountHandle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// SIGHUP: re-read the config (with `--config`), forget every cached value and listing.
    pub fn reload(&self) {
        self.fs.reload();
    }

    /// Commit every open handle with uncommitted writes now (before unmounting).
    pub fn commit_pending(&self) {
        let failures = block_on_anywhere(&self.runtime, self.fs.commit_pending());
        if failures > 0 {
            warn!(
                failures,
                "some pending writes could not be committed (see the errors above)"
            );
        }
    }

    /// Resolves when the filesystem got unmounted, by us or externally (`umount`,
    /// `fusermount3 -u`).
    pub async fn unmounted(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Unmount and wait for the session threads to finish.
    pub fn unmount(self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&self) -> io::Result<()> {
        let Some(session) = self.session.lock().take() else {
            return Ok(());
        };
        let kernel = self.kernel.lock().take();
        // A session that already ended cleanly was unmounted by someone else (`akvfs
        // unmount`, `umount`): its mount is gone, and whatever is mounted there now is not
        // ours. One that ended in an error (it could not start its workers, say) left its
        // mount behind, dead: that one is unmounted like a live one.
        let ended = if session.is_finished() {
            let ended = join(session)?;
            if ended.is_err() {
                if let Some(kernel) = kernel {
                    self.unmount_kernel(&kernel)?;
                }
            }
            ended
        } else {
            if let Some(kernel) = kernel {
                self.unmount_kernel(&kernel)?;
            }
            // The session ends once the kernel lets go; do not hang forever on a lazy unmount.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !session.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !session.is_finished() {
                warn!(mountpoint = %self.mountpoint.display(), "FUSE session still busy after unmount; leaving it");
                return Ok(());
            }
            join(session)?
        };
        match ended {
            Ok(()) => {}
            // After a lazy detach the kernel may abort the connection when the last open
            // file closes: that is the end we asked for, not a failure.
            Err(error) if error.raw_os_error() == Some(libc::ECONNABORTED) => {
                debug!(mountpoint = %self.mountpoint.display(), "FUSE connection aborted after unmount");
            }
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("the FUSE session failed: {error}"),
                ))
            }
        }
        info!(mountpoint = %self.mountpoint.display(), "unmounted");
        Ok(())
    }

    /// Unmount our kernel mount; when files are open (EBUSY), detach it lazily.
    fn unmount_kernel(&self, kernel: &kernel::KernelMount) -> io::Result<()> {
        match kernel.unmount(false) {
            Ok(_) => Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                info!(mountpoint = %self.mountpoint.display(), "files are still open; detaching the mount lazily");
                kernel.unmount(true).map(|_| ())
            }
            Err(error) => Err(error),
        }
    }
}

fn join(session: JoinHandle<io::Result<()>>) -> io::Result<io::Result<()>> {
    session
        .join()
        .map_err(|_| io::Error::other("the FUSE session thread panicked"))
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(error) = self.unmount_inner() {
            warn!(mountpoint = %self.mountpoint.display(), %error, "unmount on drop failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_options_parse() {
        let parsed = parse_extra_options(&[
            "ro,allow_other".into(),
            "uid=1000,noauto,x-systemd.automount".into(),
        ])
        .expect("parse");
        assert!(parsed.read_only && parsed.allow_other);
        assert_eq!(parsed.uid, Some(1000));
        assert!(parse_extra_options(&["bogus".into()]).is_err());
        assert!(parse_extra_options(&["uid=me".into()]).is_err());
    }

    #[test]
    fn the_root_is_a_mountpoint() {
        assert!(mounted_type(Path::new("/")).expect("mountinfo").is_some());
    }
}

/// Real mounts of the in-memory store (root and /dev/fuse needed; skipped otherwise).
#[cfg(test)]
mod mount_tests {
    use super::*;
    use crate::fs::memory_store::MemoryStore;
    use std::io::Write;

    struct Mounted {
        store: Arc<MemoryStore>,
        handle: Option<MountHandle>,
        _runtime: tokio::runtime::Runtime,
        dir: tempfile::TempDir,
    }

    impl Drop for Mounted {
        fn drop(&mut self) {
            if let Some(handle) = self.handle.take() {
                let _ = handle.unmount();
            }
        }
    }

    fn can_mount() -> bool {
        // SAFETY: geteuid has no preconditions.
        let possible = Path::new("/dev/fuse").exists() && unsafe { libc::geteuid() } == 0;
        if !possible {
            skip("needs root and /dev/fuse");
        }
        possible
    }

    /// A test that cannot run here says so; under `scripts/test` (AKVFS_REQUIRE_FUSE) it fails
    /// instead, so CI never passes a test that did not run.
    fn skip(reason: &str) {
        assert!(
            std::env::var_os("AKVFS_REQUIRE_FUSE").is_none(),
            "cannot run: {reason}"
        );
        eprintln!("skipped: {reason}");
    }

    fn mounted(config: FsConfig) -> Option<Mounted> {
        mounted_with_threads(config, 8)
    }

    fn mounted_with_threads(config: FsConfig, worker_threads: usize) -> Option<Mounted> {
        if !can_mount() {
            return None;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let handle = mount(
            store.clone(),
            runtime.handle().clone(),
            config,
            MountOptions {
                worker_threads,
                ..MountOptions::new(dir.path())
            },
        )
        .expect("mount");
        Some(Mounted {
            store,
            handle: Some(handle),
            _runtime: runtime,
            dir,
        })
    }

    #[test]
    fn echo_cat_ls_rm_through_the_kernel() {
        let Some(m) = mounted(FsConfig::default()) else {
            return;
        };
        let root = m.dir.path();
        m.store.seed("existing", "hello", &[]);
        assert_eq!(
            std::fs::read_to_string(root.join("existing")).expect("cat"),
            "hello"
        );
        assert_eq!(
            std::fs::metadata(root.join("EXISTING"))
                .expect("stat")
                .len(),
            5
        );

        std::fs::write(root.join("new-one"), "x\n").expect("echo");
        assert_eq!(m.store.calls("set"), 1);
        assert_eq!(
            std::fs::read_to_string(root.join("new-one")).expect("cat"),
            "x\n"
        );

        // A 20 KiB value in 4 KiB chunks is one set.
        let mut file = std::fs::File::create(root.join("chunked")).expect("create");
        for _ in 0..5 {
            file.write_all(&[b'a'; 4096]).expect("write");
        }
        drop(file);
        assert_eq!(m.store.calls("set"), 2);
        assert_eq!(
            std::fs::metadata(root.join("chunked")).expect("stat").len(),
            20 * 1024
        );

        let mut names: Vec<String> = std::fs::read_dir(root)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".certificates",
                ".deleted",
                ".versions",
                "chunked",
                "existing",
                "new-one"
            ]
        );

        let error = std::fs::write(root.join("bad_name.txt"), "x").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
        let error = std::fs::write(root.join("big"), vec![b'a'; 25_601]).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EFBIG));

        std::fs::remove_file(root.join("existing")).expect("rm");
        assert!(std::fs::metadata(root.join("existing")).is_err());
        assert_eq!(m.store.calls("delete"), 1);
        assert!(root.join(".deleted/existing").exists());
        assert_eq!(
            std::fs::create_dir(root.join("dir"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EPERM)
        );
    }

    #[test]
    fn overwrite_is_seen_by_the_next_reader_with_the_right_size() {
        let Some(m) = mounted(FsConfig::default()) else {
            return;
        };
        let path = m.dir.path().join("s");
        m.store.seed("s", "a fairly long first value", &[]);
        assert_eq!(
            std::fs::read_to_string(&path).expect("cat"),
            "a fairly long first value"
        );
        std::fs::write(&path, "short").expect("overwrite");
        assert_eq!(std::fs::read_to_string(&path).expect("cat"), "short");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 5);
        let mut append = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open append");
        append.write_all(b"+more").expect("append");
        drop(append);
        assert_eq!(std::fs::read_to_string(&path).expect("cat"), "short+more");
        assert_eq!(m.store.current("s").expect("set").0, "short+more");
    }

    #[test]
    fn a_change_by_another_client_is_seen_after_the_ttl_with_its_new_size() {
        let Some(m) = mounted(FsConfig {
            cache_ttl: Duration::from_millis(300),
            ..FsConfig::default()
        }) else {
            return;
        };
        let path = m.dir.path().join("s");
        m.store.seed("s", "v1", &[]);
        assert_eq!(std::fs::read_to_string(&path).expect("cat"), "v1");
        assert_eq!(std::fs::read_to_string(&path).expect("cat"), "v1");
        let held = std::fs::File::open(&path).expect("open and hold");
        m.store.seed("s", "version two, longer", &[]);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            std::fs::read_to_string(&path).expect("cat"),
            "version two, longer",
            "new content, full length, no stale pages"
        );
        drop(held);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 19);
    }

    #[test]
    fn vim_edits_a_secret_with_one_new_version_and_no_delete() {
        let Some(m) = mounted(FsConfig::default()) else {
            return;
        };
        if std::process::Command::new("vim")
            .arg("--version")
            .output()
            .is_err()
        {
            skip("vim is not installed (`apt-get install vim`)");
            return;
        }
        m.store.seed("conf", "old value", &[]);
        let status = std::process::Command::new("vim")
            .args(["-E", "-s", "-N", "-u", "DEFAULTS", "-i", "NONE"])
            .args(["-c", "%s/old/new/", "-c", "wq"])
            .arg(m.dir.path().join("conf"))
            .status()
            .expect("run vim");
        assert!(status.success(), "vim failed: {status}");
        assert_eq!(m.store.current("conf").expect("conf").0, "new value\n");
        assert_eq!(m.store.calls("set"), 1, "one new version");
        assert_eq!(m.store.calls("delete"), 0, "nothing deleted");
        let names: Vec<String> = std::fs::read_dir(m.dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with('~') || n.ends_with(".swp")),
            "{names:?}"
        );
    }

    #[test]
    fn an_external_unmount_resolves_unmounted_and_pending_writes_commit_from_async_code() {
        let Some(mut m) = mounted(FsConfig::default()) else {
            return;
        };
        let path = m.dir.path().join("pending");
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(b"not closed yet").expect("write");
        let handle = m.handle.take().expect("handle");
        // The app calls these from async code (signal handling).
        m._runtime.block_on(async {
            handle.commit_pending();
        });
        assert_eq!(
            m.store.current("pending").expect("committed").0,
            "not closed yet"
        );
        drop(file);
        assert_eq!(
            m.store.calls("set"),
            1,
            "close after commit_pending sets nothing more"
        );
        let status = std::process::Command::new("umount")
            .arg(m.dir.path())
            .status()
            .expect("umount");
        assert!(status.success());
        m._runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), handle.unmounted())
                .await
                .expect("unmounted() resolves after an external umount");
        });
        handle
            .unmount()
            .expect("unmount after external unmount is fine");
    }

    /// A FUSE mount whose daemon is gone, as after `kill -9`: mounted, then its /dev/fuse fd
    /// closed.
    fn make_dead_mount(dir: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let Ok(dev) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
        else {
            return false;
        };
        let data = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
        let (Ok(source), Ok(target), Ok(kind), Ok(data)) = (
            std::ffi::CString::new("akvfs-dead"),
            std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()),
            std::ffi::CString::new("fuse"),
            std::ffi::CString::new(data),
        ) else {
            return false;
        };
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let mounted = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                kind.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        } == 0;
        drop(dev);
        mounted
    }

    #[test]
    fn a_dead_mount_left_by_a_killed_daemon_is_recovered() {
        if !can_mount() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        if !make_dead_mount(dir.path()) {
            skip("could not create a dead mount");
            return;
        }
        let error = std::fs::metadata(dir.path()).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOTCONN));
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let store = Arc::new(MemoryStore::new());
        store.seed("s", "v", &[]);
        let handle = mount(
            store,
            runtime.handle().clone(),
            FsConfig::default(),
            MountOptions::new(dir.path()),
        )
        .expect("mount over the dead one");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("s")).expect("cat"),
            "v"
        );
        handle.unmount().expect("unmount");
    }

    #[test]
    fn readers_never_see_a_partial_value_while_a_writer_is_busy() {
        let Some(m) = mounted(FsConfig::default()) else {
            return;
        };
        let path = m.dir.path().join("s");
        let old = "x".repeat(5000);
        m.store.seed("s", &old, &[]);
        assert_eq!(std::fs::read_to_string(&path).expect("cat"), old);
        let mut writer = std::fs::File::create(&path).expect("open O_TRUNC");
        assert_eq!(
            std::fs::read_to_string(&path).expect("cat during truncate"),
            old
        );
        writer.write_all(b"new").expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("cat during write"),
            old
        );
        writer.write_all(&[b'y'; 9000]).expect("write more");
        assert_eq!(
            std::fs::read_to_string(&path).expect("cat during write"),
            old
        );
        drop(writer);
        let new = std::fs::read_to_string(&path).expect("cat after close");
        assert_eq!(new.len(), 9003);
        assert!(new.starts_with("newyyy"));
    }

    #[test]
    fn a_slow_secret_never_blocks_reads_of_other_secrets() {
        let Some(m) = mounted_with_threads(FsConfig::default(), 2) else {
            return;
        };
        m.store.seed("slow", "s", &[]);
        m.store.seed("fast", "f", &[]);
        m.store.set_slow_secret("slow", Duration::from_secs(2));
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let path = m.dir.path().join("slow");
                std::thread::spawn(move || std::fs::read_to_string(path))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let started = std::time::Instant::now();
        assert_eq!(
            std::fs::read_to_string(m.dir.path().join("fast")).expect("cat fast"),
            "f"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "blocked behind the slow secret: {:?}",
            started.elapsed()
        );
        for reader in readers {
            assert_eq!(reader.join().expect("join").expect("cat slow"), "s");
        }
        assert_eq!(m.store.calls("get"), 2, "8 slow readers shared one get");
    }

    #[test]
    fn mv_copies_a_secret_to_a_new_name_and_deletes_the_old_one() {
        let Some(m) = mounted(FsConfig::default()) else {
            return;
        };
        m.store.seed("a", "value", &[("k", "v")]);
        std::fs::rename(m.dir.path().join("a"), m.dir.path().join("b")).expect("mv");
        assert_eq!(
            std::fs::read_to_string(m.dir.path().join("b")).expect("cat"),
            "value"
        );
        assert!(!m.dir.path().join("a").exists());
        assert_eq!(m.store.calls("set"), 1);
        assert_eq!(m.store.calls("delete"), 1);
    }

    #[test]
    fn extended_attributes_and_recovery_through_the_kernel() {
        let Some(m) = mounted(FsConfig::default()) else {
            return;
        };
        m.store.seed("s", "v", &[("env", "prod")]);
        let path = std::ffi::CString::new(m.dir.path().join("s").as_os_str().as_encoded_bytes())
            .expect("path");
        let get = |attribute: &str| -> Option<String> {
            let attribute = std::ffi::CString::new(attribute).expect("name");
            let mut buffer = [0u8; 256];
            // SAFETY: valid C strings and a buffer of the given length.
            let n = unsafe {
                libc::getxattr(
                    path.as_ptr(),
                    attribute.as_ptr(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                )
            };
            usize::try_from(n)
                .ok()
                .map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned())
        };
        assert_eq!(get("user.akv.tags.env").as_deref(), Some("prod"));
        assert_eq!(get("user.akv.enabled").as_deref(), Some("true"));
        assert_eq!(get("user.akv.nope"), None);
        let attribute = std::ffi::CString::new("user.akv.tags.team").expect("name");
        // SAFETY: valid C strings and a value of the given length.
        let set = unsafe {
            libc::setxattr(
                path.as_ptr(),
                attribute.as_ptr(),
                b"blue".as_ptr().cast(),
                4,
                0,
            )
        };
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
        let tags = m.store.current("s").expect("s").1.expect("tags");
        assert_eq!(tags.get("team").map(String::as_str), Some("blue"));
        assert_eq!(m.store.calls("set"), 0, "no new version");

        std::fs::remove_file(m.dir.path().join("s")).expect("rm");
        std::fs::rename(m.dir.path().join(".deleted/s"), m.dir.path().join("s"))
            .expect("mv .deleted/s s");
        assert_eq!(m.store.calls("recover"), 1);
        assert_eq!(
            std::fs::read_to_string(m.dir.path().join("s")).expect("cat"),
            "v"
        );
    }

    #[test]
    fn ls_long_costs_one_get_per_secret_fetched_concurrently() {
        let Some(m) = mounted(FsConfig::default()) else {
            return;
        };
        for i in 0..40 {
            m.store.seed(&format!("s{i:02}"), &"v".repeat(i), &[]);
        }
        m.store.set_get_delay(Duration::from_millis(20));
        let started = std::time::Instant::now();
        let output = std::process::Command::new("ls")
            .args(["-l", "--color=never"])
            .current_dir(m.dir.path())
            .output()
            .expect("ls -l");
        let elapsed = started.elapsed();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.lines()
                .any(|l| l.contains(" 39 ") && l.ends_with("s39")),
            "{text}"
        );
        assert_eq!(m.store.calls("get"), 40);
        assert!(elapsed < Duration::from_millis(40 * 20 / 2), "{elapsed:?}");
        // A second ls -l inside the TTL costs nothing.
        std::process::Command::new("ls")
            .arg("-l")
            .current_dir(m.dir.path())
            .output()
            .expect("ls -l");
        assert_eq!(m.store.calls("get"), 40);
    }

    #[test]
    fn drop_caches_shows_another_clients_change_at_once() {
        let Some(m) = mounted(FsConfig::default()) else {
            return;
        };
        let path = m.dir.path().join("s");
        m.store.seed("s", "first", &[]);
        assert_eq!(std::fs::read_to_string(&path).expect("cat"), "first");
        m.store.seed("s", "second, longer", &[]);
        assert_eq!(std::fs::read_to_string(&path).expect("cached"), "first");
        m.handle.as_ref().expect("handle").reload();
        // The kernel's invalidation is queued to its own thread.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            std::fs::read_to_string(&path).expect("after SIGHUP"),
            "second, longer"
        );
    }

    #[test]
    fn disabled_secrets_are_listed_with_mode_0000_and_refuse_reads_even_for_root() {
        let Some(m) = mounted(FsConfig::default()) else {
            return;
        };
        m.store.seed("off", "v", &[]);
        m.store.disable("off");
        let path = m.dir.path().join("off");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0);
        let error = std::fs::read_to_string(&path).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn unmount_with_a_file_open_detaches_and_finishes_when_it_closes() {
        let Some(mut m) = mounted(FsConfig::default()) else {
            return;
        };
        m.store.seed("s", "v", &[]);
        let held = std::fs::File::open(m.dir.path().join("s")).expect("open");
        let handle = m.handle.take().expect("handle");
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let started = std::time::Instant::now();
        handle.unmount().expect("unmount");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        closer.join().expect("closer");
        assert!(!m.dir.path().join("s").exists(), "no longer mounted");
    }

    #[test]
    fn read_only_mounts_answer_erofs() {
        let Some(m) = mounted(FsConfig {
            read_only: true,
            ..FsConfig::default()
        }) else {
            return;
        };
        m.store.seed("s", "v", &[]);
        let error = std::fs::write(m.dir.path().join("s"), "x").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EROFS));
        assert_eq!(
            std::fs::read_to_string(m.dir.path().join("s")).expect("cat"),
            "v"
        );
    }
}
