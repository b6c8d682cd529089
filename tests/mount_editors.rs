//! Editors save a secret with exactly one new version, no deletion, and no scratch name in the
//! vault (SPEC §3.7): real `vim` with its default settings (write-test file `4913`, backup
//! `NAME~`, swap `.NAME.swp`) and real `nano` driven through tmux, on real mounts.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use akvfs::vault::SecretStore;
use common::{need_tool, sh_ok, LocalMount};

/// What the vault holds besides the secret: names (live and deleted) other than `name`.
fn other_names_in_the_vault(m: &LocalMount, name: &str) -> Vec<String> {
    let client = m.other_client();
    let live = m
        .block_on(client.list_properties_of_secrets())
        .expect("list");
    let deleted = m
        .block_on(client.list_deleted_secrets())
        .expect("list deleted");
    live.iter()
        .filter_map(|item| item.id.clone())
        .chain(deleted.iter().filter_map(|item| item.item.id.clone()))
        .filter(|id| !id.ends_with(&format!("/{name}")))
        .collect()
}

fn assert_one_clean_save(m: &LocalMount, name: &str, expected: &str) {
    assert_eq!(m.other_get(name), expected, "the vault holds the new value");
    assert_eq!(
        sh_ok(&m.mountpoint, &format!("cat {name}")),
        expected,
        "the mount shows it"
    );
    assert_eq!(m.calls("set_secret"), 1, "exactly one new version");
    assert_eq!(m.calls("delete_secret"), 0, "nothing deleted");
    let versions = m
        .block_on(m.other_client().list_properties_of_secret_versions(name))
        .expect("versions");
    assert_eq!(versions.len(), 2, "the old version and the new one");
    let stray = other_names_in_the_vault(m, name);
    assert!(
        stray.is_empty(),
        "scratch names reached the vault: {stray:?}"
    );
    let listed = sh_ok(&m.mountpoint, "ls -A");
    assert_eq!(
        listed
            .lines()
            .filter(|l| !l.starts_with('.'))
            .collect::<Vec<_>>(),
        [name],
        "{listed}"
    );
}

/// A HOME without any editor configuration, so only the editors' defaults apply.
fn clean_home(m: &LocalMount) -> std::path::PathBuf {
    let home = m.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    home
}

fn run_vim(m: &LocalMount, settings: &[&str]) {
    let home = clean_home(m);
    let mut command = Command::new("vim");
    for setting in settings {
        command.args(["-c", setting]);
    }
    let out = command
        .args(["-c", "s/old/new/", "-c", "wq"])
        .arg(m.path("NAME"))
        .env("HOME", &home)
        .env("TERM", "xterm")
        .env_remove("VIMINIT")
        .env_remove("EXINIT")
        .current_dir(&m.mountpoint)
        .stdin(Stdio::null())
        .output()
        .expect("run vim");
    assert!(
        out.status.success(),
        "vim failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn vim_s_old_new_wq_saves_one_new_version_and_deletes_nothing() {
    need_tool("vim", "vim");
    let m = LocalMount::start(&[]);
    m.other_set("NAME", "old value\n");
    m.reset_counters();
    run_vim(&m, &[]);
    assert_one_clean_save(&m, "NAME", "new value\n");
}

/// Outside /tmp (where a real mount lives, e.g. /mnt/vault) vim's defaults make a backup on
/// save: write-test file `4913`, rename `NAME` to `NAME~`, write a new `NAME`, remove `NAME~`.
/// The test mount is under /tmp, which the default `backupskip` exempts, so only that one
/// setting is cleared. Still one version and no deletion.
#[test]
fn vim_default_backup_by_rename_saves_one_new_version_and_deletes_nothing() {
    need_tool("vim", "vim");
    let m = LocalMount::start(&[]);
    m.other_set("NAME", "old value\n");
    m.reset_counters();
    run_vim(&m, &["set backupskip="]);
    assert_one_clean_save(&m, "NAME", "new value\n");
}

/// tmux on a private socket, so nothing else on the machine is touched.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.socket);
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.command()
            .args(["has-session", "-t", "edit"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Wait (bounded) until the screen shows `text`.
    fn wait_for_screen(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.run(&["capture-pane", "-p", "-t", "edit"]);
            if screen.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn scripted_nano_save_through_tmux_send_keys_saves_one_new_version_and_deletes_nothing() {
    need_tool("nano", "nano");
    need_tool("tmux", "tmux");
    let m = LocalMount::start(&[]);
    m.other_set("NAME", "old value\n");
    let home = clean_home(&m);
    m.reset_counters();
    let tmux = Tmux {
        socket: m.dir.path().join("tmux.sock"),
    };
    let script = format!(
        "cd {} && HOME={} TERM=xterm exec nano NAME",
        shell_quote(&m.mountpoint),
        shell_quote(&home)
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "edit",
        "-x",
        "80",
        "-y",
        "24",
        &script,
    ]);
    tmux.wait_for_screen("old value");
    // Cut the line, type the new one (nano ends the file with a newline), write out (^O,
    // Enter), exit (^X).
    tmux.run(&["send-keys", "-t", "edit", "C-k"]);
    tmux.run(&["send-keys", "-t", "edit", "-l", "new value"]);
    tmux.run(&["send-keys", "-t", "edit", "C-o"]);
    tmux.wait_for_screen("File Name to Write");
    tmux.run(&["send-keys", "-t", "edit", "Enter"]);
    tmux.wait_for_screen("Wrote");
    tmux.run(&["send-keys", "-t", "edit", "C-x"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tmux.alive() {
        assert!(Instant::now() < deadline, "nano did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_one_clean_save(&m, "NAME", "new value\n");
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
