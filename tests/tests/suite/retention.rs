//! `ecommerce_ingest.history_retention`: old rejects and batch history are deleted by each
//! pipeline's worker while it is idle; the ledger (what makes a file exactly once) and the
//! counters of `ingest_status()` stay.

use e2e::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[test]
fn old_rejects_and_batch_history_go_and_the_ledger_and_counters_stay() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.history_retention = '10s'",
    ]));
    let dir = c.pipeline_into_t("p", r#"{"trigger_interval": 100}"#);
    // One bad row in each pipeline's file.
    let mut events = String::from_utf8(gen_file(1, 20)).unwrap();
    events.push_str("u1,view,p1,Phone,Electronics,not a price,2024-05-01T10:00:00Z,s1,mobile\n");
    c.write_file_atomic("e.csv", events.as_bytes());
    write_atomic(&dir, "p.csv", b"id\n1\nx\n2\n");
    // (A file's batch row is written just after the file is done: waited for together.)
    c.wait_for("both files, their rejects and batches", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 2
            && c.int("SELECT count(*) FROM ingest_rejects") == 2
            && c.int("SELECT count(*) FROM ingest_batches") >= 2
    });
    let counters = "SELECT string_agg(pipeline || ':' || files_ingested || '/' || rows_ingested || '/' || rows_rejected, ' ' ORDER BY pipeline) FROM ingest_status()";
    let before = c.text(counters);

    // Older than the retention: deleted while the workers are idle.
    c.wait_for("old history deleted", T, |c| {
        c.int("SELECT count(*) FROM ingest_rejects") == 0
            && c.int("SELECT count(*) FROM ingest_batches") == 0
    });
    // The ledger stays (the files are still in their folders: not ingested again), and so do
    // the counters.
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'"),
        2
    );
    assert_eq!(c.text(counters), before);
    assert_eq!(c.int("SELECT count(*) FROM user_events"), 20);
    assert_eq!(c.int("SELECT count(*) FROM t"), 2);

    // New history is kept until it is old in its turn.
    write_atomic(&dir, "q.csv", b"id\n3\ny\n");
    c.wait_for("q.csv", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 3
    });
    assert_eq!(c.int("SELECT count(*) FROM ingest_rejects"), 1);
}

/// `ecommerce_ingest.ledger_retention`: a file's record (and chunks) goes once the file left the
/// input folder longer ago than the retention, never while the file is there; what it brought
/// stays in the counters; a file copied back after its record went is a new file (documented).
#[test]
fn records_of_files_gone_long_ago_go_and_those_still_in_the_folder_stay() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.ledger_retention = '2s'",
        "ecommerce_ingest.processed_action = 'archive'",
        "ecommerce_ingest.min_file_age = 0",
    ]));
    let dir = c.pipeline_into_t(
        "p",
        r#"{"trigger_interval": 100, "processed_action": "keep"}"#,
    );
    c.write_file_atomic("a.csv", &gen_file(1, 30));
    c.write_file_atomic("b.csv", &gen_file(2, 30));
    write_atomic(&dir, "kept.csv", b"id\n1\n2\n");
    write_atomic(&dir, "removed.csv", b"id\n3\n");
    c.wait_for("the four files", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 4
    });
    let counters = "SELECT string_agg(pipeline || ':' || files_ingested || '/' || rows_ingested, ' ' ORDER BY pipeline) FROM ingest_status()";
    let before = c.text(counters);
    assert_eq!(before.as_deref(), Some("events:2/60 p:2/3"));
    // Archived: they left the input folder (ingest_files says when).
    c.wait_for("a.csv and b.csv archived", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE pipeline = 'events' AND left_at IS NOT NULL")
            == 2
    });
    // Removed by hand from a pipeline that keeps its files: found gone at a full scan.
    std::fs::remove_file(dir.join("removed.csv")).unwrap();
    c.execute("SELECT ingest_trigger('p')");
    c.wait_for("the records of the files gone deleted", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE file_name IN ('a.csv', 'b.csv', 'removed.csv')") == 0
    });
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_file_chunks WHERE file_name IN ('a.csv', 'b.csv', 'removed.csv')"),
        0,
        "their chunks go with them"
    );
    // The file still in its folder keeps its record however old: it is never ingested again.
    std::thread::sleep(Duration::from_secs(3));
    c.execute("SELECT ingest_trigger('p')");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.text("SELECT string_agg(file_name || ':' || (left_at IS NULL), ',') FROM ingest_files"),
        Some("kept.csv:true".into())
    );
    assert_eq!(c.int("SELECT count(*) FROM t"), 3);
    // Nor when the pattern stops matching it: not listed is not gone (a pattern changed back
    // would otherwise ingest it again).
    c.execute(r#"SELECT ingest_alter_pipeline('p', options => '{"file_pattern": "*.other"}')"#);
    c.execute("SELECT ingest_trigger('p')");
    std::thread::sleep(Duration::from_secs(3));
    c.execute("SELECT ingest_trigger('p')");
    std::thread::sleep(Duration::from_secs(1));
    c.execute(r#"SELECT ingest_alter_pipeline('p', options => '{"file_pattern": null}')"#);
    c.execute("SELECT ingest_trigger('p')");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.text("SELECT string_agg(file_name || ':' || (left_at IS NULL), ',') FROM ingest_files"),
        Some("kept.csv:true".into())
    );
    assert_eq!(c.int("SELECT count(*) FROM t"), 3);
    // What the forgotten files brought stays counted.
    assert_eq!(c.text(counters), before);
    assert_eq!(c.int("SELECT count(*) FROM user_events"), 60);

    // Copied back after its record went: a new file, ingested again (docs/scale.md says so and
    // what protects against it: a longer retention, or a unique key on the target).
    let archived = c.input_dir().join("archive").join("a.csv");
    let bytes = std::fs::read(&archived).unwrap();
    c.write_file_atomic("a.csv", &bytes);
    c.wait_for("a.csv ingested again", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE file_name = 'a.csv' AND status = 'done'")
            == 1
    });
    assert_eq!(c.int("SELECT count(*) FROM user_events"), 90);
}

/// A file back in the folder keeps its record even when recording its return fails (here: the
/// counters' table locked by another session, so the worker cannot write the ledger), and even
/// when the pattern no longer lists it: the record is deleted only after a last look at the
/// file's exact name finds nothing there. Otherwise the file would be ingested twice.
#[test]
fn a_file_back_in_the_folder_keeps_its_record_even_when_its_return_cannot_be_recorded() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.ledger_retention = '3s'",
        "ecommerce_ingest.min_file_age = 0",
        "ecommerce_ingest.lock_timeout = '200ms'",
    ]));
    let bytes = gen_file(7, 40);
    c.write_file_atomic("k.csv", &bytes);
    c.wait_for("k.csv", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 1
    });
    std::fs::remove_file(c.input_dir().join("k.csv")).unwrap();
    c.execute("SELECT ingest_trigger()");
    c.wait_for("k.csv recorded as gone", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE left_at IS NOT NULL") == 1
    });
    // Another session locks the counters' table: the worker can write no ledger row (each
    // write updates the counters), so it cannot record that k.csv is back.
    let mut holder = c.connect_to("postgres");
    holder
        .batch_execute("BEGIN; LOCK TABLE ingest_counters IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    c.write_file_atomic("k.csv", &bytes);
    c.execute("SELECT ingest_trigger()");
    std::thread::sleep(Duration::from_secs(4));
    holder.batch_execute("COMMIT").unwrap();
    // The same with a pattern that does not list it any more, then lists it again.
    c.reload(&[("ecommerce_ingest.file_pattern", "*.other")]);
    std::thread::sleep(Duration::from_secs(3));
    c.execute("SELECT ingest_trigger()");
    std::thread::sleep(Duration::from_secs(2));
    c.reload(&[("ecommerce_ingest.file_pattern", "*.csv")]);
    c.execute("SELECT ingest_trigger()");
    c.wait_for("k.csv recorded as back", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE file_name = 'k.csv' AND left_at IS NULL")
            == 1
    });
    c.settle();
    assert_eq!(c.int("SELECT count(*) FROM ingest_files"), 1);
    assert_eq!(
        c.int("SELECT count(*) FROM user_events"),
        40,
        "k.csv ingested once"
    );
}
