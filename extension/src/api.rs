//! The SQL functions: status, pause, resume, trigger, retry. Thin: SQL in, shared memory out.
//!
//! They are SECURITY DEFINER (owned by the superuser who created the extension) so that the
//! monitor and admin roles need no privilege on the tables. Each pins `search_path` to
//! `pg_catalog, pg_temp` and names the extension's tables as `public.<name>`: nothing a
//! database owner creates in a writable schema (functions, operators, aggregates, tables) can
//! be resolved by them.

use crate::settings;
use crate::shared::{self, WorkerState, STATUS};
use crate::trust::{self, Schema};

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
#[search_path(pg_catalog, pg_temp)]
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
    // The schema is checked before any table is read through it (see trust.rs); the tables
    // are read with a short lock_timeout, so that a lock on them (VACUUM FULL, ALTER TABLE)
    // makes the status say so instead of hanging.
    let untrusted = match trust::extension_schema() {
        Ok(Schema::Untrusted(why)) => Some(why),
        Ok(_) => None,
        Err(e) => error!("ingest_status: {e}"),
    };
    let counts = match &untrusted {
        Some(_) => Err(None),
        None => read_counts().map_err(Some),
    };
    let unreadable = counts.as_ref().err().cloned().flatten();
    let Counts {
        files_ok,
        files_failed,
        rows_ok,
        rows_rej,
        paused,
        pause_reason,
    } = counts.unwrap_or_default();
    let database = settings::database();
    let input_dir = settings::input_dir_display();
    let interval = interval_text(settings::TRIGGER_INTERVAL_MS.get());
    // SAFETY: reads the clock; no PostgreSQL state is touched.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };

    let row = if let Some(why) = untrusted {
        (
            WorkerState::Error.name().into(),
            false,
            None,
            database,
            input_dir,
            interval,
            0,
            0,
            None,
            0,
            0,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            format!("nothing is read or written: {why}"),
        )
    } else if !shared::preloaded() {
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
        // A worker blocked on a lock cannot say so itself: ask the lock manager.
        let blocked = (s.pid != 0)
            .then(|| lock_wait(s.pid))
            .flatten()
            .or_else(|| {
                s.blocked.then(|| {
                    "a chunk gave up waiting for a lock held by another session and is retried every ecommerce_ingest.lock_timeout".to_string()
                })
            })
            .or_else(|| {
                unreadable.as_ref().map(|e| {
                    format!("the extension's tables are locked by another session ({e}); the counters are not known meanwhile")
                })
            });
        let state = match s.state {
            WorkerState::Running | WorkerState::Paused if paused => WorkerState::Paused,
            WorkerState::Paused => WorkerState::Running,
            other => other,
        };
        let state = match (&blocked, state) {
            (Some(_), WorkerState::Running | WorkerState::Paused | WorkerState::Degraded) => {
                WorkerState::WaitingForLock
            }
            _ => state,
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
            WorkerState::WaitingForUpdate => s.detail().unwrap_or_else(|| {
                "the extension's SQL objects are older than the library: run ALTER EXTENSION ecommerce_ingest UPDATE".into()
            }),
            WorkerState::Paused => match pause_reason {
                Some(r) => format!("paused by the worker: {r}"),
                None => "paused by ingest_pause(); ingest_resume() continues".into(),
            },
            WorkerState::Running => "ingesting files as they arrive".into(),
            WorkerState::Degraded => format!(
                "files are ingested, but something needs attention: {}",
                s.detail().unwrap_or_default()
            ),
            WorkerState::WaitingForLock => format!(
                "{}; files wait until it is released (files_pending and lag_seconds show the folder)",
                blocked.clone().unwrap_or_default()
            ),
            WorkerState::Error => format!(
                "nothing can be ingested until this is fixed: {}",
                s.detail().or_else(|| s.error()).unwrap_or_default()
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

/// The counters of ingest_status() and the paused flag, from the extension's tables.
#[derive(Default)]
struct Counts {
    files_ok: i64,
    files_failed: i64,
    rows_ok: i64,
    rows_rej: i64,
    paused: bool,
    pause_reason: Option<String>,
}

/// Reads the counters, waiting at most a second for a lock on the tables (`Err`: why not).
fn read_counts() -> Result<Counts, String> {
    let nest = crate::guc::begin();
    crate::guc::set(
        "lock_timeout",
        "1s",
        pg_sys::GucContext::PGC_USERSET,
        pg_sys::GucAction::GUC_ACTION_SAVE,
    );
    let r = crate::worker::txn::subtransaction(|| {
        Spi::connect(|c| {
            let row = c
                .select(
                    "SELECT (SELECT count(*) FILTER (WHERE status = 'done') FROM public.ingest_ledger),
                            (SELECT count(*) FILTER (WHERE status IN ('failed', 'changed')) FROM public.ingest_ledger),
                            (SELECT coalesce(sum(rows_ok), 0)::bigint FROM public.ingest_ledger),
                            (SELECT coalesce(sum(rows_rejected), 0)::bigint FROM public.ingest_ledger),
                            (SELECT coalesce((SELECT paused FROM public.ingest_control), false)),
                            -- (read by name through jsonb: the column is missing until
                            -- ALTER EXTENSION ... UPDATE from 0.1.0, and status must still answer)
                            (SELECT pg_catalog.to_jsonb(c) ->> 'reason' FROM public.ingest_control c WHERE paused)",
                    None,
                    &[],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>(Counts {
                files_ok: row.get::<i64>(1)?.unwrap_or(0),
                files_failed: row.get::<i64>(2)?.unwrap_or(0),
                rows_ok: row.get::<i64>(3)?.unwrap_or(0),
                rows_rej: row.get::<i64>(4)?.unwrap_or(0),
                paused: row.get::<bool>(5)?.unwrap_or(false),
                pause_reason: row.get::<String>(6)?,
            })
        })
        .unwrap_or_else(|e| error!("{e}"))
    });
    crate::guc::end(nest);
    r.map_err(|e| e.to_string())
}

/// What the worker waits for when it waits on a lock: the lock and who holds it (pids and
/// roles; not their queries, which a monitor role may not see).
fn lock_wait(pid: i32) -> Option<String> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT l.mode::text,
                    coalesce(l.relation::pg_catalog.regclass::text, l.locktype::text),
                    (SELECT string_agg(b.pid::text || ' (role ' || coalesce(b.usename::text, '?') || ')', ', ' ORDER BY b.pid)
                       FROM pg_catalog.pg_stat_activity b
                      WHERE b.pid = ANY (pg_catalog.pg_blocking_pids($1)))
               FROM pg_catalog.pg_locks l
              WHERE l.pid = $1 AND NOT l.granted
              LIMIT 1",
            None,
            &[pid.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let r = rows.first();
        let mode = r.get::<String>(1)?.unwrap_or_default();
        let what = r.get::<String>(2)?.unwrap_or_default();
        let holders = r.get::<String>(3)?;
        Ok(Some(format!(
            "waiting for a {mode} on {what}, held by {}",
            holders.unwrap_or_else(|| "another session".into())
        )))
    })
    .unwrap_or(None)
}

/// Pause and resume act on the worker of `ecommerce_ingest.database`; in another database they
/// would store a flag no worker reads, so they are refused there.
fn check_worker_database() {
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
fn require_trusted() {
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

fn set_paused(paused: bool) {
    check_worker_database();
    require_trusted();
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
    set_paused(true);
    "paused"
}

/// Resumes ingestion and starts a trigger at once. Returns the new state.
#[pg_extern(security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_resume() -> &'static str {
    set_paused(false);
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

/// Forgets a failed, changed or errored file so the worker ingests it again from the start.
/// A file with any row committed (rows or rejects) is refused, whatever its status: ingesting
/// it again from the start would store those rows twice.
#[pg_extern(security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_retry(file_name: &str) -> String {
    require_trusted();
    let found = Spi::connect_mut(|c| {
        // Locked: the worker cannot commit a chunk of this file between the check and the DELETE.
        let rows = c.update(
            "SELECT status, rows_ok + rows_rejected, chunks, committed_line - 1
               FROM public.ingest_ledger WHERE file_name = $1 FOR UPDATE",
            None,
            &[file_name.into()],
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
            format!("ingest_retry: no file named {file_name:?} in ingest_files"),
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
        "DELETE FROM public.ingest_ledger WHERE file_name = $1",
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
