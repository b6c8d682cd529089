//! `--refresh INTERVAL` (SPEC §9) on a real mount: a background walk of the listing keeps
//! cached values fresh at ⌈N/25⌉ list calls per interval plus one get per changed secret,
//! whatever the read rate; values changed by another client reach readers by the next walk.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::LocalMount;

fn walks(m: &LocalMount) -> usize {
    m.log_text()
        .lines()
        .filter(|l| l.contains("revalidated"))
        .count()
}

/// Waits for the next walk to be logged; answers the walk count then.
fn next_walk(m: &LocalMount) -> usize {
    let before = walks(m);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = walks(m);
        if now > before {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "no walk logged:\n{}",
            m.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_refresh_costs_list_pages_and_one_get_per_changed_secret_whatever_the_read_rate() {
    const N: usize = 200;
    // Values expire after 1 s on their own; only the refresh's renewals keep reads free.
    let m = LocalMount::start(&["--refresh", "2s", "--cache-ttl", "1s", "--list-ttl", "1s"]);
    let names: Vec<String> = (0..N).map(|i| format!("fleet-{i:03}")).collect();
    for name in &names {
        m.other_set(name, &format!("{name}-v1"));
    }
    for name in &names {
        assert_eq!(
            std::fs::read_to_string(m.path(name)).expect("read"),
            format!("{name}-v1")
        );
    }

    // A reader reads every file, over and over, for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, reads) = (stop.clone(), reads.clone());
        let paths: Vec<_> = names.iter().map(|n| m.path(n)).collect();
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for path in &paths {
                    match std::fs::read_to_string(path) {
                        Ok(_) => {
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors.push(format!("{}: {e}", path.display())),
                    }
                }
            }
            errors
        })
    };

    // Count from right after a walk to right after the fifth walk since. Values first read in
    // the second they were set are read once more by the first walk that starts after the
    // reading (`updated` counts whole seconds): initial loads, before counting.
    next_walk(&m);
    next_walk(&m);
    m.reset_counters();
    let first = walks(&m);
    next_walk(&m);
    for name in &names[..3] {
        m.other_set(name, &format!("{name}-v2"));
    }
    let mut last = first;
    while last < first + 5 {
        last = next_walk(&m);
    }
    let counters = m.counters();
    stop.store(true, Ordering::SeqCst);
    let errors = reader.join().expect("reader");
    assert!(errors.is_empty(), "read errors: {errors:?}");
    let intervals = (last - first) as u64;
    let pages = N.div_ceil(25) as u64;
    let list_calls = counters.count("list_secrets") - counters.count_status("list_secrets", 401);
    let gets = counters.count("get_secret") - counters.count_status("get_secret", 401);
    let read_count = reads.load(Ordering::Relaxed);
    eprintln!("{intervals} intervals, {read_count} reads, {list_calls} list calls, {gets} gets");
    assert!(
        read_count > (N * 5) as u64,
        "the reader kept reading: {read_count}"
    );
    assert_eq!(list_calls, pages * intervals, "list pages per interval");
    assert_eq!(gets, 3, "one get per changed secret");

    // Every reader sees the new values now.
    for name in &names[..3] {
        assert_eq!(
            std::fs::read_to_string(m.path(name)).expect("read"),
            format!("{name}-v2")
        );
    }
    assert_eq!(
        std::fs::read_to_string(m.path(&names[3])).expect("read"),
        format!("{}-v1", names[3])
    );
}

#[test]
fn a_throttled_refresh_waits_longer_each_time_then_resumes() {
    let m = LocalMount::start(&["--refresh", "1s", "--cache-ttl", "1s"]);
    m.other_set("one", "1");
    assert_eq!(std::fs::read_to_string(m.path("one")).expect("read"), "1");
    next_walk(&m);
    // Every listing answers 429 (Retry-After: 1) for a while.
    m.inject(akvfs::local_vault::FaultSpec {
        operation: Some("list_secrets".into()),
        status: Some(429),
        retry_after: Some(1),
        ..Default::default()
    });
    let throttled = |m: &LocalMount| -> Vec<u32> {
        m.log_text()
            .lines()
            .filter(|l| l.contains("throttles the refresh"))
            .filter_map(|l| {
                l.split("backoff_intervals=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    };
    m.reset_counters();
    let deadline = Instant::now() + Duration::from_secs(60);
    while throttled(&m).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no backoff logged:\n{}",
            m.log_text()
        );
        // Readers keep reading from the cache: they do not take the throttled refresh's place.
        assert_eq!(std::fs::read_to_string(m.path("one")).expect("read"), "1");
        std::thread::sleep(Duration::from_millis(200));
    }
    let backoffs = throttled(&m);
    assert_eq!(&backoffs[..2], &[2, 4], "the wait doubles: {backoffs:?}");
    assert_eq!(
        m.calls("get_secret"),
        0,
        "no get while the refresh is throttled"
    );
    m.block_on(m.admin().clear_faults()).expect("clear faults");
    let before = walks(&m);
    let deadline = Instant::now() + Duration::from_secs(60);
    while walks(&m) == before {
        assert!(
            Instant::now() < deadline,
            "the refresh did not resume:\n{}",
            m.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
