//! Experiment 7: the backlog of experiment 1 into a `user_events` partitioned by month
//! (`sql/partition_user_events.sql`, without pg_partman), against COPY into an identical
//! partitioned table (the same partitions, the same BRIN index), in the same run, in rounds.

use crate::experiments::{Env, PausedBacklog, Sizes, Throughput, BASE_CONF};
use crate::util::{log, psql_file, R};

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
    let mut b = PausedBacklog::start(env, z, "partitioned", &BASE_CONF)?;
    psql_file(
        b.cluster.port(),
        &env.repo.join("sql/partition_user_events.sql"),
        &[("granularity", "month"), ("start", "2024-04-01")],
    )?;
    let r = b.run(
        z.backlog_rounds.clamp(1, 3),
        PARTITIONED_COPY_TARGET,
        "partitioned",
    )?;
    b.finish(env);
    Ok(r)
}
