//! `mount.akvfs` / `mount.fuse.akvfs`: the binary invoked under a helper name speaks the
//! mount(8) helper interface (`SPEC DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`), so an fstab
//! line `local /mnt/vault fuse.akvfs ro,uid=1000,data=/var/lib/akvfs 0 0` works. It starts
//! `akvfs mount SPEC DIR -o OPTIONS` in its own session and returns once that daemon reported
//! readiness (the same `READY=1` datagram systemd gets, on a socket of our own), so `mount`
//! returns with the filesystem listed and serving while the daemon keeps running.
//!
//! Exit status as mount(8) expects: 0 mounted, 1 bad invocation, 32 mount failure.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{expand_mount_options, Cli, Command};

const USAGE: &str = "usage: mount.akvfs VAULT DIR [-sfnv] [-o OPTIONS]  (VAULT: local, a vault name or an https URL; OPTIONS: fstab options and any `akvfs mount` flag as name=value)";
const EXIT_USAGE: u8 = 1;
const EXIT_MOUNT_FAILED: u8 = 32;
/// How long a mount may take to become ready (credentials, first listing).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether the program was invoked under a mount helper name (argv[0]).
pub fn invoked_as_helper(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| name.starts_with("mount.") && name.ends_with("akvfs"))
}

/// What mount(8) asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct HelperArgs {
    spec: OsString,
    dir: OsString,
    options: Vec<String>,
    fake: bool,
    verbose: bool,
}

fn parse(args: &[OsString]) -> Result<HelperArgs, String> {
    let mut parsed = HelperArgs::default();
    let mut positionals = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-o" | "-N" | "-t" => {
                let value = iter
                    .next()
                    .ok_or_else(|| format!("{text} needs a value"))?
                    .to_string_lossy();
                match text.as_ref() {
                    "-o" => parsed.options.push(value.into_owned()),
                    "-N" => {
                        return Err("mounting in another namespace (-N) is not supported".into())
                    }
                    // The type (`fuse.akvfs`) is what got us called.
                    _ => {}
                }
            }
            flags if flags.starts_with("-o") => parsed.options.push(flags[2..].to_owned()),
            flags if flags.starts_with('-') && flags.len() > 1 => {
                for flag in flags[1..].chars() {
                    match flag {
                        'f' => parsed.fake = true,
                        'v' => parsed.verbose = true,
                        // No mtab to write; sloppy: unknown options are refused by name anyway.
                        'n' | 's' => {}
                        other => return Err(format!("unknown flag -{other}")),
                    }
                }
            }
            _ => positionals.push(arg.clone()),
        }
    }
    let [spec, dir] = <[OsString; 2]>::try_from(positionals)
        .map_err(|p| format!("expected VAULT and DIR, got {} arguments", p.len()))?;
    parsed.spec = spec;
    parsed.dir = dir;
    Ok(parsed)
}

/// The `akvfs mount …` command line the helper runs.
fn mount_command_line(program: OsString, args: &HelperArgs) -> Vec<OsString> {
    let mut line = vec![program, "mount".into(), args.spec.clone(), args.dir.clone()];
    let options: Vec<&str> = args
        .options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
        .collect();
    if !options.is_empty() {
        line.push("-o".into());
        line.push(options.join(",").into());
    }
    if args.verbose {
        line.push("-v".into());
    }
    expand_mount_options(line)
}

pub fn main(argv: Vec<OsString>) -> ExitCode {
    let name = argv
        .first()
        .map(|a| Path::new(a).display().to_string())
        .unwrap_or_else(|| "mount.akvfs".into());
    let args = match parse(argv.get(1..).unwrap_or_default()) {
        Ok(args) => args,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "{name}: {message}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let program = match std::env::current_exe() {
        Ok(program) => program.into_os_string(),
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "{name}: cannot find my own binary: {error}"
            );
            return ExitCode::from(EXIT_MOUNT_FAILED);
        }
    };
    let line = mount_command_line(program, &args);
    // Refuse bad options here, with clap's message, before anything is started.
    let cli = match Cli::try_parse_from(&line) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = write!(std::io::stderr(), "{name}: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Command::Mount(mount) = &cli.command {
        if let Err(error) = crate::mount::check_options(&mount.options) {
            let _ = writeln!(std::io::stderr(), "{name}: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    if args.fake {
        return ExitCode::SUCCESS;
    }
    match start_and_wait_until_ready(&line, args.verbose) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(
                std::io::stderr(),
                "{name}: mounting {} on {} failed: {message}",
                args.spec.to_string_lossy(),
                args.dir.to_string_lossy()
            );
            ExitCode::from(EXIT_MOUNT_FAILED)
        }
    }
}

/// Start the daemon detached (own session, no terminal) and return once it is ready. Its
/// standard error until then is shown if it fails (as it comes with `-v`); later output goes
/// nowhere: use `log_file=PATH` for logs.
fn start_and_wait_until_ready(line: &[OsString], verbose: bool) -> Result<(), String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let socket_path =
        std::env::temp_dir().join(format!("akvfs-notify-{}-{nanos}", std::process::id()));
    let socket = UnixDatagram::bind(&socket_path).map_err(|e| {
        format!(
            "cannot bind the readiness socket {}: {e}",
            socket_path.display()
        )
    })?;
    let outcome = run_until_ready(line, &socket, &socket_path, verbose);
    let _ = std::fs::remove_file(&socket_path);
    outcome
}

fn run_until_ready(
    line: &[OsString],
    socket: &UnixDatagram,
    socket_path: &Path,
    verbose: bool,
) -> Result<(), String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| format!("cannot set up the readiness socket: {e}"))?;

    let mut command = std::process::Command::new(&line[0]);
    command
        .args(&line[1..])
        .env("NOTIFY_SOCKET", socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start akvfs: {e}"))?;
    let relay = child.stderr.take().map(|mut stderr| {
        std::thread::spawn(move || {
            // The daemon's last 64 KiB of messages, to explain a failure.
            const KEPT: usize = 64 * 1024;
            let mut kept = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                if verbose {
                    let _ = std::io::stderr().write_all(&buffer[..n]);
                } else {
                    kept.extend_from_slice(&buffer[..n]);
                    let excess = kept.len().saturating_sub(KEPT);
                    kept.drain(..excess);
                }
            }
            kept
        })
    });
    // Print what the daemon said (when not already shown) before reporting its failure.
    let explain = |relay: Option<std::thread::JoinHandle<Vec<u8>>>| {
        if let Some(said) = relay.and_then(|relay| relay.join().ok()) {
            let _ = std::io::stderr().write_all(&said);
        }
    };

    let deadline = Instant::now() + READY_TIMEOUT;
    let mut datagram = [0u8; 4096];
    loop {
        match socket.recv(&mut datagram) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&datagram[..n]);
                if message.lines().any(|line| line == "READY=1") {
                    return Ok(());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("cannot read the readiness socket: {e}")),
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                explain(relay);
                return Err(format!("akvfs exited with {status} before it was ready"));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot watch akvfs: {e}")),
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            explain(relay);
            return Err(format!(
                "akvfs was not ready after {}s; stopped it",
                READY_TIMEOUT.as_secs()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn helper_names_are_recognised() {
        assert!(invoked_as_helper(OsStr::new("/sbin/mount.fuse.akvfs")));
        assert!(invoked_as_helper(OsStr::new("mount.akvfs")));
        assert!(!invoked_as_helper(OsStr::new("/usr/bin/akvfs")));
    }

    #[test]
    fn the_mount8_helper_interface_parses() {
        let args = parse(&os(&[
            "local",
            "/mnt/v",
            "-nv",
            "-o",
            "ro,uid=1000",
            "-t",
            "fuse.akvfs",
        ]))
        .expect("parse");
        assert_eq!(args.spec, "local");
        assert_eq!(args.dir, "/mnt/v");
        assert_eq!(args.options, ["ro,uid=1000"]);
        assert!(args.verbose && !args.fake);
        let line = mount_command_line("akvfs".into(), &args);
        assert_eq!(
            line,
            os(&[
                "akvfs",
                "mount",
                "local",
                "/mnt/v",
                "--uid=1000",
                "-o",
                "ro",
                "-v"
            ])
        );
        assert!(parse(&os(&["local"])).is_err());
        assert!(parse(&os(&["local", "/m", "-x"])).is_err());
        assert!(parse(&os(&["local", "/m", "-N", "/proc/1/ns/mnt"])).is_err());
    }
}
