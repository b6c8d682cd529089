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
    // A stale env file of an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(data.join("env"));
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
    // `METHOD PATH | BODY | what the message must name`
    let cases = [
        r#"POST /_akvfs/faults | {} | `status`, `drop_connection` or `latency_ms`"#,
        r#"POST /_akvfs/faults | {"operation":"get_secret"} | `status`"#,
        r#"POST /_akvfs/faults | {"status":503,"stauts":1} | unknown field `stauts`"#,
        r#"POST /_akvfs/faults | {"status":"hunter2"} | `status` must be u16"#,
        r#"POST /_akvfs/faults | {"status":503,"count":0} | `count`"#,
        r#"POST /_akvfs/faults | {"latency_ms":5,"retry_after":1} | `retry_after`"#,
        r#"POST /_akvfs/faults | {"status":503,"drop_connection":true} | `drop_connection`"#,
        r#"POST /_akvfs/faults | {"status":503,"rate":0} | `rate`"#,
        r#"POST /_akvfs/faults |  | missing"#,
        r#"POST /_akvfs/clock/advance | {} | missing field `seconds`"#,
        r#"POST /_akvfs/clock/advance | {"seconds":1,"days":1} | unknown field `days`"#,
        r#"POST /_akvfs/clock/advance | {"seconds":"hunter2"} | `seconds` must be i64"#,
        r#"POST /_akvfs/paging | {} | missing field `short_pages`"#,
        r#"POST /_akvfs/seed | {"prefix":"a","count":1} | missing field `value`"#,
        r#"POST /_akvfs/seed | {"prefix":"a","count":0,"value":"hunter2"} | `count`"#,
        r#"POST /_akvfs/seed | {"prefix":"a_","count":1,"value":"hunter2"} | `prefix`"#,
        r#"POST /_akvfs/seed | {"prefix":"a","count":1,"value":"v","tags":{}} | unknown field `tags`"#,
        r#"POST /_akvfs/principals | {} | missing field `permissions`"#,
        r#"POST /_akvfs/principals | {"permissions":["gte"]} | `permissions`"#,
        r#"POST /_akvfs/principals/certificates | {} | missing field `client_id`"#,
        r#"POST /_akvfs/federated-token | {"clientid":"x"} | unknown field `clientid`"#,
        r#"POST /_akvfs/federated-token | {"lifetime_seconds":0} | `lifetime_seconds`"#,
        r#"POST /_akvfs/reset | {"all":true} | no body"#,
        r#"POST /_akvfs/counters/reset | [1] | no body"#,
        r#"DELETE /_akvfs/faults | {"operation":"get_secret"} | no body"#,
    ];
    for case in cases {
        let mut parts = case.splitn(3, " | ");
        let (Some(request), Some(body), Some(needle)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("bad case {case}");
        };
        let (method, path) = request.split_once(' ').expect("METHOD PATH");
        let method: Method = method.parse().expect("method");
        let (s, answer) = tv.admin_text(method, path, body).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(s, 400, "{case}: {answer}");
        assert_eq!(error_code(&answer).0, "BadParameter", "{case}");
        assert!(message.contains(needle), "{case}: {message:?}");
        assert!(
            !message.contains("hunter2"),
            "{case}: value quoted: {message}"
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

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Every file in the data directory, and the log, with its mode.
fn modes(data: &Path, log: &Path) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = std::fs::read_dir(data)
        .expect("read data dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                mode_of(&e.path()),
            )
        })
        .collect();
    out.push(("--log-file".into(), mode_of(log)));
    out.push((".".into(), mode_of(data)));
    out.sort();
    out
}

fn expected_mode(name: &str) -> u32 {
    match name {
        "." => 0o700,
        "ca.pem" | "tls.pem" | "tls.names" => 0o644,
        _ => 0o600,
    }
}

/// Under `umask 000`, every file the local vault makes has its explicit mode (secret material
/// 0600, certificates 0644), and files kept from an earlier start get it back.
#[test]
fn under_umask_000_every_file_gets_its_explicit_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("lv");
    let log = dir.path().join("vault.log");
    let log_arg = log.display().to_string();
    let run = |data: &Path| {
        let mut child = spawn_vault("000", data, &["--log-file", &log_arg]);
        let env = wait_for_env(&mut child, data);
        // A write and a backup, so the database's WAL and every key file exist.
        let tv_http = local_vault_support::http_client(&env);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let token = local_vault_support::get_token(&tv_http, &env, &env.vault_url).await;
            for path in ["/secrets/a", "/secrets/a/backup"] {
                let method = if path.ends_with("backup") {
                    Method::POST
                } else {
                    Method::PUT
                };
                let resp = tv_http
                    .request(
                        method,
                        format!("{}{path}?{}", env.vault_url, local_vault_support::API),
                    )
                    .bearer_auth(&token)
                    .json(&json!({"value": "v"}))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(resp.status(), 200, "{path}");
            }
        });
        let found = modes(data, &log);
        stop(child);
        found
    };
    let first = run(&data);
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    for name in [
        "ca.pem",
        "ca-key.pem",
        "tls.pem",
        "tls-key.pem",
        "env",
        "lock",
        "vault.db",
    ] {
        assert!(names.contains(&name), "{name} not made: {names:?}");
    }
    for (name, mode) in &first {
        assert_eq!(
            *mode,
            expected_mode(name),
            "{name}: {mode:04o} (all: {first:?})"
        );
    }
    // Widen everything, as an older version under umask 000 left it: the next start narrows it.
    for (name, _) in &first {
        let path = match name.as_str() {
            "--log-file" => log.clone(),
            "." => continue,
            _ => data.join(name),
        };
        use std::os::unix::fs::PermissionsExt;
        // (SQLite removes its WAL and SHM files at a clean stop.)
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        }
    }
    let second = run(&data);
    for (name, mode) in &second {
        assert_eq!(
            *mode,
            expected_mode(name),
            "{name} after restart: {mode:04o}"
        );
    }
}

/// A data directory others (or its group) can write is refused: exit 1, naming it.
#[test]
fn a_data_directory_writable_by_group_or_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    for mode in [0o777, 0o770, 0o703] {
        let data = dir.path().join(format!("open-{mode:o}"));
        std::fs::create_dir(&data).expect("mkdir");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let out = Command::new(env!("CARGO_BIN_EXE_akvfs"))
            .args(["local-vault", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mode:o}: {stderr}");
        assert!(stderr.contains(&data.display().to_string()), "{stderr}");
        assert!(stderr.contains("writable by"), "{stderr}");
        assert!(!data.join("env").exists(), "nothing written into it");
    }
}

fn decode_blob(blob: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(blob)
        .expect("a backup blob is base64url without padding")
}

fn encode_blob(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Backup blobs are opaque and encrypted under a key of the data directory (0600, made on the
/// first backup): no value, name or JSON in clear; a blob of another data directory, a
/// tampered or a truncated one is refused as the service refuses a corrupt blob; the key
/// survives a restart.
#[tokio::test]
async fn backups_are_encrypted_and_restore_only_into_their_own_data_directory() {
    const MARKER: &str = "MARKER-value-in-clear-7f3a";
    let tv = TestVault::start().await;
    let key_file = tv.dir.path().join("backup.key");
    assert!(!key_file.exists(), "no key before the first backup");
    tv.put("opaque", MARKER).await;
    tv.put("opaque", &format!("{MARKER}-2")).await;
    let (s, backup) = tv.post("/secrets/opaque/backup", None).await;
    assert_eq!(s, 200);
    let object = backup.as_object().expect("object");
    assert_eq!(object.len(), 1, "only `value`: {backup}");
    let blob = backup["value"].as_str().expect("blob").to_owned();
    let bytes = decode_blob(&blob);
    let clear = String::from_utf8_lossy(&bytes);
    for needle in ["MARKER", "opaque", "versions", "{\""] {
        assert!(!clear.contains(needle), "{needle} readable in the blob");
    }
    assert_eq!(mode_of(&key_file), 0o600);
    assert_eq!(std::fs::metadata(&key_file).expect("key").len(), 32);
    // Two backups of the same secret differ (a fresh nonce each time).
    let (_, again) = tv.post("/secrets/opaque/backup", None).await;
    assert_ne!(again["value"], backup["value"]);

    tv.delete_and_wait("opaque").await;
    assert_eq!(tv.delete("/deletedsecrets/opaque").await.0, 204);
    let refused = json!({"error":{"code":"BadParameter","message":"Backup blob contains invalid or corrupt version."}});
    let restore = |value: String| {
        let tv = &tv;
        async move {
            tv.post("/secrets/restore", Some(json!({ "value": value })))
                .await
        }
    };
    // Tampered anywhere (version, nonce, ciphertext, tag), truncated, empty: refused.
    for i in [0, 1, 13, bytes.len() / 2, bytes.len() - 1] {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x01;
        assert_eq!(
            restore(encode_blob(&tampered)).await,
            (400, refused.clone()),
            "byte {i}"
        );
    }
    for cut in [0, 12, bytes.len() - 1] {
        assert_eq!(
            restore(encode_blob(&bytes[..cut])).await,
            (400, refused.clone()),
            "cut at {cut}"
        );
    }
    // A second local vault (another data directory) cannot read it, nor this one its blobs.
    let other = TestVault::start().await;
    let (s, _) = other
        .post("/secrets/restore", Some(json!({ "value": blob })))
        .await;
    assert_eq!(s, 400, "a vault that never made a backup refuses it");
    other.put("opaque", "other").await;
    let (_, foreign) = other.post("/secrets/opaque/backup", None).await;
    let (s, body) = other
        .post("/secrets/restore", Some(json!({ "value": blob })))
        .await;
    assert_eq!(
        (s, body),
        (400, refused.clone()),
        "another data directory's blob"
    );
    let foreign = foreign["value"].as_str().expect("blob").to_owned();
    assert_eq!(restore(foreign).await, (400, refused.clone()));
    // The genuine blob restores, with every version, also after a restart.
    let dir = tv.dir.path().to_path_buf();
    let TestVault {
        vault, dir: keep, ..
    } = tv;
    vault.shutdown().await;
    let restarted = akvfs::local_vault::LocalVault::start(local_vault_support::config(&dir))
        .await
        .expect("restart");
    let http = local_vault_support::http_client(restarted.env());
    let token = local_vault_support::get_token(&http, restarted.env(), restarted.vault_url()).await;
    let resp = http
        .post(format!(
            "{}/secrets/restore?{}",
            restarted.vault_url(),
            local_vault_support::API
        ))
        .bearer_auth(&token)
        .json(&json!({ "value": blob }))
        .send()
        .await
        .expect("restore");
    assert_eq!(resp.status(), 200, "restored after a restart");
    let resp = http
        .get(format!(
            "{}/secrets/opaque?{}",
            restarted.vault_url(),
            local_vault_support::API
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    let got: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(got["value"], format!("{MARKER}-2"));
    drop(keep);
}

/// `(status, error message, challenge present)` of `GET /secrets` with `token`.
async fn refusal(tv: &TestVault, token: &str) -> (u16, String, bool) {
    let resp = tv.get_with_token("/secrets", token).await;
    let status = resp.status().as_u16();
    let challenged = resp.headers().get("www-authenticate").is_some();
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "Unauthorized", "{body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    (status, message, challenged)
}

/// Each reason a token is refused has the service's text, and every 401 carries the challenge:
/// no token AKV10000, another audience AKV10022, a bad signature AKV10046, expired IDX10223.
#[tokio::test]
async fn refused_tokens_get_the_services_401_text_for_the_reason() {
    let tv = TestVault::start().await;
    let url = tv.vault.vault_url().to_owned();
    let resp = tv.http.get(tv.url("/secrets")).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        body["error"]["message"],
        "AKV10000: Request is missing a Bearer or PoP token."
    );

    let management =
        local_vault_support::get_token(&tv.http, tv.vault.env(), "https://management.azure.com/")
            .await;
    assert_eq!(
        refusal(&tv, &management).await,
        (
            401,
            format!(
                "AKV10022: Invalid audience. Expected {url}, found: https://management.azure.com."
            ),
            true
        )
    );

    // Another character in the middle of the signature.
    let dot = tv.token.rfind('.').expect("jwt");
    let middle = dot + (tv.token.len() - dot) / 2;
    let mut forged = tv.token.clone();
    let flipped = if &forged[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    forged.replace_range(middle..=middle, flipped);
    let signature_refused = (
        401,
        "AKV10046: Unable to resolve the key used for signature validation.".to_owned(),
        true,
    );
    assert_eq!(refusal(&tv, &forged).await, signature_refused);
    // A token of another local vault (another key), even for this vault's audience.
    let other = TestVault::start().await;
    let foreign = local_vault_support::get_token(&other.http, other.vault.env(), &url).await;
    assert_eq!(refusal(&tv, &foreign).await, signature_refused);

    assert_eq!(
        refusal(&tv, "not-a-jwt").await,
        (401, "Error validating token: IDX12709".to_owned(), true)
    );

    tv.admin().advance_clock(3601).await.expect("advance");
    assert_eq!(
        refusal(&tv, &tv.token).await,
        (401, "Error validating token: IDX10223".to_owned(), true)
    );
}

/// Tokens for a cloud's Key Vault audience (`https://vault.azure.net`, with or without a
/// trailing slash, asked for as `…/.default` or as a v1 resource) are accepted on any host
/// under that cloud's vault domain and refused (AKV10022) elsewhere; the vault's own loopback
/// audience keeps working on its loopback URL.
#[tokio::test]
async fn cloud_audiences_are_accepted_under_their_clouds_vault_domain_only() {
    let hosts = [
        "kv.vault.azure.net",
        "kv.privatelink.vault.azure.net",
        "kv.vault.azure.cn",
        "kv.vault.usgovcloudapi.net",
    ];
    let tv = TestVault::start_with(|c| {
        c.hostnames = hosts.iter().map(|h| (*h).to_owned()).collect();
    })
    .await;
    let env = tv.vault.env().clone();
    let port = tv.port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let pem = std::fs::read(&env.ca_file).expect("ca");
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .no_proxy();
    for host in hosts {
        builder = builder.resolve(host, addr);
    }
    let http = builder.build().expect("client");
    // Tokens from the v2 endpoint (scope) and the v1 endpoint (resource).
    let token = |form: Vec<(&'static str, String)>, v2: bool| {
        let http = http.clone();
        let env = env.clone();
        async move {
            let path = if v2 {
                "oauth2/v2.0/token"
            } else {
                "oauth2/token"
            };
            let mut form = form;
            form.extend([
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", env.client_id.clone()),
                ("client_secret", env.client_secret.expose().to_owned()),
            ]);
            let resp = http
                .post(format!("{}/{}/{path}", env.authority_host, env.tenant_id))
                .form(&form)
                .send()
                .await
                .expect("token request");
            assert_eq!(resp.status(), 200);
            let body: serde_json::Value = resp.json().await.expect("json");
            body["access_token"].as_str().expect("token").to_owned()
        }
    };
    let list = |base: String, token: String| {
        let http = http.clone();
        async move {
            let resp = http
                .get(format!("{base}/secrets?{}", local_vault_support::API))
                .bearer_auth(token)
                .send()
                .await
                .expect("list");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.expect("json");
            (
                status,
                body["error"]["message"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    for (cloud, cloud_hosts, other_host) in [
        (
            "https://vault.azure.net",
            &["kv.vault.azure.net", "kv.privatelink.vault.azure.net"][..],
            "kv.vault.azure.cn",
        ),
        (
            "https://vault.azure.cn",
            &["kv.vault.azure.cn"][..],
            "kv.vault.azure.net",
        ),
        (
            "https://vault.usgovcloudapi.net",
            &["kv.vault.usgovcloudapi.net"][..],
            "kv.vault.azure.net",
        ),
    ] {
        let tokens = [
            token(vec![("scope", format!("{cloud}/.default"))], true).await,
            token(vec![("scope", format!("{cloud}//.default"))], true).await,
            token(vec![("resource", format!("{cloud}/"))], false).await,
            token(vec![("resource", cloud.to_owned())], false).await,
        ];
        for t in &tokens {
            for host in cloud_hosts {
                assert_eq!(
                    list(format!("https://{host}:{port}"), t.clone()).await,
                    (200, String::new()),
                    "{cloud} token on {host}"
                );
            }
            let expected = format!("https://{}", other_host.trim_start_matches("kv."));
            assert_eq!(
                list(format!("https://{other_host}:{port}"), t.clone()).await,
                (
                    401,
                    format!("AKV10022: Invalid audience. Expected {expected}, found: {cloud}.")
                ),
                "{cloud} token on {other_host}"
            );
            let (status, message) = list(tv.vault.vault_url().to_owned(), t.clone()).await;
            assert_eq!(status, 401, "{cloud} token on the loopback URL");
            assert!(message.starts_with("AKV10022: "), "{message}");
        }
    }
    // The vault's own audience: its loopback URL takes it, a cloud host does not.
    assert_eq!(
        list(tv.vault.vault_url().to_owned(), tv.token.clone()).await,
        (200, String::new())
    );
    let (status, message) = list(
        format!("https://kv.vault.azure.net:{port}"),
        tv.token.clone(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        message,
        format!(
            "AKV10022: Invalid audience. Expected https://vault.azure.net, found: {}.",
            tv.vault.vault_url()
        )
    );
}
