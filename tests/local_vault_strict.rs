//! A local vault as strict as the service (issue 11): errors with the service's codes, texts and
//! inner errors, limits counted as the service counts them, audiences per cloud, opaque backups,
//! validated admin bodies, files with explicit modes, and no secret on standard output.

mod local_vault_support;

use local_vault_support::{error_code, TestVault};
use reqwest::Method;
use serde_json::{json, Value};

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
