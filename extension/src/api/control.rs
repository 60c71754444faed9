//! Pause, resume, trigger and retry, for the events pipeline (no argument: what these functions
//! always did) or for a pipeline named by its first argument.
//!
//! SECURITY DEFINER (owned by the superuser who created the extension), for members of
//! ecommerce_ingest_admin; `search_path` pinned to `pg_catalog, pg_temp`, tables named
//! `public.<name>` (see status.rs).

use crate::settings;
use crate::shared;
use crate::trust::{self, Schema};
use pgrx::prelude::*;

/// Pause and resume act on the worker of `ecommerce_ingest.database`; in another database they
/// would store a flag no worker reads, so they are refused there.
pub(super) fn check_worker_database() {
    if !shared::preloaded() {
        return;
    }
    let here = Spi::get_one::<String>("SELECT pg_catalog.current_database()::text")
        .ok()
        .flatten()
        .unwrap_or_default();
    let db = settings::database();
    if here != db {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the ingestion worker runs in database {db:?}, not in {here:?}: nothing here would be paused or resumed"),
            "ecommerce_ingest::api",
        )
        .set_hint(format!("Connect to database {db:?} (ecommerce_ingest.database) and call it there."))
        .report(PgLogLevel::ERROR);
    }
}

/// Refuses to go on when the extension's schema cannot be trusted (see trust.rs).
pub(super) fn require_trusted() {
    match trust::extension_schema() {
        Ok(Schema::Untrusted(why)) => pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            why,
            "ecommerce_ingest::api",
        )
        .report(PgLogLevel::ERROR),
        Ok(_) => {}
        Err(e) => error!("{e}"),
    }
}

fn set_paused(pipeline: &str, paused: bool) {
    check_worker_database();
    require_trusted();
    if pipeline != settings::EVENTS_PIPELINE {
        let found = crate::one_row::optional(Spi::get_one_with_args::<bool>(
            "UPDATE public.ingest_pipelines
                SET paused = $2, changed_at = pg_catalog.now(), changed_by = session_user
              WHERE pipeline_name = $1 RETURNING true",
            &[pipeline.into(), paused.into()],
        ))
        .unwrap_or_else(|e| error!("cannot change the paused state: {e}"));
        if found != Some(true) {
            super::no_such_pipeline(pipeline);
        }
        shared::wake_pipeline_at_commit(pipeline);
        return;
    }
    Spi::run_with_args(
        "INSERT INTO public.ingest_control (paused, changed_at, changed_by, reason)
         VALUES ($1, pg_catalog.now(), session_user, NULL)
         ON CONFLICT (singleton) DO UPDATE
            SET paused = EXCLUDED.paused, changed_at = EXCLUDED.changed_at,
                changed_by = EXCLUDED.changed_by, reason = NULL",
        &[paused.into()],
    )
    .unwrap_or_else(|e| error!("cannot change the paused state: {e}"));
    shared::wake_worker_at_commit();
}

/// Pauses ingestion before the next file; survives restarts. Returns the new state.
#[pg_extern(security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_pause() -> &'static str {
    set_paused(settings::EVENTS_PIPELINE, true);
    "paused"
}

/// Pauses one pipeline before its next file (`events`: the events pipeline); others go on.
#[pg_extern(name = "ingest_pause", security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_pause_pipeline(pipeline: &str) -> &'static str {
    set_paused(pipeline, true);
    "paused"
}

/// Resumes ingestion and starts a trigger at once. Returns the new state.
#[pg_extern(security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_resume() -> &'static str {
    set_paused(settings::EVENTS_PIPELINE, false);
    "running"
}

/// Resumes one pipeline and starts a trigger of it at once.
#[pg_extern(name = "ingest_resume", security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_resume_pipeline(pipeline: &str) -> &'static str {
    set_paused(pipeline, false);
    "running"
}

/// Runs a trigger now (scan the folder, ingest what is new).
#[pg_extern(security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_trigger() -> &'static str {
    if shared::wake_worker(true) {
        "triggered"
    } else {
        "no worker is running: see ingest_status()"
    }
}

/// Runs a trigger of one pipeline now.
#[pg_extern(name = "ingest_trigger", security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_trigger_pipeline(pipeline: &str) -> &'static str {
    require_trusted();
    if pipeline != settings::EVENTS_PIPELINE
        && Spi::get_one_with_args::<bool>(
            "SELECT true FROM public.ingest_pipelines WHERE pipeline_name = $1",
            &[pipeline.into()],
        )
        .ok()
        .flatten()
            != Some(true)
    {
        super::no_such_pipeline(pipeline);
    }
    if shared::wake_pipeline(pipeline, true) {
        "triggered"
    } else {
        "no worker is running for this pipeline: see ingest_status()"
    }
}

/// Forgets a failed, changed or errored file so the worker ingests it again from the start.
/// A file with any row committed (rows or rejects) is refused, whatever its status: ingesting
/// it again from the start would store those rows twice.
#[pg_extern(security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_retry(file_name: &str) -> String {
    retry(file_name, settings::EVENTS_PIPELINE)
}

/// ingest_retry() for a file of pipeline `pipeline`.
#[pg_extern(name = "ingest_retry", security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_retry_pipeline(file_name: &str, pipeline: &str) -> String {
    retry(file_name, pipeline)
}

fn retry(file_name: &str, pipeline: &str) -> String {
    require_trusted();
    let found = Spi::connect_mut(|c| {
        // Locked: the worker cannot commit a chunk of this file between the check and the DELETE.
        let rows = c.update(
            "SELECT status, rows_ok + rows_rejected, chunks, committed_line - 1
               FROM public.ingest_ledger WHERE file_name = $1 AND pipeline = $2 FOR UPDATE",
            None,
            &[file_name.into(), pipeline.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let r = rows.first();
        Ok(Some((
            r.get::<String>(1)?.unwrap_or_default(),
            r.get::<i64>(2)?.unwrap_or(0),
            r.get::<i32>(3)?.unwrap_or(0),
            r.get::<i64>(4)?.unwrap_or(0),
        )))
    })
    .unwrap_or_else(|e| error!("ingest_retry: {e}"));
    let Some((status, rows, chunks, last_line)) = found else {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            if pipeline == settings::EVENTS_PIPELINE {
                format!("ingest_retry: no file named {file_name:?} in ingest_files")
            } else {
                format!("ingest_retry: no file named {file_name:?} of pipeline {pipeline:?} in ingest_files")
            },
            "ecommerce_ingest::api",
        )
        .set_hint("SELECT file_name, status, error FROM ingest_files WHERE status IN ('failed', 'changed', 'error') lists the files that can be retried.")
        .report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return");
    };
    if !matches!(status.as_str(), "failed" | "changed" | "error") {
        error!(
            "ingest_retry: file {file_name:?} is {status}: only failed, changed or error files can be retried"
        );
    }
    if rows > 0 || chunks > 0 {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "ingest_retry: file {file_name:?} is {status}, but {rows} of its rows (lines up to {last_line}) are already committed; ingesting it again from the start would store them twice"
            ),
            "ecommerce_ingest::api",
        )
        .set_detail("Its committed rows stay in user_events (source_file_id = its file_id in ingest_files).")
        .set_hint("To load the rest, put only the lines after the committed ones in a file with a new name.")
        .report(PgLogLevel::ERROR);
    }
    Spi::run_with_args(
        "DELETE FROM public.ingest_ledger WHERE file_name = $1 AND pipeline = $2",
        &[file_name.into(), pipeline.into()],
    )
    .unwrap_or_else(|e| error!("ingest_retry: {e}"));
    if shared::preloaded() {
        let pipeline = pipeline.to_string();
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
            shared::reload_ledger(&pipeline);
        });
    }
    shared::wake_pipeline_at_commit(pipeline);
    format!("{file_name} will be ingested again")
}
