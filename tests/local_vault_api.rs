//! The local vault over real HTTPS: auth, the secrets data plane, soft delete, paging, limits,
//! errors — pinned against the shapes and texts of the recorded real service.

mod local_vault_support;

use std::time::Duration;

use local_vault_support::{error_code, get_token, TestVault};
use reqwest::Method;
use serde_json::{json, Value};

fn is_version(v: &str) -> bool {
    v.len() == 32
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn unauthenticated_request_gets_challenge_before_body_or_api_version() {
    let tv = TestVault::start().await;
    let url = tv.vault.vault_url();
    // No api-version and an invalid body: the challenge must still come first.
    let resp = tv
        .http
        .put(format!("{url}/secrets/anything"))
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .expect("www-authenticate")
        .to_str()
        .expect("ascii")
        .to_owned();
    let tenant = &tv.vault.env().tenant_id;
    assert_eq!(
        challenge,
        format!("Bearer authorization=\"{url}/{tenant}\", resource=\"{url}\"")
    );
    assert!(resp.headers().get("x-ms-request-id").is_some());
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}})
    );
}

#[tokio::test]
async fn invalid_tokens_are_challenged() {
    let tv = TestVault::start().await;
    let env = tv.vault.env();
    // Wrong audience.
    let other = get_token(&tv.http, env, "https://vault.azure.net").await;
    for bad in [other.as_str(), "not-a-jwt", "a.b.c"] {
        let resp = tv.get_with_token("/secrets", bad).await;
        assert_eq!(resp.status(), 401, "token {bad:.10}");
        assert!(resp.headers().get("www-authenticate").is_some());
    }
    // A token signed by the vault but tampered with.
    let mut tampered = tv.token.clone();
    tampered.insert(tampered.len() - 2, 'x');
    assert_eq!(tv.get_with_token("/secrets", &tampered).await.status(), 401);
}

#[tokio::test]
async fn token_endpoint_rejects_bad_credentials_in_aad_style() {
    let tv = TestVault::start().await;
    let env = tv.vault.env();
    let scope = format!("{}/.default", env.vault_url);
    let grant = ("grant_type", "client_credentials");
    let client = ("client_id", env.client_id.as_str());
    let secret = ("client_secret", env.client_secret.expose());
    let scope = ("scope", scope.as_str());

    let (s, body) = tv
        .token_request(&[grant, client, ("client_secret", "wrong"), scope])
        .await;
    assert_eq!(s, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"]
        .as_str()
        .expect("description")
        .starts_with("AADSTS7000215"));

    let unknown = ("client_id", "00000000-0000-0000-0000-000000000000");
    let (s, body) = tv.token_request(&[grant, unknown, secret, scope]).await;
    assert_eq!(s, 400);
    assert_eq!(body["error"], "unauthorized_client");

    let (s, _) = tv.token_request(&[grant, client, secret]).await;
    assert_eq!(s, 400, "missing scope");

    let (s, _) = tv
        .token_request(&[("grant_type", "password"), client, secret, scope])
        .await;
    assert_eq!(s, 400, "unsupported grant");

    // client_secret_basic, as the OpenID metadata advertises.
    let env = tv.vault.env();
    let resp = tv
        .http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            env.authority_host, env.tenant_id
        ))
        .basic_auth(&env.client_id, Some(env.client_secret.expose()))
        .form(&[grant, scope])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200, "client_secret_basic");

    let (s, body) = tv.token_request(&[grant, client, secret, scope]).await;
    assert_eq!(s, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["ext_expires_in"], 3600);
    assert!(
        body["access_token"]
            .as_str()
            .expect("token")
            .split('.')
            .count()
            == 3
    );
}

#[tokio::test]
async fn openid_configuration_points_at_the_token_endpoint() {
    let tv = TestVault::start().await;
    let env = tv.vault.env();
    let doc: Value = tv
        .http
        .get(format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            env.authority_host, env.tenant_id
        ))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        doc["token_endpoint"],
        format!("{}/{}/oauth2/v2.0/token", env.authority_host, env.tenant_id)
    );
    assert_eq!(
        doc["issuer"],
        format!("{}/{}/v2.0", env.authority_host, env.tenant_id)
    );
}

#[tokio::test]
async fn managed_identity_endpoint_issues_vault_tokens() {
    let tv = TestVault::start().await;
    let env = tv.vault.env();
    let url = format!(
        "{}?api-version=2019-08-01&resource={}",
        env.identity_endpoint, env.vault_url
    );
    let resp = tv.http.get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 401, "no X-IDENTITY-HEADER");
    let resp = tv
        .http
        .get(&url)
        .header("X-IDENTITY-HEADER", env.identity_header.expose())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], env.vault_url);
    let expires_on: i64 = body["expires_on"]
        .as_str()
        .expect("expires_on is a string")
        .parse()
        .expect("integer seconds");
    assert!(expires_on > 1_700_000_000);
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(tv.get_with_token("/secrets", token).await.status(), 200);
}

#[tokio::test]
async fn set_and_get_latest_with_and_without_trailing_slash_and_by_version() {
    let tv = TestVault::start().await;
    let (s, set) = tv
        .call(
            Method::PUT,
            "/secrets/FirstCreateTest",
            Some(json!({"value":"secretValue","attributes":{"exp":2527401600_i64}})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(set["value"], "secretValue");
    let id = set["id"].as_str().expect("id");
    let prefix = format!("{}/secrets/FirstCreateTest/", tv.vault.vault_url());
    let version = id.strip_prefix(&prefix).expect("id shape");
    assert!(is_version(version), "{version}");
    let attrs = &set["attributes"];
    assert_eq!(attrs["enabled"], true);
    assert_eq!(attrs["exp"], 2527401600_i64);
    assert!(attrs["created"].is_i64());
    assert_eq!(attrs["created"], attrs["updated"]);
    assert_eq!(attrs["recoveryLevel"], "Recoverable+Purgeable");
    assert_eq!(attrs["recoverableDays"], 90);
    assert!(
        set.get("contentType").is_none(),
        "absent fields are omitted"
    );
    assert!(set.get("tags").is_none());
    assert!(attrs.get("nbf").is_none());

    for path in [
        "/secrets/FirstCreateTest".to_owned(),
        "/secrets/FirstCreateTest/".to_owned(),
        format!("/secrets/FirstCreateTest/{version}"),
    ] {
        let (s, got) = tv.get(&path).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(got, set, "{path}");
    }

    let (s, second) = tv.put("FirstCreateTest", "second").await;
    assert_eq!(s, 200);
    assert_ne!(second["id"], set["id"]);
    let (_, latest) = tv.get("/secrets/FirstCreateTest").await;
    assert_eq!(latest["value"], "second");
    let (_, old) = tv.get(&format!("/secrets/FirstCreateTest/{version}")).await;
    assert_eq!(old["value"], "secretValue");
    let (s, missing) = tv
        .get("/secrets/FirstCreateTest/0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&missing).0, "SecretNotFound");
}

#[tokio::test]
async fn responses_carry_service_headers_and_echo_client_request_id() {
    let tv = TestVault::start().await;
    tv.put("hdr", "v").await;
    let resp = tv
        .http
        .get(tv.url("/secrets/hdr"))
        .bearer_auth(&tv.token)
        .header("x-ms-client-request-id", "my-request-42")
        .send()
        .await
        .expect("send");
    let h = resp.headers();
    assert_eq!(h["x-ms-client-request-id"], "my-request-42");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    let rid = h["x-ms-request-id"].to_str().expect("ascii");
    assert_eq!(rid.len(), 36);
}

#[tokio::test]
async fn unknown_secret_answers_the_service_404_text() {
    let tv = TestVault::start().await;
    let (s, body) = tv.get("/secrets/Recover").await;
    assert_eq!(s, 404);
    assert_eq!(
        body,
        json!({"error":{"code":"SecretNotFound","message":"A secret with (name/id) Recover was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"}})
    );
    let (s, body) = tv.get("/deletedsecrets/Recover").await;
    assert_eq!(s, 404);
    assert_eq!(
        body,
        json!({"error":{"code":"SecretNotFound","message":"Deleted Secret not found: Recover"}})
    );
}

#[tokio::test]
async fn update_changes_attributes_without_a_new_version() {
    let tv = TestVault::start().await;
    let (_, set) = tv.put("UpdateTest", "secretValue").await;
    let id = set["id"].as_str().expect("id").to_owned();
    let version = id.rsplit('/').next().expect("version").to_owned();
    let (s, upd) = tv
        .patch(
            &format!("/secrets/UpdateTest/{version}"),
            json!({"contentType":"xyz"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(upd["contentType"], "xyz");
    assert_eq!(upd["id"], id.as_str());
    assert!(upd.get("value").is_none(), "update answers without value");
    assert_eq!(upd["tags"], json!({}), "the service answers tags {{}}");

    // PATCH `/secrets/{name}/` = latest (what the Python SDK sends).
    let (s, upd) = tv
        .patch(
            "/secrets/UpdateTest/",
            json!({"contentType":"text/plain","tags":{"foo":"updated tag"}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(upd["tags"]["foo"], "updated tag");
    let (_, versions) = tv.get("/secrets/UpdateTest/versions").await;
    assert_eq!(versions["value"].as_array().expect("array").len(), 1);
    let (_, got) = tv.get("/secrets/UpdateTest").await;
    assert_eq!(got["contentType"], "text/plain");
    assert_eq!(got["value"], "secretValue");
}

#[tokio::test]
async fn disabled_secret_is_listed_but_its_value_is_forbidden() {
    let tv = TestVault::start().await;
    tv.put("off", "v").await;
    let (s, _) = tv
        .patch("/secrets/off/", json!({"attributes":{"enabled":false}}))
        .await;
    assert_eq!(s, 200);
    let (s, body) = tv.get("/secrets/off").await;
    assert_eq!(s, 403);
    assert_eq!(
        body,
        json!({"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}})
    );
    let (_, list) = tv.get("/secrets").await;
    assert_eq!(list["value"][0]["attributes"]["enabled"], false);
}

#[tokio::test]
async fn list_pages_sixty_secrets_through_next_link_sorted_case_insensitively() {
    let tv = TestVault::start().await;
    let mut names: Vec<String> = (0..60)
        .map(|i| {
            if i % 2 == 0 {
                format!("Page-{i:02}")
            } else {
                format!("page-{i:02}")
            }
        })
        .collect();
    for n in &names {
        assert_eq!(tv.put(n, "v").await.0, 200);
    }
    names.sort_by_key(|n| n.to_ascii_lowercase());

    let mut seen = Vec::new();
    let mut next = Some(tv.url("/secrets"));
    let mut pages = 0;
    while let Some(url) = next {
        let resp = tv
            .http
            .get(&url)
            .bearer_auth(&tv.token)
            .send()
            .await
            .expect("page");
        assert_eq!(resp.status(), 200, "{url}");
        let page: Value = resp.json().await.expect("json");
        let items = page["value"].as_array().expect("value");
        assert!(items.len() <= 25);
        for item in items {
            assert!(item.get("value").is_none(), "list items carry no value");
            let id = item["id"].as_str().expect("id");
            let name = id
                .strip_prefix(&format!("{}/secrets/", tv.vault.vault_url()))
                .expect("base id");
            assert!(!name.contains('/'), "list ids have no version: {id}");
            seen.push(name.to_owned());
        }
        assert!(page.as_object().expect("obj").contains_key("nextLink"));
        next = page["nextLink"].as_str().map(str::to_owned);
        if let Some(n) = &next {
            assert!(n.starts_with(tv.vault.vault_url()), "absolute nextLink");
            assert!(n.contains("$skiptoken="));
            assert!(n.contains("api-version=7.5"));
        }
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names);

    let (s, small) = tv.get("/secrets?maxresults=7").await;
    assert_eq!(s, 200);
    assert_eq!(small["value"].as_array().expect("value").len(), 7);
    for bad in ["0", "26", "x"] {
        let (s, body) = tv.get(&format!("/secrets?maxresults={bad}")).await;
        assert_eq!(s, 400, "maxresults={bad}");
        assert_eq!(error_code(&body).0, "BadParameter");
    }
    let (s, _) = tv.get("/secrets?$skiptoken=garbage!").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn list_versions_items_carry_versioned_ids() {
    let tv = TestVault::start().await;
    let (_, a) = tv.put("SecondCreateTest", "1").await;
    let (_, b) = tv.put("SecondCreateTest", "2").await;
    let (s, list) = tv.get("/secrets/SecondCreateTest/versions").await;
    assert_eq!(s, 200);
    assert_eq!(list["nextLink"], Value::Null);
    let mut ids: Vec<&str> = list["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    ids.sort();
    let mut expected = vec![a["id"].as_str().expect("id"), b["id"].as_str().expect("id")];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(list["value"][0].get("value").is_none());
}

#[tokio::test]
async fn delete_completes_asynchronously_then_blocks_the_name_until_recovered() {
    // Long enough that the checks made while the deletion is pending cannot race its end.
    let tv = TestVault::start_with(|c| c.deletion_delay = Duration::from_secs(2)).await;
    tv.put("Recover", "secretValue").await;
    let (s, del) = tv.delete("/secrets/Recover").await;
    assert_eq!(s, 200);
    let url = tv.vault.vault_url();
    assert_eq!(del["recoveryId"], format!("{url}/deletedsecrets/Recover"));
    let deleted_date = del["deletedDate"].as_i64().expect("deletedDate");
    assert_eq!(
        del["scheduledPurgeDate"]
            .as_i64()
            .expect("scheduledPurgeDate"),
        deleted_date + 90 * 86_400
    );
    assert!(del.get("value").is_none());

    // Until the deletion completes: deleted 404, set 409 being deleted, second delete 404.
    let (s, body) = tv.get("/deletedsecrets/Recover").await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&body).0, "SecretNotFound");
    let (s, body) = tv.put("Recover", "new").await;
    assert_eq!(s, 409);
    assert_eq!(
        error_code(&body),
        ("Conflict", Some("ObjectIsBeingDeleted"))
    );
    assert_eq!(tv.delete("/secrets/Recover").await.0, 404);
    assert_eq!(tv.get("/secrets/Recover").await.0, 404);

    let deleted = tv.wait_for("/deletedsecrets/Recover", 200).await;
    assert_eq!(deleted, del);
    let (s, body) = tv.put("Recover", "new").await;
    assert_eq!(s, 409);
    assert_eq!(
        body,
        json!({"error":{"code":"Conflict","message":"Secret Recover is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.","innererror":{"code":"ObjectIsDeletedButRecoverable"}}})
    );

    let (s, list) = tv.get("/deletedsecrets").await;
    assert_eq!(s, 200);
    let item = &list["value"][0];
    assert_eq!(item["id"], format!("{url}/secrets/Recover"));
    assert_eq!(item["recoveryId"], format!("{url}/deletedsecrets/Recover"));
    assert_eq!(list["nextLink"], Value::Null);

    let (s, rec) = tv.post("/deletedsecrets/Recover/recover", None).await;
    assert_eq!(s, 200);
    assert!(rec.get("value").is_none(), "recover answers without value");
    assert_eq!(rec["id"], del["id"]);
    // Recovery completes asynchronously too.
    assert_eq!(tv.get("/secrets/Recover").await.0, 404);
    assert_eq!(tv.get("/deletedsecrets/Recover").await.0, 404);
    let back = tv.wait_for("/secrets/Recover", 200).await;
    assert_eq!(back["value"], "secretValue");
}

#[tokio::test]
async fn purge_removes_the_deleted_secret_and_frees_the_name() {
    let tv = TestVault::start().await;
    tv.put("FirstCreateTest", "v").await;
    tv.delete_and_wait("FirstCreateTest").await;
    let (s, body) = tv.delete("/deletedsecrets/FirstCreateTest").await;
    assert_eq!(s, 204);
    assert_eq!(body, Value::Null, "204 has no body");
    assert_eq!(tv.get("/deletedsecrets/FirstCreateTest").await.0, 404);
    assert_eq!(tv.delete("/deletedsecrets/FirstCreateTest").await.0, 404);
    let (s, fresh) = tv.put("FirstCreateTest", "again").await;
    assert_eq!(s, 200);
    assert_eq!(fresh["value"], "again");
}

#[tokio::test]
async fn purge_protection_refuses_purge_and_reports_recovery_level() {
    let tv = TestVault::start_with(|c| {
        c.purge_protection = true;
        c.recoverable_days = 7;
    })
    .await;
    let (_, set) = tv.put("kept", "v").await;
    assert_eq!(set["attributes"]["recoveryLevel"], "CustomizedRecoverable");
    assert_eq!(set["attributes"]["recoverableDays"], 7);
    tv.delete_and_wait("kept").await;
    let (s, body) = tv.delete("/deletedsecrets/kept").await;
    assert_eq!(s, 403);
    assert_eq!(error_code(&body).0, "Forbidden");
}

#[tokio::test]
async fn customized_recoverable_days_set_level_and_purge_schedule() {
    let tv = TestVault::start_with(|c| c.recoverable_days = 7).await;
    let (_, set) = tv.put("seven", "v").await;
    assert_eq!(
        set["attributes"]["recoveryLevel"],
        "CustomizedRecoverable+Purgeable"
    );
    let (_, del) = tv.delete("/secrets/seven").await;
    assert_eq!(
        del["scheduledPurgeDate"].as_i64().expect("spd") - del["deletedDate"].as_i64().expect("dd"),
        604_800
    );
}

#[tokio::test]
async fn without_soft_delete_delete_is_final() {
    let tv = TestVault::start_with(|c| c.soft_delete = false).await;
    let (_, set) = tv.put("gone", "v").await;
    assert_eq!(set["attributes"]["recoveryLevel"], "Purgeable");
    assert!(set["attributes"].get("recoverableDays").is_none());
    let (s, del) = tv.delete("/secrets/gone").await;
    assert_eq!(s, 200);
    assert!(del.get("recoveryId").is_none());
    assert!(del.get("scheduledPurgeDate").is_none());
    assert_eq!(tv.get("/secrets/gone").await.0, 404);
    assert_eq!(tv.get("/deletedsecrets/gone").await.0, 404);
    assert_eq!(tv.put("gone", "again").await.0, 200, "name is free at once");
}

#[tokio::test]
async fn clock_advance_purges_expired_deleted_secrets_and_expires_tokens() {
    let tv = TestVault::start_with(|c| c.recoverable_days = 7).await;
    tv.put("old", "v").await;
    tv.delete_and_wait("old").await;
    let admin = tv.admin();
    admin.advance_clock(6 * 86_400).await.expect("advance");
    // The token (1 h) has expired on the vault clock: a fresh one is needed.
    assert_eq!(tv.get("/deletedsecrets/old").await.0, 401);
    let token = get_token(&tv.http, tv.vault.env(), tv.vault.vault_url()).await;
    let tv = TestVault { token, ..tv };
    assert_eq!(tv.get("/deletedsecrets/old").await.0, 200);
    tv.admin().advance_clock(86_400).await.expect("advance");
    let token = get_token(&tv.http, tv.vault.env(), tv.vault.vault_url()).await;
    let tv = TestVault { token, ..tv };
    assert_eq!(
        tv.get("/deletedsecrets/old").await.0,
        404,
        "purged on schedule"
    );
    assert_eq!(tv.put("old", "new").await.0, 200);
}

#[tokio::test]
async fn names_are_case_insensitive_and_keep_the_first_spelling() {
    let tv = TestVault::start().await;
    tv.put("MyKey", "one").await;
    let (s, second) = tv.put("MYKEY", "two").await;
    assert_eq!(s, 200);
    assert!(second["id"]
        .as_str()
        .expect("id")
        .contains("/secrets/MyKey/"));
    let (s, got) = tv.get("/secrets/mykey").await;
    assert_eq!(s, 200);
    assert_eq!(got["value"], "two");
    let (_, list) = tv.get("/secrets").await;
    assert_eq!(list["value"].as_array().expect("value").len(), 1);
    assert_eq!(
        list["value"][0]["id"],
        format!("{}/secrets/MyKey", tv.vault.vault_url())
    );
    tv.delete_and_wait("mYkEy").await;
    let (s, body) = tv.put("mykey", "three").await;
    assert_eq!(s, 409);
    assert_eq!(error_code(&body).1, Some("ObjectIsDeletedButRecoverable"));
}

#[tokio::test]
async fn name_rule_and_value_limit_answer_bad_parameter() {
    let tv = TestVault::start().await;
    for bad in ["bad_name", "dot.name", &"a".repeat(128)] {
        let (s, body) = tv.put(bad, "v").await;
        assert_eq!(s, 400, "{bad}");
        assert_eq!(error_code(&body).0, "BadParameter");
    }
    assert_eq!(tv.put(&"a".repeat(127), "v").await.0, 200);

    let ok = "x".repeat(25_600);
    let (s, body) = tv.put("big", &ok).await;
    assert_eq!(s, 200);
    assert_eq!(body["value"].as_str().expect("value").len(), 25_600);
    // The limit counts characters, not bytes.
    let (s, _) = tv.put("wide", &"é".repeat(25_600)).await;
    assert_eq!(s, 200);
    let (s, body) = tv.put("big", &"x".repeat(25_601)).await;
    assert_eq!(s, 400);
    assert_eq!(
        body,
        json!({"error":{"code":"BadParameter","message":"Secret is beyond the maximum permitted length of 25600 characters.","innererror":{"code":"SecretTooLarge"}}})
    );
    let (s, _) = tv
        .call(
            Method::PUT,
            "/secrets/ct",
            Some(json!({"value":"v","contentType":"c".repeat(256)})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = tv
        .call(
            Method::PUT,
            "/secrets/ct",
            Some(json!({"value":"v","contentType":"c".repeat(255)})),
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn hostile_bodies_answer_bad_parameter_without_echoing_input() {
    let tv = TestVault::start().await;
    for body in [
        "{not json",
        "",
        "[]",
        r#"{"value": 5}"#,
        r#"{"value":"v","attributes":{"enabled":"hunter2"}}"#,
    ] {
        let resp = tv
            .http
            .put(tv.url("/secrets/hostile"))
            .bearer_auth(&tv.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "{body}");
        let text = resp.text().await.expect("text");
        assert!(text.contains("BadParameter"));
        assert!(!text.contains("hunter2"), "error text must not echo input");
    }
}

#[tokio::test]
async fn api_version_is_required_and_strictly_checked_when_asked() {
    let tv = TestVault::start_with(|c| c.strict_api_version = true).await;
    let url = tv.vault.vault_url();
    let resp = tv
        .http
        .get(format!("{url}/secrets"))
        .bearer_auth(&tv.token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    for (v, ok) in [
        ("7.0", true),
        ("7.6", true),
        ("2016-10-01", true),
        ("2025-07-01", true),
        ("7.9", false),
    ] {
        let resp = tv
            .http
            .get(format!("{url}/secrets?api-version={v}"))
            .bearer_auth(&tv.token)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().is_success(), ok, "api-version {v}");
    }
}

#[tokio::test]
async fn backup_and_restore_round_trip_all_versions() {
    let tv = TestVault::start().await;
    tv.put("BackupRestore", "one").await;
    let (_, latest) = tv.put("BackupRestore", "two").await;
    let (s, backup) = tv.post("/secrets/BackupRestore/backup", None).await;
    assert_eq!(s, 200);
    let blob = backup["value"].as_str().expect("blob").to_owned();
    assert!(blob
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    // Restoring over an existing name is refused.
    let (s, _) = tv
        .post("/secrets/restore", Some(json!({ "value": blob })))
        .await;
    assert_eq!(s, 409);
    tv.delete_and_wait("BackupRestore").await;
    assert_eq!(tv.delete("/deletedsecrets/BackupRestore").await.0, 204);
    let (s, restored) = tv
        .post("/secrets/restore", Some(json!({ "value": blob })))
        .await;
    assert_eq!(s, 200);
    assert!(restored.get("value").is_none());
    assert_eq!(restored["id"], latest["id"]);
    let (_, got) = tv.get("/secrets/BackupRestore").await;
    assert_eq!(got["value"], "two");
    let (_, versions) = tv.get("/secrets/BackupRestore/versions").await;
    assert_eq!(versions["value"].as_array().expect("value").len(), 2);

    let mut tampered = blob.clone();
    tampered.replace_range(40..41, if &blob[40..41] == "A" { "B" } else { "A" });
    tv.delete_and_wait("BackupRestore").await;
    tv.delete("/deletedsecrets/BackupRestore").await;
    let (s, body) = tv
        .post("/secrets/restore", Some(json!({ "value": tampered })))
        .await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&body).0, "BadParameter");
}

#[tokio::test]
async fn principals_without_permission_get_forbidden_by_policy() {
    let tv = TestVault::start().await;
    tv.put("guarded", "v").await;
    let reader = tv
        .admin()
        .create_principal(&["get"])
        .await
        .expect("principal");
    let mut env = tv.vault.env().clone();
    env.client_id = reader.client_id.clone();
    env.client_secret = reader.client_secret.clone();
    let token = get_token(&tv.http, &env, tv.vault.vault_url()).await;
    let reader_vault = TestVault { token, ..tv };
    assert_eq!(reader_vault.get("/secrets/guarded").await.0, 200);
    let (s, body) = reader_vault.put("guarded", "w").await;
    assert_eq!(s, 403);
    assert_eq!(error_code(&body), ("Forbidden", Some("ForbiddenByPolicy")));
    assert_eq!(reader_vault.get("/secrets").await.0, 403);
}

/// A principal given `certificates/…` permissions (an access policy for certificates of its
/// own, as in the service) gets the certificate but not its secret unless it also holds the
/// secrets `get`; one given none holds its secret permissions for certificates too.
#[tokio::test]
async fn certificate_permissions_govern_certificates_and_secret_permissions_their_secret() {
    let tv = TestVault::start().await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec!["perm.test".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let pem = format!("{}{}", key.serialize_pem(), cert.pem());
    let import = json!({
        "value": pem,
        "policy": { "secret_props": { "contentType": "application/x-pem-file" } }
    });
    let (s, _) = tv
        .post("/certificates/perm/import", Some(import.clone()))
        .await;
    assert_eq!(s, 200);
    let as_principal = |permissions: &'static [&'static str]| {
        let tv = &tv;
        async move {
            let p = tv
                .admin()
                .create_principal(permissions)
                .await
                .expect("principal");
            let mut env = tv.vault.env().clone();
            env.client_id = p.client_id.clone();
            env.client_secret = p.client_secret.clone();
            get_token(&tv.http, &env, tv.vault.vault_url()).await
        }
    };
    let call = |token: String, method: Method, path: &'static str, body: Option<Value>| {
        let tv = &tv;
        async move {
            let mut req = tv.http.request(method, tv.url(path)).bearer_auth(token);
            if let Some(body) = body {
                req = req.json(&body);
            }
            let resp = req.send().await.expect("send");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let message = |body: &Value| body["error"]["message"].as_str().unwrap_or("").to_owned();

    let reader = as_principal(&["list", "certificates/get", "certificates/list"]).await;
    let (s, body) = call(reader.clone(), Method::GET, "/certificates/perm", None).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body["cer"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    assert_eq!(
        call(reader.clone(), Method::GET, "/certificates", None)
            .await
            .0,
        200
    );
    let (s, body) = call(reader.clone(), Method::GET, "/secrets/perm", None).await;
    assert_eq!(s, 403);
    assert_eq!(error_code(&body), ("Forbidden", Some("ForbiddenByPolicy")));
    assert!(message(&body).contains("secrets get permission"), "{body}");
    let (s, body) = call(
        reader.clone(),
        Method::POST,
        "/certificates/other/import",
        Some(import.clone()),
    )
    .await;
    assert_eq!(s, 403);
    assert!(
        message(&body).contains("certificates import permission"),
        "{body}"
    );
    let (s, body) = call(reader.clone(), Method::DELETE, "/certificates/perm", None).await;
    assert_eq!(s, 403);
    assert!(
        message(&body).contains("certificates delete permission"),
        "{body}"
    );

    // Without certificate permissions of its own, the secret permissions cover certificates.
    let secrets_only = as_principal(&["get"]).await;
    assert_eq!(
        call(
            secrets_only.clone(),
            Method::GET,
            "/certificates/perm",
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(secrets_only, Method::GET, "/secrets/perm", None)
            .await
            .0,
        200
    );

    // An unknown certificate permission is refused, naming it.
    let refused = tv.admin().create_principal(&["certificates/fly"]).await;
    let error = refused.expect_err("unknown permission").to_string();
    assert!(error.contains("certificates/fly"), "{error}");
}

#[tokio::test]
async fn counters_count_every_request_by_operation_and_status() {
    let tv = TestVault::start().await;
    let admin = tv.admin();
    admin.reset_counters().await.expect("reset");
    tv.put("c", "v").await;
    tv.get("/secrets/c").await;
    tv.get("/secrets/c/").await;
    tv.get("/secrets/missing").await;
    tv.get("/secrets").await;
    // An unauthenticated challenge counts too.
    tv.http
        .get(tv.url("/secrets/c"))
        .send()
        .await
        .expect("send");
    let c = admin.counters().await.expect("counters");
    assert_eq!(c.count("set_secret"), 1);
    assert_eq!(c.count("get_secret"), 4);
    assert_eq!(c.count_status("get_secret", 200), 2);
    assert_eq!(c.count_status("get_secret", 404), 1);
    assert_eq!(c.count_status("get_secret", 401), 1);
    assert_eq!(c.count("list_secrets"), 1);
    assert_eq!(c.count("delete_secret"), 0);
    admin.reset_counters().await.expect("reset");
    assert_eq!(admin.counters().await.expect("counters").total(), 0);
}

#[tokio::test]
async fn admin_endpoints_refuse_vault_tokens() {
    let tv = TestVault::start().await;
    let resp = tv
        .http
        .get(format!("{}/_akvfs/counters", tv.vault.vault_url()))
        .bearer_auth(&tv.token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn injected_faults_answer_status_retry_after_and_count_down() {
    use akvfs::local_vault::FaultSpec;
    let tv = TestVault::start().await;
    tv.put("f", "v").await;
    let admin = tv.admin();
    admin
        .inject_fault(
            FaultSpec::status(429)
                .for_operation("get_secret")
                .times(2)
                .with_retry_after(3),
        )
        .await
        .expect("fault");
    let resp = tv.get_raw("/secrets/f").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(error_code(&body).0, "Throttled");
    assert_eq!(tv.get("/secrets/f").await.0, 429);
    assert_eq!(tv.get("/secrets/f").await.0, 200, "count spent");
    assert_eq!(
        tv.get("/secrets").await.0,
        200,
        "other operations unaffected"
    );

    admin
        .inject_fault(FaultSpec::status(429).for_operation("list_secrets"))
        .await
        .expect("fault");
    let resp = tv.get_raw("/secrets").await;
    assert_eq!(resp.status(), 429);
    assert!(
        resp.headers().get("retry-after").is_none(),
        "429 without Retry-After"
    );
    admin.clear_faults().await.expect("clear");
    assert_eq!(tv.get("/secrets").await.0, 200);

    admin
        .inject_fault(
            FaultSpec::default()
                .for_operation("get_secret")
                .dropping_connection()
                .times(1),
        )
        .await
        .expect("fault");
    let err = tv
        .http
        .get(tv.url("/secrets/f"))
        .bearer_auth(&tv.token)
        .send()
        .await;
    assert!(err.is_err(), "connection dropped");
    assert_eq!(tv.get("/secrets/f").await.0, 200);

    admin
        .inject_fault(
            FaultSpec::default()
                .for_operation("get_secret")
                .with_latency_ms(300)
                .times(1),
        )
        .await
        .expect("fault");
    let start = std::time::Instant::now();
    assert_eq!(tv.get("/secrets/f").await.0, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    let c = admin.counters().await.expect("counters");
    assert_eq!(c.count_status("get_secret", 429), 2);
    assert_eq!(
        c.count_status("get_secret", 0),
        1,
        "dropped connection counted"
    );
}

#[tokio::test]
async fn fault_rules_with_typos_are_refused() {
    use akvfs::local_vault::FaultSpec;
    let tv = TestVault::start().await;
    let admin = tv.admin();
    let err = admin
        .inject_fault(FaultSpec::status(500).for_operation("get_secrets"))
        .await
        .expect_err("unknown operation");
    assert!(
        err.to_string().contains("unknown operation get_secrets"),
        "{err}"
    );
    assert!(admin.inject_fault(FaultSpec::status(200)).await.is_err());
    assert!(admin
        .inject_fault(FaultSpec::status(500).with_rate(1.5))
        .await
        .is_err());
    assert_eq!(tv.get("/secrets").await.0, 200, "no rule was added");
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let tv = TestVault::start_with(|c| c.throttle_per_10s = Some(5)).await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let resp = tv.get_raw("/secrets").await;
        if resp.status() == 429 {
            let secs: u64 = resp.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!((1..=10).contains(&secs));
        }
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    let c = tv.admin().counters().await.expect("counters");
    assert_eq!(c.count_status("list_secrets", 429), 2);
}

#[tokio::test]
async fn admin_reset_wipes_live_and_deleted_secrets() {
    let tv = TestVault::start().await;
    tv.put("a", "v").await;
    tv.put("b", "v").await;
    tv.delete_and_wait("b").await;
    tv.admin().reset().await.expect("reset");
    assert_eq!(tv.get("/secrets/a").await.0, 404);
    assert_eq!(tv.get("/deletedsecrets/b").await.0, 404);
    assert_eq!(tv.put("b", "fresh").await.0, 200);
}

#[tokio::test]
async fn http1_and_http2_clients_both_work_and_ids_follow_the_host_used() {
    let tv = TestVault::start().await;
    tv.put("proto", "v").await;
    let port = tv.port();
    let pem = std::fs::read(&tv.vault.env().ca_file).expect("ca");
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .http1_only()
        .no_proxy()
        .build()
        .expect("client");
    let resp = h1
        .get(tv.url("/secrets/proto"))
        .bearer_auth(&tv.token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
    let resp = tv.get_raw("/secrets/proto").await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN offers h2");

    // Through `localhost` the resource, the token audience and the ids follow that host.
    let base = format!("https://localhost:{port}");
    let resp = h1
        .get(format!("{base}/secrets/proto?{}", local_vault_support::API))
        .bearer_auth(&tv.token)
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.status(),
        401,
        "token audience is the 127.0.0.1 resource"
    );
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.ends_with(&format!("resource=\"{base}\"")),
        "{challenge}"
    );
    let token = get_token(&h1, tv.vault.env(), &base).await;
    let body: Value = h1
        .get(format!("{base}/secrets/proto?{}", local_vault_support::API))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(body["id"]
        .as_str()
        .expect("id")
        .starts_with(&format!("{base}/secrets/proto/")));
}

#[tokio::test]
async fn invalid_names_are_bad_parameters_on_every_operation() {
    let tv = TestVault::start().await;
    for (method, path) in [
        (Method::GET, "/secrets/bad_name"),
        (Method::DELETE, "/secrets/bad_name"),
        (Method::GET, "/deletedsecrets/bad_name"),
        (Method::GET, "/secrets/bad_name/versions"),
    ] {
        let (s, body) = tv.call(method.clone(), path, None).await;
        assert_eq!(s, 400, "{method} {path}");
        assert_eq!(
            body,
            json!({"error":{"code":"BadParameter","message":"The request URI contains an invalid name: bad_name"}})
        );
    }
}

#[tokio::test]
async fn throttled_answer_uses_the_service_text() {
    let tv = TestVault::start_with(|c| {
        c.throttle_per_10s = Some(100);
        c.throttle_sets_per_10s = Some(2);
    })
    .await;
    assert_eq!(tv.put("t1", "v").await.0, 200);
    assert_eq!(tv.put("t2", "v").await.0, 200);
    let (s, body) = tv.put("t3", "v").await;
    assert_eq!(s, 429, "set limit reached");
    assert_eq!(
        body,
        json!({"error":{"code":"Throttled","message":"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}})
    );
    assert_eq!(
        tv.get("/secrets/t1").await.0,
        200,
        "gets are not limited by sets"
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_secrets_still_read_like_the_service() {
    let tv = TestVault::start().await;
    let (s, _) = tv
        .call(
            Method::PUT,
            "/secrets/expired",
            Some(json!({"value":"old","attributes":{"exp":1_000_000_000_i64,"nbf":4_000_000_000_i64}})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, got) = tv.get("/secrets/expired").await;
    assert_eq!(s, 200);
    assert_eq!(got["value"], "old");
    assert_eq!(got["attributes"]["exp"], 1_000_000_000_i64);
    assert_eq!(got["attributes"]["nbf"], 4_000_000_000_i64);
}

#[tokio::test]
async fn admin_seed_fills_the_vault_in_one_go_without_counting_or_throttling() {
    let tv = TestVault::start_with(|c| {
        c.throttle_per_10s = Some(10);
    })
    .await;
    let admin = tv.admin();
    admin.reset_counters().await.expect("reset");
    admin
        .seed("bench-", 1000, "v".repeat(1024).as_str())
        .await
        .expect("seed");
    assert_eq!(admin.counters().await.expect("counters").total(), 0);
    let (s, got) = tv.get("/secrets/bench-00999").await;
    assert_eq!(s, 200);
    assert_eq!(got["value"].as_str().expect("value").len(), 1024);
    assert_eq!(tv.get("/secrets/bench-01000").await.0, 404);
    assert!(admin.seed("bad_prefix", 1, "v").await.is_err());
}

/// Follows nextLink from `path` and returns every item.
async fn collect_pages(tv: &TestVault, path: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(tv.url(path));
    while let Some(url) = next {
        let page: Value = tv
            .http
            .get(&url)
            .bearer_auth(&tv.token)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
        items.extend(page["value"].as_array().expect("value").iter().cloned());
        next = page["nextLink"].as_str().map(str::to_owned);
        pages += 1;
    }
    (items, pages)
}

#[tokio::test]
async fn versions_and_deleted_lists_page_with_maxresults() {
    let tv = TestVault::start().await;
    for i in 0..12 {
        assert_eq!(tv.put("Many", &format!("v{i}")).await.0, 200);
    }
    let (items, pages) = collect_pages(&tv, "/secrets/many/versions?maxresults=5").await;
    assert_eq!((items.len(), pages), (12, 3));
    let mut ids: Vec<&str> = items
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert!(ids.iter().all(|id| id.contains("/secrets/Many/")));
    ids.dedup();
    assert_eq!(ids.len(), 12, "no version repeated across pages");

    for i in 0..7 {
        tv.put(&format!("gone-{i}"), "v").await;
        tv.delete(&format!("/secrets/gone-{i}")).await;
    }
    for i in 0..7 {
        tv.wait_for(&format!("/deletedsecrets/gone-{i}"), 200).await;
    }
    let (items, pages) = collect_pages(&tv, "/deletedsecrets?maxresults=3").await;
    assert_eq!((items.len(), pages), (7, 3));
    assert!(items.iter().all(|i| i["recoveryId"]
        .as_str()
        .expect("recoveryId")
        .contains("/deletedsecrets/gone-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_are_all_answered_and_counted_exactly() {
    let tv = TestVault::start_with(|c| c.throttle_per_10s = None).await;
    tv.put("hot", "v0").await;
    let admin = tv.admin();
    admin.reset_counters().await.expect("reset");
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (http, token, get_url, put_url) = (
            tv.http.clone(),
            tv.token.clone(),
            tv.url("/secrets/hot"),
            tv.url(&format!("/secrets/w{w}")),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let resp = http
                    .get(&get_url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("get");
                assert_eq!(resp.status(), 200);
                if i % 5 == 0 {
                    let resp = http
                        .put(&put_url)
                        .bearer_auth(&token)
                        .json(&json!({ "value": format!("{w}-{i}") }))
                        .send()
                        .await
                        .expect("put");
                    assert_eq!(resp.status(), 200);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let c = admin.counters().await.expect("counters");
    assert_eq!(c.count_status("get_secret", 200), 32 * 20);
    assert_eq!(c.count_status("set_secret", 200), 32 * 4);
    assert_eq!(c.total(), 32 * 24);
    let (_, versions) = tv.get("/secrets/w7/versions").await;
    assert_eq!(versions["value"].as_array().expect("value").len(), 4);
}

#[tokio::test]
async fn empty_values_are_stored_like_the_service_does() {
    let tv = TestVault::start().await;
    let (s, set) = tv.put("empty", "").await;
    assert_eq!(s, 200);
    assert_eq!(set["value"], "");
    let (s, got) = tv.get("/secrets/empty").await;
    assert_eq!(s, 200);
    assert_eq!(got["value"], "");
}

#[tokio::test]
async fn tokens_live_exactly_token_ttl_on_the_vault_clock() {
    let tv = TestVault::start_with(|c| c.token_ttl = Duration::from_secs(120)).await;
    let (_, body) = tv
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", tv.vault.env().client_id.as_str()),
            ("client_secret", tv.vault.env().client_secret.expose()),
            ("scope", &format!("{}/.default", tv.vault.vault_url())),
        ])
        .await;
    assert_eq!(body["expires_in"], 120);
    assert_eq!(tv.get("/secrets").await.0, 200);
    tv.admin().advance_clock(100).await.expect("advance");
    assert_eq!(tv.get("/secrets").await.0, 200, "still valid after 100 s");
    tv.admin().advance_clock(21).await.expect("advance");
    let resp = tv.get_raw("/secrets").await;
    assert_eq!(resp.status(), 401, "expired after 121 s");
    assert!(
        resp.headers().contains_key("www-authenticate"),
        "a fresh challenge"
    );
}

#[tokio::test]
async fn short_pages_control_makes_pages_short_but_loses_nothing() {
    let tv = TestVault::start_with(|c| c.throttle_per_10s = None).await;
    let admin = tv.admin();
    admin.seed("s-", 200, "v").await.expect("seed");
    admin.set_short_pages(true).await.expect("short pages");
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut next = Some(tv.url("/secrets"));
    while let Some(url) = next {
        let page: Value = tv
            .http
            .get(&url)
            .bearer_auth(&tv.token)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
        let items = page["value"].as_array().expect("value");
        sizes.push(items.len());
        seen.extend(
            items
                .iter()
                .map(|i| i["id"].as_str().expect("id").to_owned()),
        );
        next = page["nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 200, "every secret exactly once");
    seen.dedup();
    assert_eq!(seen.len(), 200);
    assert!(sizes.iter().all(|n| (1..=25).contains(n)), "{sizes:?}");
    assert!(
        sizes[..sizes.len() - 1].iter().any(|n| *n < 25),
        "some non-final page is short: {sizes:?}"
    );
    admin.set_short_pages(false).await.expect("full pages");
    let (_, page) = tv.get("/secrets").await;
    assert_eq!(page["value"].as_array().expect("value").len(), 25);
}
