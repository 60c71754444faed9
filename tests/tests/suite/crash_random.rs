//! Exactly once across many crashes at random moments: the worker SIGKILLed, or the server
//! stopped with `pg_ctl stop -m immediate`, 20+ times while a large backlog (many files plus one
//! file ingested in many chunks) is being ingested. The moments are drawn from a seeded RNG
//! (printed; `E2E_SEED=<n>` repeats a run).
//!
//! After every restart the committed bookkeeping is checked ([`ledger_problems`]: per file, the
//! ledger's counts equal the stored rows and rejects, nothing beyond the committed line, chunks
//! contiguous, no duplicated (file, line)); once the backlog is finished every row is compared with
//! the files, value by value. The last test runs the events pipeline with four workers
//! (`ecommerce_ingest.workers = 4`): each crash is a SIGKILL of one of them, drawn at random, or
//! an immediate stop.

use e2e::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Chunks of 64 kB and batches of 500 rows: a 100,000-row file takes ~190 chunks.
const CONF: [&str; 2] = [
    "ecommerce_ingest.chunk_size = '64kB'",
    "ecommerce_ingest.batch_rows = 500",
];

/// Kills land 0..300 ms after the worker (re)started.
const MAX_DELAY_MS: u64 = 300;

/// How a crash is caused.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Crash {
    /// SIGKILL to the worker: the postmaster restarts every process (crash recovery).
    KillWorker,
    /// `pg_ctl stop -m immediate`, then start.
    ImmediateStop,
    /// Either, drawn at random for each crash; a SIGKILL hits one of the events pipeline's
    /// workers, drawn at random too.
    Either,
}

/// Files generated into a staging folder (kept for the final comparison), then copied into the
/// input folder the way a producer does (temporary name, rename).
struct Backlog {
    stage: tempfile::TempDir,
    /// Names copied into the input folder so far.
    names: Vec<String>,
    waves: u32,
    /// Each wave: this many files of `wave_rows` rows, and one file of `wave_big` rows.
    wave_files: u64,
    wave_rows: u64,
    wave_big: u64,
}

impl Backlog {
    /// `files` feeder files of 1,000 rows (1 % bad rows) and one feeder file of `big_rows` rows.
    fn new(seed: u64, files: u64, big_rows: u64) -> Backlog {
        let stage = tempfile::Builder::new()
            .prefix("e2e-stage-")
            .tempdir_in("/tmp")
            .unwrap();
        let b = Backlog {
            stage,
            names: Vec::new(),
            waves: 0,
            wave_files: 30,
            wave_rows: 1000,
            wave_big: 30_000,
        };
        feeder_into(b.stage.path(), seed, files, 1000, "2024-05-01T00:00:00Z");
        let big_dir = b.stage.path().join(".big");
        feeder_into(&big_dir, seed + 1, 1, big_rows, "2024-04-01T00:00:00Z");
        let made = data_files(&big_dir);
        assert_eq!(made.len(), 1);
        fs::rename(big_dir.join(&made[0]), b.stage.path().join("big.csv")).unwrap();
        fs::remove_dir(&big_dir).unwrap();
        b
    }

    fn path(&self) -> &Path {
        self.stage.path()
    }

    /// Copies every staged file not yet copied into `input` (the big one in the middle).
    fn deliver(&mut self, input: &Path) {
        let mut todo: Vec<String> = data_files(self.path())
            .into_iter()
            .filter(|n| !self.names.contains(n))
            .collect();
        if let Some(i) = todo.iter().position(|n| n == "big.csv") {
            let big = todo.remove(i);
            let mid = todo.len() / 2;
            todo.insert(mid, big);
        }
        for n in todo {
            copy_in_atomic(input, &n, &self.path().join(&n));
            self.names.push(n);
        }
    }

    /// Another wave of files (by default 30 of 1,000 rows and one of 30,000, chunked), so that
    /// every crash lands while there is work to do: the worker ingests ~30,000 rows between two
    /// crashes.
    fn add_wave(&mut self, seed: u64, input: &Path) {
        self.waves += 1;
        let w = self.waves;
        let dir = self.path().join(format!(".wave{w}"));
        let start = format!("2024-07-{:02}T00:00:00Z", w.min(28));
        feeder_into(
            &dir,
            seed + 100 + w as u64,
            self.wave_files,
            self.wave_rows,
            &start,
        );
        let start = format!("2024-08-{:02}T00:00:00Z", w.min(28));
        feeder_into(
            &dir.join(".big"),
            seed + 200 + w as u64,
            1,
            self.wave_big,
            &start,
        );
        for n in data_files(&dir) {
            fs::rename(dir.join(&n), self.path().join(format!("w{w}_{n}"))).unwrap();
        }
        let big = data_files(&dir.join(".big"));
        assert_eq!(big.len(), 1);
        fs::rename(
            dir.join(".big").join(&big[0]),
            self.path().join(format!("w{w}_big.csv")),
        )
        .unwrap();
        fs::remove_dir_all(&dir).unwrap();
        self.deliver(input);
    }

    fn expected(&self) -> Expected {
        expected_rows(&[self.path()])
    }

    fn staged(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }
}

fn feeder_into(dir: &Path, seed: u64, files: u64, rows: u64, start: &str) {
    run_feeder(&[
        "--output-dir",
        dir.to_str().unwrap(),
        "--events-per-file",
        &rows.to_string(),
        "--total-files",
        &files.to_string(),
        "--burst",
        "--quiet",
        "--seed",
        &seed.to_string(),
        "--start-time",
        start,
        "--bad-row-ratio",
        "0.01",
    ]);
}

/// True if some delivered file is not finished yet (not done, or, with a processed action,
/// still in the input folder).
fn work_pending(c: &mut Cluster, delivered: usize, action: &str) -> bool {
    let done = c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") as usize;
    if done < delivered {
        return true;
    }
    action != "keep" && !data_files(c.input_dir()).is_empty()
}

fn assert_consistent(c: &mut Cluster, when: &str) {
    let problems = ledger_problems(c.client());
    assert!(
        problems.is_empty(),
        "{when}: the committed state is inconsistent:\n  {}",
        problems.join("\n  ")
    );
}

struct Run {
    crashes: u32,
    mid_work: u32,
    took: Duration,
}

/// Crashes the cluster at random moments until `want` crashes landed while work was pending,
/// adding waves of files whenever the backlog ran dry. Checks the committed state after each.
fn crash_loop(
    c: &mut Cluster,
    b: &mut Backlog,
    seed: u64,
    how: Crash,
    want: u32,
    action: &str,
) -> Run {
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let (mut crashes, mut mid_work) = (0u32, 0u32);
    c.wait_worker();
    while mid_work < want {
        assert!(
            crashes < want * 3,
            "{crashes} crashes but only {mid_work} landed while work was pending"
        );
        if !work_pending(c, b.names.len(), action) {
            b.add_wave(seed, c.input_dir());
        }
        let delay = rng.below(MAX_DELAY_MS + 1);
        std::thread::sleep(Duration::from_millis(delay));
        let pending = work_pending(c, b.names.len(), action);
        let rows = c.event_count();
        match how {
            Crash::KillWorker => c.kill_worker(),
            Crash::ImmediateStop => {
                c.restart("immediate");
                c.wait_worker();
            }
            Crash::Either if rng.below(2) == 0 => {
                c.restart("immediate");
                c.wait_worker();
            }
            Crash::Either => {
                let pids: Vec<i32> = c
                    .client()
                    .query(
                        "SELECT pid FROM ingest_workers() WHERE pipeline = 'events' AND pid IS NOT NULL",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let pid = pids[rng.below(pids.len() as u64) as usize];
                println!("SIGKILL to worker {pid} of {pids:?}");
                c.crash_process(pid);
                c.wait_worker();
            }
        }
        crashes += 1;
        mid_work += pending as u32;
        let rows_after = c.event_count();
        println!(
            "crash {crashes} ({how:?}) {delay} ms after start: {} ; rows {rows} before, {rows_after} after recovery",
            if pending { "work pending" } else { "idle" }
        );
        assert!(
            rows_after >= rows,
            "committed rows were lost: {rows} before the crash, {rows_after} after"
        );
        assert_consistent(c, &format!("after crash {crashes}"));
    }
    Run {
        crashes,
        mid_work,
        took: t0.elapsed(),
    }
}

/// Waits for the end of the backlog and compares everything with the files.
fn finish_and_check(c: &mut Cluster, b: &Backlog, action: &str, big_rows: u64) {
    let n = b.names.len() as i64;
    let input = c.input_dir().to_path_buf();
    c.wait_for(
        "every delivered file done (and moved away, with a processed action)",
        Duration::from_secs(120),
        |c| {
            c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") >= n
                && (action == "keep" || data_files(&input).is_empty())
        },
    );
    let exp = b.expected();
    println!(
        "{} files, {} valid rows, {} bad rows",
        n,
        exp.rows.len(),
        exp.rejects.len()
    );
    assert!(!exp.rejects.is_empty(), "the feeder injected no bad rows");
    assert_consistent(c, "at the end");
    c.assert_exact_rows(&exp.rows);
    assert_eq!(c.stored_rejects(), exp.rejects, "ingest_rejects");
    let files: BTreeSet<String> = c
        .client()
        .query(
            "SELECT file_name FROM ingest_files WHERE status = 'done'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: BTreeSet<String> = b.names.iter().cloned().collect();
    assert_eq!(files, want, "done files");
    assert_eq!(c.int("SELECT count(*) FROM ingest_files"), n);
    let s = c.status();
    assert_eq!(
        (
            s.files_ingested,
            s.files_failed,
            s.rows_ingested,
            s.rows_rejected
        ),
        (n, 0, exp.rows.len() as i64, exp.rejects.len() as i64),
        "{s:#?}"
    );
    let big_chunks = c.int("SELECT chunks::int8 FROM ingest_files WHERE file_name = 'big.csv'");
    // ~600 rows of ~110 bytes per 64 kB chunk.
    assert!(
        big_chunks as u64 >= big_rows / 1000,
        "big.csv should take many chunks: {big_chunks}"
    );
    match action {
        "archive" => {
            let archive = input.join("archive");
            assert_eq!(
                data_files(&archive),
                want.iter().cloned().collect::<Vec<_>>(),
                "the archive folder holds every file once"
            );
            for n in &b.names {
                assert!(
                    fs::read(archive.join(n)).unwrap() == fs::read(b.staged(n)).unwrap(),
                    "archived {n} differs from the file delivered"
                );
            }
        }
        "delete" => {}
        _ => assert_eq!(data_files(&input).len(), b.names.len()),
    }
    if action != "keep" {
        assert!(
            data_files(&input).is_empty(),
            "files left in the input folder: {:?}",
            data_files(&input)
        );
    }
    c.settle();
    c.assert_exact_rows(&exp.rows);
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_rejects"),
        exp.rejects.len() as i64
    );
}

fn crash_test(name: &str, how: Crash, action: &str, files: u64, big_rows: u64, crashes: u32) {
    crash_test_with(name, how, action, files, big_rows, crashes, 1)
}

fn crash_test_with(
    name: &str,
    how: Crash,
    action: &str,
    files: u64,
    big_rows: u64,
    crashes: u32,
    workers: u32,
) {
    let seed = test_seed(name);
    let mut conf: Vec<&str> = CONF.to_vec();
    let action_line = format!("ecommerce_ingest.processed_action = '{action}'");
    conf.push(&action_line);
    let workers_line = format!("ecommerce_ingest.workers = {workers}");
    conf.push(&workers_line);
    let mut c = Cluster::start(ClusterOptions::with_conf(&conf));
    let mut b = Backlog::new(seed, files, big_rows);

    b.deliver(c.input_dir());
    let run = crash_loop(&mut c, &mut b, seed, how, crashes, action);
    println!(
        "{name}: {} crashes ({} with work pending) in {:?}; {} waves added",
        run.crashes, run.mid_work, run.took, b.waves
    );
    finish_and_check(&mut c, &b, action, big_rows);
    // The line docs/reliability.md is made from (see tests/tests/suite/reliability/mod.rs).
    let expected = b.expected().rows.len();
    let found = c.event_count();
    let duplicated = c.duplicates().len();
    println!(
        "reliability: fault={name} injected={} expected={expected} found={found} duplicated={duplicated}",
        run.crashes
    );
}

#[test]
fn sigkill_at_random_moments() {
    crash_test(
        "sigkill_at_random_moments",
        Crash::KillWorker,
        "keep",
        60,
        100_000,
        20,
    );
}

#[test]
fn immediate_stop_at_random_moments() {
    crash_test(
        "immediate_stop_at_random_moments",
        Crash::ImmediateStop,
        "keep",
        60,
        100_000,
        20,
    );
}

/// A crash between a file's last commit and its move to the archive must neither lose the file
/// nor ingest it twice.
#[test]
fn archive_interrupted_by_sigkill_loses_no_file_and_ingests_none_twice() {
    crash_test(
        "archive_interrupted_by_sigkill",
        Crash::KillWorker,
        "archive",
        40,
        20_000,
        12,
    );
}

#[test]
fn delete_interrupted_by_sigkill_loses_no_file_and_ingests_none_twice() {
    crash_test(
        "delete_interrupted_by_sigkill",
        Crash::KillWorker,
        "delete",
        40,
        20_000,
        12,
    );
}

/// Four workers share the backlog (each its own files, every chunk of the big file with one of
/// them); SIGKILLs of any of them and immediate stops at random moments; every file archived
/// once, every row exactly once.
#[test]
fn four_workers_killed_or_stopped_at_random_moments() {
    crash_test_with(
        "four_workers_killed_or_stopped_at_random_moments",
        Crash::Either,
        "archive",
        60,
        60_000,
        20,
        4,
    );
}
