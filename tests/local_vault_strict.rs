//! A local vault as strict as the service (issue 11): errors with the service's codes, texts and
//! inner errors, limits counted as the service counts them, audiences per cloud, opaque backups,
//! validated admin bodies, files with explicit modes, and no secret on standard output.

mod local_vault_support;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use akvfs::local_vault::LocalVaultEnv;
use local_vault_support::{error_code, TestVault};
use reqwest::Method;
use serde_json::json;

/// `akvfs local-vault --listen 127.0.0.1:0 --data DATA EXTRA…` under `umask UMASK`, standard
/// output piped, standard error to `DATA.log`.
fn spawn_vault(umask: &str, data: &Path, extra: &[&str]) -> Child {
    let log = std::fs::File::create(data.with_extension("log")).expect("log file");
    Command::new("sh")
        .args(["-c", r#"umask "$1"; shift; exec "$@""#, "sh", umask])
        .arg(env!("CARGO_BIN_EXE_akvfs"))
        .args(["local-vault", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn akvfs local-vault")
}

/// Waits for `DATA/env` (the vault is serving once it is there).
fn wait_for_env(child: &mut Child, data: &Path) -> LocalVaultEnv {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(env) = LocalVaultEnv::read_env_file(&data.join("env")) {
            return env;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "local-vault exited with {status}: {}",
                std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "local-vault did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, wait, and everything it printed on standard output.
fn stop(mut child: Child) -> String {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).expect("read stdout");
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "local-vault stopped with {status}");
    out
}

/// The service counts a value's length in UTF-16 code units (.NET): 25,600 emoji are 51,200
/// units, over the limit, although they are 25,600 characters.
#[tokio::test]
async fn a_value_over_the_limit_in_utf16_units_is_secret_too_large() {
    let tv = TestVault::start().await;
    let (s, body) = tv.put("emoji", &"😀".repeat(25_600)).await;
    assert_eq!(s, 400);
    assert_eq!(
        body,
        json!({"error":{"code":"BadParameter","message":"Secret is beyond the maximum permitted length of 25600 characters.","innererror":{"code":"SecretTooLarge"}}})
    );
    let (s, _) = tv.put("emoji", &"😀".repeat(12_800)).await;
    assert_eq!(s, 200, "12,800 emoji are 25,600 units");
    let (s, body) = tv.put("emoji", &"😀".repeat(12_801)).await;
    assert_eq!(
        (s, error_code(&body)),
        (400, ("BadParameter", Some("SecretTooLarge")))
    );
    // The admin seed counts the same way.
    let resp = tv
        .admin_raw(
            Method::POST,
            "/_akvfs/seed",
            Some(json!({"prefix":"s","count":1,"value":"😀".repeat(12_801)})),
        )
        .await;
    assert_eq!(resp.0, 400);
    assert_eq!(error_code(&resp.1).1, Some("SecretTooLarge"));
}

/// Every admin body is validated: a missing, unknown or mistyped field is 400 naming the field
/// (never quoting the value) and changes nothing; `{}` as a fault rule, which used to match
/// first and hide every later rule, is refused.
#[tokio::test]
async fn admin_bodies_are_validated_and_errors_name_the_field() {
    let tv = TestVault::start().await;
    let (s, _) = tv.put("f", "v").await;
    assert_eq!(s, 200);
    let cases: &[(Method, &str, &str, &str)] = &[
        (
            Method::POST,
            "/_akvfs/faults",
            "{}",
            "`status`, `drop_connection` or `latency_ms`",
        ),
        (
            Method::POST,
            "/_akvfs/faults",
            r#"{"operation":"get_secret"}"#,
            "`status`",
        ),
        (
            Method::POST,
            "/_akvfs/faults",
            r#"{"status":503,"stauts":1}"#,
            "unknown field `stauts`",
        ),
        (
            Method::POST,
            "/_akvfs/faults",
            r#"{"status":"hunter2"}"#,
            "`status` must be u16",
        ),
        (
            Method::POST,
            "/_akvfs/faults",
            r#"{"status":503,"count":0}"#,
            "`count`",
        ),
        (
            Method::POST,
            "/_akvfs/faults",
            r#"{"latency_ms":5,"retry_after":1}"#,
            "`retry_after`",
        ),
        (
            Method::POST,
            "/_akvfs/faults",
            r#"{"status":503,"drop_connection":true}"#,
            "`drop_connection`",
        ),
        (
            Method::POST,
            "/_akvfs/faults",
            r#"{"status":503,"rate":0}"#,
            "`rate`",
        ),
        (Method::POST, "/_akvfs/faults", "", "missing"),
        (
            Method::POST,
            "/_akvfs/clock/advance",
            "{}",
            "missing field `seconds`",
        ),
        (
            Method::POST,
            "/_akvfs/clock/advance",
            r#"{"seconds":1,"days":1}"#,
            "unknown field `days`",
        ),
        (
            Method::POST,
            "/_akvfs/clock/advance",
            r#"{"seconds":"hunter2"}"#,
            "`seconds` must be i64",
        ),
        (
            Method::POST,
            "/_akvfs/paging",
            "{}",
            "missing field `short_pages`",
        ),
        (
            Method::POST,
            "/_akvfs/seed",
            r#"{"prefix":"a","count":1}"#,
            "missing field `value`",
        ),
        (
            Method::POST,
            "/_akvfs/seed",
            r#"{"prefix":"a","count":0,"value":"hunter2"}"#,
            "`count`",
        ),
        (
            Method::POST,
            "/_akvfs/seed",
            r#"{"prefix":"a_","count":1,"value":"hunter2"}"#,
            "`prefix`",
        ),
        (
            Method::POST,
            "/_akvfs/seed",
            r#"{"prefix":"a","count":1,"value":"v","tags":{}}"#,
            "unknown field `tags`",
        ),
        (
            Method::POST,
            "/_akvfs/principals",
            "{}",
            "missing field `permissions`",
        ),
        (
            Method::POST,
            "/_akvfs/principals",
            r#"{"permissions":["gte"]}"#,
            "`permissions`",
        ),
        (
            Method::POST,
            "/_akvfs/principals/certificates",
            "{}",
            "missing field `client_id`",
        ),
        (
            Method::POST,
            "/_akvfs/federated-token",
            r#"{"clientid":"x"}"#,
            "unknown field `clientid`",
        ),
        (
            Method::POST,
            "/_akvfs/federated-token",
            r#"{"lifetime_seconds":0}"#,
            "`lifetime_seconds`",
        ),
        (Method::POST, "/_akvfs/reset", r#"{"all":true}"#, "no body"),
        (Method::POST, "/_akvfs/counters/reset", "[1]", "no body"),
        (
            Method::DELETE,
            "/_akvfs/faults",
            r#"{"operation":"get_secret"}"#,
            "no body",
        ),
    ];
    for (method, path, body, needle) in cases {
        let (s, answer) = tv.admin_text(method.clone(), path, body).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(s, 400, "{method} {path} {body}: {answer}");
        assert_eq!(error_code(&answer).0, "BadParameter", "{path} {body}");
        assert!(
            message.contains(needle),
            "{path} {body}: {message:?} lacks {needle:?}"
        );
        assert!(
            !message.contains("hunter2"),
            "{path} {body}: value quoted: {message}"
        );
    }
    // Nothing above changed anything: the secret is there, and the first real fault rule fires.
    assert_eq!(tv.get("/secrets/f").await.0, 200);
    let (s, _) = tv
        .admin_raw(
            Method::POST,
            "/_akvfs/faults",
            Some(json!({"operation":"get_secret","status":503,"count":1})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(tv.get("/secrets/f").await.0, 503);
    assert_eq!(tv.get("/secrets/f").await.0, 200);
    // Endpoints without a body accept none, or {}.
    for (method, path) in [
        (Method::POST, "/_akvfs/counters/reset"),
        (Method::DELETE, "/_akvfs/faults"),
    ] {
        assert_eq!(
            tv.admin_text(method.clone(), path, "").await.0,
            200,
            "{path}"
        );
        assert_eq!(tv.admin_text(method, path, " {} ").await.0, 200, "{path}");
    }
}

/// Standard output ends up in journals and CI logs: `akvfs local-vault` prints the env file's
/// path and the values that are not secret; `--print-env` prints everything.
#[test]
fn local_vault_prints_no_secret_unless_print_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    for print_env in [false, true] {
        let data = dir.path().join(format!("lv-{print_env}"));
        let extra: &[&str] = if print_env { &["--print-env"] } else { &[] };
        let mut child = spawn_vault("077", &data, extra);
        let env = wait_for_env(&mut child, &data);
        let out = stop(child);
        let env_path = data.join("env").display().to_string();
        assert!(out.contains(&env_path), "the env file's path:\n{out}");
        for public in [
            &env.vault_url,
            &env.tenant_id,
            &env.client_id,
            &env.identity_endpoint,
        ] {
            assert!(out.contains(public.as_str()), "{public} missing:\n{out}");
        }
        for (what, secret) in [
            ("client secret", env.client_secret.expose()),
            ("admin token", env.admin_token.expose()),
            ("identity header", env.identity_header.expose()),
        ] {
            assert_eq!(
                out.contains(secret),
                print_env,
                "{what} on stdout with print_env={print_env}"
            );
        }
    }
}
