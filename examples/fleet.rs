//! Fleet simulation (SPEC §9, issue 13): N nodes read M secrets of one local vault running at
//! Key Vault's real throttle limit (4,000 transactions per 10 s), while a writer rotates a few
//! secrets. Each node is a real `akvfs mount` process (`--mounts N`) or, for N beyond what one
//! machine can mount, the same client, cache and refresh in this process without FUSE
//! (`--nodes N`). Prints vault operations per 10 s against the limit, 429s, read errors, and
//! staleness: the time from a rotation to a node serving it (max and p99 over every node and
//! rotation), and to every node serving it.
//!
//! `scripts/fleet` builds and runs it; see the README.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use parking_lot::Mutex;

use akvfs::fs::{FsConfig, OpenMode, SecretFs, ROOT_INO};
use akvfs::local_vault::{AdminClient, Counters, LocalVaultEnv};
use akvfs::secret_value::SecretValue;
use akvfs::vault::auth::{credential_with_env, AuthKind};
use akvfs::vault::client::{ClientOptions, SecretClient};
use akvfs::vault::model::SecretSetParameters;
use akvfs::vault::SecretStore;

/// Key Vault's limit for secrets: 4,000 transactions per 10 s per vault.
const LIMIT_PER_10S: u64 = 4000;
const WINDOW: Duration = Duration::from_secs(10);

struct Args {
    mounts: usize,
    nodes: usize,
    secrets: usize,
    interval: Duration,
    duration: Duration,
    rotate_every: Duration,
    rotated: usize,
    read_period: Option<Duration>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        mounts: 0,
        nodes: 0,
        secrets: 50,
        interval: Duration::from_secs(60),
        duration: Duration::from_secs(600),
        rotate_every: Duration::from_secs(60),
        rotated: 3,
        read_period: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        let duration = |s: String| -> Result<Duration> {
            humantime::parse_duration(&s).with_context(|| format!("{s} is not a duration"))
        };
        match flag.as_str() {
            "--mounts" => args.mounts = value()?.parse()?,
            "--nodes" => args.nodes = value()?.parse()?,
            "--secrets" => args.secrets = value()?.parse()?,
            "--interval" => args.interval = duration(value()?)?,
            "--duration" => args.duration = duration(value()?)?,
            "--rotate-every" => args.rotate_every = duration(value()?)?,
            "--rotated" => args.rotated = value()?.parse()?,
            "--read-period" => args.read_period = Some(duration(value()?)?),
            other => bail!("unknown argument {other}"),
        }
    }
    ensure!(
        (args.mounts > 0) != (args.nodes > 0),
        "give --mounts N (akvfs mount processes) or --nodes N (in-process nodes)"
    );
    ensure!(
        args.secrets > 0 && args.rotated <= args.secrets,
        "--rotated ≤ --secrets"
    );
    Ok(args)
}

/// What one node saw: `(secret index, generation, when)` the first time it read each new value.
type Seen = Arc<Mutex<Vec<(usize, u64, Instant)>>>;

fn generation(value: &str) -> u64 {
    value
        .strip_prefix("gen-")
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

fn name(i: usize) -> String {
    format!("fleet-{i:05}")
}

/// Operations the vault answered (every status, the 401 challenges included: they count
/// against the service's limit too), without token requests.
fn operations(c: &Counters) -> u64 {
    c.operations
        .iter()
        .filter(|(op, _)| op.as_str() != "token")
        .map(|(_, by_status)| by_status.values().sum::<u64>())
        .sum()
}

fn status_count(c: &Counters, status: u16) -> u64 {
    c.operations
        .values()
        .map(|by_status| by_status.get(&status).copied().unwrap_or(0))
        .sum()
}

struct Process {
    child: Child,
    mountpoint: Option<PathBuf>,
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM: a mount unmounts itself.
        // SAFETY: kill has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mountpoint) = &self.mountpoint {
            let _ = Command::new("umount").arg("-l").arg(mountpoint).status();
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn is_mountpoint(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let path = path.display().to_string();
    mountinfo
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_str()))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let examples = std::env::current_exe()?
        .parent()
        .context("no examples dir")?
        .to_path_buf();
    let akvfs = examples.parent().context("no target dir")?.join("akvfs");
    ensure!(
        akvfs.exists(),
        "{} is missing (cargo build --release --bins)",
        akvfs.display()
    );
    let work = tempfile::Builder::new().prefix("akvfs-fleet").tempdir()?;
    let data = work.path().join("vault");
    let vault = Process {
        child: Command::new(&akvfs)
            .args([
                "local-vault",
                "--listen",
                "127.0.0.1:0",
                "--throttle",
                "real",
            ])
            .arg("--data")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(work.path().join("vault.log"))?)
            .spawn()?,
        mountpoint: None,
    };
    let env_file = data.join("env");
    wait_until("the local vault", Duration::from_secs(30), || {
        std::fs::read_to_string(&env_file).is_ok_and(|t| t.contains("AKVFS_ADMIN_TOKEN"))
    })?;
    let env = LocalVaultEnv::read_env_file(&env_file)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let client = |env: &LocalVaultEnv| -> Result<SecretClient> {
        let _guard = rt.enter();
        let lookup = |name: &str| env.lookup(name);
        let credential =
            credential_with_env(AuthKind::Env, &env.vault_url, Some(&env.ca_file), &lookup)?;
        Ok(SecretClient::new(
            ClientOptions {
                vault_url: env.vault_url.clone(),
                ca_file: Some(env.ca_file.clone()),
                ..ClientOptions::default()
            },
            credential,
        )?)
    };
    let admin = {
        let _guard = rt.enter();
        AdminClient::new(&env)?
    };
    let writer = client(&env)?;
    // `fleet-00000` … : seeded in one transaction (not counted, not throttled).
    rt.block_on(admin.seed("fleet-", args.secrets, "gen-0"))?;
    let names: Arc<Vec<String>> = Arc::new((0..args.secrets).map(name).collect());

    let n = args.mounts.max(args.nodes);
    let read_period = args
        .read_period
        .unwrap_or_else(|| (args.interval / 10).max(Duration::from_millis(500)));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    // Nodes that have read every secret once without an error: the start-up loads are over.
    let ready = Arc::new(AtomicU64::new(0));
    let seen: Vec<Seen> = (0..n).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let interval_arg = humantime::format_duration(args.interval).to_string();

    // The nodes and their readers.
    let mut mounts = Vec::new();
    let mut readers = Vec::new();
    let mut nodes = Vec::new();
    if args.mounts > 0 {
        for i in 0..args.mounts {
            let mnt = work.path().join(format!("m{i}"));
            std::fs::create_dir(&mnt)?;
            let child = Command::new(&akvfs)
                .arg("mount")
                .arg(&env.vault_url)
                .arg(&mnt)
                .args(["--refresh", &interval_arg, "--threads", "2"])
                .envs(env.variables())
                .env(
                    "AKVFS_LOG",
                    std::env::var("FLEET_MOUNT_LOG").unwrap_or_else(|_| "akvfs=warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(work.path().join(format!("mount-{i}.log")))?)
                .spawn()?;
            mounts.push(Process {
                child,
                mountpoint: Some(mnt.clone()),
            });
            wait_until("a mount", Duration::from_secs(60), || is_mountpoint(&mnt))?;
            let (stop, errors, reads, names, seen, ready) = (
                stop.clone(),
                errors.clone(),
                reads.clone(),
                names.clone(),
                seen[i].clone(),
                ready.clone(),
            );
            readers.push(std::thread::spawn(move || {
                let mut last = vec![0u64; names.len()];
                let mut counted = false;
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let mut all_read = true;
                    for (k, secret) in names.iter().enumerate() {
                        let read = std::fs::read_to_string(mnt.join(secret)).ok();
                        all_read &= note(read, k, &mut last, &seen, &reads, &errors);
                    }
                    if all_read && !counted {
                        counted = true;
                        ready.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(read_period.saturating_sub(started.elapsed()));
                }
            }));
        }
    } else {
        for i in 0..args.nodes {
            let store: Arc<dyn SecretStore> = Arc::new(client(&env)?);
            let fs = SecretFs::new(
                store,
                FsConfig {
                    refresh: Some(args.interval),
                    ..FsConfig::default()
                },
            );
            fs.start_refresh(rt.handle(), args.interval);
            let (stop, errors, reads, names, seen, ready) = (
                stop.clone(),
                errors.clone(),
                reads.clone(),
                names.clone(),
                seen[i].clone(),
                ready.clone(),
            );
            let node = fs.clone();
            nodes.push(fs);
            readers.push(std::thread::spawn({
                let handle = rt.handle().clone();
                move || {
                    handle.block_on(async move {
                        // Spread the nodes' reading over the period.
                        let offset = read_period.mul_f64((i as f64 * 0.618_034) % 1.0);
                        tokio::time::sleep(offset).await;
                        let mut last = vec![0u64; names.len()];
                        let mut counted = false;
                        while !stop.load(Ordering::SeqCst) {
                            let started = Instant::now();
                            let mut all_read = true;
                            for (k, secret) in names.iter().enumerate() {
                                let read = read_in_process(&node, secret).await.ok();
                                all_read &= note(read, k, &mut last, &seen, &reads, &errors);
                            }
                            if all_read && !counted {
                                counted = true;
                                ready.fetch_add(1, Ordering::SeqCst);
                            }
                            tokio::time::sleep(read_period.saturating_sub(started.elapsed())).await;
                        }
                    })
                }
            }));
        }
    }

    // Every node has read every secret once, and one refresh has passed (it reads again the
    // values read in the second they were set): the loads are behind us; count from here.
    wait_until("every node's first reads", Duration::from_secs(900), || {
        ready.load(Ordering::SeqCst) >= n as u64
    })?;
    std::thread::sleep(args.interval + args.interval / 5);
    // Reads and errors count from here, with the vault's operations.
    reads.store(0, Ordering::SeqCst);
    errors.store(0, Ordering::SeqCst);
    rt.block_on(admin.reset_counters())?;
    let started = Instant::now();
    let mut windows: Vec<Counters> = Vec::new();
    let mut rotations: Vec<(usize, u64, Instant)> = Vec::new();
    let mut next_window = started + WINDOW;
    let mut next_rotation = started + args.rotate_every / 2;
    let mut generation_counter = 0u64;
    let mut cursor = 0usize;
    let mut previous = Counters::default();
    while started.elapsed() < args.duration {
        let now = Instant::now();
        if now >= next_rotation {
            generation_counter += 1;
            for _ in 0..args.rotated {
                let k = cursor % args.secrets;
                cursor += 1;
                let params = SecretSetParameters {
                    value: SecretValue::from(format!("gen-{generation_counter}").as_str()),
                    ..Default::default()
                };
                rt.block_on(writer.set_secret(&names[k], params))?;
                rotations.push((k, generation_counter, Instant::now()));
            }
            next_rotation += args.rotate_every;
        }
        if now >= next_window {
            let total = rt.block_on(admin.counters())?;
            windows.push(difference(&total, &previous));
            previous = total;
            next_window += WINDOW;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the last rotation reach everyone (at most an interval and its jitter, plus a read).
    let grace = args.interval + args.interval / 5 + read_period * 2;
    std::thread::sleep(grace);
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        let _ = reader.join();
    }
    drop(nodes);

    // Staleness: from each rotation to each node's first read of it.
    let mut per_node: Vec<f64> = Vec::new();
    let mut to_all: Vec<f64> = Vec::new();
    let mut missed = 0usize;
    for &(k, g, at) in &rotations {
        let mut slowest = 0.0f64;
        for node in &seen {
            let node = node.lock();
            match node.iter().find(|(kk, gg, _)| *kk == k && *gg >= g) {
                Some((_, _, when)) => {
                    let s = when.saturating_duration_since(at).as_secs_f64();
                    per_node.push(s);
                    slowest = slowest.max(s);
                }
                None => missed += 1,
            }
        }
        to_all.push(slowest);
    }
    per_node.sort_by(f64::total_cmp);
    let p99 = per_node
        .get(((per_node.len() as f64) * 0.99).ceil() as usize)
        .or(per_node.last())
        .copied()
        .unwrap_or(0.0);
    let max_all = to_all.iter().copied().fold(0.0f64, f64::max);
    let ops: Vec<u64> = windows.iter().map(operations).collect();
    let lists: Vec<u64> = windows.iter().map(|w| w.count("list_secrets")).collect();
    let gets: Vec<u64> = windows.iter().map(|w| w.count("get_secret")).collect();
    let throttled: u64 = windows.iter().map(|w| status_count(w, 429)).sum();
    let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    let pages = args.secrets.div_ceil(25) as f64;
    let expected_lists = n as f64 * pages * WINDOW.as_secs_f64() / args.interval.as_secs_f64();
    let mode = if args.mounts > 0 {
        "mounts"
    } else {
        "in-process"
    };
    println!(
        "| nodes | kind | secrets | refresh | reads | read errors | ops/10 s max (mean) | limit | list/10 s mean (expected) | get/10 s mean | 429s | rotations | staleness p99 / max to every node | not seen |"
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    println!(
        "| {n} | {mode} | {} | {interval_arg} | {} | {} | {} ({:.0}) | {LIMIT_PER_10S} | {:.1} ({expected_lists:.1}) | {:.1} | {throttled} | {} | {p99:.1} s / {max_all:.1} s | {missed} |",
        args.secrets,
        reads.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        max(&ops),
        mean(&ops),
        mean(&lists),
        mean(&gets),
        rotations.len(),
    );
    let mut by_status: std::collections::BTreeMap<(String, u16), u64> = Default::default();
    for w in &windows {
        for (op, statuses) in &w.operations {
            for (status, count) in statuses {
                *by_status.entry((op.clone(), *status)).or_default() += count;
            }
        }
    }
    let breakdown: Vec<String> = by_status
        .iter()
        .filter(|(_, &c)| c > 0)
        .map(|((op, status), c)| format!("{op} {status}: {c}"))
        .collect();
    println!(
        "\nvault operations counted ({} windows of 10 s): {}",
        windows.len(),
        breakdown.join(", ")
    );
    drop(mounts);
    drop(vault);
    if let Ok(keep) = std::env::var("FLEET_KEEP_LOGS") {
        for entry in std::fs::read_dir(work.path())?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                std::fs::copy(entry.path(), Path::new(&keep).join(entry.file_name()))?;
            }
        }
    }
    Ok(())
}

fn difference(now: &Counters, before: &Counters) -> Counters {
    let mut out = Counters::default();
    for (op, by_status) in &now.operations {
        for (status, count) in by_status {
            let earlier = before
                .operations
                .get(op)
                .and_then(|b| b.get(status))
                .copied()
                .unwrap_or(0);
            out.operations
                .entry(op.clone())
                .or_default()
                .insert(*status, count - earlier);
        }
    }
    out
}

/// A node's read of secret `k` (`None`: it failed): counted, and a new generation noted.
/// Answers whether it was read.
fn note(
    read: Option<String>,
    k: usize,
    last: &mut [u64],
    seen: &Seen,
    reads: &AtomicU64,
    errors: &AtomicU64,
) -> bool {
    let Some(value) = read else {
        errors.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    reads.fetch_add(1, Ordering::Relaxed);
    let g = generation(&value);
    if g > last[k] {
        last[k] = g;
        seen.lock().push((k, g, Instant::now()));
    }
    true
}

/// One read of `/NAME` through the filesystem core, as the kernel would ask it.
async fn read_in_process(fs: &SecretFs, secret: &str) -> Result<String> {
    let entry = fs.lookup(ROOT_INO, secret).await?;
    let ino = entry.attr.ino;
    let result = async {
        let opened = fs
            .open(
                ino,
                OpenMode {
                    read: true,
                    ..OpenMode::default()
                },
            )
            .await?;
        let data = fs.read(opened.fh, 0, 64 * 1024).await;
        fs.release(opened.fh).await?;
        Ok::<_, anyhow::Error>(String::from_utf8_lossy(&data?).into_owned())
    }
    .await;
    fs.forget(ino, 1);
    result
}
