//! Pipelines: Crashes in the middle of a big compressed file, and damaged archives.

use super::*;
use e2e::*;

const BIG_ROWS: i64 = 300_000;

/// `big.csv`: ids 1..=BIG_ROWS, each row about 200 bytes (about 920 chunks of 64 kB).
fn big_csv() -> Vec<u8> {
    let pad = "x".repeat(180);
    let mut s = String::with_capacity(BIG_ROWS as usize * 200 + 20);
    s.push_str("id,payload,n\n");
    for i in 1..=BIG_ROWS {
        s.push_str(&format!("{i},p{i}-{pad},{}\n", i % 1000));
    }
    s.into_bytes()
}

/// Chunks of pipeline `big` committed, and its file's status.
fn big_progress(c: &mut Cluster) -> (i64, Option<String>) {
    (
        c.int("SELECT count(*) FROM ingest_file_chunks WHERE pipeline = 'big'"),
        c.text("SELECT (SELECT status FROM ingest_files WHERE pipeline = 'big')"),
    )
}

/// Waits until `more` chunks beyond `after` are committed; checks the file is not done yet (a
/// crash after the end would prove nothing).
fn big_mid_way(c: &mut Cluster, after: i64, more: i64) -> i64 {
    c.wait_for(&format!("{more} more chunks of big.csv.gz"), T, |c| {
        big_progress(c).0 >= after + more
    });
    let (chunks, status) = big_progress(c);
    assert_ne!(
        status.as_deref(),
        Some("done"),
        "big.csv.gz was done before the crash: the test proves nothing"
    );
    chunks
}

#[test]
fn crashes_in_the_middle_of_a_big_gzip_file_lose_and_duplicate_nothing() {
    let mut c = Cluster::start(ClusterOptions::default());
    // No unique constraint: a row stored twice would stay twice.
    c.execute("CREATE TABLE big (id bigint, payload text, n int)");
    let dir = folder(&c, "big");
    create(
        &mut c,
        "big",
        &dir,
        "big",
        "csv",
        r#"{"chunk_size": 64, "batch_rows": 200, "trigger_interval": 100}"#,
    );
    let t0 = Instant::now();
    let plain = big_csv();
    let size = plain.len() as i64;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&plain).unwrap();
    let packed = e.finish().unwrap();
    drop(plain);
    println!(
        "big.csv.gz: {size} bytes, {} compressed, made in {:?}",
        packed.len(),
        t0.elapsed()
    );
    let t0 = Instant::now();
    write_atomic(&dir, "big.csv.gz", &packed);

    // 1. SIGKILL of the pipeline's worker: the postmaster restarts every process.
    let chunks = big_mid_way(&mut c, 0, 3);
    let pid = wait_worker_of(&mut c, "big");
    println!("SIGKILL of the worker {pid} after {chunks} chunks");
    c.crash_process(pid);
    let after = big_progress(&mut c).0;
    assert!(after >= chunks, "committed chunks lost: {after} < {chunks}");
    // 2. An immediate shutdown.
    let chunks = big_mid_way(&mut c, after, 3);
    println!("immediate shutdown after {chunks} chunks");
    c.restart("immediate");
    let after = big_progress(&mut c).0;
    assert!(after >= chunks, "committed chunks lost: {after} < {chunks}");
    // 3. The worker terminated (a clean exit): started again by the events worker.
    let chunks = big_mid_way(&mut c, after, 3);
    let pid = wait_worker_of(&mut c, "big");
    println!("pg_terminate_backend({pid}) after {chunks} chunks");
    assert_eq!(
        c.text(&format!("SELECT pg_terminate_backend({pid})::text"))
            .as_deref(),
        Some("true")
    );
    let mut new_pid = 0;
    c.wait_for("the worker started again", T, |c| {
        new_pid = pstatus(c, "big").worker_pid.unwrap_or(0);
        new_pid != 0 && new_pid != pid
    });

    wait_done(&mut c, "big", 1);
    println!("big.csv.gz done {:?} after it was written", t0.elapsed());
    let n = BIG_ROWS;
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(id), sum(n),
                    count(*) FILTER (WHERE payload = 'p' || id || '-' || repeat('x', 180) AND n = id % 1000)
               FROM big"
        ),
        vec![vec![
            s(&n.to_string()),
            s(&n.to_string()),
            s("1"),
            s(&n.to_string()),
            s(&(n * (n + 1) / 2).to_string()),
            s(&(1..=n).map(|i| i % 1000).sum::<i64>().to_string()),
            s(&n.to_string()),
        ]]
    );
    assert_eq!(files(&mut c, "big"), vec![file("big.csv.gz", "done", n, 0)]);
    assert_consistent(&mut c, "big");
    // The chunks cover the decompressed content from the header's end to the last byte.
    let (first, last, count): (i64, i64, i64) = {
        let r = c
            .client()
            .query_one(
                "SELECT min(start_offset), max(end_offset), count(*) FROM ingest_file_chunks
                  WHERE pipeline = 'big'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((first, last), ("id,payload,n\n".len() as i64, size));
    assert!(count > 100, "{count} chunks");
    full_trigger(&mut c, "big");
    assert_eq!(c.int("SELECT count(*) FROM big"), n);
    assert_eq!(files(&mut c, "big"), vec![file("big.csv.gz", "done", n, 0)]);
}

// ---------------------------------------------------------------------------------------------
// 8. A damaged archive.

#[test]
fn a_truncated_or_corrupt_archive_fails_and_keeps_the_rows_before_the_damage() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("CREATE TABLE dmg (id bigint, payload text)");
    let dir = folder(&c, "dmg");
    create(
        &mut c,
        "dmg",
        &dir,
        "dmg",
        "csv",
        r#"{"chunk_size": 64, "trigger_interval": 100}"#,
    );
    let pad = "y".repeat(150);
    let mut text = String::from("id,payload\n");
    for i in 1..=20_000 {
        text += &format!("{i},{pad}\n");
    }
    let packed = gz(text.as_bytes());
    write_atomic(&dir, "cut.csv.gz", &packed[..packed.len() / 2]);
    write_atomic(&dir, "noise.csv.zst", b"this is not zstd at all\n");
    c.wait_for("both files failed", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE pipeline = 'dmg' AND status = 'failed'") == 2
    });
    let got = files(&mut c, "dmg");
    let ok = got[0].2;
    assert_eq!(got[0].0, "cut.csv.gz");
    assert!(
        ok > 1000 && ok < 20_000,
        "rows before the damage: {ok} (the half of the archive holds several chunks)"
    );
    assert_eq!(got[1], file("noise.csv.zst", "failed", 0, 0));
    // Exactly the rows before the damage, each once.
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM dmg"
        ),
        vec![vec![
            s(&ok.to_string()),
            s(&ok.to_string()),
            s("1"),
            s(&ok.to_string())
        ]]
    );
    let (error, _) = file_error(&mut c, "dmg", "cut.csv.gz");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("truncated or corrupt gzip data")
            && error.contains(&format!("its rows before line {} were ingested", ok + 2)),
        "{error}"
    );
    let (error, _) = file_error(&mut c, "dmg", "noise.csv.zst");
    assert!(error.unwrap_or_default().contains("zstd"));
    let st = pstatus(&mut c, "dmg");
    assert_eq!((st.files_failed, st.rows_ingested), (2, ok), "{st:#?}");
    assert_consistent(&mut c, "dmg");
    full_trigger(&mut c, "dmg");
    assert_eq!(c.int("SELECT count(*) FROM dmg"), ok);
}
