//! Backup and restore: `pg_dump` of the worker's database, restored into a new cluster whose
//! worker watches the same folder, keeps every event and the whole file ledger, and the restored
//! worker does not ingest again the files the dump already holds.

use e2e::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PGBIN: &str = "/usr/lib/postgresql/15/bin";

/// Checksums of every table the extension keeps data in (each row as text, in key order).
fn fingerprint(c: &mut Cluster) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for (table, key) in [
        ("user_events", "event_id"),
        ("ingest_ledger", "file_name"),
        ("ingest_chunks", "file_name, chunk_no"),
        ("ingest_rejected", "reject_id"),
        ("ingest_batch_log", "batch_id"),
        ("ingest_control", "singleton"),
    ] {
        let r = c
            .client()
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY {key})), '')
                       FROM {table} t"
                ),
                &[],
            )
            .unwrap();
        out.push((table.to_string(), r.get(0), r.get(1)));
    }
    out
}

/// The ledger rows as text: every column, or (`full = false`) all but the two times the worker
/// sets when it writes a row (`committed_at`, `finished_at`).
fn ledger_rows(c: &mut Cluster, full: bool) -> Vec<String> {
    let cols = if full {
        "l::text"
    } else {
        "(file_name, status, size, mtime, content_hash, committed_offset, committed_line, rows_ok,
          rows_rejected, chunks, extra_columns, error, discovered_at)::text"
    };
    c.client()
        .query(
            &format!("SELECT {cols} FROM ingest_ledger l ORDER BY file_name"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{text}",
        out.status
    );
    text
}

#[test]
fn pg_dump_and_restore_keep_events_and_ledger_and_nothing_is_ingested_twice() {
    let mut a = Cluster::start(ClusterOptions::default());
    let input = a.input_dir().to_path_buf();
    for i in 0..5u64 {
        a.write_file_atomic(&format!("day_{i}.csv"), &gen_file(800 + i, 500));
    }
    run_feeder(&[
        "--output-dir",
        input.to_str().unwrap(),
        "--events-per-file",
        "400",
        "--total-files",
        "2",
        "--burst",
        "--quiet",
        "--seed",
        "81",
        "--start-time",
        "2024-05-02T00:00:00Z",
        "--bad-row-ratio",
        "0.05",
    ]);
    a.write_file_atomic(
        "no_price.csv",
        b"user_id,event_type,product_id,product_name,product_category,event_timestamp,session_id,device_type\n",
    );
    a.wait_for("7 files done, 1 failed", Duration::from_secs(60), |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 7
            && c.int("SELECT count(*) FROM ingest_files WHERE status = 'failed'") == 1
    });
    // A row in ingest_control too.
    a.execute("SELECT ingest_pause()");
    a.execute("SELECT ingest_resume()");
    a.settle();
    let before = fingerprint(&mut a);
    let ledger_before = ledger_rows(&mut a, false);
    let ledger_before_full = ledger_rows(&mut a, true);
    println!("{before:#?}");
    assert!(before[3].1 > 0, "some rejects");

    let dump = a.root_dir().join("shop.dump");
    let out = run_ok(
        Command::new(Path::new(PGBIN).join("pg_dump"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(a.port().to_string())
            .args(["--format=custom", "--file"])
            .arg(&dump)
            .arg("postgres"),
    );
    println!("pg_dump: {out}");
    // The dump holds the extension and, thanks to pg_extension_config_dump, its tables' data.
    let listing = run_ok(
        Command::new(Path::new(PGBIN).join("pg_restore"))
            .arg("--list")
            .arg(&dump),
    );
    for want in [
        "EXTENSION - ecommerce_ingest",
        "TABLE DATA public user_events",
        "TABLE DATA public ingest_ledger",
    ] {
        assert!(
            listing.contains(want),
            "the dump lacks {want:?}:\n{listing}"
        );
    }
    a.stop("fast");

    // A new cluster (fresh data directory) whose worker watches the same folder, with the
    // ingested files still in it. Its worker starts first and waits for the extension.
    let input_line = format!(
        "ecommerce_ingest.input_dir = {}",
        lit(input.to_str().unwrap())
    );
    let mut b = Cluster::start(ClusterOptions {
        extra_conf: vec![input_line],
        create_extension: false,
        ..Default::default()
    });
    b.wait_worker();
    assert_ne!(b.data_dir(), a.data_dir());
    // --single-transaction: CREATE EXTENSION and the rows of its tables (the ledger above all)
    // become visible at the same commit. Restored statement by statement, the waiting worker
    // would be woken by CREATE EXTENSION and find an empty ledger next to a folder full of
    // files: it would ingest them all again before the dumped ledger and events arrive.
    let out = run_ok(
        Command::new(Path::new(PGBIN).join("pg_restore"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(b.port().to_string())
            .args(["--single-transaction", "--exit-on-error", "-d", "postgres"])
            .arg(&dump),
    );
    println!("pg_restore: {out}");
    let after = fingerprint(&mut b);
    let ledger_restored_full = ledger_rows(&mut b, true);
    assert_eq!(
        ledger_rows(&mut b, false),
        ledger_before,
        "the restored ledger"
    );
    let batch_log_restored = after[4].clone();
    for i in [0, 2, 3, 5] {
        assert_eq!(after[i], before[i], "the restored {} differs", before[i].0);
    }

    // A whole trigger (and another) later: nothing ingested again, nothing changed.
    b.settle();
    std::thread::sleep(Duration::from_millis(500));
    b.settle();
    let after = fingerprint(&mut b);
    assert_eq!(
        ledger_rows(&mut b, false),
        ledger_before,
        "the ledger after a while"
    );
    for i in [0, 2, 3, 5] {
        assert_eq!(
            after[i], before[i],
            "{} changed after the restore",
            before[i].0
        );
    }
    let s = b.status();
    println!("{s:#?}");
    assert_eq!(s.state, "running");
    assert_eq!((s.files_ingested, s.files_failed), (7, 1));
    assert_eq!(s.files_pending, Some(0));
    assert_eq!(s.input_dir, input.to_str().unwrap());
    assert!(b.duplicates().is_empty());

    // A new file is ingested normally, its events numbered after the restored ones.
    let max_id = b.int("SELECT max(event_id) FROM user_events");
    let rows_before = b.event_count();
    // (Into the shared folder: `b.input_dir()` is the unused default of the new cluster.)
    let new = write_atomic(&input, "after_restore.csv", &gen_file(899, 50));
    b.wait_files_done(8, Duration::from_secs(30));
    b.settle();
    assert_eq!(b.event_count(), rows_before + 50);
    let min_new = b.int(
        "SELECT min(event_id) FROM user_events_with_source WHERE source_file = 'after_restore.csv'",
    );
    assert!(
        min_new > max_id,
        "event ids restart below the restored ones: {min_new} <= {max_id}"
    );
    let readable: Vec<_> = data_files(&input)
        .into_iter()
        .filter(|n| n != "no_price.csv")
        .map(|n| input.join(n))
        .collect();
    assert_eq!(readable.len(), 8);
    let exp = expected_rows(&readable);
    b.assert_exact_rows(&exp.rows);
    assert_eq!(b.stored_rejects(), exp.rejects);
    let problems = ledger_problems(b.client());
    assert!(problems.is_empty(), "{problems:#?}");
    drop(new);

    // Last, the ledger's times and the batch log: the restored rows must still say when A
    // committed and finished each file, and no trigger did work. (A bug rewrites them: the
    // reloaded ledger holds mtimes in microseconds, the folder's are in nanoseconds, so every
    // known file looks modified: done files are re-hashed and their rows rewritten, failed
    // files are read and failed again, which logs a batch.)
    assert_eq!(
        ledger_restored_full, ledger_before_full,
        "right after pg_restore, the worker rewrote the ledger rows (committed_at, finished_at)"
    );
    assert_eq!(
        batch_log_restored, before[4],
        "right after pg_restore, the worker logged a batch (it processed a known file again)"
    );
}

/// A restart reloads the ledger from the table: files already done are recognised as they are,
/// not re-read and re-hashed, and their ledger rows keep the times they were committed and
/// finished at.
#[test]
fn a_restart_does_not_rewrite_the_ledger_of_files_already_done() {
    let mut c = Cluster::start(ClusterOptions::default());
    for i in 0..3u64 {
        c.write_file_atomic(&format!("r_{i}.csv"), &gen_file(850 + i, 100));
    }
    c.write_file_atomic("r_failed.csv", b"user_id\nuser_1\n");
    c.wait_for("3 done, 1 failed", Duration::from_secs(30), |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status IN ('done', 'failed')") == 4
    });
    c.settle();
    let before = ledger_rows(&mut c, true);
    c.restart("fast");
    c.settle();
    std::thread::sleep(Duration::from_millis(300));
    c.settle();
    let after = ledger_rows(&mut c, true);
    assert_eq!(ledger_rows(&mut c, false).len(), 4);
    assert_eq!(
        after, before,
        "a restart rewrote ledger rows of files that did not change"
    );
}
