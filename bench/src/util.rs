//! Small helpers: errors, logging, statistics, a free port, the feeder, /proc, the machine.

use e2e::lit;
use postgres::Client;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub fn err(msg: impl Into<String>) -> Box<dyn std::error::Error + Send + Sync> {
    msg.into().into()
}

static START: OnceLock<Instant> = OnceLock::new();

pub fn started() -> Instant {
    *START.get_or_init(Instant::now)
}

pub fn log(msg: &str) {
    eprintln!("[{:7.1}s] {msg}", started().elapsed().as_secs_f64());
}

/// Seconds since the Unix epoch, from the machine clock PostgreSQL also reads.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Nearest-rank percentile of sorted values (p in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The first port from `from` on that nothing listens on.
pub fn free_port(from: u16) -> R<u16> {
    for p in from..from.saturating_add(200) {
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    Err(err(format!("no free port in {from}..{}", from + 200)))
}

/// What the feeder says about its run (`--summary-json`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FeederSummary {
    pub files: u64,
    pub events: u64,
    pub bad_rows: u64,
    pub rows: u64,
    pub bytes: u64,
    pub elapsed_seconds: f64,
    pub events_per_second: f64,
}

pub fn feeder_bin(repo: &Path) -> PathBuf {
    std::env::var_os("FEEDER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/release/feeder"))
}

/// Runs the feeder in burst mode: `files` files of `rows` rows into `dir`.
pub fn feeder(repo: &Path, dir: &Path, files: u64, rows: u64, summary: &Path) -> R<FeederSummary> {
    let out = Command::new(feeder_bin(repo))
        .arg("--output-dir")
        .arg(dir)
        .arg("--events-per-file")
        .arg(rows.to_string())
        .arg("--total-files")
        .arg(files.to_string())
        .arg("--burst")
        .arg("--quiet")
        .arg("--summary-json")
        .arg(summary)
        .output()
        .map_err(|e| err(format!("{}: {e}", feeder_bin(repo).display())))?;
    if !out.status.success() {
        return Err(err(format!(
            "feeder failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let s: FeederSummary = serde_json::from_slice(&std::fs::read(summary)?)?;
    if s.files != files || s.rows != files * rows || s.bad_rows != 0 {
        return Err(err(format!(
            "feeder wrote {} files / {} rows, expected {files} / {}",
            s.files,
            s.rows,
            files * rows
        )));
    }
    Ok(s)
}

/// A generated file waiting in a staging folder, and the name it gets in the input folder.
#[derive(Debug, Clone)]
pub struct Staged {
    pub path: PathBuf,
    pub name: String,
}

/// Generates `files` files of `rows` rows with `parallel` feeders into `staging/p<k>` (same
/// file system as the input folder, so moving them in is a rename). Names get a `p<k>_`
/// prefix in the input folder, as two feeders may pick the same name.
pub fn stage(
    repo: &Path,
    staging: &Path,
    files: u64,
    rows: u64,
    parallel: u64,
) -> R<(Vec<Staged>, u64)> {
    std::fs::create_dir_all(staging)?;
    let parallel = parallel.clamp(1, files.max(1));
    let mut handles = Vec::new();
    for k in 0..parallel {
        let share = files / parallel + u64::from(k < files % parallel);
        let dir = staging.join(format!("p{k}"));
        let summary = staging.join(format!("p{k}.json"));
        let repo = repo.to_path_buf();
        handles.push(std::thread::spawn(move || {
            feeder(&repo, &dir, share, rows, &summary).map(|s| (k, dir, s))
        }));
    }
    let mut staged = Vec::new();
    let mut total_rows = 0;
    for h in handles {
        let (k, dir, s) = h.join().map_err(|_| err("feeder thread panicked"))??;
        total_rows += s.rows;
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".csv") && !name.starts_with('.') {
                staged.push(Staged {
                    path: e.path(),
                    name: format!("p{k}_{name}"),
                });
            }
        }
    }
    if staged.len() as u64 != files {
        return Err(err(format!(
            "staging holds {} files, expected {files}",
            staged.len()
        )));
    }
    staged.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((staged, total_rows))
}

pub fn sync() {
    let _ = Command::new("sync").status();
}

/// `RssAnon` and `VmHWM` of a process, in KiB.
pub fn proc_memory(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("RssAnon:")?, field("VmHWM:")?))
}

/// One row of `ingest_status()`, the parts the benchmark reads.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: String,
    pub worker_pid: Option<i32>,
    pub files_ingested: i64,
    pub files_failed: i64,
    pub rows_ingested: i64,
    pub rows_rejected: i64,
    pub last_trigger_at: Option<f64>,
    pub last_trigger_ms: Option<f64>,
    pub last_error: Option<String>,
}

pub fn status(c: &mut Client) -> R<Status> {
    let r = c.query_one(
        "SELECT state, worker_pid, files_ingested, files_failed, rows_ingested, rows_rejected,
                extract(epoch FROM last_trigger_at)::float8, last_trigger_ms, last_error
           FROM ingest_status() WHERE pipeline = 'events'",
        &[],
    )?;
    Ok(Status {
        state: r.get(0),
        worker_pid: r.get(1),
        files_ingested: r.get(2),
        files_failed: r.get(3),
        rows_ingested: r.get(4),
        rows_rejected: r.get(5),
        last_trigger_at: r.get(6),
        last_trigger_ms: r.get(7),
        last_error: r.get(8),
    })
}

/// Polls `ingest_status()` every `every` until `done` holds; an error after `timeout`.
pub fn wait_status(
    c: &mut Client,
    what: &str,
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut(&Status) -> bool,
) -> R<Status> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(c)?;
        if done(&s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "timed out after {timeout:?} waiting for {what}; status: {s:?}"
            )));
        }
        std::thread::sleep(every);
    }
}

/// Sets a server setting with ALTER SYSTEM and reloads.
pub fn set_conf(c: &mut Client, name: &str, value: Option<&str>) -> R<()> {
    match value {
        Some(v) => c.batch_execute(&format!("ALTER SYSTEM SET {name} = {}", lit(v)))?,
        None => c.batch_execute(&format!("ALTER SYSTEM RESET {name}"))?,
    }
    c.batch_execute("SELECT pg_reload_conf()")?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub ram_gib: f64,
    pub postgres: String,
}

pub fn machine(c: &mut Client) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let postgres = c
        .query_one("SHOW server_version", &[])
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        ram_gib: ram_kib / 1024.0 / 1024.0,
        postgres: format!("PostgreSQL {postgres}"),
    }
}

/// Runs a SQL file with psql against the benchmark cluster on `port` (as postgres, stopping at
/// the first error), with these psql variables.
pub fn psql_file(port: u16, file: &std::path::Path, vars: &[(&str, &str)]) -> R<()> {
    let mut cmd = std::process::Command::new("psql");
    cmd.args([
        "-X",
        "-q",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
    ])
    .args(["-p", &port.to_string(), "-v", "ON_ERROR_STOP=1"]);
    for (k, v) in vars {
        cmd.args(["-v", &format!("{k}={v}")]);
    }
    let out = cmd.arg("-f").arg(file).output()?;
    if !out.status.success() {
        return Err(err(format!(
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}
