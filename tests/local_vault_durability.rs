//! Durability: every write the vault acknowledged is there after `kill -9` of the server process.
//!
//! The server runs in a child process: this test binary re-executed with
//! `AKVFS_TEST_VAULT_CHILD=DIR`, which runs the (normally ignored) `child_vault_process` test as
//! a plain local vault until killed.

mod local_vault_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use akvfs::local_vault::{LocalVault, LocalVaultEnv};
use local_vault_support::{config, get_token, http_client, API};

const CHILD_ENV: &str = "AKVFS_TEST_VAULT_CHILD";

#[tokio::test]
#[ignore = "runs only as the child process of acknowledged_writes_survive_kill_9"]
async fn child_vault_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let vault = LocalVault::start(config(std::path::Path::new(&dir)))
        .await
        .expect("start child vault");
    eprintln!("child vault at {}", vault.vault_url());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

// The caller reaps the child (`kill_9` waits for it).
#[allow(clippy::zombie_processes)]
fn spawn_child(dir: &std::path::Path) -> (Child, LocalVaultEnv) {
    let env_file = dir.join("env");
    let _ = std::fs::remove_file(&env_file);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "child_vault_process", "--nocapture"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child vault");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(env) = LocalVaultEnv::read_env_file(&env_file) {
            return (child, env);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child vault did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_9(child: &mut Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9");
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, env) = spawn_child(dir.path());
    let http = http_client(&env);
    let token = get_token(&http, &env, &env.vault_url).await;

    // Concurrent writers; the server is killed while they run.
    let acknowledged = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, token, url, acked) = (
            http.clone(),
            token.clone(),
            env.vault_url.clone(),
            acknowledged.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}");
                let resp = http
                    .put(format!("{url}/secrets/{name}?{API}"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "value": format!("value-{w}-{i}") }))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => acked.lock().push(name),
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    kill_9(&mut child);
    for w in writers {
        let _ = w.await;
    }
    let acked = acknowledged.lock().clone();
    assert!(acked.len() > 10, "writers made progress: {}", acked.len());

    let (mut child, env) = spawn_child(dir.path());
    let http = http_client(&env);
    let token = get_token(&http, &env, &env.vault_url).await;
    for name in &acked {
        let resp = http
            .get(format!("{}/secrets/{name}?{API}", env.vault_url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "acknowledged write {name} lost");
    }
    kill_9(&mut child);
}
