//! Durability: every write the vault acknowledged is there after `kill -9` of the server process.
//!
//! The server runs in a child process: this test binary re-executed with
//! `AKVFS_TEST_VAULT_CHILD=DIR`, which runs the (normally ignored) `child_vault_process` test as
//! a plain local vault until killed.

mod local_vault_support;

use std::process::Stdio;
use std::time::Duration;

use local_vault_support::{
    get_token, http_client, kill_9, serve_until_killed, spawn_child_vault, API,
};

const CHILD_ENV: &str = "AKVFS_TEST_VAULT_CHILD";

#[tokio::test]
#[ignore = "runs only as the child process of acknowledged_writes_survive_kill_9"]
async fn child_vault_process() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        serve_until_killed(std::path::Path::new(&dir)).await;
    }
}

fn spawn_child(dir: &std::path::Path) -> (std::process::Child, akvfs::local_vault::LocalVaultEnv) {
    spawn_child_vault("child_vault_process", CHILD_ENV, dir, Stdio::null())
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
    // Kill once writes are flowing (bounded wait, whatever the machine's fsync speed).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().len() < 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill_9(&mut child);
    for w in writers {
        let _ = w.await;
    }
    let acked = acknowledged.lock().clone();
    assert!(acked.len() >= 20, "writers made progress: {}", acked.len());

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
