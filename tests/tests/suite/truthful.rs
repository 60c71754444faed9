//! What the status says must be what happens: a worker blocked on a lock, processed files that
//! cannot be archived, a settings change, the lag of a file copied with an old mtime, an empty
//! file, a leap second, pause in the wrong database, and counters that equal the ledger whatever
//! statements write it.

use e2e::*;
use postgres::Client;
use std::fs;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

#[test]
fn a_worker_blocked_on_a_lock_says_so_and_pending_files_show() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.write_file_atomic("first.csv", &gen_file(90, 5));
    c.wait_files_done(1, Duration::from_secs(30));
    let mut locker = c.connect_to("postgres");
    let locker_pid: i32 = locker
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    locker
        .batch_execute("BEGIN; LOCK TABLE user_events IN SHARE MODE;")
        .unwrap();
    for i in 0..3 {
        c.write_file_atomic(&format!("blocked{i}.csv"), &gen_file(91 + i, 5));
    }
    c.wait_for(
        "state waiting_for_lock with 3 pending files",
        Duration::from_secs(20),
        |c| {
            let s = c.status();
            s.state == "waiting_for_lock" && s.files_pending == Some(3)
        },
    );
    // The worker's own wait names the lock and who holds it (pid and role).
    let pid = locker_pid.to_string();
    c.wait_for("the locker named", Duration::from_secs(10), |c| {
        let s = c.status();
        s.detail.contains(&pid) && s.detail.contains("user_events")
    });
    std::thread::sleep(Duration::from_millis(300));
    let s = c.status();
    println!("{s:#?}");
    assert!(s.lag_seconds.is_some_and(|l| l > 0.1), "{s:?}");
    assert_eq!(s.state, "waiting_for_lock");
    // Logged once, not at every retry.
    std::thread::sleep(Duration::from_millis(2500));
    let log = c.server_log();
    assert_eq!(
        log.matches("waiting for a lock held by another session")
            .count(),
        1,
        "{log}"
    );
    locker.batch_execute("COMMIT").unwrap();
    c.wait_files_done(4, Duration::from_secs(30));
    c.wait_for("state running", Duration::from_secs(10), |c| {
        let s = c.status();
        s.state == "running" && s.files_pending == Some(0) && s.lag_seconds.is_none()
    });
    assert_eq!(c.event_count(), 20);
}

fn warnings_with(log: &str, words: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARNING") && l.contains(words))
        .count()
}

#[test]
fn an_unwritable_archive_folder_is_reported_once_and_the_state_says_degraded() {
    let mut c = Cluster::start(ClusterOptions::default());
    let archive = c.root_dir().join("readonly");
    fs::create_dir_all(&archive).unwrap();
    // Owned by root, not writable by the server's user.
    fs::set_permissions(
        &archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .unwrap();
    c.reload(&[
        ("ecommerce_ingest.processed_action", "archive"),
        ("ecommerce_ingest.archive_dir", &archive.to_string_lossy()),
    ]);
    let log_before = c.server_log().len();
    for i in 0..6 {
        c.write_file_atomic(&format!("f{i}.csv"), &gen_file(100 + i, 3));
    }
    c.wait_files_done(6, Duration::from_secs(30));
    c.wait_for("state degraded", Duration::from_secs(10), |c| {
        c.status().state == "degraded"
    });
    c.settle();
    let s = c.status();
    println!("{}", s.detail);
    assert!(s.detail.contains("cannot be archived into"), "{}", s.detail);
    assert_eq!(s.rows_ingested, 18);
    let log = c.server_log()[log_before..].to_string();
    assert_eq!(
        warnings_with(&log, "cannot be archived"),
        1,
        "one warning for one folder:\n{log}"
    );
    // Fixed: the waiting files are archived without anyone asking, and the state clears.
    fs::set_permissions(
        &archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    c.wait_for("the 6 files archived", Duration::from_secs(30), |c| {
        data_files(&archive).len() == 6 && data_files(c.input_dir()).is_empty()
    });
    c.wait_for("state running", Duration::from_secs(10), |c| {
        c.status().state == "running"
    });
}

#[test]
fn a_new_processed_action_applies_at_the_next_trigger() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1h'",
    ]));
    for i in 0..3 {
        c.write_file_atomic(&format!("k{i}.csv"), &gen_file(110 + i, 2));
    }
    c.wait_files_done(3, Duration::from_secs(30));
    assert_eq!(data_files(c.input_dir()).len(), 3);
    c.reload(&[("ecommerce_ingest.processed_action", "archive")]);
    let archive = c.input_dir().join("archive");
    c.wait_for(
        "the done files archived after the reload",
        Duration::from_secs(10),
        |c| data_files(&archive).len() == 3 && data_files(c.input_dir()).is_empty(),
    );
    c.reload(&[("ecommerce_ingest.processed_action", "delete")]);
    c.write_file_atomic("d.csv", &gen_file(120, 2));
    c.wait_for("d.csv deleted", Duration::from_secs(10), |c| {
        data_files(c.input_dir()).is_empty()
    });
    assert_eq!(c.event_count(), 8);
}

#[test]
fn lag_counts_from_when_a_file_arrived_not_from_its_mtime() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("SELECT ingest_pause()");
    c.wait_for("paused", Duration::from_secs(10), |c| {
        c.status().state == "paused"
    });
    let path = c.write_file_atomic("old.csv", &gen_file(130, 3));
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_580_000_000);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    c.full_trigger();
    c.wait_for("one pending file", Duration::from_secs(10), |c| {
        c.status().files_pending == Some(1)
    });
    std::thread::sleep(Duration::from_millis(500));
    let lag = c.status().lag_seconds.unwrap();
    println!("lag {lag} s");
    assert!(
        (0.3..60.0).contains(&lag),
        "lag {lag} s for a file that arrived just now"
    );
    c.execute("SELECT ingest_resume()");
    c.wait_files_done(1, Duration::from_secs(30));
}

#[test]
fn an_empty_file_fails_as_a_whole_and_writes_no_batch() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.processed_action = 'archive'",
    ]));
    c.write_file_atomic("a.csv", &gen_file(140, 5));
    c.wait_files_done(1, Duration::from_secs(30));
    c.wait_for("one batch", Duration::from_secs(10), |c| {
        c.int("SELECT count(*) FROM ingest_batches") == 1
    });
    c.write_file_atomic("empty.csv", b"");
    c.wait_for("empty.csv failed", Duration::from_secs(30), |c| {
        c.text("SELECT (SELECT status FROM ingest_files WHERE file_name = 'empty.csv')")
            .as_deref()
            == Some("failed")
    });
    c.settle();
    let err = c
        .text("SELECT error FROM ingest_files WHERE file_name = 'empty.csv'")
        .unwrap_or_default();
    assert!(err.contains("empty"), "{err}");
    let s = c.status();
    assert_eq!((s.files_ingested, s.files_failed), (1, 1));
    assert!(c.input_dir().join("failed/empty.csv").exists());
    assert_eq!(c.int("SELECT count(*) FROM ingest_batches"), 1);
    assert_eq!(
        c.int("SELECT last_batch_rows FROM ingest_status()"),
        5,
        "a trigger that ingested nothing is no batch"
    );
}

#[test]
fn a_leap_second_is_accepted_as_postgresql_does() {
    let mut c = Cluster::start(ClusterOptions::default());
    let row = gen_row(150, 0);
    let fields: Vec<&str> = row.split(',').collect();
    // gen_row(_, 0) has no quoted field: the timestamp is field 7.
    assert_eq!(fields.len(), 9, "{row}");
    let mut f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    f[6] = "2016-12-31T23:59:60Z".into();
    let text = format!("{}\n{}\n", ecommerce_events::header_line(), f.join(","));
    c.write_file_atomic("leap.csv", text.as_bytes());
    c.wait_files_done(1, Duration::from_secs(30));
    assert_eq!(c.int("SELECT count(*) FROM ingest_rejects"), 0);
    assert_eq!(
        c.int(
            "SELECT count(*) FROM user_events
              WHERE event_timestamp = '2016-12-31T23:59:60Z'::timestamptz
                AND event_timestamp = '2017-01-01T00:00:00Z'::timestamptz"
        ),
        1
    );
}

#[test]
fn pause_in_a_database_without_the_worker_is_refused() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("CREATE DATABASE other");
    let mut other = c.connect_to("other");
    other
        .batch_execute("CREATE EXTENSION ecommerce_ingest")
        .unwrap();
    for f in ["ingest_pause()", "ingest_resume()"] {
        let err = expect_db_error(other.query(&format!("SELECT {f}"), &[]), f);
        println!("{err}");
        assert!(err.contains("runs in database \"postgres\""), "{err}");
    }
    // Where the worker runs, it works.
    assert_eq!(c.text("SELECT ingest_pause()").as_deref(), Some("paused"));
    assert!(c.status().paused);
}

/// Runs `sql` and fails unless `ingest_status()`'s counters still equal the ledger's sums.
fn counted(c: &mut Cluster, what: &str, sql: &str) {
    c.client()
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{what}: {}", db_error_text(&e)));
    let problems = counter_problems(c.client());
    assert!(problems.is_empty(), "after {what}: {problems:#?}");
}

/// The shard a session's ledger statements add to (schema.sql, ingest_count_ledger()).
fn shard_of(client: &mut Client) -> i32 {
    client
        .query_one("SELECT 1 + pg_backend_pid() % 1023", &[])
        .unwrap()
        .get(0)
}

/// `ingest_status()`'s counters are kept by statement-level triggers on the ledger, each
/// statement adding its deltas to its backend's shard of `ingest_counters`, and each worker
/// folds its pipeline's shards into shard 0 while idle. Whatever a superuser's statements do to
/// the ledger (multi-row INSERT, INSERT … ON CONFLICT DO UPDATE of new and existing rows, UPDATEs
/// of a status or of the pipeline, DELETE, a writable CTE, COPY, a savepoint rolled back,
/// TRUNCATE), the counters equal the ledger's sums; two sessions writing one pipeline's ledger
/// at once do not wait for each other; and the fold changes no total.
#[test]
fn the_counters_equal_the_ledger_whatever_statements_write_it() {
    const T: Duration = Duration::from_secs(60);
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = c.pipeline_into_t("p", r#"{"trigger_interval": 100}"#);
    // The workers' own ledger rows first (one bad row each).
    let mut events = String::from_utf8(gen_file(5, 20)).unwrap();
    events.push_str("u1,view,p1,Phone,Electronics,not a price,2024-05-01T10:00:00Z,s1,mobile\n");
    c.write_file_atomic("e.csv", events.as_bytes());
    write_atomic(&dir, "p.csv", b"id\n1\nx\n2\n");
    c.wait_for("both files", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 2
    });
    let problems = counter_problems(c.client());
    assert!(problems.is_empty(), "after the workers: {problems:#?}");

    // A superuser's statements, on ledger rows of files that are not in the folders (every
    // status, both pipelines).
    counted(
        &mut c,
        "a multi-row INSERT",
        "INSERT INTO ingest_ledger (file_name, status, size, rows_ok, rows_rejected, pipeline)
         SELECT format('manual_%s.csv', i),
                (ARRAY['ingesting', 'growing', 'done', 'failed', 'changed', 'error'])[1 + i % 6],
                i, i * 10, i % 7, (ARRAY['events', 'p'])[1 + i % 2]
           FROM generate_series(1, 600) i",
    );
    // As the workers write the ledger: rows 500..600 exist (updated), 601..800 are new
    // (inserted); each must count once.
    counted(
        &mut c,
        "INSERT … ON CONFLICT DO UPDATE of new and existing rows",
        "INSERT INTO ingest_ledger AS l (file_name, status, size, rows_ok, rows_rejected, pipeline)
         SELECT format('manual_%s.csv', i), (ARRAY['done', 'failed', 'ingesting'])[1 + i % 3],
                i, 5, 1, (ARRAY['events', 'p'])[1 + i % 2]
           FROM generate_series(500, 800) i
         ON CONFLICT (pipeline, file_name) DO UPDATE SET status = EXCLUDED.status,
            rows_ok = l.rows_ok + EXCLUDED.rows_ok, rows_rejected = l.rows_rejected + EXCLUDED.rows_rejected",
    );
    counted(
        &mut c,
        "INSERT … ON CONFLICT DO NOTHING",
        "INSERT INTO ingest_ledger (file_name, status, size, rows_ok, pipeline)
         VALUES ('manual_2.csv', 'done', 1, 99, 'events'), ('manual_new.csv', 'done', 1, 99, 'events')
         ON CONFLICT DO NOTHING",
    );
    counted(
        &mut c,
        "an UPDATE of statuses",
        "UPDATE ingest_ledger SET status = 'done'
          WHERE file_name LIKE 'manual\\_%' AND status IN ('ingesting', 'growing')",
    );
    counted(
        &mut c,
        "an UPDATE moving rows to the other pipeline",
        "UPDATE ingest_ledger
            SET pipeline = CASE pipeline WHEN 'events' THEN 'p' ELSE 'events' END,
                rows_ok = rows_ok * 2, status = 'changed'
          WHERE file_name LIKE 'manual\\_1%'",
    );
    counted(
        &mut c,
        "an UPDATE of no row",
        "UPDATE ingest_ledger SET size = 0 WHERE file_name = 'nothing.csv'",
    );
    counted(
        &mut c,
        "a DELETE",
        "DELETE FROM ingest_ledger WHERE file_name LIKE 'manual\\_%' AND size % 3 = 0",
    );
    counted(
        &mut c,
        "a writable CTE (DELETE and INSERT in one statement)",
        "WITH d AS (DELETE FROM ingest_ledger WHERE file_name LIKE 'manual\\_5%' RETURNING *)
         INSERT INTO ingest_ledger (file_name, status, size, rows_ok, rows_rejected, pipeline)
         SELECT 'again_' || file_name, 'failed', size, rows_ok, rows_rejected,
                CASE pipeline WHEN 'events' THEN 'p' ELSE 'events' END FROM d",
    );
    counted(
        &mut c,
        "a savepoint rolled back",
        "BEGIN;
         SAVEPOINT s;
         DELETE FROM ingest_ledger;
         ROLLBACK TO SAVEPOINT s;
         UPDATE ingest_ledger SET status = 'failed' WHERE file_name = 'manual_4.csv';
         COMMIT",
    );
    // COPY, as pg_restore loads the ledger.
    let mut w = c
        .client()
        .copy_in(
            "COPY ingest_ledger (file_name, status, size, rows_ok, rows_rejected, pipeline) FROM STDIN",
        )
        .unwrap();
    for i in 0..1000 {
        let status = ["done", "failed", "changed", "ingesting"][i % 4];
        let pipeline = ["events", "p"][i % 2];
        writeln!(
            w,
            "copied_{i}.csv\t{status}\t{i}\t{}\t{}\t{pipeline}",
            i * 3,
            i % 2
        )
        .unwrap();
    }
    w.finish().unwrap();
    let problems = counter_problems(c.client());
    assert!(problems.is_empty(), "after COPY: {problems:#?}");

    // Two sessions writing the events pipeline's ledger: the first holds its transaction open,
    // the second is not held back (their shards differ; another connection if they do not).
    let mut a = c.connect_to("postgres");
    let mut b = c.connect_to("postgres");
    while shard_of(&mut b) == shard_of(&mut a) {
        b = c.connect_to("postgres");
    }
    a.batch_execute(
        "BEGIN;
         INSERT INTO ingest_ledger (file_name, status, size, rows_ok, pipeline)
         VALUES ('session_a.csv', 'done', 1, 7, 'events');
         UPDATE ingest_ledger SET rows_ok = rows_ok + 1 WHERE file_name = 'manual_2.csv'",
    )
    .unwrap();
    let started = Instant::now();
    b.batch_execute(
        "SET lock_timeout = '5s';
         BEGIN;
         INSERT INTO ingest_ledger (file_name, status, size, rows_ok, pipeline)
         VALUES ('session_b.csv', 'failed', 1, 9, 'events');
         UPDATE ingest_ledger SET status = 'done' WHERE file_name = 'manual_8.csv';
         COMMIT",
    )
    .unwrap_or_else(|e| {
        panic!(
            "a second session writing the ledger waited for the first: {}",
            db_error_text(&e)
        )
    });
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "the second session took {waited:?}"
    );
    let problems = counter_problems(c.client());
    assert!(
        problems.is_empty(),
        "with a transaction open: {problems:#?}"
    );
    a.batch_execute("COMMIT").unwrap();
    let problems = counter_problems(c.client());
    assert!(problems.is_empty(), "after both sessions: {problems:#?}");
    drop((a, b));

    // Each worker folds its pipeline's shards into shard 0 while idle (at most once a minute):
    // one row per pipeline is left, and the totals do not change.
    c.wait_for("the shards folded", Duration::from_secs(90), |c| {
        c.int("SELECT count(*) FROM ingest_counters WHERE shard <> 0") == 0
    });
    assert_eq!(
        c.text("SELECT string_agg(pipeline || ':' || shard, ' ' ORDER BY pipeline) FROM ingest_counters")
            .as_deref(),
        Some("events:0 p:0")
    );
    let problems = counter_problems(c.client());
    assert!(problems.is_empty(), "after the fold: {problems:#?}");

    // TRUNCATE empties the counters; what is written next counts from zero.
    counted(&mut c, "TRUNCATE", "TRUNCATE ingest_ledger");
    assert_eq!(c.int("SELECT count(*) FROM ingest_counters"), 0);
    counted(
        &mut c,
        "an INSERT after TRUNCATE",
        "INSERT INTO ingest_ledger (file_name, status, size, rows_ok, rows_rejected, pipeline)
         VALUES ('after.csv', 'done', 1, 3, 1, 'p')",
    );
    let s = c.status();
    assert_eq!(
        (
            s.files_ingested,
            s.files_failed,
            s.rows_ingested,
            s.rows_rejected
        ),
        (0, 0, 0, 0),
        "{s:#?}"
    );
}
