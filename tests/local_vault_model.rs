//! The local vault against a reference model: a long pseudo-random sequence of sets, gets,
//! deletes, recovers, purges and lists over a few names in random casing, each answer compared
//! with what a plain model of Key Vault's rules predicts. Deletion delay 0, so every step is
//! deterministic; the seed is fixed and printed on failure.

mod local_vault_support;

use std::collections::BTreeMap;
use std::time::Duration;

use local_vault_support::TestVault;
use serde_json::Value;

#[derive(Clone, Debug)]
struct ModelSecret {
    name: String,
    values: Vec<String>,
    deleted: bool,
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn spelling(rng: &mut Rng, base: &str) -> String {
    base.chars()
        .map(|c| {
            if rng.below(2) == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_match_the_reference_model() {
    let tv = TestVault::start_with(|c| {
        c.deletion_delay = Duration::ZERO;
        c.throttle_per_10s = None;
    })
    .await;
    let seed = 0x5eed_1234_abcd_0001_u64;
    let mut rng = Rng(seed);
    let bases = ["alpha", "beta-1", "gamma-2x", "d"];
    let mut model: BTreeMap<String, ModelSecret> = BTreeMap::new();

    for step in 0..400 {
        let base = bases[rng.below(bases.len() as u64) as usize];
        let name = spelling(&mut rng, base);
        let key = base.to_owned();
        let entry = model.get(&key).cloned();
        let ctx = format!("seed {seed:#x} step {step}");
        match rng.below(8) {
            0 | 1 => {
                let value = format!("v{step}");
                let (s, body) = tv.put(&name, &value).await;
                match &entry {
                    Some(e) if e.deleted => {
                        assert_eq!(s, 409, "{ctx}: set on deleted {name}");
                        assert_eq!(
                            body["error"]["innererror"]["code"], "ObjectIsDeletedButRecoverable",
                            "{ctx}"
                        );
                    }
                    _ => {
                        assert_eq!(s, 200, "{ctx}: set {name}");
                        let e = model.entry(key.clone()).or_insert(ModelSecret {
                            name: name.clone(),
                            values: Vec::new(),
                            deleted: false,
                        });
                        e.values.push(value.clone());
                        let id = body["id"].as_str().expect("id");
                        assert!(id.contains(&format!("/secrets/{}/", e.name)), "{ctx}: {id}");
                    }
                }
            }
            2 => {
                let (s, body) = tv.get(&format!("/secrets/{name}")).await;
                match &entry {
                    Some(e) if !e.deleted => {
                        assert_eq!(s, 200, "{ctx}: get {name}");
                        assert_eq!(
                            body["value"].as_str(),
                            e.values.last().map(String::as_str),
                            "{ctx}"
                        );
                    }
                    _ => assert_eq!(s, 404, "{ctx}: get {name}"),
                }
            }
            3 => {
                let (s, _) = tv.delete(&format!("/secrets/{name}")).await;
                match model.get_mut(&key) {
                    Some(e) if !e.deleted => {
                        assert_eq!(s, 200, "{ctx}: delete {name}");
                        e.deleted = true;
                    }
                    _ => assert_eq!(s, 404, "{ctx}: delete {name}"),
                }
            }
            4 => {
                let (s, body) = tv
                    .post(&format!("/deletedsecrets/{name}/recover"), None)
                    .await;
                match model.get_mut(&key) {
                    Some(e) if e.deleted => {
                        assert_eq!(s, 200, "{ctx}: recover {name}");
                        assert!(body.get("value").is_none(), "{ctx}");
                        e.deleted = false;
                    }
                    _ => assert_eq!(s, 404, "{ctx}: recover {name}"),
                }
            }
            5 => {
                let (s, _) = tv.delete(&format!("/deletedsecrets/{name}")).await;
                match &entry {
                    Some(e) if e.deleted => {
                        assert_eq!(s, 204, "{ctx}: purge {name}");
                        model.remove(&key);
                    }
                    _ => assert_eq!(s, 404, "{ctx}: purge {name}"),
                }
            }
            6 => {
                let (s, body) = tv.get(&format!("/secrets/{name}/versions")).await;
                assert_eq!(s, 200, "{ctx}");
                let n = body["value"].as_array().expect("value").len();
                let expected = match &entry {
                    Some(e) if !e.deleted => e.values.len(),
                    _ => 0,
                };
                assert_eq!(n, expected, "{ctx}: versions of {name}");
            }
            _ => {
                let (s, live) = tv.get("/secrets").await;
                assert_eq!(s, 200, "{ctx}");
                let (s, deleted) = tv.get("/deletedsecrets").await;
                assert_eq!(s, 200, "{ctx}");
                let names = |v: &Value| -> Vec<String> {
                    v["value"]
                        .as_array()
                        .expect("value")
                        .iter()
                        .map(|i| {
                            i["id"]
                                .as_str()
                                .expect("id")
                                .rsplit('/')
                                .next()
                                .expect("name")
                                .to_owned()
                        })
                        .collect()
                };
                let expect = |deleted: bool| -> Vec<String> {
                    model
                        .values()
                        .filter(|e| e.deleted == deleted)
                        .map(|e| e.name.clone())
                        .collect()
                };
                assert_eq!(names(&live), expect(false), "{ctx}: live list");
                assert_eq!(names(&deleted), expect(true), "{ctx}: deleted list");
            }
        }
    }
    // The sequence exercised every kind of answer at least once.
    let c = tv.admin().counters().await.expect("counters");
    for (op, status) in [
        ("set_secret", 200),
        ("set_secret", 409),
        ("delete_secret", 200),
        ("delete_secret", 404),
        ("recover_deleted_secret", 200),
        ("purge_deleted_secret", 204),
        ("get_secret", 404),
    ] {
        assert!(c.count_status(op, status) > 0, "never saw {op} {status}");
    }
}
