//! Mounting like a system filesystem (issue 5): `--read-only`, ownership and modes, the
//! `mount.akvfs` helper from an fstab-style line (directly and through mount(8)), systemd
//! readiness, `akvfs unmount`, SIGHUP, and recovery after `kill -9`.

mod common;

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use akvfs::local_vault::{AdminClient, LocalVaultEnv};
use akvfs::vault::SecretStore;
use common::{
    akvfs_bin, as_user, client_for, is_mountpoint, need_tool, sh, sh_err, sh_ok, LocalMount,
};

fn assert_erofs(dir: &Path, script: &str) {
    let error = sh_err(dir, script);
    assert!(
        error.contains("Read-only file system"),
        "`{script}`: {error}"
    );
}

#[test]
fn read_only_refuses_echo_rm_mv_setfattr_touch_with_erofs() {
    need_tool("setfattr", "attr");
    let m = LocalMount::start(&["--read-only"]);
    let dir = &m.mountpoint;
    m.other_set("kept", "value");
    assert_eq!(sh_ok(dir, "cat kept"), "value", "reads still work");
    m.reset_counters();
    assert_erofs(dir, "echo x > kept");
    assert_erofs(dir, "echo x > new");
    assert_erofs(dir, "rm kept");
    assert_erofs(dir, "mv kept moved");
    assert_erofs(dir, "setfattr -n user.akv.tags.env -v prod kept");
    assert_erofs(dir, "touch kept");
    assert_erofs(dir, "touch new");
    let c = m.counters();
    for operation in [
        "set_secret",
        "update_secret",
        "delete_secret",
        "recover_deleted_secret",
    ] {
        assert_eq!(c.count(operation), 0, "{operation} reached the vault");
    }
    assert_eq!(m.other_get("kept"), "value");
}

#[test]
fn uid_gid_file_mode_dir_mode_and_the_same_as_o_options() {
    let flags = LocalMount::start(&[
        "--uid",
        "1000",
        "--gid",
        "1001",
        "--file-mode",
        "0640",
        "--dir-mode",
        "0750",
    ]);
    let options = LocalMount::start(&["-o", "uid=1000,gid=1001,file_mode=0640,dir_mode=0750"]);
    for m in [&flags, &options] {
        sh_ok(&m.mountpoint, "printf v > s");
        assert_eq!(
            sh_ok(&m.mountpoint, "stat -c '%u %g %a' . s .versions"),
            "1000 1001 750\n1000 1001 640\n1000 1001 550\n"
        );
    }
}

#[test]
fn sighup_drops_all_caches() {
    let m = LocalMount::start(&["--cache-ttl", "1h", "--list-ttl", "1h"]);
    let dir = &m.mountpoint;
    m.other_set("s", "first");
    assert_eq!(sh_ok(dir, "cat s"), "first");
    assert!(!sh_ok(dir, "ls").contains("later"));
    m.other_set("s", "second, longer");
    m.other_set("later", "x");
    assert_eq!(sh_ok(dir, "cat s"), "first", "cached for an hour");
    let pid = m.pid().expect("running") as i32;
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(pid, libc::SIGHUP);
    }
    // The signal is handled asynchronously: wait (bounded) for its effect.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sh_ok(dir, "cat s") != "second, longer" {
        assert!(Instant::now() < deadline, "SIGHUP did not drop the cache");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sh_ok(dir, "ls").contains("later"), "listing dropped too");
    assert!(m.log_text().contains("SIGHUP"));
}

/// `akvfs unmount DIR`.
fn akvfs_unmount(dir: &Path) -> Output {
    Command::new(akvfs_bin())
        .arg("unmount")
        .arg(dir)
        .output()
        .expect("akvfs unmount")
}

/// `akvfs unmount DIR` succeeds and DIR is no longer a mountpoint.
fn assert_unmounts(dir: &Path) {
    let out = akvfs_unmount(dir);
    assert!(
        out.status.success(),
        "akvfs unmount {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mountpoint(dir), "{} still mounted", dir.display());
}

#[test]
fn akvfs_unmount_unmounts_and_the_daemon_exits_zero() {
    let mut m = LocalMount::start(&[]);
    sh_ok(&m.mountpoint, "printf v > s");
    assert_unmounts(&m.mountpoint);
    let status = m.stop();
    assert!(
        status.success(),
        "the daemon exits 0 after an unmount: {status}"
    );

    let again = akvfs_unmount(&m.mountpoint);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not a mountpoint"));
    let other = akvfs_unmount(Path::new("/proc"));
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("not akvfs"));
}

/// A test directory with the helper symlinked as `mount.akvfs`, a mountpoint and a data dir.
struct HelperSetup {
    dir: tempfile::TempDir,
    helper: PathBuf,
    mountpoint: PathBuf,
    data: PathBuf,
}

impl HelperSetup {
    fn new() -> HelperSetup {
        let dir = tempfile::tempdir().expect("tempdir");
        let helper = dir.path().join("mount.akvfs");
        std::os::unix::fs::symlink(akvfs_bin(), &helper).expect("symlink mount.akvfs");
        let mountpoint = dir.path().join("vault");
        std::fs::create_dir(&mountpoint).expect("mkdir");
        let data = dir.path().join("data");
        HelperSetup {
            dir,
            helper,
            mountpoint,
            data,
        }
    }

    /// The fstab line an admin would write.
    fn fstab_line(&self, options: &str) -> String {
        format!(
            "local {} fuse.akvfs {options},data={},deletion_delay=300ms 0 0",
            self.mountpoint.display(),
            self.data.display()
        )
    }

    /// Run the helper as mount(8) would for `line`: `mount.akvfs SPEC DIR -o OPTIONS`.
    fn mount_line(&self, line: &str) -> Output {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[2], "fuse.akvfs");
        Command::new(&self.helper)
            .args([fields[0], fields[1], "-o", fields[3]])
            .stdin(Stdio::null())
            .output()
            .expect("run mount.akvfs")
    }

    fn env(&self) -> LocalVaultEnv {
        LocalVaultEnv::read_env_file(&self.data.join("env")).expect("env file")
    }

    /// The daemon serving this mount, found by its command line.
    fn daemon_pid(&self) -> Option<i32> {
        let wanted = self.mountpoint.as_os_str().as_encoded_bytes().to_vec();
        std::fs::read_dir("/proc").ok()?.find_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            (args.get(1) == Some(&b"mount".as_slice()) && args.contains(&wanted.as_slice()))
                .then_some(pid)
        })
    }
}

impl Drop for HelperSetup {
    fn drop(&mut self) {
        // Also detaches a dead mount (a failed kill -9 test), which is_mountpoint cannot see.
        let _ = Command::new(akvfs_bin())
            .args(["unmount", "--lazy"])
            .arg(&self.mountpoint)
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = self.daemon_pid() {
            // SAFETY: kill(2) of the daemon this test started.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn assert_ro_uid_1000_mount(setup: &HelperSetup) {
    let dir = &setup.mountpoint;
    assert!(is_mountpoint(dir), "the helper returned before mounting");
    let rt = runtime();
    let client = {
        let _guard = rt.enter();
        client_for(&setup.env())
    };
    rt.block_on(client.set_secret(
        "from-elsewhere",
        akvfs::vault::model::SecretSetParameters {
            value: "hello".into(),
            ..Default::default()
        },
    ))
    .expect("set through another client");
    assert_eq!(sh_ok(dir, "cat from-elsewhere"), "hello");
    assert_eq!(sh_ok(dir, "stat -c %u from-elsewhere ."), "1000\n1000\n");
    assert_erofs(dir, "echo x > from-elsewhere");
    assert_erofs(dir, "touch new");
}

#[test]
fn o_ro_uid_1000_through_the_mount_helper_from_an_fstab_style_line() {
    let setup = HelperSetup::new();
    let line = setup.fstab_line("ro,uid=1000,noauto,_netdev,x-systemd.automount");
    let out = setup.mount_line(&line);
    assert!(
        out.status.success(),
        "mount.akvfs failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ro_uid_1000_mount(&setup);

    let pid = setup.daemon_pid().expect("the daemon keeps serving");
    assert_unmounts(&setup.mountpoint);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists() && setup.daemon_pid() == Some(pid) {
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit after unmount"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_mount_helper_refuses_bad_options_by_name_and_reports_failures() {
    let setup = HelperSetup::new();
    let out = setup.mount_line(&setup.fstab_line("ro,bogus_option"));
    assert_eq!(out.status.code(), Some(1), "usage error for mount(8)");
    let out = Command::new(&setup.helper)
        .args(["local", "/nonexistent/dir", "-o"])
        .arg(format!("data={}", setup.data.display()))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(32), "mount failure for mount(8)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/dir"), "{stderr}");
    let out = Command::new(&setup.helper)
        .args(["local", "/nonexistent/dir", "-f"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "-f (fake) mounts nothing and succeeds"
    );
    let out = sh(setup.dir.path(), "./mount.akvfs local vault -o bogus");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bogus"), "{stderr}");
}

/// `/sbin/mount.fuse.akvfs` for the length of a test, removed after.
struct SbinHelper(PathBuf);

impl SbinHelper {
    fn install() -> SbinHelper {
        let path = PathBuf::from("/sbin/mount.fuse.akvfs");
        match std::fs::read_link(&path) {
            Ok(target) => assert_eq!(
                target,
                Path::new(akvfs_bin()),
                "{} exists and is not ours; remove it to run this test",
                path.display()
            ),
            Err(_) => std::os::unix::fs::symlink(akvfs_bin(), &path).expect("install the helper"),
        }
        SbinHelper(path)
    }
}

impl Drop for SbinHelper {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn mount_t_fstab_line_finds_sbin_mount_fuse_akvfs() {
    let setup = HelperSetup::new();
    let fstab = setup.dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# an fstab line\n{}\n",
            setup.fstab_line("ro,uid=1000,noauto")
        ),
    )
    .expect("write fstab");
    let helper = SbinHelper::install();
    let out = Command::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(&setup.mountpoint)
        .stdin(Stdio::null())
        .output()
        .expect("run mount");
    drop(helper);
    assert!(
        out.status.success(),
        "mount -T failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ro_uid_1000_mount(&setup);
    let out = Command::new("umount")
        .arg(&setup.mountpoint)
        .output()
        .expect("umount");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mountpoint(&setup.mountpoint));
}

#[test]
fn kill_9_then_mounting_again_on_the_same_dir_through_the_helper_works() {
    let setup = HelperSetup::new();
    let line = setup.fstab_line("rw");
    assert!(setup.mount_line(&line).status.success());
    sh_ok(&setup.mountpoint, "printf survives > kept");
    let pid = setup.daemon_pid().unwrap_or_else(|| {
        panic!(
            "daemon; ps:\n{}",
            sh_ok(setup.dir.path(), "ps -eo pid,args | grep [m]ount")
        )
    });
    // SAFETY: kill(2) of the daemon this test started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while setup.daemon_pid() == Some(pid) {
        assert!(Instant::now() < deadline, "kill -9 did not end the daemon");
        std::thread::sleep(Duration::from_millis(50));
    }
    let error = std::fs::metadata(&setup.mountpoint).expect_err("a dead mount");
    assert!(
        matches!(
            error.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED)
        ),
        "{error}"
    );

    let out = setup.mount_line(&line);
    assert!(
        out.status.success(),
        "mounting over the dead mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sh_ok(&setup.mountpoint, "cat kept"), "survives");
}

#[test]
fn systemd_notify_ready_1_arrives_only_after_the_mount_is_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("m");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let data = dir.path().join("data");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind NOTIFY_SOCKET");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let log = dir.path().join("akvfs.log");
    let mut child = Command::new(akvfs_bin())
        .arg("mount")
        .arg("local")
        .arg(&mountpoint)
        .arg("--data")
        .arg(&data)
        .arg("--log-file")
        .arg(&log)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn akvfs mount");
    let mut buffer = [0u8; 4096];
    let received = socket.recv(&mut buffer);
    let message = match received {
        Ok(n) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
        Err(error) if error.kind() == ErrorKind::WouldBlock => {
            let _ = child.kill();
            panic!(
                "no readiness notification; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Err(error) => panic!("recv: {error}"),
    };
    // At the moment READY=1 arrives: the vault was listed (the connection check), then mounted
    // and reachable through the kernel.
    assert!(message.lines().any(|l| l == "READY=1"), "{message}");
    assert!(message.contains("STATUS="), "{message}");
    assert!(is_mountpoint(&mountpoint), "READY=1 before the mount");
    let log_text = std::fs::read_to_string(&log).expect("log");
    let ready = log_text
        .find("mount reachable: ready")
        .expect("readiness is logged before READY=1");
    let mounted = log_text[..ready]
        .find("mounted")
        .expect("mounted before ready");
    assert!(
        log_text[..mounted].contains("the vault answered a listing"),
        "the vault was listed before mounting: {log_text}"
    );
    let env = LocalVaultEnv::read_env_file(&data.join("env")).expect("env");
    let rt = runtime();
    let admin = {
        let _guard = rt.enter();
        AdminClient::new(&env).expect("admin")
    };
    let counters = rt.block_on(admin.counters()).expect("counters");
    let lists = counters.count("list_secrets") - counters.count_status("list_secrets", 401);
    // Exactly the connection check's one-item listing: readiness costs no full listing (which
    // would be 400 calls for a 10,000-secret vault) and leaves the first `ls` to list afresh.
    assert_eq!(lists, 1, "the connection check only");

    // SIGTERM: STOPPING=1, then a clean exit.
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let n = socket.recv(&mut buffer).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buffer[..n]).contains("STOPPING=1"));
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert!(!is_mountpoint(&mountpoint));
}

/// `cat` as uid/gid 1000 (setpriv, util-linux).
fn cat_as_user_1000(path: &Path) -> Output {
    as_user("1000", "1000", "cat")
        .arg(path)
        .output()
        .expect("run setpriv")
}

#[test]
fn allow_other_lets_another_user_in_and_without_it_the_kernel_refuses() {
    use std::os::unix::fs::PermissionsExt;
    for (flags, other_may_read) in [
        (&["--file-mode", "0644", "--dir-mode", "0755"][..], false),
        (
            &["--file-mode", "0644", "--dir-mode", "0755", "--allow-other"][..],
            true,
        ),
        (
            &["-o", "allow_other,file_mode=0644,dir_mode=0755"][..],
            true,
        ),
    ] {
        let m = LocalMount::start(flags);
        // The test directory must be traversable by the other user.
        std::fs::set_permissions(m.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        m.other_set("s", "shared");
        let out = cat_as_user_1000(&m.path("s"));
        if other_may_read {
            assert!(
                out.status.success(),
                "{flags:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, b"shared");
        } else {
            assert!(!out.status.success(), "{flags:?}: another user read it");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
