//! The SQL functions, grouped by job: `status` (ingest_status), `workers` (ingest_workers),
//! `control` (pause, resume, trigger, retry) and `pipelines` (create, alter, drop).

mod control;
mod pipelines;
mod status;
mod workers;

use pgrx::prelude::*;

/// Raises "no such pipeline" for `name`.
fn no_such_pipeline(name: &str) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        format!("no pipeline named {name:?}"),
        "ecommerce_ingest::api",
    )
    .set_hint("SELECT pipeline FROM ingest_status() lists them.")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
