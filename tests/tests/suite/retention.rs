//! `ecommerce_ingest.history_retention`: old rejects and batch history are deleted by each
//! pipeline's worker while it is idle; the ledger (what makes a file exactly once) and the
//! counters of `ingest_status()` stay.

use e2e::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[test]
fn old_rejects_and_batch_history_go_and_the_ledger_and_counters_stay() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.history_retention = '3s'",
    ]));
    let dir = c.root_dir().join("p");
    postgres_folder(&dir);
    c.execute("CREATE TABLE t (id int)");
    c.execute(&format!(
        "SELECT ingest_create_pipeline('p', {}, 't', 'csv', '{{\"trigger_interval\": 100}}')",
        lit(&dir.display().to_string())
    ));
    // One bad row in each pipeline's file.
    let mut events = String::from_utf8(gen_file(1, 20)).unwrap();
    events.push_str("u1,view,p1,Phone,Electronics,not a price,2024-05-01T10:00:00Z,s1,mobile\n");
    c.write_file_atomic("e.csv", events.as_bytes());
    write_atomic(&dir, "p.csv", b"id\n1\nx\n2\n");
    c.wait_for("both files", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 2
    });
    assert_eq!(c.int("SELECT count(*) FROM ingest_rejects"), 2);
    assert!(c.int("SELECT count(*) FROM ingest_batches") >= 2);
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
