//! Command line: flags parsed once by clap, then validated into the configs of each layer.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::permissions::{parse_id, parse_mode};

#[derive(Debug, Parser)]
#[command(
    name = "akvfs",
    version,
    about = "Mount an Azure Key Vault's secrets as files",
    long_about = "Mount an Azure Key Vault's secrets as files: `cat` gets a secret, `echo … >` \
                  sets it, `rm` deletes it (waiting until the vault has finished), `ls` lists \
                  the vault. `akvfs mount local DIR` runs a local Key Vault and mounts it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a vault (an https URL, a vault name, or `local`) and serve until unmounted.
    Mount(Box<MountArgs>),
    /// Run a standalone local, wire-compatible Key Vault.
    LocalVault(LocalVaultArgs),
    /// Unmount the akvfs mount at MOUNTPOINT (that one layer only); its daemon then exits. A
    /// dead mount (its daemon killed) is detached.
    Unmount(UnmountArgs),
}

#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// Where the vault is mounted.
    pub mountpoint: PathBuf,
    /// Detach now even if files are open; the kernel finishes when they close.
    #[arg(short = 'z', long)]
    pub lazy: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    Auto,
    Env,
    WorkloadIdentity,
    ManagedIdentity,
    AzureCli,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CloudArg {
    Public,
    China,
    UsGov,
}

impl CloudArg {
    pub fn vault_suffix(self) -> &'static str {
        match self {
            CloudArg::Public => "vault.azure.net",
            CloudArg::China => "vault.azure.cn",
            CloudArg::UsGov => "vault.usgovcloudapi.net",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeletedConflictArg {
    /// Recover the deleted secret, then set the new value (history kept).
    Recover,
    /// Answer EEXIST and log how to recover or purge.
    Fail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LoggingArgs {
    /// More logging (-v debug, -vv trace). `AKVFS_LOG` (EnvFilter syntax) wins when set.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Logging")]
    pub verbose: u8,
    /// Less logging (errors only).
    #[arg(short, long, global = true, help_heading = "Logging")]
    pub quiet: bool,
    /// Write logs to this file instead of standard error.
    #[arg(long, value_name = "PATH", global = true, help_heading = "Logging")]
    pub log_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, help_heading = "Logging")]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// `https://NAME.vault.azure.net` (or any https URL), a bare vault name, or `local`.
    pub vault: String,
    /// Empty directory to mount on.
    pub mountpoint: PathBuf,

    /// Cloud used to expand a bare vault name.
    #[arg(long, value_enum, default_value_t = CloudArg::Public, help_heading = "Vault")]
    pub cloud: CloudArg,
    /// Credential to use (`auto` tries env, workload identity, managed identity, Azure CLI).
    #[arg(long, value_enum, default_value_t = AuthArg::Auto, help_heading = "Vault")]
    pub auth: AuthArg,
    /// Extra trust root (PEM) for the vault and token endpoints; defaults to `$AKVFS_CA_FILE`.
    #[arg(
        long,
        value_name = "PEM",
        env = "AKVFS_CA_FILE",
        help_heading = "Vault"
    )]
    pub ca_file: Option<PathBuf>,
    /// Deadline of one vault request, retries included.
    #[arg(long, value_parser = duration_between(Duration::from_millis(100), HOUR), default_value = "30s", help_heading = "Vault")]
    pub request_timeout: Duration,
    /// With `local`: where the embedded vault keeps its data
    /// (default `$XDG_DATA_HOME/akvfs/local-vault`).
    #[arg(long, value_name = "DIR", help_heading = "Local vault")]
    pub data: Option<PathBuf>,
    /// With `local`: address of the embedded vault (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", help_heading = "Local vault")]
    pub listen: SocketAddr,
    /// With `local`: how long a deletion or recovery takes to complete.
    #[arg(long, value_parser = duration_between(Duration::ZERO, HOUR), default_value = "1s", help_heading = "Local vault")]
    pub deletion_delay: Duration,
    /// With `local`: lifetime of the tokens the embedded vault issues (short values exercise
    /// token refresh).
    #[arg(long, value_parser = duration_between(MIN_TOKEN_TTL, DAY), default_value = "1h", help_heading = "Local vault")]
    pub token_ttl: Duration,
    /// With `local`: throttling of the embedded vault: `off`, `real` (the service's 4,000
    /// transactions per 10 s), or N per 10 s.
    #[arg(long, default_value = "real", value_parser = parse_throttle, help_heading = "Local vault")]
    pub throttle: Throttle,

    /// Mount the tree of files this TOML file describes (names, owners, modes, templates,
    /// formats; docs/PROJECTIONS.md) instead of the vault's own layout. SIGHUP re-reads it.
    #[arg(long, value_name = "FILE", help_heading = "Mount")]
    pub config: Option<PathBuf>,
    /// Run this command (`sh -c`, no secret in its environment) once per refresh that finds a
    /// secret read through the mount changed or gone elsewhere (needs --refresh; debounced 1 s).
    #[arg(long, value_name = "CMD", help_heading = "Mount")]
    pub on_change: Option<String>,
    /// Refuse every change (EROFS).
    #[arg(long, help_heading = "Mount")]
    pub read_only: bool,
    /// Owner of every file (default: the user running akvfs).
    #[arg(long, value_parser = parse_id, help_heading = "Mount")]
    pub uid: Option<u32>,
    /// Group of every file (default: the group running akvfs).
    #[arg(long, value_parser = parse_id, help_heading = "Mount")]
    pub gid: Option<u32>,
    /// Permission bits of secret files (octal; no setuid, setgid or sticky bit).
    #[arg(long, value_parser = parse_mode, default_value = "0600", help_heading = "Mount")]
    pub file_mode: u16,
    /// Permission bits of directories (octal; no setuid, setgid or sticky bit).
    #[arg(long, value_parser = parse_mode, default_value = "0700", help_heading = "Mount")]
    pub dir_mode: u16,
    /// Let other users access the mount (needs `user_allow_other` in /etc/fuse.conf).
    #[arg(long, help_heading = "Mount")]
    pub allow_other: bool,
    /// Let root access the mount.
    #[arg(long, help_heading = "Mount")]
    pub allow_root: bool,
    /// Mount options as in fstab (`-o ro,allow_other,uid=1000`).
    #[arg(
        short = 'o',
        value_name = "OPTIONS",
        value_delimiter = ',',
        value_parser = parse_mount_option,
        help_heading = "Mount"
    )]
    pub options: Vec<String>,
    /// FUSE worker threads (a slow secret never blocks another); each holds one open
    /// /dev/fuse descriptor.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS), help_heading = "Mount")]
    pub threads: u16,

    /// How long a secret's value and attributes are trusted.
    #[arg(long, value_parser = duration_between(Duration::ZERO, DAY), default_value = "30s", help_heading = "Cache")]
    pub cache_ttl: Duration,
    /// How long a directory listing is trusted.
    #[arg(long, value_parser = duration_between(Duration::ZERO, DAY), default_value = "30s", help_heading = "Cache")]
    pub list_ttl: Duration,
    /// Revalidate cached secrets by listing the vault this often (`off`: never): one list call
    /// per 25 secrets and one get per changed secret per interval, however often files are
    /// read; confirmed values need no get when their TTL ends (1 s – 1 day).
    #[arg(long, value_parser = parse_refresh, default_value = "60s", help_heading = "Cache")]
    pub refresh: Refresh,
    /// How long "no such secret" is remembered.
    #[arg(long, value_parser = duration_between(Duration::ZERO, DAY), default_value = "5s", help_heading = "Cache")]
    pub negative_ttl: Duration,
    /// Bytes of secret values held in memory (at most 16 GiB).
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(0..=MAX_CACHE_SIZE), help_heading = "Cache")]
    pub cache_size: u64,
    /// Bytes of files kept in memory on this mount only: editors' scratch files, new files not
    /// yet written, unsaved writes (ENOSPC beyond; `df` shows it as the size).
    #[arg(long, default_value_t = 128 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(MIN_SCRATCH_SPACE..=MAX_CACHE_SIZE), help_heading = "Cache")]
    pub scratch_space: u64,
    /// When the vault fails, serve a cached value up to this age instead of an error.
    #[arg(long, value_name = "MAX-AGE", value_parser = duration_between(Duration::ZERO, 30 * DAY), help_heading = "Cache")]
    pub stale_if_error: Option<Duration>,

    /// What writing a deleted-but-recoverable name does.
    #[arg(long, value_enum, default_value_t = DeletedConflictArg::Recover, help_heading = "Behaviour")]
    pub on_deleted_conflict: DeletedConflictArg,
    /// Allow `rm .deleted/NAME` to purge (irreversible).
    #[arg(long, help_heading = "Behaviour")]
    pub allow_purge: bool,
    /// How long `rm` waits for the vault to finish a deletion.
    #[arg(long, value_parser = duration_between(Duration::from_secs(1), DAY), default_value = "2m", help_heading = "Behaviour")]
    pub delete_timeout: Duration,

    #[command(flatten)]
    pub logging: LoggingArgs,
}

#[derive(Debug, Args)]
pub struct LocalVaultArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Data directory (SQLite state, TLS material, `env`);
    /// default `$XDG_DATA_HOME/akvfs/local-vault`.
    #[arg(long, value_name = "DIR", conflicts_with = "in_memory")]
    pub data: Option<PathBuf>,
    /// Keep secrets in memory only.
    #[arg(long)]
    pub in_memory: bool,
    /// Extra DNS name for the TLS certificate (repeatable).
    #[arg(long = "hostname", value_name = "NAME")]
    pub hostnames: Vec<String>,
    /// How long a deletion or recovery takes to complete.
    #[arg(long, value_parser = duration_between(Duration::ZERO, HOUR), default_value = "1s")]
    pub deletion_delay: Duration,
    /// Days a deleted secret stays recoverable.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(i64).range(7..=90))]
    pub recoverable_days: i64,
    /// Make delete final (recovery level `Purgeable`, no `recoveryId`).
    #[arg(long)]
    pub no_soft_delete: bool,
    /// Refuse purge (403) and report a protected recovery level.
    #[arg(long)]
    pub purge_protection: bool,
    /// Lifetime of issued access tokens.
    #[arg(long, value_parser = duration_between(MIN_TOKEN_TTL, DAY), default_value = "1h")]
    pub token_ttl: Duration,
    /// Reject api-versions the service does not know.
    #[arg(long)]
    pub strict_api_version: bool,
    /// Name this resource in the 401 challenge instead of the host's parent domain (testing
    /// clients' challenge resource verification).
    #[arg(long, value_name = "URL")]
    pub challenge_resource: Option<String>,
    /// Throttling: `off`, `real` (4,000 transactions per 10 s), or N per 10 s.
    #[arg(long, default_value = "real", value_parser = parse_throttle)]
    pub throttle: Throttle,
    /// Print the whole env file at start, secret values included (client secret, admin token,
    /// identity header); by default only its path and the values that are not secret.
    #[arg(long)]
    pub print_env: bool,

    #[command(flatten)]
    pub logging: LoggingArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle(pub Option<u32>);

/// The service's published limit: 4,000 transactions per 10 s per vault.
pub const REAL_THROTTLE_PER_10S: u32 = 4000;

/// `-o` options that name a long flag of `akvfs mount` (`file_mode=0640`, `cache_ttl=1m`,
/// `data=/var/lib/akvfs`, `allow_purge`; `_` or `-`) become that flag, so an fstab line can
/// say everything the command line can. The rest stay mount options (`ro`, `uid=1000`,
/// `noauto`), checked when mounting.
pub fn expand_mount_options(args: Vec<OsString>) -> Vec<OsString> {
    if args.get(1).and_then(|a| a.to_str()) != Some("mount") {
        return args;
    }
    let command = <Cli as clap::CommandFactory>::command();
    let Some(mount) = command.find_subcommand("mount") else {
        return args;
    };
    let flags: Vec<String> = mount
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|long| !matches!(*long, "help" | "version"))
        .map(str::to_owned)
        .collect();
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    let mut only_positionals = false;
    while let Some(arg) = iter.next() {
        let text = arg.to_str().unwrap_or_default();
        let options = if only_positionals {
            None
        } else if text == "--" {
            only_positionals = true;
            None
        } else if text == "-o" {
            match iter.next() {
                Some(next) => Some(next.to_string_lossy().into_owned()),
                None => {
                    // Let clap report the missing value.
                    out.push(arg);
                    continue;
                }
            }
        } else {
            text.strip_prefix("-o")
                .map(|rest| rest.trim_start_matches('=').to_owned())
        };
        let Some(options) = options else {
            out.push(arg);
            continue;
        };
        let mut kept = Vec::new();
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = match option.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (option, None),
            };
            let long = key.replace('_', "-");
            if flags.contains(&long) {
                out.push(match value {
                    Some(value) => OsString::from(format!("--{long}={value}")),
                    None => OsString::from(format!("--{long}")),
                });
            } else {
                kept.push(option);
            }
        }
        if !kept.is_empty() {
            out.push("-o".into());
            out.push(kept.join(",").into());
        }
    }
    out
}

fn parse_throttle(s: &str) -> Result<Throttle, String> {
    match s {
        "off" => Ok(Throttle(None)),
        "real" => Ok(Throttle(Some(REAL_THROTTLE_PER_10S))),
        n => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| Throttle(Some(n)))
            .ok_or_else(|| format!("'{s}' is not off, real, or a positive number")),
    }
}

/// Bounds of numeric options: refused at parse time (exit 2), so no typo becomes a daemon
/// that cannot start, never expires anything, or holds thousands of descriptors.
const MAX_THREADS: i64 = 256;
const MAX_CACHE_SIZE: u64 = 16 << 30;
const MIN_SCRATCH_SPACE: u64 = 64 << 10;
const MIN_TOKEN_TTL: Duration = Duration::from_secs(5);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A parser for a duration within `min..=max`.
fn duration_between(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |s: &str| {
        let duration = humantime::parse_duration(s)
            .map_err(|e| format!("'{s}' is not a duration like 30s or 2m: {e}"))?;
        if duration < min || duration > max {
            return Err(format!(
                "'{s}' is out of range: between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(duration)
    }
}

/// `--refresh`: an interval, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh(pub Option<Duration>);

fn parse_refresh(s: &str) -> Result<Refresh, String> {
    if s == "off" {
        return Ok(Refresh(None));
    }
    duration_between(Duration::from_secs(1), DAY)(s).map(|d| Refresh(Some(d)))
}

/// One `-o` option, refused here (exit 2, naming it) when the mount would refuse it.
fn parse_mount_option(s: &str) -> Result<String, String> {
    crate::mount::check_options(&[s.to_owned()]).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mount_defaults_follow_the_spec() {
        let cli = Cli::try_parse_from(["akvfs", "mount", "local", "/tmp/m"]).expect("parse");
        let Command::Mount(m) = cli.command else {
            panic!("expected mount")
        };
        assert_eq!(m.file_mode, 0o600);
        assert_eq!(m.dir_mode, 0o700);
        assert_eq!(m.on_deleted_conflict, DeletedConflictArg::Recover);
        assert_eq!(m.auth, AuthArg::Auto);
    }

    #[test]
    fn fstab_options_naming_a_flag_become_that_flag() {
        let args = [
            "akvfs",
            "mount",
            "local",
            "/m",
            "-o",
            "ro,file_mode=0640,uid=7",
        ]
        .into_iter()
        .chain(["-odata=/d,allow_purge,noauto"])
        .map(OsString::from)
        .collect();
        let expanded = expand_mount_options(args);
        let cli = Cli::try_parse_from(expanded).expect("parse");
        let Command::Mount(m) = cli.command else {
            panic!("expected mount")
        };
        assert_eq!(m.file_mode, 0o640);
        assert_eq!(m.uid, Some(7));
        assert_eq!(m.data, Some(PathBuf::from("/d")));
        assert!(m.allow_purge);
        assert_eq!(m.options, ["ro", "noauto"]);
        let untouched: Vec<OsString> = ["akvfs", "local-vault", "-q"].map(OsString::from).into();
        assert_eq!(expand_mount_options(untouched.clone()), untouched);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(Cli::try_parse_from(["akvfs", "mount", "v", "m", "--cache-ttl", "soon"]).is_err());
        assert!(Cli::try_parse_from(["akvfs", "mount", "v", "m", "--file-mode", "999"]).is_err());
        assert!(Cli::try_parse_from(["akvfs", "local-vault", "--throttle", "0"]).is_err());
        let cli = Cli::try_parse_from(["akvfs", "local-vault", "--throttle", "off"]).expect("ok");
        let Command::LocalVault(lv) = cli.command else {
            panic!("expected local-vault")
        };
        assert_eq!(lv.throttle, Throttle(None));
    }

    fn refused(args: &[&str]) -> String {
        let line = ["akvfs", "mount", "v", "m"].iter().chain(args);
        match Cli::try_parse_from(line) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(error) => {
                assert_eq!(error.exit_code(), 2, "{args:?}: usage error");
                error.to_string()
            }
        }
    }

    #[test]
    fn numeric_options_out_of_their_bounds_are_refused_naming_the_option() {
        for (args, names) in [
            (&["--threads", "0"][..], "--threads"),
            (&["--threads", "1000"], "--threads"),
            (&["--threads=-1"], "--threads"),
            (&["--cache-size", "99999999999999999"], "--cache-size"),
            (&["--cache-ttl", "400d"], "--cache-ttl"),
            (&["--request-timeout", "0s"], "--request-timeout"),
            (&["--delete-timeout", "0s"], "--delete-timeout"),
            (&["--token-ttl", "1s"], "--token-ttl"),
            (&["--uid", "4294967295"], "--uid"),
            (&["--gid=-1"], "--gid"),
        ] {
            let message = refused(args);
            assert!(message.contains(names), "{args:?}: {message}");
        }
        for args in [
            &["--threads", "1"][..],
            &["--threads", "256"],
            &["--cache-ttl", "0s"],
            &["--request-timeout", "3500ms"],
            &["--token-ttl", "6s"],
            &["--uid", "0"],
        ] {
            let line = ["akvfs", "mount", "v", "m"].iter().chain(args);
            assert!(Cli::try_parse_from(line).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn setuid_setgid_sticky_modes_and_suid_dev_options_are_refused() {
        for mode in ["4755", "2755", "1777", "6700", "04600"] {
            let message = refused(&["--file-mode", mode]);
            assert!(
                message.contains("--file-mode") && message.contains("setuid"),
                "{message}"
            );
            let message = refused(&["--dir-mode", mode]);
            assert!(message.contains("--dir-mode"), "{message}");
        }
        for option in ["suid", "exec,suid", "dev"] {
            let message = refused(&["-o", option]);
            assert!(message.contains("nosuid,nodev"), "{option}: {message}");
        }
        let line = expand_mount_options(
            ["akvfs", "mount", "v", "m", "-o", "file_mode=4755"]
                .map(OsString::from)
                .into(),
        );
        assert_eq!(
            Cli::try_parse_from(line).map_err(|e| e.exit_code()).err(),
            Some(2)
        );
        let ok = Cli::try_parse_from(["akvfs", "mount", "v", "m", "-o", "nosuid,nodev,exec"]);
        assert!(ok.is_ok());
    }
}
