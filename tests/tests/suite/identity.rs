//! Which file is which: a file replaced under the same name (in the middle of its ingestion, or
//! after it, keeping size and mtime), a re-created extension next to files ingested before,
//! retrying a half-ingested file, and a record too long to hold in memory.

use e2e::*;
use std::fs;
use std::io::Write;
use std::time::Duration;

fn ledger_int(c: &mut Cluster, col: &str, file: &str) -> i64 {
    c.int(&format!(
        "SELECT (SELECT {col}::int8 FROM ingest_files WHERE file_name = {})",
        lit(file)
    ))
}

fn file_status(c: &mut Cluster, file: &str) -> Option<String> {
    c.file_status(file)
}

/// Waits until `file` has committed at least `chunks` chunks, then pauses and waits until the
/// worker stopped writing. Returns the first line not committed.
fn pause_mid_file(c: &mut Cluster, file: &str, chunks: i64) -> i64 {
    c.wait_for(
        &format!("{file} with {chunks} chunks committed"),
        Duration::from_secs(60),
        |c| ledger_int(c, "chunks", file) >= chunks,
    );
    c.execute("SELECT ingest_pause()");
    c.wait_for("the worker paused", Duration::from_secs(20), |c| {
        c.status().state == "paused"
    });
    // The state says paused at once, but a chunk in flight still commits: a whole trigger
    // after the pause (the one in flight has ended), then the ledger row stays the same.
    c.full_trigger();
    let line = c.wait_steady(Duration::from_millis(700), |c| {
        c.int(&format!(
            "SELECT committed_line FROM ingest_ledger WHERE file_name = {}",
            lit(file)
        ))
    });
    assert_eq!(
        file_status(c, file).as_deref(),
        Some("ingesting"),
        "{file} should be half ingested (make it bigger?)"
    );
    line
}

fn rows_before(exp: &Expected, line: i64) -> Vec<EventRow> {
    exp.rows.iter().filter(|r| r.line < line).cloned().collect()
}

#[test]
fn a_file_replaced_in_the_middle_of_its_ingestion_is_never_merged() {
    let mut c = Cluster::start(ClusterOptions::small_chunks());
    let mut expected = Vec::new();
    // By rename (another inode), then rewritten in place (same inode) across a restart.
    for (name, seed, in_place) in [("renamed.csv", 30, false), ("rewritten.csv", 31, true)] {
        let first = gen_file(seed, 60_000);
        let exp = expected_of(name, &first);
        c.write_file_atomic(name, &first);
        let line = pause_mid_file(&mut c, name, 3);
        let second = gen_file(seed + 100, 80_000);
        if in_place {
            c.stop("fast");
            let mut f = fs::File::create(c.input_dir().join(name)).unwrap();
            f.write_all(&second).unwrap();
            drop(f);
            c.start_again();
        } else {
            c.write_file_atomic(name, &second);
        }
        c.execute("SELECT ingest_resume()");
        c.wait_for(&format!("{name} changed"), Duration::from_secs(30), |c| {
            file_status(c, name).as_deref() == Some("changed")
        });
        let err = c
            .text(&format!(
                "SELECT error FROM ingest_files WHERE file_name = {}",
                lit(name)
            ))
            .unwrap_or_default();
        println!("{name}: {err}");
        assert!(err.contains("changed"), "{err}");
        expected.extend(rows_before(&exp, line));
        expected.sort();
        c.assert_exact_rows(&expected);
        assert!(
            ledger_int(&mut c, "committed_offset", name) > 0,
            "the committed part stays recorded"
        );
    }
    // The pipeline goes on.
    let bytes = gen_file(40, 20);
    let exp = expected_of("after.csv", &bytes);
    c.write_file_atomic("after.csv", &bytes);
    c.wait_for("after.csv done", Duration::from_secs(30), |c| {
        file_status(c, "after.csv").as_deref() == Some("done")
    });
    expected.extend(exp.rows);
    expected.sort();
    c.assert_exact_rows(&expected);
    let s = c.status();
    assert_eq!(s.files_failed, 2, "changed files count as failed");
}

/// A copy of `bytes` with one digit of a row changed (same size, still valid).
fn one_digit_changed(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = out.len() / 2
        + out[out.len() / 2..]
            .iter()
            .position(|b| b.is_ascii_digit())
            .unwrap();
    out[at] = if out[at] == b'1' { b'2' } else { b'1' };
    out
}

fn set_mtime(path: &std::path::Path, t: std::time::SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn a_replacement_with_the_same_size_and_mtime_is_noticed() {
    let mut c = Cluster::start(ClusterOptions::default());
    let mut expected = Vec::new();
    for (name, seed, in_place) in [("rsync.csv", 50, false), ("cp-p.csv", 51, true)] {
        let first = gen_file(seed, 200);
        expected.extend(expected_of(name, &first).rows);
        let path = c.write_file_atomic(name, &first);
        c.wait_for(&format!("{name} done"), Duration::from_secs(30), |c| {
            file_status(c, name).as_deref() == Some("done")
        });
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        let second = one_digit_changed(&first);
        assert_eq!(second.len(), first.len());
        if in_place {
            // cp -p: the same inode rewritten, its mtime put back.
            fs::write(&path, &second).unwrap();
            set_mtime(&path, mtime);
        } else {
            // rsync -t: a temporary file with the old mtime, renamed over it.
            let tmp = c.input_dir().join(format!(".{name}.tmp"));
            fs::write(&tmp, &second).unwrap();
            set_mtime(&tmp, mtime);
            fs::rename(&tmp, &path).unwrap();
        }
        let md = fs::metadata(&path).unwrap();
        assert_eq!(
            (md.len(), md.modified().unwrap()),
            (first.len() as u64, mtime)
        );
        c.full_trigger();
        c.wait_for(&format!("{name} changed"), Duration::from_secs(20), |c| {
            file_status(c, name).as_deref() == Some("changed")
        });
        let err = c
            .text(&format!(
                "SELECT error FROM ingest_files WHERE file_name = {}",
                lit(name)
            ))
            .unwrap_or_default();
        assert!(err.contains("changed after it was ingested"), "{err}");
    }
    expected.sort();
    c.assert_exact_rows(&expected);
    // Touched only (same bytes, new mtime): still done, nothing said.
    let bytes = gen_file(52, 30);
    expected.extend(expected_of("touched.csv", &bytes).rows);
    let path = c.write_file_atomic("touched.csv", &bytes);
    c.wait_for("touched.csv done", Duration::from_secs(30), |c| {
        file_status(c, "touched.csv").as_deref() == Some("done")
    });
    set_mtime(&path, std::time::SystemTime::now() + Duration::from_secs(5));
    c.settle();
    assert_eq!(file_status(&mut c, "touched.csv").as_deref(), Some("done"));
    expected.sort();
    c.assert_exact_rows(&expected);
}

#[test]
fn a_recreated_extension_starts_paused_next_to_files_ingested_before() {
    // A first installation on a folder that already has files: they are new, ingested at once.
    let mut c = Cluster::start(ClusterOptions {
        create_extension: false,
        ..Default::default()
    });
    let a = gen_file(60, 10);
    let b = gen_file(61, 20);
    c.write_file_atomic("a.csv", &a);
    c.write_file_atomic("b.csv", &b);
    c.execute("CREATE EXTENSION ecommerce_ingest");
    c.wait_files_done(2, Duration::from_secs(30));
    assert_eq!(c.event_count(), 30);

    // What the docs' DROP EXTENSION hint says: keep a copy, drop, create again.
    c.execute(
        "CREATE TABLE events_copy AS TABLE user_events;
         DROP EXTENSION ecommerce_ingest CASCADE;
         CREATE EXTENSION ecommerce_ingest;",
    );
    c.wait_for("paused by the worker", Duration::from_secs(20), |c| {
        let s = c.status();
        s.state == "paused" && s.detail.contains("created again")
    });
    let s = c.status();
    println!("{}", s.detail);
    assert!(s.detail.contains("ingest_resume()"), "{}", s.detail);
    c.settle();
    assert_eq!(
        c.event_count(),
        0,
        "files ingested before were ingested again"
    );
    assert_eq!(c.status().files_pending, Some(2));
    assert_eq!(c.int("SELECT count(*) FROM events_copy"), 30);
    let by = c.text("SELECT changed_by FROM ingest_control");
    assert_eq!(by.as_deref(), Some("ecommerce_ingest"));

    // The operator moves the old files away and resumes: only what is new is ingested.
    fs::remove_file(c.input_dir().join("a.csv")).unwrap();
    fs::remove_file(c.input_dir().join("b.csv")).unwrap();
    let d = gen_file(62, 7);
    let exp = expected_of("d.csv", &d);
    c.write_file_atomic("d.csv", &d);
    c.execute("SELECT ingest_resume()");
    c.wait_files_done(1, Duration::from_secs(30));
    c.assert_exact_rows(&exp.rows);
    let s = c.status();
    assert_eq!((s.state.as_str(), s.paused), ("running", false));
    assert_eq!(c.text("SELECT reason FROM ingest_control"), None);

    // Dropped and created again with an empty folder: nothing to protect, not paused.
    fs::remove_file(c.input_dir().join("d.csv")).unwrap();
    c.execute("DROP EXTENSION ecommerce_ingest CASCADE; CREATE EXTENSION ecommerce_ingest;");
    // The worker has seen the new extension with the folder empty before e.csv arrives (a file
    // there at that moment would rightly pause it).
    c.full_trigger();
    c.write_file_atomic("e.csv", &gen_file(63, 4));
    c.wait_files_done(1, Duration::from_secs(30));
    assert_eq!(c.event_count(), 4);
    assert!(!c.status().paused);
}

#[test]
fn retry_refuses_a_half_ingested_file_and_names_a_missing_one() {
    let mut c = Cluster::start(ClusterOptions::small_chunks());
    let bytes = gen_file(70, 60_000);
    let exp = expected_of("half.csv", &bytes);
    c.write_file_atomic("half.csv", &bytes);
    let line = pause_mid_file(&mut c, "half.csv", 2);
    fs::remove_file(c.input_dir().join("half.csv")).unwrap();
    c.execute("SELECT ingest_resume()");
    c.wait_for("half.csv failed", Duration::from_secs(30), |c| {
        file_status(c, "half.csv").as_deref() == Some("failed")
    });
    let err = expect_db_error(
        c.client().query("SELECT ingest_retry('half.csv')", &[]),
        "ingest_retry of a half-ingested file",
    );
    println!("{err}");
    assert!(err.contains("already committed"), "{err}");
    assert!(err.contains("twice"), "{err}");
    // Nothing changed: the rows keep their provenance.
    assert_eq!(file_status(&mut c, "half.csv").as_deref(), Some("failed"));
    assert_eq!(
        c.int("SELECT count(*) FROM user_events_with_source WHERE source_file IS NULL"),
        0
    );
    c.assert_exact_rows(&rows_before(&exp, line));

    let err = expect_db_error(
        c.client().query("SELECT ingest_retry('no-such-file')", &[]),
        "ingest_retry of an unknown file",
    );
    println!("{err}");
    assert!(err.contains("no file named \"no-such-file\""), "{err}");
    assert!(!err.contains("SpiTupleTable"), "{err}");

    // A file that failed as a whole with no row can still be retried.
    c.write_file_atomic("bad.csv", b"no,header,here\n1,2,3\n");
    c.wait_for("bad.csv failed", Duration::from_secs(30), |c| {
        file_status(c, "bad.csv").as_deref() == Some("failed")
    });
    let r = c.text("SELECT ingest_retry('bad.csv')").unwrap_or_default();
    assert!(r.contains("again"), "{r}");
}

/// The worker's anonymous resident memory (RssAnon), in kB.
fn rss_anon_kb(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("RssAnon:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn a_record_longer_than_max_record_size_is_a_reject_and_memory_stays_bounded() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.max_record_size = '1MB'",
    ]));
    let pid = c.wait_worker();
    // Header, a row, a 200 MB line without a newline until its end, then more rows.
    let mut bytes = gen_file(80, 1);
    bytes.extend(std::iter::repeat_n(b'x', 200 << 20));
    bytes.push(b'\n');
    for i in 1..50 {
        bytes.extend(gen_row(80, i).as_bytes());
        bytes.push(b'\n');
    }
    let mut expected = Vec::new();
    // Lines 2 and 4.. are the rows of gen_row(80, 0..50) minus the long line.
    for (i, line) in [(0u64, 2i64)]
        .into_iter()
        .chain((1..50).map(|i| (i, i as i64 + 3)))
    {
        let one = format!("{}\n{}\n", ecommerce_events::header_line(), gen_row(80, i));
        let mut r = expected_of("long.csv", one.as_bytes()).rows;
        assert_eq!(r.len(), 1);
        r[0].line = line;
        expected.push(r.remove(0));
    }
    expected.sort();
    let base = rss_anon_kb(pid).unwrap_or(0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss_anon_kb(pid).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    c.write_file_atomic("long.csv", &bytes);
    drop(bytes);
    c.wait_files_done(1, Duration::from_secs(60));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    println!("worker RssAnon: {base} kB before, peak {peak} kB");
    c.assert_exact_rows(&expected);
    let rejects: Vec<(i64, String)> = c
        .client()
        .query(
            "SELECT line_number, reason FROM ingest_rejects WHERE file_name = 'long.csv'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].0, 3);
    assert!(rejects[0].1.contains("longer than"), "{}", rejects[0].1);
    let raw_len = c.int("SELECT length(raw_text)::int8 FROM ingest_rejects WHERE line_number = 3");
    assert!(raw_len <= 1100, "raw text of {raw_len} characters");
    assert!(
        peak < base + 100 * 1024,
        "the worker's memory grew from {base} kB to {peak} kB for a 200 MB line"
    );
}
