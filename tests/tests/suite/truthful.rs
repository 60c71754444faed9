//! What the status says must be what happens: a worker blocked on a lock, processed files that
//! cannot be archived, a settings change, the lag of a file copied with an old mtime, an empty
//! file, a leap second, and pause in the wrong database.

use e2e::*;
use std::fs;
use std::time::{Duration, SystemTime};

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
