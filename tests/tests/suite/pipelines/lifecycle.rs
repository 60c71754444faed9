//! Pipelines: Dropping a pipeline.

use super::*;
use e2e::*;

#[test]
fn a_dropped_pipeline_leaves_its_rows_and_its_worker_stops_and_the_same_name_starts_afresh() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("CREATE TABLE d (id int, v text)");
    let dir = folder(&c, "d");
    let other = folder(&c, "other");
    c.execute("CREATE TABLE o (id int)");
    create(
        &mut c,
        "drop_me",
        &dir,
        "d",
        "csv",
        r#"{"trigger_interval": 100}"#,
    );
    create(
        &mut c,
        "keep_me",
        &other,
        "o",
        "csv",
        r#"{"trigger_interval": 100}"#,
    );
    write_atomic(&dir, "a.csv", b"id,v\n1,a\nx,b\n3,c\n");
    write_atomic(&dir, "b.csv.gz", &gz(b"id,v\n4,d\n"));
    write_atomic(&other, "o.csv", b"id\n1\n");
    wait_done(&mut c, "drop_me", 2);
    wait_done(&mut c, "keep_me", 1);
    let a = c.write_file_atomic("e.csv", &gen_file(3, 50));
    wait_done(&mut c, "events", 1);
    let counts = |c: &mut Cluster, p: &str| -> Vec<i64> {
        [
            "ingest_files",
            "ingest_rejects",
            "ingest_file_chunks",
            "ingest_batches",
        ]
        .iter()
        .map(|v| {
            c.client()
                .query_one(
                    &format!("SELECT count(*) FROM {v} WHERE pipeline = $1"),
                    &[&p],
                )
                .unwrap()
                .get(0)
        })
        .collect()
    };
    let before = counts(&mut c, "drop_me");
    assert_eq!(&before[..3], &[2, 1, 2], "files, rejects, chunks");
    assert!(before[3] >= 1, "batches: {before:?}");
    let pid = wait_worker_of(&mut c, "drop_me");

    assert_eq!(
        c.text("SELECT ingest_drop_pipeline('drop_me')").as_deref(),
        Some("pipeline drop_me dropped (2 files forgotten; the rows it inserted stay)")
    );
    assert_eq!(counts(&mut c, "drop_me"), vec![0, 0, 0, 0]);
    assert!(try_pstatus(&mut c, "drop_me").is_none());
    assert_eq!(c.int("SELECT count(*) FROM d"), 3, "the rows stay");
    c.wait_for("the dropped pipeline's worker gone", T, |c| {
        c.int(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        )) == 0
    });
    assert_eq!(
        c.int("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ecommerce_ingest pipeline'"),
        1,
        "keep_me's worker only"
    );
    // Nothing more lands in d meanwhile; the others are untouched.
    write_atomic(&dir, "c.csv", b"id,v\n5,e\n");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(c.int("SELECT count(*) FROM d"), 3);
    assert_eq!(counts(&mut c, "keep_me")[..3], [1, 0, 1]);
    assert_eq!(files(&mut c, "events"), vec![file("e.csv", "done", 50, 0)]);
    let err = expect_db_error(
        c.client().batch_execute("SELECT ingest_trigger('drop_me')"),
        "trigger of a dropped pipeline",
    );
    assert!(err.contains("drop_me"), "{err}");

    // Created again under the same name: an empty ledger, every file ingested again.
    create(
        &mut c,
        "drop_me",
        &dir,
        "d",
        "csv",
        r#"{"trigger_interval": 100}"#,
    );
    wait_done(&mut c, "drop_me", 3);
    assert_eq!(
        files(&mut c, "drop_me"),
        vec![
            file("a.csv", "done", 2, 1),
            file("b.csv.gz", "done", 1, 0),
            file("c.csv", "done", 1, 0)
        ]
    );
    assert_eq!(
        rows_text(&mut c, "SELECT id, count(*) FROM d GROUP BY id ORDER BY id"),
        vec![
            vec![s("1"), s("2")],
            vec![s("3"), s("2")],
            vec![s("4"), s("2")],
            vec![s("5"), s("1")]
        ]
    );
    let new_pid = wait_worker_of(&mut c, "drop_me");
    assert_ne!(new_pid, pid);
    c.assert_exact_rows(&expected_rows(&[a]).rows);
    assert_consistent(&mut c, "drop_me");
}

#[test]
fn naming_a_pipeline_that_is_not_there_or_creating_one_twice_says_so() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("CREATE TABLE d (id int)");
    let dir = folder(&c, "d");
    create(&mut c, "d", &dir, "d", "csv", "{}");
    let message = |c: &mut Cluster, sql: &str| {
        let e = c.client().batch_execute(sql).unwrap_err();
        let d = e.as_db_error().expect("a database error");
        (d.code().code().to_string(), d.message().to_string())
    };
    for sql in [
        "SELECT ingest_alter_pipeline('nope')",
        "SELECT ingest_drop_pipeline('nope')",
        "SELECT ingest_pause('nope')",
        "SELECT ingest_resume('nope')",
    ] {
        let (code, msg) = message(&mut c, sql);
        assert_eq!(
            (code.as_str(), msg.as_str()),
            ("42704", "no pipeline named \"nope\""),
            "{sql}"
        );
    }
    let (code, msg) = message(&mut c, &create_sql("d", &dir, "d", "csv", "{}"));
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("42710", "pipeline \"d\" already exists")
    );
}
