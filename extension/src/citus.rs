//! Citus's distributed tables, detected so that nothing is ever COPYed into a coordinator's
//! shell table, where no query would see the rows. The worker's COPY calls PostgreSQL's COPY
//! internals on a relation directly, beneath the utility hook through which Citus routes a
//! `COPY` statement to the shards; an `INSERT … SELECT` goes through the planner, which Citus
//! does route (within its distributed transaction, so the ledger row commits with the shards'
//! rows). See docs/scale.md for what was verified and what was not.

use pgrx::pg_sys;
use pgrx::spi::SpiClient;

/// Citus knows the relation: a distributed, reference or Citus-managed local table (any table
/// in `pg_dist_partition`). False when Citus is not installed.
pub fn is_citus_table(c: &SpiClient<'_>, rel: pg_sys::Oid) -> Result<bool, pgrx::spi::Error> {
    let installed = c
        .select(
            "SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL",
            None,
            &[],
        )?
        .first()
        .get_one::<bool>()?
        .unwrap_or(false);
    if !installed {
        return Ok(false);
    }
    // (Parsed only here, where the catalog table exists.)
    Ok(c.select(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                         WHERE logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) $1)",
        None,
        &[rel.into()],
    )?
    .first()
    .get_one::<bool>()?
    .unwrap_or(false))
}

/// Why the events pipeline cannot write into its table when Citus manages it.
pub const EVENTS_TABLE_DISTRIBUTED: &str = "public.user_events is a Citus table (in pg_dist_partition): the events pipeline writes with COPY's internals, which would put rows into the coordinator's shell table where no query sees them, so it ingests nothing; create a pipeline into user_events instead (ingest_create_pipeline: its rows go through the planner, which Citus routes to the shards; see docs/scale.md)";
