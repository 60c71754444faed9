//! The first five experiments (the sixth, pipelines, is in pipelines.rs). Each one runs on a fresh cluster, measures a figure and its yardstick
//! in the same run, and checks the counts (a wrong count is an error: the run fails).

use crate::util::{
    epoch_now, err, log, median, percentile, proc_memory, set_conf, stage, status, sync,
    wait_status, Staged, R,
};
use e2e::{lit, Cluster, ClusterOptions};
use postgres::Client;
use serde::{Deserialize, Serialize};
use std::ops::{Deref, DerefMut};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The nine contract columns, in the order the feeder writes them.
pub const COLUMNS: &str = "user_id, event_type, product_id, product_name, product_category, \
                           price, event_timestamp, session_id, device_type";

/// Sizes of a run (full or `--short`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sizes {
    pub backlog_files: u64,
    pub backlog_rows_per_file: u64,
    /// Worker-then-COPY rounds of the backlog; the round with the median ratio is reported.
    #[serde(default = "one")]
    pub backlog_rounds: u64,
    pub latency_seconds: f64,
    pub latency_rate: f64,
    pub latency_rows_per_file: u64,
    pub history_files: u64,
    pub history_rows_per_file: u64,
    pub history_move_batch: usize,
    pub history_new_files: u64,
    pub history_new_rate: f64,
    pub trigger_samples: usize,
    pub rescan_samples: usize,
    pub big_file_bytes: u64,
    pub bytes_per_row: u64,
    pub feeder_files: u64,
    pub feeder_rows_per_file: u64,
    /// Feeders run side by side to stage many small files (each fsyncs every file).
    pub stage_parallel: u64,
    /// Rows in user_events for the time queries (experiment 8).
    #[serde(default)]
    pub time_query_rows: u64,
}

fn one() -> u64 {
    1
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            backlog_files: 200,
            backlog_rows_per_file: 5_000,
            backlog_rounds: 5,
            latency_seconds: 30.0,
            latency_rate: 50.0,
            latency_rows_per_file: 10,
            history_files: 1_000_000,
            history_rows_per_file: 10,
            history_move_batch: 5_000,
            history_new_files: 300,
            history_new_rate: 20.0,
            trigger_samples: 30,
            rescan_samples: 5,
            big_file_bytes: 2_000_000_000,
            bytes_per_row: 125,
            feeder_files: 200,
            feeder_rows_per_file: 5_000,
            stage_parallel: 4,
            time_query_rows: 10_000_000,
        }
    }

    pub fn short() -> Sizes {
        Sizes {
            backlog_files: 20,
            backlog_rows_per_file: 1_000,
            backlog_rounds: 2,
            latency_seconds: 5.0,
            latency_rate: 50.0,
            latency_rows_per_file: 10,
            history_files: 2_000,
            history_rows_per_file: 10,
            history_move_batch: 500,
            history_new_files: 20,
            history_new_rate: 20.0,
            trigger_samples: 10,
            rescan_samples: 3,
            big_file_bytes: 20_000_000,
            bytes_per_row: 125,
            feeder_files: 20,
            feeder_rows_per_file: 1_000,
            stage_parallel: 4,
            time_query_rows: 100_000,
        }
    }
}

/// Where an experiment runs: the repository, its own folder under `.bench/`, the port.
pub struct Env {
    pub repo: PathBuf,
    pub bench_dir: PathBuf,
    pub port: u16,
    /// `dynamic_library_path = '<private copy>:$libdir'`: the clusters load the benchmark's own
    /// copy of the library, so a concurrent `cargo pgrx install` cannot swap it under them.
    pub lib_conf: String,
}

impl Env {
    /// A fresh folder for experiment `name`.
    pub(crate) fn fresh(&self, name: &str) -> R<PathBuf> {
        let dir = self.bench_dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Moves an experiment's folder aside once it succeeded; `.bench/trash` is emptied at the
    /// end of the run (deleting 100,000 files takes a while: not between two measurements).
    pub(crate) fn clean(&self, dir: &Path) {
        let trash = self.bench_dir.join("trash");
        let _ = std::fs::create_dir_all(&trash);
        let name = dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        if std::fs::rename(dir, trash.join(name)).is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// A fresh cluster with the extension created and the worker running.
    pub(crate) fn cluster(&self, dir: &Path, conf: &[&str]) -> R<BenchCluster> {
        let mut all = vec![self.lib_conf.as_str()];
        all.extend_from_slice(conf);
        let mut cluster = BenchCluster::start(dir, self.port, &all, true)?;
        wait_status(
            cluster.client(),
            "the worker to run",
            Duration::from_secs(30),
            Duration::from_millis(10),
            |s| s.state == "running" && s.worker_pid.is_some(),
        )?;
        Ok(cluster)
    }
}

/// A benchmark cluster: the end-to-end harness's [`Cluster`] (scripts/cluster.sh, with
/// `ecommerce_ingest` preloaded) in an experiment's folder (`dir/data`, input folder `dir/in`) on
/// the benchmark's port, used through the harness's own connection. Dropping it (also on error)
/// stops the server with `fast` and leaves the folder in place (see [`Env::clean`]).
pub struct BenchCluster(Cluster);

impl BenchCluster {
    /// Starts a fresh cluster in `dir` with the postgresql.conf lines `conf` (after the
    /// harness's defaults: later lines win) and, with `create_extension`, runs
    /// `CREATE EXTENSION ecommerce_ingest`. A failure is an error, not a panic.
    pub fn start(dir: &Path, port: u16, conf: &[&str], create_extension: bool) -> R<BenchCluster> {
        let opts = ClusterOptions {
            extra_conf: conf.iter().map(|s| s.to_string()).collect(),
            create_extension,
            root: Some(dir.to_path_buf()),
            port: Some(port),
            ..Default::default()
        };
        let cluster =
            std::panic::catch_unwind(AssertUnwindSafe(|| Cluster::start(opts))).map_err(|p| {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                err(format!(
                    "the cluster in {} did not start: {why}",
                    dir.display()
                ))
            })?;
        log(&format!(
            "cluster started on 127.0.0.1:{port} (data {})",
            cluster.data_dir().display()
        ));
        Ok(BenchCluster(cluster))
    }
}

impl Deref for BenchCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

impl DerefMut for BenchCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.0
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        self.0.stop("fast");
        log("cluster stopped");
    }
}

/// Settings of every benchmark cluster (later lines win).
pub(crate) const BASE_CONF: [&str; 3] = [
    "ecommerce_ingest.processed_action = 'keep'",
    "ecommerce_ingest.min_file_age = '0'",
    "ecommerce_ingest.trigger_interval = '10s'",
];

pub(crate) fn pause(c: &mut Client) -> R<()> {
    c.batch_execute("SELECT ingest_pause()")?;
    wait_status(
        c,
        "the paused state",
        Duration::from_secs(10),
        Duration::from_millis(10),
        |s| s.state == "paused",
    )?;
    Ok(())
}

pub(crate) fn move_in(files: &[Staged], input: &Path) -> R<()> {
    for f in files {
        std::fs::rename(&f.path, input.join(&f.name))?;
    }
    Ok(())
}

/// Resumes the worker and returns the server's clock (epoch seconds) just before.
fn resume(c: &mut Client) -> R<f64> {
    let r = c.query_one(
        "SELECT extract(epoch FROM clock_timestamp())::float8, ingest_resume()",
        &[],
    )?;
    Ok(r.get(0))
}

fn count(c: &mut Client, sql: &str) -> R<i64> {
    Ok(c.query_one(sql, &[])?.get(0))
}

/// Checks that the worker ingested exactly `files` files and `rows` rows, nothing rejected, in
/// round `round` (0-based): the ledger holds every round's files, `user_events` only this one's.
fn check_ingested(c: &mut Client, what: &str, files: u64, rows: u64, round: u64) -> R<()> {
    let s = status(c)?;
    let (all_files, all_rows) = (files * (round + 1), rows * (round + 1));
    let in_table = count(c, "SELECT count(*) FROM user_events")?;
    let done = count(
        c,
        "SELECT count(*) FROM ingest_ledger WHERE status = 'done'",
    )?;
    if s.rows_ingested as u64 != all_rows
        || in_table as u64 != rows
        || done as u64 != all_files
        || s.rows_rejected != 0
        || s.files_failed != 0
    {
        return Err(err(format!(
            "{what}: counts are wrong: generated {files} files / {rows} rows (round {round}); \
             user_events holds {in_table} rows, ingest_status says {} rows ingested, {} rejected, \
             {} files failed; {done} files done (last error: {:?})",
            s.rows_ingested, s.rows_rejected, s.files_failed, s.last_error
        )));
    }
    Ok(())
}

/// COPY of each file into `copy_target`, one transaction per file; returns (seconds, rows).
fn copy_files(c: &mut Client, paths: &[PathBuf]) -> R<(f64, u64)> {
    let t = Instant::now();
    let mut rows = 0;
    for p in paths {
        let path = p
            .to_str()
            .ok_or_else(|| err(format!("not UTF-8: {}", p.display())))?;
        rows += c.execute(
            &format!(
                "COPY copy_target ({COLUMNS}) FROM {} (FORMAT csv, HEADER)",
                lit(path)
            ),
            &[],
        )?;
    }
    Ok((t.elapsed().as_secs_f64(), rows))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    pub worker_seconds: f64,
    pub worker_rows_per_second: f64,
    pub copy_seconds: f64,
    pub copy_rows_per_second: f64,
    /// worker rows/s ÷ COPY rows/s.
    pub ratio: f64,
    /// Every round (worker, then COPY, of the same files): the figures above are the round with
    /// the median ratio. Empty in results from before rounds existed.
    #[serde(default)]
    pub rounds: Vec<Round>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Round {
    pub worker_seconds: f64,
    pub copy_seconds: f64,
    pub ratio: f64,
}

/// `copy_target`: `user_events`'s twin, for COPY (a plain table like the extension's).
pub(crate) const PLAIN_COPY_TARGET: &str =
    "CREATE TABLE copy_target (LIKE user_events INCLUDING ALL)";

/// Ingests the staged files (already renamed into the paused worker's folder) and COPYs them.
/// Round 0 creates `copy_target` with `copy_target_ddl`; a later round empties it and
/// `user_events` first, so every round starts from the same empty tables (its files must have
/// names the ledger has not seen).
#[allow(clippy::too_many_arguments)]
pub(crate) fn worker_vs_copy(
    c: &mut Client,
    input: &Path,
    names: &[String],
    rows: u64,
    bytes: u64,
    timeout: Duration,
    worker_done: impl FnOnce(),
    round: u64,
    copy_target_ddl: &str,
) -> R<Throughput> {
    let files = names.len() as u64;
    if round == 0 {
        c.batch_execute(copy_target_ddl)?;
    } else {
        c.batch_execute("TRUNCATE copy_target; TRUNCATE user_events")?;
    }
    c.batch_execute("CHECKPOINT; SELECT pg_sleep(0.5)")?;
    let t0 = resume(c)?;
    wait_status(
        c,
        "the worker to ingest the backlog",
        timeout,
        // The end time comes from the server (committed_at): polling need not be tight.
        Duration::from_millis(50),
        |s| {
            s.rows_ingested as u64 + s.rows_rejected as u64 >= rows * (round + 1)
                && s.files_ingested as u64 >= files * (round + 1)
        },
    )?;
    let t1: f64 = c
        .query_one(
            "SELECT extract(epoch FROM max(committed_at))::float8 FROM ingest_files",
            &[],
        )?
        .get(0);
    worker_done();
    check_ingested(c, "worker", files, rows, round)?;
    let worker_seconds = t1 - t0;
    c.batch_execute("CHECKPOINT; SELECT pg_sleep(0.5)")?;
    let paths: Vec<PathBuf> = names.iter().map(|n| input.join(n)).collect();
    let (copy_seconds, copied) = copy_files(c, &paths)?;
    let in_copy = count(c, "SELECT count(*) FROM copy_target")? as u64;
    if copied != rows || in_copy != rows {
        return Err(err(format!(
            "COPY: counts are wrong: {rows} rows generated, COPY reported {copied}, copy_target holds {in_copy}"
        )));
    }
    let worker_rps = rows as f64 / worker_seconds;
    let copy_rps = rows as f64 / copy_seconds;
    Ok(Throughput {
        files,
        rows,
        bytes,
        worker_seconds,
        worker_rows_per_second: worker_rps,
        copy_seconds,
        copy_rows_per_second: copy_rps,
        ratio: worker_rps / copy_rps,
        rounds: vec![Round {
            worker_seconds,
            copy_seconds,
            ratio: worker_rps / copy_rps,
        }],
    })
}

/// The staged files moved into the paused worker's folder and ingested, then COPYed into
/// `copy_target` (made by `copy_target_ddl`), in `rounds` rounds (the same files under new names
/// each round): on a shared machine one round can be off by ±20 %, so the median round is what
/// the table shows, with every round beside it.
pub(crate) fn backlog_rounds(
    c: &mut Client,
    input: &Path,
    staged: &[Staged],
    rows: u64,
    rounds: u64,
    copy_target_ddl: &str,
    what: &str,
) -> R<Throughput> {
    let bytes = staged
        .iter()
        .map(|f| f.path.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    move_in(staged, input)?;
    sync();
    let mut names: Vec<String> = staged.iter().map(|f| f.name.clone()).collect();
    let mut runs: Vec<Throughput> = Vec::new();
    for round in 0..rounds {
        if round > 0 {
            pause(c)?;
            let renamed: Vec<String> = names.iter().map(|n| format!("r{round}-{n}")).collect();
            for (old, new) in names.iter().zip(&renamed) {
                std::fs::rename(input.join(old), input.join(new))?;
            }
            sync();
            names = renamed;
        }
        let r = worker_vs_copy(
            c,
            input,
            &names,
            rows,
            bytes,
            Duration::from_secs(900),
            || {},
            round,
            copy_target_ddl,
        )?;
        log(&format!(
            "{what} round {}: worker {:.2} s, COPY {:.2} s: {:.2}x",
            round + 1,
            r.worker_seconds,
            r.copy_seconds,
            r.ratio
        ));
        runs.push(r);
    }
    let all: Vec<Round> = runs.iter().flat_map(|r| r.rounds.clone()).collect();
    runs.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
    let mut r = runs.swap_remove(runs.len() / 2);
    r.rounds = all;
    Ok(r)
}

/// A fresh cluster for experiment `name` (settings `conf`), its events pipeline paused, and the
/// backlog of experiment 1 staged beside its input folder.
pub(crate) struct PausedBacklog {
    pub dir: PathBuf,
    pub cluster: BenchCluster,
    pub input: PathBuf,
    pub staged: Vec<Staged>,
    pub rows: u64,
}

impl PausedBacklog {
    pub(crate) fn start(env: &Env, z: &Sizes, name: &str, conf: &[&str]) -> R<PausedBacklog> {
        let dir = env.fresh(name)?;
        let mut cluster = env.cluster(&dir, conf)?;
        let input = cluster.input_dir().to_path_buf();
        pause(cluster.client())?;
        let (staged, rows) = stage(
            &env.repo,
            &dir.join("staging"),
            z.backlog_files,
            z.backlog_rows_per_file,
            2,
        )?;
        Ok(PausedBacklog {
            dir,
            cluster,
            input,
            staged,
            rows,
        })
    }

    /// Ingests the staged backlog against COPY into the table `copy_target_ddl` makes, in
    /// `rounds` rounds (see [`backlog_rounds`]).
    pub(crate) fn run(&mut self, rounds: u64, copy_target_ddl: &str, what: &str) -> R<Throughput> {
        backlog_rounds(
            self.cluster.client(),
            &self.input,
            &self.staged,
            self.rows,
            rounds,
            copy_target_ddl,
            what,
        )
    }

    pub(crate) fn finish(self, env: &Env) {
        drop(self.cluster);
        env.clean(&self.dir);
    }
}

/// 1. A backlog already in the folder when ingestion starts: worker vs COPY.
pub fn backlog(env: &Env, z: &Sizes) -> R<Throughput> {
    log(&format!(
        "== 1. backlog: {} files x {} rows",
        z.backlog_files, z.backlog_rows_per_file
    ));
    let mut b = PausedBacklog::start(env, z, "backlog", &BASE_CONF)?;
    let r = b.run(z.backlog_rounds.max(1), PLAIN_COPY_TARGET, "backlog")?;
    log(&format!(
        "backlog: worker {:.0} rows/s ({:.2} s), COPY {:.0} rows/s ({:.2} s): {:.2}x",
        r.worker_rows_per_second, r.worker_seconds, r.copy_rows_per_second, r.copy_seconds, r.ratio
    ));
    b.finish(env);
    Ok(r)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub files: u64,
    pub rate_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Every file's latency, in rename order (ms).
    pub samples_ms: Vec<f64>,
}

/// Renames the staged files into the folder at `rate` per second, recording each rename's
/// wall-clock time, waits for all of them, and returns commit time − rename time per file.
fn latency_run(
    c: &mut Client,
    input: &Path,
    files: &[Staged],
    rate: f64,
    rows_per_file: u64,
) -> R<Latency> {
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let mut renamed = Vec::with_capacity(files.len());
    let step = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now() + Duration::from_millis(20);
    for (i, f) in files.iter().enumerate() {
        let due = t0 + step * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let at = epoch_now();
        std::fs::rename(&f.path, input.join(&f.name))?;
        renamed.push(at);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: i64 = c
            .query_one(
                "SELECT count(*) FROM ingest_files WHERE status = 'done' AND file_name = ANY($1)",
                &[&names],
            )?
            .get(0);
        if done as usize == names.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "latency: only {done} of {} files done after 120 s; status: {:?}",
                names.len(),
                status(c)?
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = c.query(
        "SELECT file_name, extract(epoch FROM committed_at)::float8, rows_ok, rows_rejected
           FROM ingest_files WHERE file_name = ANY($1)",
        &[&names],
    )?;
    let mut committed = std::collections::HashMap::new();
    for r in rows {
        let name: String = r.get(0);
        let at: Option<f64> = r.get(1);
        let ok: i64 = r.get(2);
        let rej: i64 = r.get(3);
        if ok as u64 != rows_per_file || rej != 0 {
            return Err(err(format!(
                "latency: file {name} has {ok} rows ingested and {rej} rejected, expected {rows_per_file} and 0"
            )));
        }
        committed.insert(name, at.ok_or_else(|| err("committed_at is NULL"))?);
    }
    let mut samples = Vec::with_capacity(files.len());
    for (f, at) in files.iter().zip(&renamed) {
        let c_at = committed
            .get(&f.name)
            .ok_or_else(|| err(format!("latency: {} missing from ingest_files", f.name)))?;
        samples.push((c_at - at) * 1000.0);
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Latency {
        files: files.len() as u64,
        rate_per_second: rate,
        p50_ms: percentile(&sorted, 50.0),
        p90_ms: percentile(&sorted, 90.0),
        p99_ms: percentile(&sorted, 99.0),
        max_ms: *sorted.last().unwrap_or(&f64::NAN),
        mean_ms: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
        samples_ms: samples
            .iter()
            .map(|v| (v * 1000.0).round() / 1000.0)
            .collect(),
    })
}

/// 2. Latency of single small files arriving at a steady rate.
pub fn latency(env: &Env, z: &Sizes) -> R<Latency> {
    let n = (z.latency_seconds * z.latency_rate).round() as u64;
    log(&format!(
        "== 2. latency: {n} files x {} rows at {}/s",
        z.latency_rows_per_file, z.latency_rate
    ));
    let dir = env.fresh("latency")?;
    let mut cluster = env.cluster(&dir, &BASE_CONF)?;
    let input = cluster.input_dir().to_path_buf();
    let c = cluster.client();
    let (staged, rows) = stage(
        &env.repo,
        &dir.join("staging"),
        n,
        z.latency_rows_per_file,
        z.stage_parallel,
    )?;
    sync();
    std::thread::sleep(Duration::from_millis(500));
    let r = latency_run(c, &input, &staged, z.latency_rate, z.latency_rows_per_file)?;
    check_ingested(c, "latency", n, rows, 0)?;
    log(&format!(
        "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.p50_ms, r.p99_ms, r.max_ms
    ));
    drop(cluster);
    env.clean(&dir);
    Ok(r)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Idle {
    /// Files in the folder (all already ingested).
    pub files_in_folder: u64,
    /// `last_trigger_ms` of interval triggers (100ms) that found nothing new.
    pub interval_trigger_ms: Vec<f64>,
    pub interval_trigger_median_ms: f64,
    /// `last_trigger_ms` of `ingest_trigger()`: a full rescan of the folder.
    pub manual_rescan_ms: Vec<f64>,
    pub manual_rescan_median_ms: f64,
    pub new_file_latency: Latency,
    /// What an `ingest_status()` call costs here, client side: the median of [`STATUS_CALLS`].
    pub status_call_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    pub history_files: u64,
    pub history_rows: u64,
    pub load_seconds: f64,
    pub empty: Idle,
    pub with_history: Idle,
    /// with history ÷ empty: interval trigger median.
    pub trigger_ratio: f64,
    /// with history ÷ empty: manual full rescan median (no target: a rescan lists the folder).
    pub rescan_ratio: f64,
    /// with history ÷ empty: p50 latency of a new file.
    pub latency_p50_ratio: f64,
}

/// Samples `last_trigger_ms` of distinct interval triggers.
fn sample_triggers(c: &mut Client, n: usize) -> R<Vec<f64>> {
    set_conf(c, "ecommerce_ingest.trigger_interval", Some("100ms"))?;
    std::thread::sleep(Duration::from_millis(400));
    let mut last = status(c)?.last_trigger_at;
    let mut out = Vec::new();
    let skip = 2;
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < n {
        let s = status(c)?;
        if s.last_trigger_at != last {
            last = s.last_trigger_at;
            seen += 1;
            if seen > skip {
                out.push(s.last_trigger_ms.unwrap_or(f64::NAN));
            }
            // The next trigger is ~100 ms away: do not load the server meanwhile.
            std::thread::sleep(Duration::from_millis(60));
        } else {
            std::thread::sleep(Duration::from_millis(15));
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "only {} interval triggers seen in 60 s",
                out.len()
            )));
        }
    }
    set_conf(c, "ecommerce_ingest.trigger_interval", Some("10s"))?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(out)
}

/// Samples `last_trigger_ms` of manual triggers (`ingest_trigger()`: a full rescan).
fn sample_rescans(c: &mut Client, n: usize) -> R<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let before = status(c)?.last_trigger_at;
        c.batch_execute("SELECT ingest_trigger()")?;
        let s = wait_status(
            c,
            "a manual trigger",
            Duration::from_secs(60),
            Duration::from_millis(10),
            |s| s.last_trigger_at != before,
        )?;
        out.push(s.last_trigger_ms.unwrap_or(f64::NAN));
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(out)
}

/// `ingest_status()` calls timed for figure 3c.
pub const STATUS_CALLS: usize = 31;

fn idle_figures(
    c: &mut Client,
    input: &Path,
    z: &Sizes,
    new_files: &[Staged],
    in_folder: u64,
) -> R<Idle> {
    let mut calls = Vec::with_capacity(STATUS_CALLS);
    for _ in 0..STATUS_CALLS {
        let t = Instant::now();
        c.query("SELECT * FROM ingest_status()", &[])?;
        calls.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let status_call_ms = median(&calls);
    let triggers = sample_triggers(c, z.trigger_samples)?;
    let rescans = sample_rescans(c, z.rescan_samples)?;
    let lat = latency_run(
        c,
        input,
        new_files,
        z.history_new_rate,
        z.history_rows_per_file,
    )?;
    let r = Idle {
        files_in_folder: in_folder,
        interval_trigger_median_ms: median(&triggers),
        interval_trigger_ms: triggers,
        manual_rescan_median_ms: median(&rescans),
        manual_rescan_ms: rescans,
        new_file_latency: lat,
        status_call_ms,
    };
    log(&format!(
        "  {} files in the folder: interval trigger {:.3} ms, manual rescan {:.3} ms, new file p50 {:.2} ms p99 {:.2} ms",
        in_folder,
        r.interval_trigger_median_ms,
        r.manual_rescan_median_ms,
        r.new_file_latency.p50_ms,
        r.new_file_latency.p99_ms
    ));
    Ok(r)
}

/// 3. A folder full of already-ingested files does not slow triggers or new files down.
pub fn history(env: &Env, z: &Sizes) -> R<History> {
    log(&format!(
        "== 3. history: {} ingested files x {} rows kept in the folder",
        z.history_files, z.history_rows_per_file
    ));
    let dir = env.fresh("history")?;
    let mut cluster = env.cluster(&dir, &BASE_CONF)?;
    let input = cluster.input_dir().to_path_buf();
    let c = cluster.client();
    let staging = dir.join("staging");
    let (hist, hist_rows) = stage(
        &env.repo,
        &staging.join("history"),
        z.history_files,
        z.history_rows_per_file,
        z.stage_parallel,
    )?;
    let (new1, _) = stage(
        &env.repo,
        &staging.join("new1"),
        z.history_new_files,
        z.history_rows_per_file,
        1,
    )?;
    let (new2, _) = stage(
        &env.repo,
        &staging.join("new2"),
        z.history_new_files,
        z.history_rows_per_file,
        1,
    )?;
    sync();
    log(&format!("history: staged {} files", hist.len()));

    let empty = idle_figures(c, &input, z, &new1, 0)?;

    // The history is setup, not a measurement: ingest it without waiting for WAL flushes.
    set_conf(c, "synchronous_commit", Some("off"))?;
    let t = Instant::now();
    let base = status(c)?.files_ingested as u64;
    let mut moved = 0u64;
    for batch in hist.chunks(z.history_move_batch) {
        move_in(batch, &input)?;
        moved += batch.len() as u64;
        let want = base + moved;
        wait_status(
            c,
            "the history to be ingested",
            Duration::from_secs(300),
            Duration::from_millis(200),
            |s| s.files_ingested as u64 >= want || s.files_failed > 0,
        )?;
    }
    let load_seconds = t.elapsed().as_secs_f64();
    set_conf(c, "synchronous_commit", None)?;
    c.batch_execute("VACUUM ANALYZE")?;
    c.batch_execute("CHECKPOINT")?;
    log(&format!(
        "history: {} files ingested in {load_seconds:.1} s",
        hist.len()
    ));
    let in_folder = z.history_files + z.history_new_files;
    let with_history = idle_figures(c, &input, z, &new2, in_folder)?;

    let files = z.history_files + 2 * z.history_new_files;
    check_ingested(
        c,
        "history",
        files,
        hist_rows + 2 * z.history_new_files * z.history_rows_per_file,
        0,
    )?;
    let r = History {
        history_files: z.history_files,
        history_rows: hist_rows,
        load_seconds,
        trigger_ratio: with_history.interval_trigger_median_ms / empty.interval_trigger_median_ms,
        rescan_ratio: with_history.manual_rescan_median_ms / empty.manual_rescan_median_ms,
        latency_p50_ratio: with_history.new_file_latency.p50_ms / empty.new_file_latency.p50_ms,
        empty,
        with_history,
    };
    log(&format!(
        "history: interval trigger {:.2}x, manual rescan {:.2}x, new-file p50 {:.2}x",
        r.trigger_ratio, r.rescan_ratio, r.latency_p50_ratio
    ));
    drop(cluster);
    env.clean(&dir);
    Ok(r)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BigFile {
    #[serde(flatten)]
    pub throughput: Throughput,
    /// Peak private (anonymous) memory of the worker while it ingested the file.
    pub worker_rss_anon_max_mib: f64,
    /// The same before it started.
    pub worker_rss_anon_before_mib: f64,
    /// Peak resident set of the worker (includes the shared_buffers pages it touched).
    pub worker_vm_hwm_mib: f64,
    pub memory_samples: usize,
}

/// 4. One big file: worker vs one COPY, and the worker's peak memory.
pub fn big_file(env: &Env, z: &Sizes) -> R<BigFile> {
    let rows_per_file = (z.big_file_bytes / z.bytes_per_row).max(1);
    log(&format!(
        "== 4. one big file: {rows_per_file} rows (~{} MB)",
        z.big_file_bytes / 1_000_000
    ));
    let dir = env.fresh("bigfile")?;
    let mut cluster = env.cluster(&dir, &BASE_CONF)?;
    let input = cluster.input_dir().to_path_buf();
    let c = cluster.client();
    pause(c)?;
    let (staged, rows) = stage(&env.repo, &dir.join("staging"), 1, rows_per_file, 1)?;
    let bytes = staged[0].path.metadata()?.len();
    log(&format!("big file: {bytes} bytes, {rows} rows"));
    move_in(&staged, &input)?;
    sync();
    let pid = status(c)?.worker_pid.ok_or_else(|| err("no worker pid"))?;
    let (before, _) = proc_memory(pid).ok_or_else(|| {
        err(format!(
            "cannot read /proc/{pid}/status (run as root or as the cluster's user)"
        ))
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let sampler = std::thread::spawn(move || {
        let (mut anon, mut hwm, mut n) = (0u64, 0u64, 0usize);
        while !flag.load(Ordering::Relaxed) {
            if let Some((a, h)) = proc_memory(pid) {
                anon = anon.max(a);
                hwm = hwm.max(h);
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (anon, hwm, n)
    });
    let names = vec![staged[0].name.clone()];
    let res = worker_vs_copy(
        c,
        &input,
        &names,
        rows,
        bytes,
        Duration::from_secs(3600),
        // Sample the worker only while it ingests (COPY runs in another backend).
        || stop.store(true, Ordering::Relaxed),
        0,
        PLAIN_COPY_TARGET,
    );
    stop.store(true, Ordering::Relaxed);
    let (anon, hwm, n) = sampler.join().map_err(|_| err("sampler panicked"))?;
    let t = res?;
    let after = status(c)?.worker_pid;
    if after != Some(pid) {
        return Err(err(format!(
            "the worker restarted during the big file (pid {pid} -> {after:?})"
        )));
    }
    let r = BigFile {
        throughput: t,
        worker_rss_anon_max_mib: anon as f64 / 1024.0,
        worker_rss_anon_before_mib: before as f64 / 1024.0,
        worker_vm_hwm_mib: hwm as f64 / 1024.0,
        memory_samples: n,
    };
    log(&format!(
        "big file: worker {:.0} rows/s ({:.1} s), COPY {:.0} rows/s ({:.1} s): {:.2}x; RssAnon max {:.1} MiB, VmHWM {:.1} MiB",
        r.throughput.worker_rows_per_second,
        r.throughput.worker_seconds,
        r.throughput.copy_rows_per_second,
        r.throughput.copy_seconds,
        r.throughput.ratio,
        r.worker_rss_anon_max_mib,
        r.worker_vm_hwm_mib
    ));
    drop(cluster);
    env.clean(&dir);
    Ok(r)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Feeder {
    pub files: u64,
    pub events: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// 5. The feeder in burst mode.
pub fn feeder(env: &Env, z: &Sizes) -> R<Feeder> {
    log(&format!(
        "== 5. feeder --burst: {} files x {} events",
        z.feeder_files, z.feeder_rows_per_file
    ));
    let dir = env.fresh("feeder")?;
    sync();
    let s = crate::util::feeder(
        &env.repo,
        &dir.join("out"),
        z.feeder_files,
        z.feeder_rows_per_file,
        &dir.join("summary.json"),
    )?;
    let r = Feeder {
        files: s.files,
        events: s.events,
        bytes: s.bytes,
        seconds: s.elapsed_seconds,
        events_per_second: s.events_per_second,
    };
    log(&format!(
        "feeder: {:.0} events/s ({:.2} s)",
        r.events_per_second, r.seconds
    ));
    env.clean(&dir);
    Ok(r)
}
