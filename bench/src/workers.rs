//! Experiment 9: the backlog of experiment 1 with 1, 2 and 4 workers
//! (`ecommerce_ingest.workers`), each on a fresh cluster, against COPY of the same files by one
//! session in the same run (median of rounds). The speed-up over one worker is what several
//! workers buy on this machine: with 2 cores, the worker's process and its reading thread
//! already keep both busy, so more workers mostly share the same CPUs.

use crate::experiments::{Env, PausedBacklog, Sizes, Throughput, BASE_CONF, PLAIN_COPY_TARGET};
use crate::util::{log, R};
use serde::{Deserialize, Serialize};

/// The backlog with one number of workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithWorkers {
    pub workers: u32,
    pub throughput: Throughput,
    /// rows/s ÷ rows/s with one worker (1.0 for one worker).
    pub speedup: f64,
}

/// How many workers are measured.
pub const COUNTS: [u32; 3] = [1, 2, 4];

pub fn workers(env: &Env, z: &Sizes) -> R<Vec<WithWorkers>> {
    log(&format!(
        "== 9. backlog with 1, 2 and 4 workers: {} files x {} rows",
        z.backlog_files, z.backlog_rows_per_file
    ));
    let mut out: Vec<WithWorkers> = Vec::new();
    for n in COUNTS {
        let workers = format!("ecommerce_ingest.workers = {n}");
        let mut conf: Vec<&str> = BASE_CONF.to_vec();
        conf.push(&workers);
        let mut b = PausedBacklog::start(env, z, &format!("workers{n}"), &conf)?;
        let running: i64 = b
            .cluster
            .client()
            .query_one(
                "SELECT count(*) FROM ingest_workers() WHERE pipeline = 'events' AND pid IS NOT NULL",
                &[],
            )?
            .get(0);
        log(&format!("{n} worker(s) configured, {running} running"));
        let r = b.run(
            z.backlog_rounds.clamp(1, 3),
            PLAIN_COPY_TARGET,
            &format!("{n} workers"),
        )?;
        b.finish(env);
        let one = out.first().map_or(r.worker_rows_per_second, |o| {
            o.throughput.worker_rows_per_second
        });
        log(&format!(
            "{n} workers: {:.0} rows/s, COPY {:.0} rows/s: {:.2}x COPY, {:.2}x one worker",
            r.worker_rows_per_second,
            r.copy_rows_per_second,
            r.ratio,
            r.worker_rows_per_second / one
        ));
        out.push(WithWorkers {
            workers: n,
            speedup: r.worker_rows_per_second / one,
            throughput: r,
        });
    }
    Ok(out)
}
