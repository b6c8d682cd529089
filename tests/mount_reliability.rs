//! Issue 4, reliability on a real mount over the real local vault: faults, throttling, a vault
//! that is down, and a token that expires while mounted. Every test is one `akvfs mount local`
//! process; faults are injected in the embedded vault through its admin endpoints.

mod common;

use std::sync::Arc;

use akvfs::local_vault::FaultSpec;
use common::{read_all_in_parallel, read_or_errno, sh_ok, LocalMount};

/// Vault calls for `name` that failed, as the mount logs them (once per call, not per reader).
fn failed_reads_logged(m: &LocalMount, name: &str) -> usize {
    m.log_text()
        .lines()
        .filter(|l| {
            l.contains("could not read secret") && l.contains(&format!("secret=\"{name}\""))
        })
        .count()
}

fn clear_faults(m: &LocalMount) {
    m.block_on(m.admin().clear_faults()).expect("clear faults");
}

#[test]
fn ten_percent_faults_over_1000_cold_reads_give_1000_right_values() {
    let m = Arc::new(LocalMount::start(&[]));
    // 10 groups of 100 secrets, each group its own value: `g{g}-{i:05}` = `value-{g}`.
    for g in 0..10 {
        m.block_on(
            m.admin()
                .seed(&format!("g{g}-"), 100, &format!("value-{g}")),
        )
        .expect("seed");
    }
    m.reset_counters();
    // ~10% of data-plane answers: 2.5% each of 503, 500, dropped connection, 200 ms late.
    m.inject(FaultSpec::status(503).with_rate(0.025));
    m.inject(FaultSpec::status(500).with_rate(0.025));
    m.inject(FaultSpec::default().dropping_connection().with_rate(0.025));
    m.inject(FaultSpec::default().with_latency_ms(200).with_rate(0.025));

    read_all_in_parallel(&m, 8, 1000, |n| {
        let (g, i) = (n / 100, n % 100);
        (format!("g{g}-{i:05}"), format!("value-{g}"))
    });

    let c = m.counters();
    // Every read was cold: each of the 1000 secrets was fetched at least once.
    assert!(
        c.count_status("get_secret", 200) >= 1000,
        "only {} successful gets: {c:?}",
        c.count_status("get_secret", 200)
    );
    // The faults really happened (about 25 of each expected).
    for status in [503u16, 500, 0] {
        let n: u64 = c
            .operations
            .values()
            .map(|by| by.get(&status).copied().unwrap_or(0))
            .sum();
        assert!(n > 0, "no {status} answers injected: {c:?}");
    }
}

#[test]
fn throttling_without_retry_after_on_every_method_is_retried() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    m.other_set("existing", "old-value");
    m.reset_counters();
    for op in ["list_secrets", "get_secret", "set_secret", "delete_secret"] {
        m.inject(FaultSpec::status(429).for_operation(op).times(2));
    }

    assert_eq!(sh_ok(dir, "ls").trim(), "existing");
    assert_eq!(sh_ok(dir, "cat existing"), "old-value");
    sh_ok(dir, "echo new-value > created");
    sh_ok(dir, "rm existing");

    let c = m.counters();
    for op in ["list_secrets", "get_secret", "set_secret", "delete_secret"] {
        assert_eq!(c.count_status(op, 429), 2, "{op}: {c:?}");
        assert!(
            c.count_status(op, 200) >= 1,
            "{op} never succeeded after its 429s: {c:?}"
        );
    }
    clear_faults(&m);
    assert_eq!(m.other_get("created"), "new-value\n");
    assert_eq!(sh_ok(dir, "ls").trim(), "created");
}

#[test]
fn vault_down_serves_cached_values_and_fails_uncached_with_eio() {
    let m = LocalMount::start(&[
        "--cache-ttl",
        "1s",
        "--stale-if-error",
        "1h",
        "--request-timeout",
        "3s",
    ]);
    let dir = &m.mountpoint;
    m.other_set("cached", "kept-value");
    m.other_set("uncached-503", "never-read");
    m.other_set("uncached-drop", "never-read");
    assert_eq!(sh_ok(dir, "cat cached"), "kept-value");

    // Every data-plane request answers 503.
    m.inject(FaultSpec::status(503));
    std::thread::sleep(std::time::Duration::from_millis(1500)); // past the TTL
    m.reset_counters();
    assert_eq!(read_or_errno(dir, "cached"), "ok:kept-value");
    // The expired value was revalidated, failed, and served stale — by one vault call, not one
    // per kernel request (lookup, getattr, open, read) of that access.
    assert!(
        m.counters().count_status("get_secret", 503) > 0,
        "{:?}",
        m.counters()
    );
    assert_eq!(failed_reads_logged(&m, "cached"), 1);
    assert_eq!(read_or_errno(dir, "uncached-503"), "EIO");

    // Every data-plane connection dropped.
    clear_faults(&m);
    m.inject(FaultSpec::default().dropping_connection());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    m.reset_counters();
    assert_eq!(read_or_errno(dir, "cached"), "ok:kept-value");
    assert!(
        m.counters().count_status("get_secret", 0) > 0,
        "{:?}",
        m.counters()
    );
    assert_eq!(failed_reads_logged(&m, "cached"), 2);
    assert_eq!(read_or_errno(dir, "uncached-drop"), "EIO");

    // Back up: the vault's values again.
    clear_faults(&m);
    assert_eq!(read_or_errno(dir, "uncached-drop"), "ok:never-read");
}

#[test]
fn a_token_expiring_mid_mount_is_replaced_without_a_failed_read() {
    let m = LocalMount::start(&[]);
    m.block_on(m.admin().seed("t-", 20, "token-test"))
        .expect("seed");
    let read = |i: usize| {
        std::fs::read_to_string(m.path(&format!("t-{i:05}")))
            .unwrap_or_else(|e| panic!("read t-{i:05}: {e}"))
    };
    for i in 0..10 {
        assert_eq!(read(i), "token-test");
    }
    let tokens_before = m.counters().count_status("token", 200);
    assert_eq!(tokens_before, 1, "{:?}", m.counters());

    // `mount local` has no --token-ttl: move the vault's clock past the 1 h token lifetime.
    m.reset_counters();
    m.block_on(m.admin().advance_clock(3700))
        .expect("advance clock");
    for i in 10..20 {
        assert_eq!(read(i), "token-test");
    }
    let c = m.counters();
    // The vault refused the expired token once, and the mount fetched one new token.
    assert!(c.count_status("get_secret", 401) >= 1, "{c:?}");
    assert_eq!(c.count_status("token", 200), 1, "{c:?}");
    assert_eq!(
        c.count_status("get_secret", 200),
        10,
        "every cold read fetched once: {c:?}"
    );
}

#[test]
fn a_burst_of_429_with_retry_after_is_absorbed_and_endless_throttling_is_eagain() {
    let m = LocalMount::start(&["--request-timeout", "3500ms"]);
    let dir = &m.mountpoint;
    m.other_set("hot", "hot-value");
    m.other_set("cold", "cold-value");
    m.reset_counters();

    m.inject(
        FaultSpec::status(429)
            .with_retry_after(1)
            .for_operation("get_secret")
            .times(2),
    );
    assert_eq!(read_or_errno(dir, "hot"), "ok:hot-value");
    assert_eq!(m.counters().count_status("get_secret", 429), 2);

    // Throttled on every get: the retries run out within the deadline → EAGAIN.
    m.inject(
        FaultSpec::status(429)
            .with_retry_after(1)
            .for_operation("get_secret"),
    );
    m.reset_counters();
    assert_eq!(read_or_errno(dir, "cold"), "EAGAIN");
    // Retried (each after its Retry-After) before giving up.
    assert!(
        m.counters().count_status("get_secret", 429) >= 3,
        "{:?}",
        m.counters()
    );
    clear_faults(&m);
    assert_eq!(read_or_errno(dir, "cold"), "ok:cold-value");
}

#[test]
fn a_vault_that_hangs_past_the_deadline_is_etimedout() {
    let m = LocalMount::start(&["--request-timeout", "3s"]);
    let dir = &m.mountpoint;
    m.other_set("slow", "slow-value");
    // Each get answers only after 10 s: every attempt is abandoned (a third of the deadline).
    m.inject(
        FaultSpec::default()
            .with_latency_ms(10_000)
            .for_operation("get_secret"),
    );
    assert_eq!(read_or_errno(dir, "slow"), "ETIMEDOUT");
    clear_faults(&m);
    assert_eq!(read_or_errno(dir, "slow"), "ok:slow-value");
}
