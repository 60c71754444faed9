//! Experiment 7: the backlog of experiment 1 into a `user_events` partitioned by month
//! (`sql/partition_user_events.sql`, without pg_partman), against COPY into an identical
//! partitioned table (the same partitions, the same BRIN index), in the same run, in rounds.

use crate::experiments::{
    move_in, pause, worker_vs_copy, Env, Round, Sizes, Throughput, BASE_CONF,
};
use crate::util::{err, log, stage, sync, R};
use std::process::Command;
use std::time::Duration;

/// `copy_target`: a partitioned twin of the partitioned `user_events`, partition for partition.
const PARTITIONED_COPY_TARGET: &str = "
CREATE TABLE copy_target (LIKE user_events INCLUDING ALL) PARTITION BY RANGE (event_timestamp);
DO $twin$
DECLARE p record;
BEGIN
    FOR p IN SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'public.user_events'::regclass LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF copy_target %s', 'copy_' || p.relname, p.bound);
    END LOOP;
END
$twin$;";

pub fn partitioned(env: &Env, z: &Sizes) -> R<Throughput> {
    log(&format!(
        "== 7. backlog into a partitioned user_events: {} files x {} rows",
        z.backlog_files, z.backlog_rows_per_file
    ));
    let dir = env.fresh("partitioned")?;
    let mut cluster = env.cluster(&dir, &BASE_CONF)?;
    let input = cluster.input_dir().to_path_buf();
    let port = cluster.port();
    let c = cluster.client();
    pause(c)?;
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-p", &port.to_string(), "-v", "ON_ERROR_STOP=1"])
        .args(["-v", "granularity=month", "-v", "start=2024-04-01"])
        .arg("-f")
        .arg(env.repo.join("sql/partition_user_events.sql"))
        .output()?;
    if !out.status.success() {
        return Err(err(format!(
            "sql/partition_user_events.sql: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let (staged, rows) = stage(
        &env.repo,
        &dir.join("staging"),
        z.backlog_files,
        z.backlog_rows_per_file,
        2,
    )?;
    let bytes = staged
        .iter()
        .map(|f| f.path.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    move_in(&staged, &input)?;
    sync();
    let mut names: Vec<String> = staged.iter().map(|f| f.name.clone()).collect();
    let mut runs: Vec<Throughput> = Vec::new();
    for round in 0..z.backlog_rounds.clamp(1, 3) {
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
            &input,
            &names,
            rows,
            bytes,
            Duration::from_secs(900),
            || {},
            round,
            PARTITIONED_COPY_TARGET,
        )?;
        log(&format!(
            "partitioned round {}: worker {:.2} s, COPY {:.2} s: {:.2}x",
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
    drop(cluster);
    env.clean(&dir);
    Ok(r)
}
