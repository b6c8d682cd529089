//! Ordinary tools agree with the vault: cp, tee, Python, stat, wc, head; values changed by
//! another client show after the TTL with the right size.

mod common;

use common::{sh, sh_ok, LocalMount};

#[test]
fn common_tools_agree_with_the_vault() {
    let m = LocalMount::start(&[]);
    let dir = &m.mountpoint;
    let outside = m.dir.path();

    std::fs::write(outside.join("src.txt"), "from-cp").expect("write src");
    sh_ok(dir, &format!("cp {}/src.txt copied", outside.display()));
    assert_eq!(m.other_get("copied"), "from-cp");

    sh_ok(dir, "printf 'via-tee' | tee teed > /dev/null");
    assert_eq!(m.other_get("teed"), "via-tee");

    sh_ok(
        dir,
        "python3 -c \"open('py','w').write('from-python'); print(open('py').read())\"",
    );
    assert_eq!(m.other_get("py"), "from-python");
    assert_eq!(
        sh_ok(dir, "python3 -c \"print(open('py').read(), end='')\""),
        "from-python"
    );

    assert_eq!(sh_ok(dir, "stat -c %s py").trim(), "11");
    assert_eq!(sh_ok(dir, "wc -c < py").trim(), "11");
    assert_eq!(sh_ok(dir, "head -c 4 py"), "from");
    assert_eq!(sh_ok(dir, "cat copied teed"), "from-cpvia-tee");

    // append and partial overwrite keep the rest of the value
    sh_ok(dir, "printf -- '-more' >> py");
    assert_eq!(m.other_get("py"), "from-python-more");
}

#[test]
fn value_rewritten_by_another_client_shows_after_the_ttl_with_the_right_size() {
    let m = LocalMount::start(&["--cache-ttl", "1s", "--list-ttl", "1s"]);
    let dir = &m.mountpoint;
    m.other_set("shared", "short");
    assert_eq!(sh_ok(dir, "cat shared"), "short");

    m.other_set("shared", "a much longer value");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(sh_ok(dir, "stat -c %s shared").trim(), "19");
    assert_eq!(sh_ok(dir, "cat shared"), "a much longer value");
    assert_eq!(sh_ok(dir, "wc -c < shared").trim(), "19");
}

#[test]
fn ls_of_60_secrets_costs_three_list_calls_and_no_get() {
    let m = LocalMount::start(&[]);
    for i in 0..60 {
        m.other_set(&format!("s-{i:02}"), "x");
    }
    m.reset_counters();
    let mut names: Vec<String> = std::fs::read_dir(&m.mountpoint)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let expected: Vec<String> = (0..60).map(|i| format!("s-{i:02}")).collect();
    assert_eq!(names, expected);
    assert_eq!(m.calls("list_secrets"), 3, "60 secrets at 25 a page");
    assert_eq!(
        m.counters().count("get_secret"),
        0,
        "a plain listing reads no value"
    );
}

#[test]
fn hundred_cats_inside_the_ttl_cost_one_get() {
    let m = LocalMount::start(&["--cache-ttl", "60s"]);
    m.other_set("hot", "value");
    m.reset_counters();
    for _ in 0..100 {
        assert_eq!(sh_ok(&m.mountpoint, "cat hot"), "value");
    }
    assert_eq!(m.calls("get_secret"), 1);
}

#[test]
fn twenty_kib_written_in_4_kib_chunks_is_one_set() {
    let m = LocalMount::start(&[]);
    m.reset_counters();
    let value: String = (0..20 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(m.path("chunked")).expect("create");
        for chunk in value.as_bytes().chunks(4096) {
            f.write_all(chunk).expect("write chunk");
        }
    }
    assert_eq!(m.calls("set_secret"), 1);
    assert_eq!(m.other_get("chunked"), value);
}

#[test]
fn sixty_four_concurrent_readers_of_a_cold_secret_cost_one_get() {
    let m = LocalMount::start(&[]);
    m.other_set("cold", "cold-value");
    m.reset_counters();
    let path = m.path("cold");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(64));
    let readers: Vec<_> = (0..64)
        .map(|_| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                std::fs::read_to_string(path).expect("read")
            })
        })
        .collect();
    for r in readers {
        assert_eq!(r.join().expect("reader"), "cold-value");
    }
    assert_eq!(m.calls("get_secret"), 1);
}

#[test]
fn lookup_of_an_impossible_name_costs_no_vault_call() {
    let m = LocalMount::start(&[]);
    m.reset_counters();
    assert!(!m.path("no_such.txt").exists());
    let out = sh(&m.mountpoint, "cat no_such.txt");
    assert!(!out.status.success());
    assert_eq!(m.vault_calls(), 0);
}

#[test]
fn writing_25601_bytes_fails_with_efbig_and_keeps_the_old_value() {
    let m = LocalMount::start(&[]);
    m.other_set("big", "old");
    let out = sh(
        &m.mountpoint,
        "python3 -c \"import errno\ntry:\n  f=open('big','w'); f.write('x'*25601); f.close(); print('ok')\nexcept OSError as e: print(errno.errorcode[e.errno])\"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "EFBIG");
    assert_eq!(m.other_get("big"), "old");
    assert_eq!(sh_ok(&m.mountpoint, "cat big"), "old");

    // exactly at the limit is fine
    sh_ok(
        &m.mountpoint,
        "python3 -c \"open('big','w').write('y'*25600)\"",
    );
    assert_eq!(m.other_get("big").len(), 25600);
}
