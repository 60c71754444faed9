//! Foreign partitions (postgres_fdw): a pipeline's target partitioned with one partition on
//! another server. The rows are routed there by COPY, committed with the file; a row the remote
//! table refuses, or one with no partition, is a reject of its own line. What this does not
//! guarantee (no two-phase commit in PostgreSQL 15's postgres_fdw) is in docs/scale.md.

use e2e::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// `(status, rows_ok, rows_rejected)` of a file of pipeline `fdw`.
fn file(c: &mut Cluster, name: &str) -> Option<(String, i64, i64)> {
    c.client()
        .query_opt(
            "SELECT status, rows_ok, rows_rejected FROM ingest_files
              WHERE pipeline = 'fdw' AND file_name = $1",
            &[&name],
        )
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[test]
fn rows_of_a_foreign_partition_reach_the_remote_table_and_its_refusals_are_rejects() {
    let mut c = Cluster::start(ClusterOptions::default());
    // The "other server" is another database of the same cluster, reached over TCP.
    c.execute("CREATE DATABASE remote");
    let mut remote = c.connect_to("remote");
    remote
        .batch_execute("CREATE TABLE t_far (id int, v text, CONSTRAINT below_190 CHECK (id < 190))")
        .unwrap();
    c.execute(&format!(
        "CREATE EXTENSION postgres_fdw;
         CREATE SERVER far FOREIGN DATA WRAPPER postgres_fdw
                OPTIONS (host '127.0.0.1', port '{}', dbname 'remote');
         CREATE USER MAPPING FOR postgres SERVER far OPTIONS (user 'postgres');
         CREATE TABLE t (id int, v text) PARTITION BY RANGE (id);
         CREATE TABLE t_near PARTITION OF t FOR VALUES FROM (0) TO (100);
         CREATE FOREIGN TABLE t_far PARTITION OF t FOR VALUES FROM (100) TO (200) SERVER far;",
        c.port()
    ));
    let dir = c.root_dir().join("fdw");
    postgres_folder(&dir);
    c.execute(&format!(
        "SELECT ingest_create_pipeline('fdw', {}, 't', 'csv', '{{\"trigger_interval\": 100}}')",
        lit(&dir.display().to_string())
    ));
    let remote_count = |r: &mut postgres::Client| -> i64 {
        r.query_one("SELECT count(*) FROM t_far", &[])
            .unwrap()
            .get(0)
    };

    write_atomic(&dir, "a.csv", b"id,v\n1,a\n2,b\n101,c\n102,d\n3,e\n103,f\n");
    c.wait_for("a.csv done", T, |c| {
        file(c, "a.csv").is_some_and(|f| f.0 == "done")
    });
    assert_eq!(file(&mut c, "a.csv"), Some(("done".into(), 6, 0)));
    assert_eq!(c.int("SELECT count(*) FROM t_near"), 3);
    assert_eq!(remote_count(&mut remote), 3);
    assert_eq!(c.int("SELECT count(*) FROM t"), 6);

    // Refused by the remote table (its CHECK), and with no partition at all: each is a reject
    // of its own line, with the reason; the rows around them land on both sides.
    write_atomic(
        &dir,
        "b.csv",
        b"id,v\n4,g\n195,far_refuses\n104,h\n250,nowhere\n5,i\n",
    );
    c.wait_for("b.csv judged", T, |c| {
        file(c, "b.csv").is_some_and(|f| f.0 == "done" || f.0 == "failed")
    });
    assert_eq!(file(&mut c, "b.csv"), Some(("done".into(), 3, 2)));
    let rejects: Vec<(i64, String)> = c
        .client()
        .query(
            "SELECT line_number, reason FROM ingest_rejects
              WHERE pipeline = 'fdw' AND file_name = 'b.csv' ORDER BY line_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!(rejects[0].0, 3, "{rejects:?}");
    assert!(rejects[0].1.contains("below_190"), "{rejects:?}");
    assert_eq!(rejects[1].0, 5, "{rejects:?}");
    assert!(rejects[1].1.contains("no partition"), "{rejects:?}");
    assert_eq!(c.int("SELECT count(*) FROM t_near"), 5);
    assert_eq!(remote_count(&mut remote), 4);
    let far: Vec<i32> = remote
        .query("SELECT id FROM t_far ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(far, vec![101, 102, 103, 104]);

    // Nothing more arrives later: each row once.
    c.settle();
    assert_eq!(c.int("SELECT count(*) FROM t"), 9);
    assert_eq!(remote_count(&mut remote), 4);
}
