//! Exactly once across an immediate shutdown and a killed worker.

use e2e::*;
use std::time::{Duration, Instant};

#[test]
fn immediate_restart_in_the_middle_of_a_backlog_loses_and_duplicates_nothing() {
    let mut c = Cluster::start(ClusterOptions {
        create_extension: false,
        ..Default::default()
    });
    for i in 0..100u64 {
        c.write_file_atomic(&format!("backlog_{i:03}.csv"), &gen_file(1000 + i, 2000));
    }
    let exp = expected_rows(&[c.input_dir()]);
    assert_eq!(exp.rows.len(), 200_000);
    let t0 = Instant::now();
    c.execute("CREATE EXTENSION ecommerce_ingest");
    c.wait_for("some files done", Duration::from_secs(60), |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") >= 5
    });
    let done_before = c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'");
    let rows_before = c.event_count();
    println!(
        "restarting (immediate) after {:?}: {done_before} files done, {rows_before} rows",
        t0.elapsed()
    );
    assert!(
        done_before < 100,
        "the backlog was finished before the restart: the test proves nothing"
    );
    c.restart("immediate");
    let rows_after_restart = c.event_count();
    assert!(rows_after_restart <= 200_000);
    c.wait_files_done(100, Duration::from_secs(240));
    println!("backlog finished {:?} after CREATE EXTENSION", t0.elapsed());
    c.assert_exact_rows(&exp.rows);
    let s = c.status();
    assert_eq!(
        (s.files_ingested, s.rows_ingested, s.rows_rejected),
        (100, 200_000, 0),
        "{s:#?}"
    );
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_files WHERE rows_ok <> 2000"),
        0
    );
    c.settle();
    c.assert_exact_rows(&exp.rows);
}

#[test]
fn a_killed_worker_resumes_a_chunked_file_where_it_stopped() {
    let mut c = Cluster::start(ClusterOptions::small_chunks());
    // Big enough (about 850 chunks of 64 kB) that the kill lands in the middle of it.
    let bytes = gen_file(77, 500_000);
    let header_len = ecommerce_events::header_line().len() as i64 + 1;
    let size = bytes.len() as i64;
    let exp = expected_of("big.csv", &bytes);
    assert_eq!(exp.rows.len(), 500_000);
    c.write_file_atomic("big.csv", &bytes);
    c.wait_for("3 chunks committed", Duration::from_secs(60), |c| {
        c.int("SELECT count(*) FROM ingest_file_chunks") >= 3
    });
    let chunks_before = c.int("SELECT count(*) FROM ingest_file_chunks");
    let status_before = c.text("SELECT status FROM ingest_files WHERE file_name = 'big.csv'");
    println!("killing the worker after {chunks_before} chunks (file {status_before:?})");
    assert_ne!(
        status_before.as_deref(),
        Some("done"),
        "the file was finished before the kill: the test proves nothing"
    );
    c.kill_worker();
    let after_kill = c.int("SELECT count(*) FROM ingest_file_chunks");
    assert!(after_kill >= chunks_before, "committed chunks were lost");
    c.wait_files_done(1, Duration::from_secs(120));
    c.assert_exact_rows(&exp.rows);

    let chunks: Vec<(i32, i64, i64, i64, i64, i64, i64)> = c
        .client()
        .query(
            "SELECT chunk_no, start_offset, end_offset, first_line, last_line, rows_ok, rows_rejected
               FROM ingest_file_chunks WHERE file_name = 'big.csv' ORDER BY chunk_no",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect();
    println!(
        "{} chunks; first {:?}; last {:?}",
        chunks.len(),
        chunks.first(),
        chunks.last()
    );
    assert!(chunks.len() >= 5, "expected several chunks: {chunks:?}");
    let (mut offset, mut line, mut rows) = (header_len, 2i64, 0i64);
    for (i, (no, start, end, first, last, ok, rej)) in chunks.iter().enumerate() {
        assert_eq!(*no as usize, i, "chunk numbers are contiguous");
        assert_eq!(*start, offset, "chunk {no} starts where the previous ended");
        assert!(end > start, "chunk {no} is empty");
        assert!(
            end - start <= 64 * 1024 + 1024,
            "chunk {no} is larger than chunk_size: {}",
            end - start
        );
        assert_eq!(*first, line, "chunk {no}'s first line");
        assert_eq!(*rej, 0);
        assert_eq!(ok, &(last - first + 1), "chunk {no}'s rows");
        offset = *end;
        line = last + 1;
        rows += ok;
    }
    assert_eq!(offset, size, "the chunks cover the whole file");
    assert_eq!(line, 500_002);
    assert_eq!(rows, 500_000);
    let (ledger_chunks, ledger_offset): (i32, i64) = {
        let r = c
            .client()
            .query_one(
                "SELECT chunks, committed_offset FROM ingest_files WHERE file_name = 'big.csv'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        (ledger_chunks as usize, ledger_offset),
        (chunks.len(), size)
    );
    c.settle();
    c.assert_exact_rows(&exp.rows);
}
