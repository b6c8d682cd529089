//! Real programs as test fixtures (SPEC §8, issue 12 item 2): nginx serving HTTPS from a
//! certificate and key on disk, a PostgreSQL server of the test's own with a password role, and
//! the keys, certificates and fingerprints the tests compare. Each runs in a temporary directory
//! on a free 127.0.0.1 port and is stopped on drop; `scripts/install-deps` installs the programs.

use std::ffi::OsStr;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{as_user, need_tool};

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it for a listener that
/// is closed again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; `alive` says whether the
/// server is still running (`false` stops the wait early). True when it accepts.
fn wait_for_port(port: u16, timeout: Duration, mut alive: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if !alive() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A self-signed certificate for `localhost` and 127.0.0.1 and its key: `(cert PEM, key PEM)`
/// (ECDSA P-256, the key in PKCS#8 `BEGIN PRIVATE KEY`).
pub fn self_signed_localhost() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("rcgen self-signed certificate");
    (certified.cert.pem(), certified.key_pair.serialize_pem())
}

/// The SHA-256 fingerprint (`AB:CD:…`) of the first certificate in `pem`, by `openssl x509`
/// (which skips text around the PEM block, such as `openssl s_client`'s report).
pub fn sha256_fingerprint(pem: &[u8]) -> String {
    need_tool("openssl", "openssl");
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl x509");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl x509");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openssl x509 found no certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fingerprint = text
        .trim()
        .split_once('=')
        .map(|(_, f)| f.to_owned())
        .unwrap_or_default();
    assert!(!fingerprint.is_empty(), "openssl x509 said {text:?}");
    fingerprint
}

/// A new ed25519 key pair from `ssh-keygen -t ed25519 -N ''`: `(private key text, public key
/// line)`, the comment being `comment`.
pub fn ssh_ed25519_keypair(comment: &str) -> (String, String) {
    need_tool("ssh-keygen", "openssh-client");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = std::fs::read_to_string(&key).expect("read private key");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("read public key");
    (private, public)
}

/// `ssh-keygen -y -f KEY` as `user`:`group`: prints the public key of a private key it accepts,
/// refuses (exit 255, "UNPROTECTED PRIVATE KEY FILE!") a key the user owns that group or others
/// may access. (It does not check the mode of a key another user owns.)
pub fn ssh_keygen_public_as(user: &str, group: &str, key: &Path) -> Output {
    need_tool("ssh-keygen", "openssh-client");
    as_user(user, group, "ssh-keygen")
        .env("HOME", user_home(user))
        .arg("-y")
        .arg("-f")
        .arg(key)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv ssh-keygen")
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child of ours.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Waits up to `timeout` for `child`; kills it when it is still running then.
fn wait_or_kill(child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// nginx in the foreground (`daemon off`, master and one worker) serving
/// `https://localhost:PORT/` with `ssl_certificate CERT; ssl_certificate_key KEY;`. Its prefix,
/// pid file, logs and temporary paths are in a temporary directory; started as the test's user
/// (root: the master reads the certificate and key, workers run as `nobody`); stopped (SIGTERM)
/// on drop.
pub struct Nginx {
    pub dir: tempfile::TempDir,
    conf: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// What nginx answers on `/`.
pub const NGINX_BODY: &str = "served by nginx\n";

impl Nginx {
    /// Starts nginx with `cert` and `key`; panics with its error log when it does not come up.
    pub fn start(cert: &Path, key: &Path) -> Nginx {
        match Self::try_start(cert, key) {
            Ok(nginx) => nginx,
            Err(log) => panic!("nginx did not start; error log:\n{log}"),
        }
    }

    /// Starts nginx; its error log when it exits or does not listen within 30 s.
    pub fn try_start(cert: &Path, key: &Path) -> Result<Nginx, String> {
        need_tool("nginx", "nginx");
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dir.path();
        std::fs::create_dir(prefix.join("tmp")).expect("mkdir tmp");
        let port = free_port();
        let p = |name: &str| prefix.join(name).display().to_string();
        let conf = prefix.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;
master_process on;
worker_processes 1;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 32; }}
http {{
    access_log {access_log};
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 \"{body}\\n\"; }}
    }}
}}
",
                pid = p("nginx.pid"),
                error_log = p("error.log"),
                access_log = p("access.log"),
                tmp = p("tmp"),
                cert = cert.display(),
                key = key.display(),
                body = NGINX_BODY.trim_end(),
            ),
        )
        .expect("write nginx.conf");
        let mut child = Command::new("nginx")
            .args(Self::base_args(&conf, prefix))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(prefix.join("stderr.log")).expect("stderr.log"))
            .spawn()
            .expect("spawn nginx");
        let up = wait_for_port(port, Duration::from_secs(30), || {
            matches!(child.try_wait(), Ok(None))
        });
        let nginx = Nginx {
            dir,
            conf,
            port,
            child: Some(child),
        };
        if up {
            Ok(nginx)
        } else {
            Err(nginx.error_log())
        }
    }

    /// `-c CONF -p PREFIX/ -e ERROR_LOG`: the same for starting and signalling.
    fn base_args(conf: &Path, prefix: &Path) -> Vec<String> {
        vec![
            "-c".into(),
            conf.display().to_string(),
            "-p".into(),
            format!("{}/", prefix.display()),
            "-e".into(),
            prefix.join("error.log").display().to_string(),
        ]
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The error log and what nginx wrote to stderr.
    pub fn error_log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    /// The `nginx -s reload` command line for this nginx, for a shell (`on_change`).
    pub fn reload_command(&self) -> String {
        let mut words = vec!["nginx".to_owned()];
        words.extend(Self::base_args(&self.conf, self.dir.path()));
        words.extend(["-s".to_owned(), "reload".to_owned()]);
        words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `nginx -s reload`: the master re-reads the configuration, the certificate and the key
    /// (a pair it cannot load is logged and the old one kept). Returns when the signal is sent;
    /// see [`Nginx::wait_for_fingerprint`].
    pub fn reload(&self) {
        let out = Command::new("nginx")
            .args(Self::base_args(&self.conf, self.dir.path()))
            .args(["-s", "reload"])
            .stdin(Stdio::null())
            .output()
            .expect("run nginx -s reload");
        assert!(
            out.status.success(),
            "nginx -s reload: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.error_log()
        );
    }

    /// `curl --cacert CA https://localhost:PORT/`: succeeds only when the served certificate
    /// verifies against `ca` for the name `localhost`.
    pub fn curl(&self, ca: &Path) -> Output {
        need_tool("curl", "curl");
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(ca)
            .arg(format!("https://localhost:{}/", self.port))
            .stdin(Stdio::null())
            .output()
            .expect("run curl")
    }

    /// The SHA-256 fingerprint of the certificate nginx serves now (`openssl s_client`).
    pub fn served_fingerprint(&self) -> String {
        need_tool("openssl", "openssl");
        let out = Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-servername", "localhost"])
            .stdin(Stdio::null())
            .output()
            .expect("run openssl s_client");
        sha256_fingerprint(&out.stdout)
    }

    /// Waits (up to 30 s) until nginx serves the certificate with `fingerprint`: a reload's new
    /// workers take over from the old ones in their own time.
    pub fn wait_for_fingerprint(&self, fingerprint: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Old workers may still accept a connection or two after the first new handshake:
        // nginx serves the new certificate once several handshakes in a row show it.
        let mut in_a_row = 0;
        loop {
            let served = self.served_fingerprint();
            if served == fingerprint {
                in_a_row += 1;
                if in_a_row == 3 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            in_a_row = 0;
            assert!(
                Instant::now() < deadline,
                "nginx still serves {served}, not {fingerprint}; error log:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            wait_or_kill(&mut child, Duration::from_secs(15));
        }
    }
}

/// The directory of the PostgreSQL server programs (`initdb`, `pg_ctl`, `postgres`): Debian
/// keeps them in `/usr/lib/postgresql/VERSION/bin`, off the PATH; the newest version wins.
pub fn postgres_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("no PostgreSQL server in /usr/lib/postgresql/*/bin: `apt-get install postgresql` (.ci/run installs it)")
    })
}

/// The role a [`Postgres`] creates, with a password (SCRAM-SHA-256 over TCP).
pub const POSTGRES_ROLE: &str = "app";

/// A PostgreSQL server of the test's own, run as the system user `postgres` (which the Debian
/// package creates) from a cluster `initdb` made in a temporary directory: it listens on
/// 127.0.0.1:PORT and on a unix socket in that directory. `pg_hba.conf`: `postgres` over the
/// socket without a password (to set the server up), role [`POSTGRES_ROLE`] over TCP from
/// 127.0.0.1 with its password only (`scram-sha-256`). Stopped (`pg_ctl stop -m immediate`) on
/// drop.
pub struct Postgres {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    running: bool,
}

impl Postgres {
    /// A server whose role `app` has `password`; `settings` are extra `postgresql.conf` lines
    /// (`ssl = on`, …). Panics with the server's log when it does not start.
    pub fn start(password: &str, settings: &[String]) -> Postgres {
        match Self::try_start(password, settings) {
            Ok(server) => server,
            Err(log) => panic!("PostgreSQL did not start; log:\n{log}"),
        }
    }

    /// As [`Postgres::start`]; the server's log when `pg_ctl start` fails.
    pub fn try_start(password: &str, settings: &[String]) -> Result<Postgres, String> {
        need_tool("psql", "postgresql-client");
        let bin = postgres_bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let (uid, gid) = user_ids("postgres");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown test dir");
        let mut server = Postgres {
            dir,
            bin,
            port: free_port(),
            running: false,
        };
        let data = server.data();
        server.as_postgres_ok(
            Command::new(server.bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-locale",
                    "-E",
                    "UTF8",
                ]),
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all postgres trust\nhost all {POSTGRES_ROLE} 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .expect("write pg_hba.conf");
        let mut conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
            server.port,
            server.dir.path().display()
        );
        for line in settings {
            conf.push_str(line);
            conf.push('\n');
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("append to postgresql.conf");
        let started = server.as_postgres(
            Command::new(server.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(server.log_path())
                .args(["-w", "-t", "60", "start"]),
        );
        server.running = true;
        if !started.status.success() {
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&started.stderr),
                server.log_text()
            ));
        }
        let sql = format!(
            "CREATE ROLE {POSTGRES_ROLE} LOGIN PASSWORD '{}'",
            password.replace('\'', "''")
        );
        server.as_postgres_ok(
            Command::new("psql")
                .arg("-h")
                .arg(server.dir.path())
                .arg("-p")
                .arg(server.port.to_string())
                .args([
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-X",
                    "-v",
                    "ON_ERROR_STOP=1",
                ])
                .arg("-c")
                .arg(sql),
        );
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `command` as user `postgres` (setpriv), in `/`.
    fn as_postgres(&self, command: &mut Command) -> Output {
        let mut run = as_user("postgres", "postgres", command.get_program());
        run.args(command.get_args())
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .expect("run as postgres")
    }

    fn as_postgres_ok(&self, command: &mut Command) -> Output {
        let out = self.as_postgres(command);
        assert!(
            out.status.success(),
            "{command:?} as postgres: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        out
    }

    /// `psql -w -X -tA -c SQL "host=127.0.0.1 port=PORT user=app dbname=postgres CONNINFO"` as
    /// `user`:`group`, with `envs` (`PGPASSFILE`, `PGPASSWORD`, …), no other `PG*` variable and
    /// the user's own `HOME`: never prompts for a password.
    pub fn psql_as(
        &self,
        user: &str,
        group: &str,
        conninfo: &str,
        envs: &[(&str, &OsStr)],
        sql: &str,
    ) -> Output {
        let mut command = as_user(user, group, "psql");
        command
            .args(["-w", "-X", "-tA", "-c", sql])
            .arg(format!(
                "host=127.0.0.1 port={} user={POSTGRES_ROLE} dbname=postgres {conninfo}",
                self.port
            ))
            .current_dir("/")
            .stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                command.env_remove(name);
            }
        }
        command.env("HOME", user_home(user));
        for (name, value) in envs {
            command.env(name, value);
        }
        command.output().expect("run setpriv psql")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            self.as_postgres(
                Command::new(self.bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(data)
                    .args(["-m", "immediate", "-w", "stop"]),
            );
        }
    }
}

/// The uid and primary gid of a system user (`id -u`, `id -g`).
pub fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id")
            .arg(flag)
            .arg(user)
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "no user {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// A system user's home directory (`getent passwd`): what a program run as that user takes
/// for `HOME` (libpq looks for `~/.postgresql/postgresql.crt` there, and fails on a `HOME` it
/// may not search, such as root's).
pub fn user_home(user: &str) -> PathBuf {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .expect("run getent");
    let line = String::from_utf8_lossy(&out.stdout);
    let home = line.trim().split(':').nth(5).unwrap_or_default();
    assert!(!home.is_empty(), "no user {user} in passwd: {line:?}");
    PathBuf::from(home)
}

/// Writes `text` to `path` with `mode`, owned by `user` (its primary group).
pub fn write_owned(path: &Path, text: &str, user: &str, mode: u32) {
    std::fs::write(path, text).expect("write file");
    let (uid, gid) = user_ids(user);
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
