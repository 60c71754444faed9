//! What lands in the folder arrives in `user_events` exactly once, with the files' values.

use e2e::*;
use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

fn file_statuses(c: &mut Cluster) -> Vec<(String, String, i64, i64, Option<String>)> {
    c.client()
        .query(
            "SELECT file_name, status, rows_ok, rows_rejected, error FROM ingest_files ORDER BY file_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[test]
fn fifty_files_of_a_thousand_rows_arrive_exactly() {
    let mut c = Cluster::start(ClusterOptions::default());
    let started = Instant::now();
    for i in 0..50u64 {
        c.write_file_atomic(&format!("events_{i:03}.csv"), &gen_file(i, 1000));
    }
    let took = c.wait_files_done(50, Duration::from_secs(120));
    println!(
        "50 files x 1000 rows ingested {:?} after the last write ({:?} in all)",
        took,
        started.elapsed()
    );
    let exp = expected_rows(&[c.input_dir()]);
    assert_eq!(exp.rows.len(), 50_000);
    assert!(exp.rejects.is_empty());
    c.assert_exact_rows(&exp.rows);

    let files = file_statuses(&mut c);
    assert_eq!(files.len(), 50);
    for (name, status, ok, rej, _) in &files {
        assert_eq!(
            (status.as_str(), *ok, *rej),
            ("done", 1000, 0),
            "ingest_files row of {name}"
        );
    }
    let s = c.status();
    assert_eq!(
        (
            s.files_ingested,
            s.rows_ingested,
            s.rows_rejected,
            s.files_failed
        ),
        (50, 50_000, 0, 0),
        "{s:#?}"
    );
    assert_eq!(s.state, "running");

    // The reference design's queries run unchanged and agree with the files.
    let by_type = c
        .client()
        .query(
            "SELECT event_type, COUNT(*) FROM user_events WHERE user_id LIKE 'user_%' GROUP BY event_type ORDER BY 1",
            &[],
        )
        .unwrap();
    let purchases = exp
        .rows
        .iter()
        .filter(|r| r.event_type == "purchase")
        .count() as i64;
    let got: Vec<(String, i64)> = by_type.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            ("purchase".to_string(), purchases),
            ("view".to_string(), 50_000 - purchases)
        ]
    );
    for q in [
        "SELECT product_category, SUM(price) AS revenue FROM user_events WHERE event_type = 'purchase' GROUP BY product_category ORDER BY revenue DESC",
        "SELECT DATE_TRUNC('hour', event_timestamp) AS hour, COUNT(*) FROM user_events GROUP BY hour ORDER BY hour",
        "SELECT AVG(EXTRACT(EPOCH FROM (inserted_at - event_timestamp))) AS avg_latency_seconds FROM user_events",
    ] {
        c.client().query(q, &[]).unwrap_or_else(|e| panic!("{q}: {e}"));
    }

    // Nothing more arrives on later triggers.
    c.settle();
    assert_eq!(c.event_count(), 50_000);
    assert_eq!(c.int("SELECT count(*) FROM ingest_files"), 50);
}

#[test]
fn bad_rows_are_rejected_one_by_one_and_a_file_without_a_column_fails() {
    let mut c = Cluster::start(ClusterOptions::default());
    let header = ecommerce_events::header_line();
    let good = |i| gen_row(900, i);
    let ts = "2024-05-01T10:00:00Z";
    let lines = [
        header.clone(),                                                             // 1
        good(0),                                                                    // 2
        format!("user_1,click,prod_1,Thing,Books,1.00,{ts},s1,mobile"),             // 3
        good(1),                                                                    // 4
        format!("user_1,view,prod_1,Thing,Books,12.345,{ts},s1,mobile"),            // 5
        good(2),                                                                    // 6
        "user_1,view,prod_1,Thing,Books,1.00,yesterday,s1,mobile".to_string(),      // 7
        format!("user_1,view,prod_1,Thing,Books,1.00,{ts},s1,phone"),               // 8
        format!(",view,prod_1,Thing,Books,1.00,{ts},s1,mobile"),                    // 9
        "user_1,view,prod_1".to_string(),                                           // 10
        format!("user_2,view,prod_2,\"Two\nline name\",Books,2.50,{ts},s2,tablet"), // 11-12
        format!("user_3,purchase,prod_3,Thing,Books,$5,{ts},s3,desktop"),           // 13
        good(3),                                                                    // 14
    ];
    let body = lines.join("\n") + "\n";
    c.write_file_atomic("a_bad_rows.csv", body.as_bytes());
    // A header without price: the whole file fails.
    let no_price = "user_id,event_type,product_id,product_name,product_category,event_timestamp,session_id,device_type\n\
                    user_1,view,prod_1,Thing,Books,2024-05-01T10:00:00Z,s1,mobile\n";
    c.write_file_atomic("b_no_price.csv", no_price.as_bytes());
    c.write_file_atomic("c_after.csv", &gen_file(901, 25));

    c.wait_for(
        "a_bad_rows and c_after done, b_no_price failed",
        Duration::from_secs(30),
        |c| {
            c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 2
                && c.int("SELECT count(*) FROM ingest_files WHERE status = 'failed'") == 1
        },
    );
    let files = file_statuses(&mut c);
    println!("{files:#?}");
    assert_eq!(files.len(), 3);
    assert_eq!(
        (&files[0].0[..], &files[0].1[..], files[0].2, files[0].3),
        ("a_bad_rows.csv", "done", 5, 7)
    );
    assert_eq!(
        (&files[1].0[..], &files[1].1[..]),
        ("b_no_price.csv", "failed")
    );
    let err = files[1].4.clone().unwrap_or_default();
    assert!(
        err.contains("price"),
        "the failed file's error should name the missing column price: {err:?}"
    );
    assert_eq!(
        (&files[2].0[..], &files[2].1[..], files[2].2, files[2].3),
        ("c_after.csv", "done", 25, 0)
    );

    // The good rows, exactly (line 11 spans two lines: its name has a line break).
    let exp = expected_rows(&[
        c.input_dir().join("a_bad_rows.csv"),
        c.input_dir().join("c_after.csv"),
    ]);
    let a_lines: Vec<i64> = exp
        .rows
        .iter()
        .filter(|r| r.file == "a_bad_rows.csv")
        .map(|r| r.line)
        .collect();
    assert_eq!(a_lines, vec![2, 4, 6, 11, 14]);
    c.assert_exact_rows(&exp.rows);
    let two_line = c.text("SELECT product_name FROM user_events_with_source WHERE source_file = 'a_bad_rows.csv' AND source_line = 11");
    assert_eq!(two_line.as_deref(), Some("Two\nline name"));

    // Each bad row: its exact line, column and a reason saying what was expected.
    type Reject = (String, i64, Option<String>, String, Option<String>);
    let rejects: Vec<Reject> = c
        .client()
        .query(
            "SELECT file_name, line_number, column_name, reason, raw_text FROM ingest_rejects ORDER BY line_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    for r in &rejects {
        println!("{r:?}");
    }
    let want: [(i64, Option<&str>, &str); 7] = [
        (3, Some("event_type"), "'view' or 'purchase'"),
        (5, Some("price"), "at most 2 fraction digits"),
        (7, Some("event_timestamp"), "ISO 8601"),
        (8, Some("device_type"), "'mobile', 'desktop' or 'tablet'"),
        (9, Some("user_id"), "must not be empty"),
        (10, None, "expected 9 fields"),
        (13, Some("price"), "expected a decimal number"),
    ];
    assert_eq!(rejects.len(), want.len(), "{rejects:#?}");
    for ((file, line, col, reason, raw), (wl, wc, wr)) in rejects.iter().zip(want) {
        assert_eq!(file, "a_bad_rows.csv");
        assert_eq!((*line, col.as_deref()), (wl, wc), "reject {reason:?}");
        assert!(
            reason.contains(wr),
            "reject of line {line}: reason {reason:?} should contain {wr:?}"
        );
        let raw_want = body.split('\n').nth((wl - 1) as usize).unwrap();
        assert_eq!(raw.as_deref(), Some(raw_want), "raw text of line {line}");
    }
    // The contract's reader agrees on which lines are bad.
    let exp_rej: Vec<(i64, Option<String>)> = exp
        .rejects
        .iter()
        .map(|r| (r.line, r.column.clone()))
        .collect();
    let got_rej: Vec<(i64, Option<String>)> = rejects.iter().map(|r| (r.1, r.2.clone())).collect();
    assert_eq!(exp_rej, got_rej);

    let s = c.status();
    assert_eq!(
        (
            s.files_ingested,
            s.files_failed,
            s.rows_ingested,
            s.rows_rejected
        ),
        (2, 1, 30, 7),
        "{s:#?}"
    );
    c.settle();
    assert_eq!(c.event_count(), 30);
    assert_eq!(c.int("SELECT count(*) FROM ingest_rejects"), 7);
    assert_eq!(
        c.text("SELECT status FROM ingest_files WHERE file_name = 'b_no_price.csv'")
            .as_deref(),
        Some("failed")
    );
}

#[test]
fn hostile_file_names_are_ingested_under_their_exact_names() {
    let mut c = Cluster::start(ClusterOptions::default());
    let names = [
        "with space.csv",
        "quote'\"name.csv",
        "'); DROP TABLE user_events; --.csv",
        "ünïcødé.csv",
    ];
    for (i, n) in names.iter().enumerate() {
        c.write_file_atomic(n, &gen_file(300 + i as u64, 20));
    }
    c.wait_files_done(4, Duration::from_secs(30));
    assert_eq!(
        c.text("SELECT to_regclass('public.user_events')::text")
            .as_deref(),
        Some("user_events")
    );
    let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    let ledger: BTreeSet<String> = c
        .client()
        .query("SELECT file_name FROM ingest_files", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ledger, want);
    let sources: BTreeSet<String> = c
        .client()
        .query(
            "SELECT DISTINCT source_file FROM user_events_with_source",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sources, want);
    let exp = expected_rows(&[c.input_dir()]);
    assert_eq!(exp.rows.len(), 80);
    c.assert_exact_rows(&exp.rows);
    c.settle();
    assert_eq!(c.event_count(), 80);
}

#[test]
fn a_recreated_file_is_never_ingested_twice() {
    let mut c = Cluster::start(ClusterOptions::default());
    let original = gen_file(500, 50);
    let path = c.write_file_atomic("again.csv", &original);
    c.wait_files_done(1, Duration::from_secs(30));
    let exp = expected_rows(&[&path]);
    c.assert_exact_rows(&exp.rows);
    let mtime0 = fs::metadata(&path).unwrap().modified().unwrap();

    // Deleted and written again with the same bytes (new mtime): not new data.
    fs::remove_file(&path).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    c.write_file_atomic("again.csv", &original);
    assert_ne!(fs::metadata(&path).unwrap().modified().unwrap(), mtime0);
    c.settle();
    c.settle();
    c.assert_exact_rows(&exp.rows);
    let (status, ok): (String, i64) = {
        let r = c
            .client()
            .query_one(
                "SELECT status, rows_ok FROM ingest_files WHERE file_name = 'again.csv'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((status.as_str(), ok), ("done", 50));

    // Written again with other bytes: reported as changed, its rows not added.
    fs::remove_file(&path).unwrap();
    c.write_file_atomic("again.csv", &gen_file(501, 60));
    c.wait_for(
        "again.csv reported as changed",
        Duration::from_secs(30),
        |c| {
            c.text("SELECT status FROM ingest_files WHERE file_name = 'again.csv'")
                .as_deref()
                == Some("changed")
        },
    );
    let err = c
        .text("SELECT error FROM ingest_files WHERE file_name = 'again.csv'")
        .unwrap_or_default();
    println!("changed: {err}");
    assert!(
        err.to_lowercase().contains("not ingested"),
        "the error should say the new content was not ingested: {err:?}"
    );
    c.settle();
    c.assert_exact_rows(&exp.rows);
    let s = c.status();
    assert_eq!((s.rows_ingested, s.files_failed), (50, 1), "{s:#?}");
    assert!(c.server_log().contains("again.csv"));
}

fn staged(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, Expected) {
    let dir = tempfile::tempdir().unwrap();
    for (n, b) in files {
        fs::write(dir.path().join(n), b).unwrap();
    }
    let exp = expected_rows(&[dir.path()]);
    (dir, exp)
}

fn csv_names(dir: &std::path::Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".csv"))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

#[test]
fn processed_action_archive_moves_files_and_ingests_once() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.processed_action = 'archive'",
    ]));
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("arch_{i}.csv"), gen_file(600 + i, 100)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let (_stage, exp) = staged(&refs);
    for (n, b) in &files {
        c.write_file_atomic(n, b);
    }
    let archive = c.input_dir().join("archive");
    let want: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let input = c.input_dir().to_path_buf();
    c.wait_for("5 files archived", Duration::from_secs(30), |c| {
        csv_names(&archive) == want
            && csv_names(&input).is_empty()
            && c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 5
    });
    for (n, b) in &files {
        assert_eq!(&fs::read(archive.join(n)).unwrap(), b, "archived {n}");
    }
    c.assert_exact_rows(&exp.rows);
    c.settle();
    c.assert_exact_rows(&exp.rows);
    assert_eq!(csv_names(&archive), want);
    assert_eq!(c.int("SELECT count(*) FROM ingest_files"), 5);
}

#[test]
fn processed_action_delete_removes_files_and_ingests_once() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.processed_action = 'delete'",
    ]));
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("del_{i}.csv"), gen_file(700 + i, 100)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let (_stage, exp) = staged(&refs);
    for (n, b) in &files {
        c.write_file_atomic(n, b);
    }
    let input = c.input_dir().to_path_buf();
    c.wait_for(
        "5 files ingested and deleted",
        Duration::from_secs(30),
        |c| {
            csv_names(&input).is_empty()
                && c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 5
        },
    );
    assert!(csv_names(&input.join("archive")).is_empty());
    c.assert_exact_rows(&exp.rows);
    c.settle();
    c.assert_exact_rows(&exp.rows);
}

#[test]
fn feeder_output_arrives_exactly_with_its_rejects() {
    let mut c = Cluster::start(ClusterOptions::default());
    let stage = tempfile::tempdir().unwrap();
    let summary = stage.path().join("summary.json");
    let out = c.input_dir().to_str().unwrap().to_string();
    run_feeder(&[
        "--output-dir",
        &out,
        "--events-per-file",
        "1000",
        "--total-files",
        "10",
        "--delay",
        "0s",
        "--seed",
        "42",
        "--start-time",
        "2024-05-01T00:00:00Z",
        "--bad-row-ratio",
        "0.02",
        "--summary-json",
        summary.to_str().unwrap(),
        "--quiet",
    ]);
    let produced = csv_names(c.input_dir());
    assert_eq!(produced.len(), 10, "feeder files: {produced:?}");
    let exp = expected_rows(&[c.input_dir()]);
    println!(
        "feeder: {} valid rows, {} bad rows; summary: {}",
        exp.rows.len(),
        exp.rejects.len(),
        fs::read_to_string(&summary).unwrap_or_default()
    );
    assert_eq!(exp.rows.len() + exp.rejects.len(), 10_000);
    assert!(
        !exp.rejects.is_empty(),
        "--bad-row-ratio 0.02 wrote no bad rows"
    );
    c.wait_files_done(10, Duration::from_secs(60));
    c.assert_exact_rows(&exp.rows);
    assert_eq!(c.stored_rejects(), exp.rejects);
    c.settle();
    c.assert_exact_rows(&exp.rows);
}

/// A file removed from the folder after some of its chunks were committed ends as `failed`,
/// saying how far it got; its committed rows stay, exactly those of the lines before the offset.
#[test]
fn a_partly_ingested_file_that_is_removed_ends_as_failed_and_says_how_far_it_got() {
    let mut c = Cluster::start(ClusterOptions::small_chunks());
    let bytes = gen_file(88, 500_000);
    let exp = expected_of("part.csv", &bytes);
    let path = c.write_file_atomic("part.csv", &bytes);
    c.wait_for("2 chunks committed", Duration::from_secs(60), |c| {
        c.int("SELECT count(*) FROM ingest_file_chunks") >= 2
    });
    c.execute("SELECT ingest_pause()");
    c.wait_for("paused", Duration::from_secs(10), |c| {
        c.status().state == "paused"
    });
    std::thread::sleep(Duration::from_millis(500)); // a chunk in flight commits
    assert_eq!(
        c.text("SELECT status FROM ingest_files WHERE file_name = 'part.csv'")
            .as_deref(),
        Some("ingesting"),
        "the file was finished before the pause: the test proves nothing"
    );
    std::fs::remove_file(&path).unwrap();
    c.execute("SELECT ingest_resume()");
    c.trigger();
    c.wait_for("part.csv failed", Duration::from_secs(20), |c| {
        c.text("SELECT status FROM ingest_files WHERE file_name = 'part.csv'")
            .as_deref()
            == Some("failed")
    });
    let r = c
        .client()
        .query_one(
            "SELECT committed_line, committed_offset, rows_ok, error FROM ingest_ledger
              WHERE file_name = 'part.csv'",
            &[],
        )
        .unwrap();
    let (next_line, offset, ok, error): (i64, i64, i64, String) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    println!("part.csv: next line {next_line}, offset {offset}, {ok} rows; {error}");
    assert!(ok > 0 && ok < 500_000);
    assert!(
        error.contains("removed from the folder before it was fully ingested")
            && error.contains(&format!("lines up to {}", next_line - 1))
            && error.contains(&format!("first {offset} bytes")),
        "{error}"
    );
    let want: Vec<EventRow> = exp
        .rows
        .iter()
        .filter(|r| r.line < next_line)
        .cloned()
        .collect();
    assert_eq!(want.len() as i64, ok);
    c.assert_exact_rows(&want);
    let s = c.status();
    assert_eq!((s.files_failed, s.rows_ingested), (1, ok));
    assert!(s.last_error.is_some_and(|e| e.contains("part.csv")));
    let problems = ledger_problems(c.client());
    assert!(problems.is_empty(), "{problems:#?}");
}
