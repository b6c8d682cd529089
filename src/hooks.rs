//! Change hooks (SPEC §9): `on_change = "CMD"` (run with `sh -c`) or `signal` + `pid_file`, run
//! after new contents are visible. Each hook has its own task: triggers within one second are
//! one run (debounced), runs never overlap, and each run's exit status and output are logged.
//! The command gets no secret: its environment is cleared down to `PATH`, `HOME`, `USER`,
//! `LOGNAME`, `LANG`, `LC_ALL`, `TZ` and `AKVFS_CHANGED` (what changed, by name), so a
//! credential in akvfs's own environment (`AZURE_CLIENT_SECRET`) never reaches it.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::projection::config::HookAction;

/// Triggers closer together than this are one run.
pub const DEBOUNCE: Duration = Duration::from_secs(1);
/// A command still running after this is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Output kept for the log, per stream.
const MAX_LOGGED_OUTPUT: usize = 4096;
/// Variables a hook inherits from akvfs.
const KEPT_ENV: [&str; 7] = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ"];

/// A hook, ready to be triggered. Dropping it ends its task after a run in progress.
pub struct HookRunner {
    triggers: mpsc::UnboundedSender<String>,
}

impl HookRunner {
    /// Start the task of hook `action`, named `owner` in the log (`group web-tls`).
    pub fn start(
        runtime: &tokio::runtime::Handle,
        owner: String,
        action: HookAction,
    ) -> HookRunner {
        let (triggers, mut received) = mpsc::unbounded_channel::<String>();
        runtime.spawn(async move {
            while let Some(first) = received.recv().await {
                let mut changed = vec![first];
                tokio::time::sleep(DEBOUNCE).await;
                while let Ok(more) = received.try_recv() {
                    changed.push(more);
                }
                changed.sort();
                changed.dedup();
                run(&owner, &action, &changed.join(" ")).await;
            }
        });
        HookRunner { triggers }
    }

    /// Something `changed` (names of files or secrets, never values): run the hook soon.
    pub fn trigger(&self, changed: &str) {
        let _ = self.triggers.send(changed.to_owned());
    }
}

async fn run(owner: &str, action: &HookAction, changed: &str) {
    match action {
        HookAction::Command(command) => run_command(owner, command, changed).await,
        HookAction::Signal {
            name,
            number,
            pid_file,
        } => {
            let pid = match tokio::fs::read_to_string(pid_file).await {
                Ok(text) => text.trim().parse::<i32>().ok().filter(|&pid| pid > 0),
                Err(error) => {
                    warn!(hook = owner, pid_file = %pid_file.display(), %error, "on change: cannot read the pid file");
                    return;
                }
            };
            let Some(pid) = pid else {
                warn!(hook = owner, pid_file = %pid_file.display(), "on change: the pid file holds no process id");
                return;
            };
            // SAFETY: kill has no memory effects; a bad pid is an error return.
            let sent = unsafe { libc::kill(pid, *number) };
            if sent == 0 {
                info!(
                    hook = owner,
                    pid,
                    signal = name.as_str(),
                    changed,
                    "on change: signal sent"
                );
            } else {
                let error = std::io::Error::last_os_error();
                warn!(hook = owner, pid, signal = name.as_str(), %error, "on change: cannot send the signal");
            }
        }
    }
}

async fn run_command(owner: &str, command: &str, changed: &str) {
    let mut child = Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .env_clear()
        .env("AKVFS_CHANGED", changed)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for name in KEPT_ENV {
        if let Some(value) = std::env::var_os(name) {
            child.env(name, value);
        }
    }
    let mut child = match child.spawn() {
        Ok(child) => child,
        Err(error) => {
            warn!(hook = owner, command, %error, "on change: cannot start the command");
            return;
        }
    };
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let outcome = tokio::time::timeout(COMMAND_TIMEOUT, async {
        let (out, err) = tokio::join!(read_some(stdout.as_mut()), read_some(stderr.as_mut()));
        (child.wait().await, out, err)
    })
    .await;
    match outcome {
        Ok((Ok(status), out, err)) if status.success() => {
            info!(hook = owner, command, changed, %status, stdout = %out, stderr = %err, "on change: command ran");
        }
        Ok((Ok(status), out, err)) => {
            warn!(hook = owner, command, changed, %status, stdout = %out, stderr = %err, "on change: command failed");
        }
        Ok((Err(error), _, _)) => {
            warn!(hook = owner, command, %error, "on change: cannot wait for the command");
        }
        Err(_) => {
            warn!(hook = owner, command, timeout = ?COMMAND_TIMEOUT, "on change: command timed out; killed");
        }
    }
}

/// A stream's output, bounded and lossily decoded for the log (the rest is read and dropped,
/// so the command never blocks on a full pipe).
async fn read_some<R: tokio::io::AsyncRead + Unpin>(stream: Option<&mut R>) -> String {
    let Some(stream) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_LOGGED_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn triggers_within_a_second_are_one_run_with_a_clean_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("runs");
        std::env::set_var("AKVFS_TEST_HOOK_SECRET", "do-not-pass-me");
        let runner = HookRunner::start(
            &tokio::runtime::Handle::current(),
            "test".into(),
            HookAction::Command(format!(
                "echo \"$AKVFS_CHANGED|${{AKVFS_TEST_HOOK_SECRET:-none}}\" >> {}",
                out.display()
            )),
        );
        runner.trigger("a");
        runner.trigger("b");
        runner.trigger("a");
        tokio::time::sleep(DEBOUNCE * 3).await;
        let runs = std::fs::read_to_string(&out).expect("ran");
        assert_eq!(
            runs, "a b|none\n",
            "one run, names only, no inherited variable"
        );
        runner.trigger("c");
        tokio::time::sleep(DEBOUNCE * 3).await;
        let runs = std::fs::read_to_string(&out).expect("ran");
        assert_eq!(runs, "a b|none\nc|none\n");
    }
}
