//! The SQL functions: status, pause, resume, trigger, retry. Thin: SQL in, shared memory out.

use crate::settings;
use crate::shared::{self, WorkerState, STATUS};

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

fn ts(t: pg_sys::TimestampTz) -> Option<TimestampWithTimeZone> {
    (t != 0)
        .then(|| TimestampWithTimeZone::try_from(t).ok())
        .flatten()
}

/// A duration in PostgreSQL's own notation, as SHOW prints it: `10s`, `500ms`, `1h`, `2min`.
fn interval_text(ms: i32) -> String {
    match ms {
        0 => "0".into(),
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}min", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

// pgrx needs the column list spelled out in the signature (a type alias hides the names).
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile)]
#[search_path(public, pg_catalog, pg_temp)]
fn ingest_status() -> TableIterator<
    'static,
    (
        name!(state, String),
        name!(paused, bool),
        name!(worker_pid, Option<i32>),
        name!(database, String),
        name!(input_dir, String),
        name!(trigger_interval, String),
        name!(files_ingested, i64),
        name!(files_failed, i64),
        name!(files_pending, Option<i64>),
        name!(rows_ingested, i64),
        name!(rows_rejected, i64),
        name!(last_trigger_at, Option<TimestampWithTimeZone>),
        name!(last_trigger_ms, Option<f64>),
        name!(last_batch_ms, Option<f64>),
        name!(last_batch_rows, Option<i64>),
        name!(rows_per_second, Option<f64>),
        name!(lag_seconds, Option<f64>),
        name!(last_error, Option<String>),
        name!(last_error_at, Option<TimestampWithTimeZone>),
        name!(detail, String),
    ),
> {
    let (files_ok, files_failed, rows_ok, rows_rej, paused) = Spi::connect(|c| {
        let row = c
            .select(
                "SELECT (SELECT count(*) FILTER (WHERE status = 'done') FROM ingest_ledger),
                        (SELECT count(*) FILTER (WHERE status IN ('failed', 'changed')) FROM ingest_ledger),
                        (SELECT coalesce(sum(rows_ok), 0)::bigint FROM ingest_ledger),
                        (SELECT coalesce(sum(rows_rejected), 0)::bigint FROM ingest_ledger),
                        (SELECT coalesce((SELECT paused FROM ingest_control), false))",
                None,
                &[],
            )?
            .first();
        Ok::<_, pgrx::spi::Error>((
            row.get::<i64>(1)?.unwrap_or(0),
            row.get::<i64>(2)?.unwrap_or(0),
            row.get::<i64>(3)?.unwrap_or(0),
            row.get::<i64>(4)?.unwrap_or(0),
            row.get::<bool>(5)?.unwrap_or(false),
        ))
    })
    .unwrap_or_else(|e| error!("ingest_status: {e}"));

    let database = settings::database();
    let input_dir = settings::input_dir_display();
    let interval = interval_text(settings::TRIGGER_INTERVAL_MS.get());
    let now = unsafe { pg_sys::GetCurrentTimestamp() };

    let row = if !shared::preloaded() {
        (
            WorkerState::Stopped.name().into(),
            paused,
            None,
            database,
            input_dir,
            interval,
            files_ok,
            files_failed,
            None,
            rows_ok,
            rows_rej,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            "no worker runs: ecommerce_ingest is not in shared_preload_libraries; add it there and restart the server".into(),
        )
    } else {
        let s = *STATUS.share();
        let state = match s.state {
            WorkerState::Running | WorkerState::Paused if paused => WorkerState::Paused,
            WorkerState::Paused => WorkerState::Running,
            other => other,
        };
        let detail = match state {
            WorkerState::Stopped => format!(
                "the worker is not running (it restarts within 5 s of a crash; the server log says why); it connects to database {database:?}"
            ),
            WorkerState::WaitingForExtension => format!(
                "the worker waits for CREATE EXTENSION ecommerce_ingest in database {database:?}"
            ),
            WorkerState::WaitingForDatabase => format!(
                "database {database:?} (ecommerce_ingest.database) does not exist: the worker starts once it is created (checked every 5 s)"
            ),
            WorkerState::Paused => "paused by ingest_pause(); ingest_resume() continues".into(),
            WorkerState::Running => "ingesting files as they arrive".into(),
            WorkerState::Error => format!(
                "nothing can be ingested until this is fixed: {}",
                s.error().unwrap_or_default()
            ),
        };
        let lag = (s.oldest_pending_at != 0 && s.pending_files > 0)
            .then(|| ((now - s.oldest_pending_at) as f64 / 1e6).max(0.0));
        (
            state.name().into(),
            paused,
            (s.pid != 0).then_some(s.pid),
            database,
            input_dir,
            interval,
            files_ok,
            files_failed,
            (s.pid != 0).then_some(s.pending_files),
            rows_ok,
            rows_rej,
            ts(s.last_trigger_at),
            (s.last_trigger_at != 0).then_some(s.last_trigger_ms),
            (s.last_trigger_at != 0).then_some(s.last_batch_ms),
            (s.last_trigger_at != 0).then_some(s.last_batch_rows),
            (s.last_trigger_at != 0).then_some(s.rows_per_second),
            lag,
            s.error(),
            ts(s.last_error_at),
            detail,
        )
    };
    TableIterator::once(row)
}

fn set_paused(paused: bool) {
    Spi::run_with_args(
        "INSERT INTO ingest_control (paused, changed_at, changed_by) VALUES ($1, now(), session_user)
         ON CONFLICT (singleton) DO UPDATE
            SET paused = EXCLUDED.paused, changed_at = EXCLUDED.changed_at, changed_by = EXCLUDED.changed_by",
        &[paused.into()],
    )
    .unwrap_or_else(|e| error!("cannot change the paused state: {e}"));
    shared::wake_worker_at_commit();
}

/// Pauses ingestion before the next file; survives restarts. Returns the new state.
#[pg_extern(security_definer, volatile)]
#[search_path(public, pg_catalog, pg_temp)]
fn ingest_pause() -> &'static str {
    set_paused(true);
    "paused"
}

/// Resumes ingestion and starts a trigger at once. Returns the new state.
#[pg_extern(security_definer, volatile)]
#[search_path(public, pg_catalog, pg_temp)]
fn ingest_resume() -> &'static str {
    set_paused(false);
    "running"
}

/// Runs a trigger now (scan the folder, ingest what is new).
#[pg_extern(security_definer, volatile)]
#[search_path(public, pg_catalog, pg_temp)]
fn ingest_trigger() -> &'static str {
    if shared::wake_worker(true) {
        "triggered"
    } else {
        "no worker is running: see ingest_status()"
    }
}

/// Forgets a failed, changed or errored file so the worker ingests it again from the start.
/// Files with rows already committed (done, ingesting) are refused: that would duplicate rows.
#[pg_extern(security_definer, volatile)]
#[search_path(public, pg_catalog, pg_temp)]
fn ingest_retry(file_name: &str) -> String {
    let status = Spi::get_one_with_args::<String>(
        "SELECT status FROM ingest_ledger WHERE file_name = $1",
        &[file_name.into()],
    )
    .unwrap_or_else(|e| error!("ingest_retry: {e}"));
    let Some(status) = status else {
        error!("ingest_retry: no file named {file_name:?} in ingest_files");
    };
    let rows = Spi::get_one_with_args::<i64>(
        "SELECT rows_ok + rows_rejected FROM ingest_ledger WHERE file_name = $1",
        &[file_name.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(0);
    if !matches!(status.as_str(), "failed" | "changed" | "error")
        || (status == "changed" && rows > 0)
    {
        error!(
            "ingest_retry: file {file_name:?} is {status} with {rows} rows committed; retrying it would ingest them twice. Rename the file to ingest its content as a new file."
        );
    }
    Spi::run_with_args(
        "DELETE FROM ingest_ledger WHERE file_name = $1",
        &[file_name.into()],
    )
    .unwrap_or_else(|e| error!("ingest_retry: {e}"));
    if shared::preloaded() {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, || {
            STATUS.exclusive().ledger_generation += 1;
        });
    }
    shared::wake_worker_at_commit();
    format!("{file_name} will be ingested again")
}
