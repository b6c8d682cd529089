//! SecretClient against the real local vault (end to end).

mod common;

use std::time::{Duration, Instant};

use akvfs::local_vault::admin::FaultSpec;
use akvfs::local_vault::{AdminClient, LocalVault, LocalVaultConfig};
use akvfs::vault::auth::{credential_with_env, AuthKind};
use akvfs::vault::client::{ClientOptions, SecretClient};
use akvfs::vault::model::{SecretAttributes, SecretSetParameters, SecretUpdateParameters};
use akvfs::vault::{SecretStore, VaultError};
use common::client_options;

struct Lv {
    vault: LocalVault,
    _dir: tempfile::TempDir,
}

async fn start(tweak: impl FnOnce(&mut LocalVaultConfig)) -> Lv {
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = LocalVaultConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: Some(dir.path().to_path_buf()),
        deletion_delay: Duration::from_millis(300),
        ..LocalVaultConfig::default()
    };
    tweak(&mut cfg);
    let vault = LocalVault::start(cfg).await.expect("start");
    Lv { vault, _dir: dir }
}

fn client(lv: &Lv, kind: AuthKind, tune: impl FnOnce(&mut ClientOptions)) -> SecretClient {
    let env = lv.vault.env().clone();
    let lookup = |name: &str| -> Option<String> {
        match name {
            "AKVFS_TENANT_ID" => Some(env.tenant_id.clone()),
            "AKVFS_CLIENT_ID" => Some(env.client_id.clone()),
            "AKVFS_CLIENT_SECRET" => Some(env.client_secret.expose().to_owned()),
            "AKVFS_AUTHORITY_HOST" => Some(env.authority_host.clone()),
            "IDENTITY_ENDPOINT" => Some(env.identity_endpoint.clone()),
            "IDENTITY_HEADER" => Some(env.identity_header.expose().to_owned()),
            _ => None,
        }
    };
    let cred =
        credential_with_env(kind, &env.vault_url, Some(&env.ca_file), &lookup).expect("cred");
    let mut o = client_options(&env);
    tune(&mut o);
    SecretClient::new(o, cred).expect("client")
}

fn set(v: &str) -> SecretSetParameters {
    SecretSetParameters {
        value: v.into(),
        ..SecretSetParameters::default()
    }
}

#[tokio::test]
async fn full_lifecycle_against_the_local_vault() {
    let lv = start(|_| {}).await;
    let admin = AdminClient::new(lv.vault.env()).expect("admin");
    let c = client(&lv, AuthKind::Env, |o| o.page_size = Some(2));
    c.check_connection().await.expect("check");
    for i in 0..5 {
        c.set_secret(&format!("s{i}"), set(&format!("v{i}")))
            .await
            .expect("set");
    }
    c.set_secret("s0", set("v0b")).await.expect("set 2");
    let got = c.get_secret("S0", None).await.expect("get");
    assert_eq!(got.value.as_ref().map(|v| v.expose()), Some("v0b"));
    admin.reset_counters().await.expect("reset");
    let list = c.list_properties_of_secrets().await.expect("list");
    assert_eq!(list.len(), 5);
    let counters = admin.counters().await.expect("counters");
    assert_eq!(counters.count("list_secrets"), 3, "{counters:?}");
    let versions = c
        .list_properties_of_secret_versions("s0")
        .await
        .expect("versions");
    assert_eq!(versions.len(), 2);
    let upd = c
        .update_secret_properties(
            "s1",
            None,
            SecretUpdateParameters {
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(upd.content_type.as_deref(), Some("text/plain"));
    let version = got
        .id
        .as_deref()
        .and_then(|id| id.rsplit('/').next())
        .expect("version")
        .to_owned();
    let by_version = c
        .get_secret("s0", Some(&version))
        .await
        .expect("by version");
    assert_eq!(by_version.value.as_ref().map(|v| v.expose()), Some("v0b"));

    // delete polls to completion
    admin.reset_counters().await.expect("reset");
    let started = Instant::now();
    let deleted = c.delete_secret("s2").await.expect("delete");
    assert!(deleted.recovery_id.is_some());
    let took = started.elapsed();
    let counters = admin.counters().await.expect("counters");
    eprintln!("delete took {took:?}, counters {counters:?}");
    assert!(counters.count_status("get_deleted_secret", 200) == 1);
    c.get_deleted_secret("s2").await.expect("deleted exists");
    assert_eq!(
        c.list_deleted_secrets().await.expect("deleted list").len(),
        1
    );
    let e = c
        .set_secret("s2", set("again"))
        .await
        .expect_err("conflict");
    assert!(
        matches!(e, VaultError::DeletedButRecoverable { .. }),
        "{e:?}"
    );
    c.recover_deleted_secret("s2").await.expect("recover");
    assert_eq!(
        c.get_secret("s2", None)
            .await
            .expect("back")
            .value
            .map(|v| v.expose().to_owned())
            .as_deref(),
        Some("v2")
    );
    c.delete_secret("s2").await.expect("delete again");
    c.purge_deleted_secret("s2").await.expect("purge");
    let e = c.get_deleted_secret("s2").await.expect_err("purged");
    assert!(matches!(e, VaultError::NotFound { .. }), "{e:?}");

    // errors
    let e = c
        .set_secret("big", set(&"x".repeat(25_601)))
        .await
        .expect_err("too big");
    assert!(matches!(e, VaultError::ValueTooLarge { .. }), "{e:?}");
    c.set_secret(
        "off",
        SecretSetParameters {
            value: "x".into(),
            attributes: Some(SecretAttributes {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .expect("disabled set");
    let e = c.get_secret("off", None).await.expect_err("disabled");
    assert!(matches!(e, VaultError::SecretDisabled { .. }), "{e:?}");
    let e = c.get_secret("nope", None).await.expect_err("missing");
    assert!(matches!(e, VaultError::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn faults_are_retried_and_tokens_renewed() {
    let lv = start(|_| {}).await;
    let admin = AdminClient::new(lv.vault.env()).expect("admin");
    let c = client(&lv, AuthKind::Env, |_| {});
    c.set_secret("a", set("1")).await.expect("set");
    admin
        .inject_fault(FaultSpec::status(503).for_operation("get_secret").times(2))
        .await
        .expect("fault");
    c.get_secret("a", None).await.expect("after 503s");
    admin
        .inject_fault(FaultSpec::status(429).for_operation("get_secret").times(1))
        .await
        .expect("fault");
    c.get_secret("a", None).await.expect("after bare 429");
    admin
        .inject_fault(
            FaultSpec::status(429)
                .for_operation("get_secret")
                .times(1)
                .with_retry_after(1),
        )
        .await
        .expect("fault");
    let t = Instant::now();
    c.get_secret("a", None)
        .await
        .expect("after 429 retry-after");
    assert!(t.elapsed() >= Duration::from_millis(900));
    admin
        .inject_fault(
            FaultSpec::default()
                .for_operation("get_secret")
                .times(1)
                .dropping_connection(),
        )
        .await
        .expect("fault");
    c.get_secret("a", None)
        .await
        .expect("after a dropped connection");
    // token expiry via the server clock: a 401 with a token re-runs the challenge
    admin.reset_counters().await.expect("reset");
    admin.advance_clock(7200).await.expect("advance");
    c.get_secret("a", None).await.expect("after expiry");
    let counters = admin.counters().await.expect("counters");
    eprintln!("{counters:?}");
    assert_eq!(counters.count("token"), 1);
}

#[tokio::test]
async fn managed_identity_and_auto_work_with_the_env_file_variables() {
    let lv = start(|_| {}).await;
    let c = client(&lv, AuthKind::ManagedIdentity, |_| {});
    c.set_secret("m", set("1")).await.expect("mi set");
    let c = client(&lv, AuthKind::Auto, |_| {});
    c.get_secret("m", None).await.expect("auto get");
}

#[tokio::test]
async fn no_soft_delete_returns_at_once() {
    let lv = start(|c| c.soft_delete = false).await;
    let admin = AdminClient::new(lv.vault.env()).expect("admin");
    let c = client(&lv, AuthKind::Env, |_| {});
    c.set_secret("x", set("1")).await.expect("set");
    let d = c.delete_secret("x").await.expect("delete");
    assert!(d.recovery_id.is_none());
    assert_eq!(
        admin
            .counters()
            .await
            .expect("c")
            .count("get_deleted_secret"),
        0
    );
}

#[tokio::test]
async fn ten_percent_failures_never_reach_the_caller() {
    let lv = start(|_| {}).await;
    let admin = AdminClient::new(lv.vault.env()).expect("admin");
    let c = std::sync::Arc::new(client(&lv, AuthKind::Env, |_| {}));
    for i in 0..20 {
        c.set_secret(&format!("f{i}"), set("v")).await.expect("set");
    }
    admin
        .inject_fault(FaultSpec::status(500).with_rate(0.04))
        .await
        .expect("fault");
    admin
        .inject_fault(FaultSpec::status(503).with_rate(0.03))
        .await
        .expect("fault");
    admin
        .inject_fault(FaultSpec::default().dropping_connection().with_rate(0.03))
        .await
        .expect("fault");
    let mut tasks = Vec::new();
    for i in 0..400 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.get_secret(&format!("f{}", i % 20), None)
                .await
                .map(|_| ())
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.expect("join") {
            errors.push(e);
        }
    }
    assert!(errors.is_empty(), "{errors:?}");
}

/// A credential of `kind` seeing only `vars` (plus the local vault's authority host).
fn credential_with(
    lv: &Lv,
    kind: AuthKind,
    vars: Vec<(&'static str, String)>,
) -> std::sync::Arc<dyn akvfs::vault::auth::TokenCredential> {
    let env = lv.vault.env().clone();
    let lookup = move |name: &str| -> Option<String> {
        if name == "AKVFS_AUTHORITY_HOST" {
            return Some(env.authority_host.clone());
        }
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    let env = lv.vault.env();
    credential_with_env(kind, &env.vault_url, Some(&env.ca_file), &lookup).expect("credential")
}

/// The workload identity credential of the vault's default principal, reading `token_file`.
fn workload_identity_credential(
    lv: &Lv,
    token_file: &std::path::Path,
) -> std::sync::Arc<dyn akvfs::vault::auth::TokenCredential> {
    let env = lv.vault.env();
    credential_with(
        lv,
        AuthKind::WorkloadIdentity,
        vec![
            ("AZURE_TENANT_ID", env.tenant_id.clone()),
            ("AZURE_CLIENT_ID", env.client_id.clone()),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                token_file.display().to_string(),
            ),
        ],
    )
}

fn client_with_credential(
    lv: &Lv,
    credential: std::sync::Arc<dyn akvfs::vault::auth::TokenCredential>,
) -> SecretClient {
    SecretClient::new(client_options(lv.vault.env()), credential).expect("client")
}

/// A throwaway self-signed RSA certificate with its key (no real identity).
fn test_certificate_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/vault/auth/testdata/test-client-cert.pem")
}

fn token_request(lv: &Lv) -> akvfs::vault::auth::TokenRequest {
    akvfs::vault::auth::TokenRequest {
        scope: format!("{}/.default", lv.vault.vault_url()),
        ..Default::default()
    }
}

#[tokio::test]
async fn client_certificate_credential_authenticates_with_a_registered_certificate() {
    let lv = start(|_| {}).await;
    let admin = AdminClient::new(lv.vault.env()).expect("admin");
    client(&lv, AuthKind::Env, |_| {})
        .set_secret("by-cert", set("certified"))
        .await
        .expect("set");
    let pem = std::fs::read_to_string(test_certificate_path()).expect("pem");
    let env = lv.vault.env().clone();
    let cert_vars = |client_id: &str| {
        vec![
            ("AZURE_TENANT_ID", env.tenant_id.clone()),
            ("AZURE_CLIENT_ID", client_id.to_owned()),
            (
                "AZURE_CLIENT_CERTIFICATE_PATH",
                test_certificate_path().display().to_string(),
            ),
        ]
    };

    // Not registered yet: AAD's "certificate not registered" error, no token.
    let cred = credential_with(&lv, AuthKind::Env, cert_vars(&env.client_id));
    assert_eq!(cred.name(), "ClientCertificateCredential");
    let err = client_with_credential(&lv, cred.clone())
        .get_secret("by-cert", None)
        .await
        .expect_err("unregistered certificate");
    assert!(err.to_string().contains("AADSTS700027"), "{err}");

    admin
        .add_client_certificate(&env.client_id, &pem)
        .await
        .expect("register");
    admin.reset_counters().await.expect("reset");
    let got = client_with_credential(&lv, cred.clone())
        .get_secret("by-cert", None)
        .await
        .expect("get with a certificate");
    assert_eq!(got.value.as_ref().map(|v| v.expose()), Some("certified"));
    let counters = admin.counters().await.expect("counters");
    assert_eq!(counters.count_status("token", 200), 1, "{counters:?}");

    // The certificate is registered for that principal only.
    let other = admin.create_principal(&["get"]).await.expect("principal");
    let err = credential_with(&lv, AuthKind::Env, cert_vars(&other.client_id))
        .get_token(&token_request(&lv))
        .await
        .expect_err("other principal");
    assert!(err.to_string().contains("AADSTS700027"), "{err}");

    // An assertion past its `exp` (10 minutes) on the vault clock is refused.
    admin.advance_clock(700).await.expect("advance");
    let err = cred
        .get_token(&token_request(&lv))
        .await
        .expect_err("expired assertion");
    assert!(err.to_string().contains("AADSTS700024"), "{err}");
}

fn write_token_file(path: &std::path::Path, token: &str) {
    // Replace it as the kubelet does: a new file renamed over the old one.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token).expect("write token");
    std::fs::rename(&tmp, path).expect("rename token");
}

#[tokio::test]
async fn workload_identity_reads_and_rereads_the_federated_token_file() {
    let lv = start(|_| {}).await;
    let admin = AdminClient::new(lv.vault.env()).expect("admin");
    client(&lv, AuthKind::Env, |_| {})
        .set_secret("by-wi", set("federated"))
        .await
        .expect("set");
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("azure-identity-token");
    let mint = |lifetime: i64| {
        let admin = &admin;
        async move {
            admin
                .federated_token(&akvfs::local_vault::FederatedTokenRequest {
                    lifetime_seconds: Some(lifetime),
                    ..Default::default()
                })
                .await
                .expect("mint")
                .token
        }
    };
    write_token_file(&token_file, mint(600).await.expose());
    let cred = workload_identity_credential(&lv, &token_file);
    admin.reset_counters().await.expect("reset");
    let c = client_with_credential(&lv, cred.clone());
    let got = c.get_secret("by-wi", None).await.expect("get via WI");
    assert_eq!(got.value.as_ref().map(|v| v.expose()), Some("federated"));

    // The federated token expires (vault clock): the file's old token is refused...
    admin.advance_clock(700).await.expect("advance");
    let err = cred
        .get_token(&token_request(&lv))
        .await
        .expect_err("expired federated token");
    assert!(err.to_string().contains("AADSTS700024"), "{err}");
    // ...the file is replaced, and the next token request (the vault refused the client's
    // expired access token) reads the new one.
    write_token_file(&token_file, mint(7200).await.expose());
    admin
        .advance_clock(3000)
        .await
        .expect("advance past the access token");
    let got = c
        .get_secret("by-wi", None)
        .await
        .expect("get after rotation");
    assert_eq!(got.value.as_ref().map(|v| v.expose()), Some("federated"));
    let counters = admin.counters().await.expect("counters");
    assert_eq!(counters.count_status("token", 200), 2, "{counters:?}");
    assert_eq!(counters.count_status("token", 400), 1, "{counters:?}");
}

#[tokio::test]
async fn federated_tokens_with_a_bad_signature_audience_or_subject_are_refused() {
    let lv = start(|_| {}).await;
    let admin = AdminClient::new(lv.vault.env()).expect("admin");
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    let cred = workload_identity_credential(&lv, &token_file);
    let refused = |token: String, code: &'static str| {
        let (cred, token_file, lv) = (&cred, &token_file, &lv);
        async move {
            write_token_file(token_file, &token);
            let err = cred
                .get_token(&token_request(lv))
                .await
                .expect_err("refused");
            assert!(err.to_string().contains(code), "{code}: {err}");
        }
    };
    let good = admin
        .federated_token(&Default::default())
        .await
        .expect("mint")
        .token;
    // A flipped signature byte.
    // A signature character well inside the signature: the last one also carries padding bits,
    // and changing those makes the token malformed (AADSTS50027), not badly signed.
    let mut forged: Vec<char> = good.expose().chars().collect();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    refused(forged, "AADSTS50013").await;
    let wrong_audience = admin
        .federated_token(&akvfs::local_vault::FederatedTokenRequest {
            audience: Some("api://SomethingElse".into()),
            ..Default::default()
        })
        .await
        .expect("mint");
    refused(wrong_audience.token.expose().to_owned(), "AADSTS700212").await;
    let other = admin.create_principal(&["get"]).await.expect("principal");
    let others_token = admin
        .federated_token(&akvfs::local_vault::FederatedTokenRequest {
            client_id: Some(other.client_id),
            ..Default::default()
        })
        .await
        .expect("mint");
    refused(others_token.token.expose().to_owned(), "AADSTS700213").await;
    // An access token of the vault is no federated token.
    let access = cred_token_via_secret(&lv).await;
    refused(access, "AADSTS50013").await;
    // The good one works.
    write_token_file(&token_file, good.expose());
    cred.get_token(&token_request(&lv))
        .await
        .expect("good token");
}

async fn cred_token_via_secret(lv: &Lv) -> String {
    let env = lv.vault.env().clone();
    credential_with(
        lv,
        AuthKind::Env,
        vec![
            ("AZURE_TENANT_ID", env.tenant_id.clone()),
            ("AZURE_CLIENT_ID", env.client_id.clone()),
            ("AZURE_CLIENT_SECRET", env.client_secret.expose().to_owned()),
        ],
    )
    .get_token(&token_request(lv))
    .await
    .expect("token")
    .token
    .expose()
    .to_owned()
}
