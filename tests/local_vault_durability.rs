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

/// SPEC §7 / issue 6: `kill -9` of the local vault during 1,000 writes (four writers of 250
/// each); the kill comes when half of them were acknowledged, the rest in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    const WRITERS: usize = 4;
    const WRITES: usize = 1000;
    const KILL_AT: usize = WRITES / 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, env) = spawn_child(dir.path());
    let http = http_client(&env);
    let token = get_token(&http, &env, &env.vault_url).await;

    let acknowledged = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let half_done = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (http, token, url, acked, half_done) = (
            http.clone(),
            token.clone(),
            env.vault_url.clone(),
            acknowledged.clone(),
            half_done.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while i < WRITES / WRITERS {
                let name = format!("w{w}-{i}");
                let resp = http
                    .put(format!("{url}/secrets/{name}?{API}"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "value": format!("value-{w}-{i}") }))
                    .send()
                    .await;
                match resp {
                    // The vault throttles sets as the service does (300 per 10 s): wait as
                    // told and write again, as every client does.
                    Ok(r) if r.status() == 429 => {
                        let secs = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .unwrap_or(1);
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                    }
                    Ok(r) if r.status() == 200 => {
                        i += 1;
                        let mut acked = acked.lock();
                        acked.push(name);
                        if acked.len() == KILL_AT {
                            half_done.notify_one();
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), half_done.notified())
        .await
        .expect("half of the writes acknowledged in time");
    kill_9(&mut child);
    for w in writers {
        let _ = w.await;
    }
    let acked = acknowledged.lock().clone();
    assert!(
        acked.len() >= KILL_AT,
        "writers made progress: {}",
        acked.len()
    );
    assert!(
        acked.len() < WRITES,
        "every write finished before the kill: it did not come during the writes"
    );

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
        let body: serde_json::Value = resp.json().await.expect("json");
        // `w{w}-{i}` was written as `value-{w}-{i}`.
        let written = format!("value-{}", &name[1..]);
        assert_eq!(
            body["value"],
            written.as_str(),
            "{name} holds another value"
        );
    }
    kill_9(&mut child);
}
