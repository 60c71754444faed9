//! A backlog of small files is ingested in group transactions (up to 32 files, one commit);
//! each file still commits with its own ledger row, and a file the database fails on does not
//! hold back the other files of its group.

use e2e::*;
use std::time::Duration;

/// How many transactions wrote the ledger rows of the `done` files (one per group).
fn ledger_transactions(c: &mut Cluster) -> i64 {
    c.int(
        "SELECT count(DISTINCT xmin::text)::int8 FROM ingest_ledger
          WHERE status = 'done' AND file_name LIKE 'f%'",
    )
}

#[test]
fn a_backlog_is_ingested_in_groups_with_every_file_exactly_once() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.batch_rows = 500",
    ]));
    c.execute("SELECT ingest_pause()");
    let staging = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    // 70 files of 300 rows (bad rows among them), a file without its header (fails on its own),
    // and an empty one.
    for i in 0..70u64 {
        let mut bytes = gen_file(500 + i, 300);
        if i % 7 == 3 {
            bytes.extend_from_slice(b"user_1,VIEW,prod_1,n,c,1.00,2024-05-01T00:00:00Z,s,mobile\n");
        }
        paths.push(write_atomic(
            staging.path(),
            &format!("f{i:03}.csv"),
            &bytes,
        ));
    }
    let exp = expected_rows(&paths);
    assert_eq!(exp.rows.len(), 70 * 300);
    assert_eq!(exp.rejects.len(), 10);
    for (i, p) in paths.iter().enumerate() {
        c.write_file_atomic(
            p.file_name().unwrap().to_str().unwrap(),
            &std::fs::read(p).unwrap(),
        );
        if i == 40 {
            c.write_file_atomic("g-noheader.csv", b"user_1,view,prod_1\n");
            c.write_file_atomic("g-empty.csv", b"");
        }
    }
    c.execute("SELECT ingest_resume()");
    // 70 done; the file without a header and the empty one fail as a whole.
    c.wait_files_done(70, Duration::from_secs(120));
    c.wait_for("the two failed files", Duration::from_secs(30), |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'failed'") == 2
    });
    c.settle();

    c.assert_exact_rows(&exp.rows);
    let got_rejects = c.int("SELECT count(*) FROM ingest_rejects");
    assert_eq!(got_rejects, 10);
    let per_file: Vec<(String, String, i64, i64, i32)> = c
        .client()
        .query(
            "SELECT file_name, status, rows_ok, rows_rejected, chunks FROM ingest_files
              WHERE file_name LIKE 'f%' ORDER BY file_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(per_file.len(), 70);
    for (i, (name, status, ok, rej, chunks)) in per_file.iter().enumerate() {
        let bad = i64::from(i % 7 == 3);
        assert_eq!(
            (status.as_str(), *ok, *rej, *chunks),
            ("done", 300, bad, 1),
            "{name}"
        );
    }
    assert_eq!(
        c.text("SELECT status FROM ingest_files WHERE file_name = 'g-noheader.csv'")
            .as_deref(),
        Some("failed")
    );
    assert_eq!(
        c.text("SELECT status FROM ingest_files WHERE file_name = 'g-empty.csv'")
            .as_deref(),
        Some("failed")
    );
    // Groups happened: far fewer commits than files (32 files at most per group).
    let txns = ledger_transactions(&mut c);
    println!("70 files ingested in {txns} ledger transactions");
    assert!((3..=20).contains(&txns), "{txns} transactions for 70 files");
    let problems = ledger_problems(c.client());
    assert!(problems.is_empty(), "{problems:#?}");
    let s = c.status();
    assert_eq!(
        (s.rows_ingested, s.rows_rejected, s.files_failed),
        (70 * 300, 10, 2)
    );
}

#[test]
fn a_file_the_database_fails_on_does_not_hold_back_its_group() {
    let mut c = Cluster::start(ClusterOptions::default());
    // Not a row-level refusal (SQLSTATE 55000, not class 22/23/P0): the chunk is rolled back
    // and retried later, the way a lock timeout or a full disk would be.
    c.execute(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.product_id = 'poison' THEN
                 RAISE EXCEPTION 'poisoned row' USING ERRCODE = '55000';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER poison BEFORE INSERT ON user_events
             FOR EACH ROW EXECUTE FUNCTION poison();
         SELECT ingest_pause();",
    );
    let staging = tempfile::tempdir().unwrap();
    let mut good = Vec::new();
    for i in 0..20u64 {
        let name = format!("f{i:03}.csv");
        let p = write_atomic(staging.path(), &name, &gen_file(900 + i, 100));
        c.write_file_atomic(&name, &std::fs::read(&p).unwrap());
        good.push(p);
        if i == 9 {
            let mut bytes = gen_file(999, 50);
            bytes.extend_from_slice(
                b"user_1,view,poison,Poison,Books,1.00,2024-05-01T00:00:00Z,s,mobile\n",
            );
            c.write_file_atomic("f009x-poison.csv", &bytes);
        }
    }
    c.execute("SELECT ingest_resume()");
    c.wait_files_done(20, Duration::from_secs(60));
    let exp = expected_rows(&good);
    c.assert_exact_rows(&exp.rows);
    // The poisoned file has nothing committed, and says why.
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_files WHERE file_name = 'f009x-poison.csv' AND status = 'done'"),
        0
    );
    let err = c.status().last_error.unwrap_or_default();
    assert!(
        err.contains("f009x-poison.csv") && err.contains("poisoned row"),
        "{err}"
    );
    println!("the 20 good files are done; last error: {err}");

    // While it keeps failing, the poisoned file is retried alone: new files arriving with it
    // still go in one group, not rolled back with it.
    c.execute("SELECT ingest_pause()");
    for i in 0..5u64 {
        let name = format!("h{i:03}.csv");
        let p = write_atomic(staging.path(), &name, &gen_file(950 + i, 100));
        c.write_file_atomic(&name, &std::fs::read(&p).unwrap());
        good.push(p);
    }
    // Long enough for the poisoned file's back-off (2 s, then 4 s) to expire: it is due again
    // in the same trigger as the new files.
    std::thread::sleep(Duration::from_secs(5));
    c.execute("SELECT ingest_resume()");
    c.wait_files_done(25, Duration::from_secs(60));
    let h_txns = c.int(
        "SELECT count(DISTINCT xmin::text)::int8 FROM ingest_ledger WHERE file_name LIKE 'h%'",
    );
    assert_eq!(h_txns, 1, "the 5 new files were not ingested as one group");
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_files WHERE file_name = 'f009x-poison.csv' AND status = 'done'"),
        0
    );

    // Once the cause is gone, the retry ingests it, exactly once.
    c.execute("DROP TRIGGER poison ON user_events");
    c.wait_files_done(26, Duration::from_secs(90));
    let mut all = good.clone();
    let poison = c.input_dir().join("f009x-poison.csv");
    all.push(poison);
    let exp = expected_rows(&all);
    assert_eq!(exp.rows.len(), 25 * 100 + 51);
    c.assert_exact_rows(&exp.rows);
    let problems = ledger_problems(c.client());
    assert!(problems.is_empty(), "{problems:#?}");
}
