//! Pipelines: ACCESS EXCLUSIVE held on one pipeline's target holds back that pipeline only: it
//! says `waiting_for_lock` with the holder's pid, another pipeline and the events pipeline go
//! on, `ingest_pause(p)` answers at once; after the release every row is there exactly once.

use super::*;
use e2e::*;
use std::time::{Duration, Instant};

/// `id,name` rows `from..=to`.
fn items_csv(from: i64, to: i64) -> Vec<u8> {
    let mut s = String::from("id,name\n");
    for i in from..=to {
        s += &format!("{i},item {i}\n");
    }
    s.into_bytes()
}

/// `(rows, distinct ids, min id, max id, names as written)` of `table`.
fn items_of(c: &mut Cluster, table: &str) -> Vec<Option<String>> {
    rows_text(
        c,
        &format!(
            "SELECT count(*), count(DISTINCT id), min(id), max(id),
                    count(*) FILTER (WHERE name = 'item ' || id) FROM {table}"
        ),
    )
    .remove(0)
}

fn items_want(n: i64) -> Vec<Option<String>> {
    let n = n.to_string();
    vec![s(&n), s(&n), s("1"), s(&n), s(&n)]
}

#[test]
fn a_lock_on_one_pipelines_target_holds_back_that_pipeline_only() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.lock_timeout = '500ms'",
    ]));
    c.execute(
        "CREATE TABLE locked_items (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE free_items (id bigint PRIMARY KEY, name text NOT NULL);",
    );
    let dl = folder(&c, "locked");
    let df = folder(&c, "free");
    create(&mut c, "locked", &dl, "locked_items", "csv", "{}");
    create(&mut c, "free", &df, "free_items", "csv", "{}");
    write_atomic(&dl, "l0.csv", &items_csv(1, 100));
    write_atomic(&df, "f0.csv", &items_csv(1, 100));
    wait_done(&mut c, "locked", 1);
    wait_done(&mut c, "free", 1);

    let mut locker = c.connect_as("postgres");
    locker
        .batch_execute("BEGIN; LOCK TABLE locked_items IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let locker_pid: i32 = locker
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let log_from = c.server_log().len();
    write_atomic(&dl, "l1.csv", &items_csv(101, 200));
    write_atomic(&df, "f1.csv", &items_csv(101, 200));
    let events = c.write_file_atomic("e1.csv", &gen_file(77, 300));

    // The locked pipeline waits, and says for what and who holds it.
    c.wait_for(
        "pipeline locked waiting for the lock, naming its holder",
        T,
        |c| {
            let p = pstatus(c, "locked");
            p.state == "waiting_for_lock" && p.detail.contains(&locker_pid.to_string())
        },
    );
    let p = pstatus(&mut c, "locked");
    println!("locked: {} / {}", p.state, p.detail);
    assert!(p.detail.contains("locked_items"), "{}", p.detail);
    // The others go on meanwhile.
    wait_done(&mut c, "free", 2);
    wait_done(&mut c, "events", 1);
    for other in ["free", "events"] {
        let st = pstatus(&mut c, other);
        assert_eq!(st.state, "running", "{other}: {st:?}");
    }
    // The chunk gives up after lock_timeout (500 ms) and tries again, over and over: said once.
    c.wait_for("the wait logged", T, |c| {
        c.server_log()[log_from..].contains("waiting for a lock held by another session")
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pstatus(&mut c, "locked").state, "waiting_for_lock");
    // Pausing the waiting pipeline answers at once, and holds it once the lock goes.
    let t = Instant::now();
    c.execute("SELECT ingest_pause('locked')");
    let took = t.elapsed();
    println!("ingest_pause('locked') took {took:?}");
    assert!(took < Duration::from_secs(1), "ingest_pause took {took:?}");
    assert!(pstatus(&mut c, "locked").paused);
    assert_eq!(done(&mut c, "locked"), 1, "l1.csv committed under the lock");
    // The pause takes effect before the next chunk: the one waiting when it came would commit
    // once the lock goes. It gives up at its lock_timeout, and paused, the worker starts no
    // other.
    std::thread::sleep(Duration::from_secs(2));
    let wpid = pstatus(&mut c, "locked").worker_pid.expect("a worker");
    c.wait_for(
        "the paused pipeline's worker not waiting for a lock",
        T,
        |c| {
            c.int(&format!(
                "SELECT count(*) FROM pg_locks WHERE pid = {wpid} AND NOT granted"
            )) == 0
        },
    );
    locker.batch_execute("COMMIT").unwrap();
    drop(locker);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(done(&mut c, "locked"), 1, "l1.csv ingested while paused");

    c.execute("SELECT ingest_resume('locked')");
    wait_done(&mut c, "locked", 2);
    full_trigger(&mut c, "locked");
    full_trigger(&mut c, "free");
    c.settle();
    let locked = items_of(&mut c, "locked_items");
    let free = items_of(&mut c, "free_items");
    assert_eq!(locked, items_want(200), "locked_items");
    assert_eq!(free, items_want(200), "free_items");
    assert_consistent(&mut c, "locked");
    assert_consistent(&mut c, "free");
    let exp = expected_rows(&[events]);
    c.assert_exact_rows(&exp.rows);
    assert_eq!(pstatus(&mut c, "locked").state, "running");
    // Waiting is not an error: said once in the log, as a LOG line, not a WARNING.
    let log = c.server_log();
    let noisy: Vec<&str> = log[log_from..]
        .lines()
        .filter(|l| l.contains("WARNING") || l.contains("ERROR"))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
    let said = log[log_from..]
        .matches("waiting for a lock held by another session")
        .count();
    println!("the wait logged {said} time(s)");
    assert_eq!(said, 1, "the wait was logged {said} times");
    let found = c.int(
        "SELECT (SELECT count(*) FROM locked_items) + (SELECT count(*) FROM free_items)
              + (SELECT count(*) FROM user_events)",
    );
    let duplicated = c.int(
        "SELECT (SELECT count(*) - count(DISTINCT id) FROM locked_items)
              + (SELECT count(*) - count(DISTINCT id) FROM free_items)
              + (SELECT count(*) - count(DISTINCT (source_file, source_line)) FROM user_events_with_source)",
    );
    println!(
        "reliability: fault=lock-holder injected=1 expected={} found={found} duplicated={duplicated}",
        400 + exp.rows.len()
    );
}
