//! ingest_status(): one row per pipeline, from the ledger's counters and the workers' shared
//! memory. Thin: SQL in, shared memory out.
//!
//! It is SECURITY DEFINER (owned by the superuser who created the extension) so that the
//! monitor and admin roles need no privilege on the tables. Each pins `search_path` to
//! `pg_catalog, pg_temp` and names the extension's tables as `public.<name>`: nothing a
//! database owner creates in a writable schema (functions, operators, aggregates, tables) can
//! be resolved by them.

use crate::settings;
use crate::shared::{self, WorkerState};
use crate::trust::{self, Schema};

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

pub(super) fn ts(t: pg_sys::TimestampTz) -> Option<TimestampWithTimeZone> {
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

/// One row of ingest_status(): one pipeline.
struct StatusRow {
    pipeline: String,
    target: String,
    format: String,
    state: String,
    paused: bool,
    worker_pid: Option<i32>,
    database: String,
    input_dir: String,
    trigger_interval: String,
    files_ingested: i64,
    files_failed: i64,
    files_pending: Option<i64>,
    rows_ingested: i64,
    rows_rejected: i64,
    last_trigger_at: Option<TimestampWithTimeZone>,
    last_trigger_ms: Option<f64>,
    last_batch_ms: Option<f64>,
    last_batch_rows: Option<i64>,
    rows_per_second: Option<f64>,
    lag_seconds: Option<f64>,
    last_error: Option<String>,
    last_error_at: Option<TimestampWithTimeZone>,
    detail: String,
}

/// The columns of ingest_status() as 0.2.0 declared them (the events pipeline only).
type StatusV2 = (
    String,
    bool,
    Option<i32>,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    Option<TimestampWithTimeZone>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
    Option<f64>,
    Option<f64>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    String,
);

/// How long a pipeline's further worker may take to start before the status says it is missing
/// (its restart after a crash takes 5 s).
const MISSING_AFTER_US: i64 = 10_000_000;

/// ingest_status() as 0.2.0's SQL declares it: kept in the library (and not in the SQL) so that
/// a server running this library with 0.2.0's SQL objects (before ALTER EXTENSION … UPDATE)
/// still answers, about the events pipeline.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, sql = false)]
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
    let r = status_rows(true).swap_remove(0);
    let row: StatusV2 = (
        r.state,
        r.paused,
        r.worker_pid,
        r.database,
        r.input_dir,
        r.trigger_interval,
        r.files_ingested,
        r.files_failed,
        r.files_pending,
        r.rows_ingested,
        r.rows_rejected,
        r.last_trigger_at,
        r.last_trigger_ms,
        r.last_batch_ms,
        r.last_batch_rows,
        r.rows_per_second,
        r.lag_seconds,
        r.last_error,
        r.last_error_at,
        r.detail,
    );
    TableIterator::once(row)
}

/// One row per pipeline: the events pipeline first, then the others by name.
// pgrx needs the column list spelled out in the signature (a type alias hides the names).
#[allow(clippy::type_complexity)]
#[pg_extern(name = "ingest_status", security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_status_by_pipeline() -> TableIterator<
    'static,
    (
        name!(pipeline, String),
        name!(target, String),
        name!(format, String),
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
    TableIterator::new(status_rows(false).into_iter().map(|r| {
        (
            r.pipeline,
            r.target,
            r.format,
            r.state,
            r.paused,
            r.worker_pid,
            r.database,
            r.input_dir,
            r.trigger_interval,
            r.files_ingested,
            r.files_failed,
            r.files_pending,
            r.rows_ingested,
            r.rows_rejected,
            r.last_trigger_at,
            r.last_trigger_ms,
            r.last_batch_ms,
            r.last_batch_rows,
            r.rows_per_second,
            r.lag_seconds,
            r.last_error,
            r.last_error_at,
            r.detail,
        )
    }))
}

/// What ingest_pipelines says about a pipeline.
#[derive(Default)]
struct Listed {
    name: String,
    target: String,
    format: String,
    input_dir: String,
    paused: bool,
    trigger_interval_ms: Option<i64>,
}

/// The status of every pipeline (`events_only`: the events pipeline's row only, read the way
/// 0.2.0's tables allow).
fn status_rows(events_only: bool) -> Vec<StatusRow> {
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
        None => read_counts(events_only).map_err(Some),
    };
    let unreadable = counts.as_ref().err().cloned().flatten();
    let Read {
        counts: all,
        pause_reason,
        listed,
    } = counts.unwrap_or_default();
    let database = settings::database();
    // SAFETY: reads the clock; no PostgreSQL state is touched.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let count = |p: &str| {
        all.iter()
            .find(|c| c.pipeline == p)
            .cloned()
            .unwrap_or_default()
    };

    let ev = count(settings::EVENTS_PIPELINE);
    let mut rows = vec![row_for(
        Pipe {
            name: settings::EVENTS_PIPELINE.into(),
            target: "public.user_events".into(),
            format: "csv".into(),
            input_dir: settings::input_dir_display(),
            interval_ms: settings::TRIGGER_INTERVAL_MS.get() as i64,
            paused: ev.paused,
            pause_reason,
            counts: ev,
            slots: if shared::preloaded() {
                shared::SLOTS.share().of(settings::EVENTS_PIPELINE)
            } else {
                Vec::new()
            },
        },
        &untrusted,
        &unreadable,
        &database,
        now,
    )];
    if events_only {
        return rows;
    }
    let slots = shared::preloaded().then(|| *shared::SLOTS.share());
    for l in listed {
        let c = count(&l.name);
        let slots = slots.as_ref().map(|s| s.of(&l.name)).unwrap_or_default();
        rows.push(row_for(
            Pipe {
                interval_ms: l
                    .trigger_interval_ms
                    .unwrap_or(settings::TRIGGER_INTERVAL_MS.get() as i64),
                name: l.name,
                target: l.target,
                format: l.format,
                input_dir: l.input_dir,
                paused: l.paused,
                pause_reason: None,
                counts: c,
                slots,
            },
            &untrusted,
            &unreadable,
            &database,
            now,
        ));
    }
    rows
}

/// One pipeline, as the tables say.
struct Pipe {
    name: String,
    target: String,
    format: String,
    input_dir: String,
    interval_ms: i64,
    paused: bool,
    pause_reason: Option<String>,
    counts: Counts,
    /// Its workers' slots in shared memory (those handed out), by worker index.
    slots: Vec<usize>,
}

fn row_for(
    p: Pipe,
    untrusted: &Option<String>,
    unreadable: &Option<String>,
    database: &str,
    now: pg_sys::TimestampTz,
) -> StatusRow {
    let Pipe {
        name,
        target,
        format,
        input_dir,
        interval_ms,
        paused,
        pause_reason,
        counts,
        slots,
    } = p;
    let interval = interval_text(interval_ms.clamp(0, i32::MAX as i64) as i32);
    let mut row = StatusRow {
        pipeline: name,
        target,
        format,
        state: String::new(),
        paused,
        worker_pid: None,
        database: database.to_string(),
        input_dir,
        trigger_interval: interval,
        files_ingested: counts.files_ok,
        files_failed: counts.files_failed,
        files_pending: None,
        rows_ingested: counts.rows_ok,
        rows_rejected: counts.rows_rej,
        last_trigger_at: None,
        last_trigger_ms: None,
        last_batch_ms: None,
        last_batch_rows: None,
        rows_per_second: None,
        lag_seconds: None,
        last_error: None,
        last_error_at: None,
        detail: String::new(),
    };
    if let Some(why) = untrusted {
        row.state = WorkerState::Error.name().into();
        row.paused = false;
        row.files_ingested = 0;
        row.files_failed = 0;
        row.rows_ingested = 0;
        row.rows_rejected = 0;
        row.detail = format!("nothing is read or written: {why}");
        return row;
    }
    if !shared::preloaded() {
        row.state = WorkerState::Stopped.name().into();
        row.detail = "no worker runs: ecommerce_ingest is not in shared_preload_libraries; add it there and restart the server".into();
        return row;
    }
    let (all, missing): (Vec<shared::Status>, Vec<u32>) = {
        let shm = shared::SLOTS.share();
        let all = slots.iter().map(|&i| shm.slots[i].status).collect();
        // Workers after the first that were to start some time ago and do not run: the files
        // that hash to them wait.
        let missing = slots
            .iter()
            .map(|&i| &shm.slots[i])
            .filter(|w| {
                w.index > 0
                    && w.status.pid == 0
                    && w.claimed_at != 0
                    && now - w.claimed_at > MISSING_AFTER_US
            })
            .map(|w| w.index + 1)
            .collect();
        (all, missing)
    };
    let mut s = shared::combined(&all);
    if !missing.is_empty() && matches!(s.state, WorkerState::Running | WorkerState::Paused) {
        let list: Vec<String> = missing.iter().map(u32::to_string).collect();
        let why = format!(
            "worker(s) {} of this pipeline are not running (the log says why: max_worker_processes reached?); the files whose names hash to them wait until they start",
            list.join(", ")
        );
        s.set_state(WorkerState::Degraded, Some(&why));
    }
    // A worker blocked on a lock cannot say so itself: ask the lock manager.
    let blocked = all
        .iter()
        .filter(|w| w.pid != 0)
        .find_map(|w| lock_wait(w.pid))
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
    let events = row.pipeline == settings::EVENTS_PIPELINE;
    row.detail = match state {
        WorkerState::Stopped if events => format!(
            "the worker is not running (it restarts within 5 s of a crash; the server log says why); it connects to database {database:?}"
        ),
        WorkerState::Stopped => format!(
            "the pipeline's worker is not running: the events pipeline's worker (database {database:?}) starts it within a few seconds, and again 5 s after it stops"
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
        WorkerState::Paused => match &pause_reason {
            Some(r) => format!("paused by the worker: {r}"),
            None if events => "paused by ingest_pause(); ingest_resume() continues".into(),
            None => format!(
                "paused by ingest_pause({0:?}); ingest_resume({0:?}) continues",
                row.pipeline
            ),
        },
        WorkerState::Running => "ingesting files as they arrive".into(),
        WorkerState::Standby => s.detail().unwrap_or_else(|| {
            "the server is a hot standby: nothing is ingested until it is promoted".into()
        }),
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
    row.state = state.name().into();
    row.worker_pid = (s.pid != 0).then_some(s.pid);
    row.files_pending = (s.pid != 0).then_some(s.pending_files);
    let triggered = s.last_trigger_at != 0;
    row.last_trigger_at = ts(s.last_trigger_at);
    row.last_trigger_ms = triggered.then_some(s.last_trigger_ms);
    row.last_batch_ms = triggered.then_some(s.last_batch_ms);
    row.last_batch_rows = triggered.then_some(s.last_batch_rows);
    row.rows_per_second = triggered.then_some(s.rows_per_second);
    row.lag_seconds = (s.oldest_pending_at != 0 && s.pending_files > 0)
        .then(|| ((now - s.oldest_pending_at) as f64 / 1e6).max(0.0));
    row.last_error = s.error();
    row.last_error_at = ts(s.last_error_at);
    row
}

/// What status reads from the tables.
#[derive(Default)]
struct Read {
    counts: Vec<Counts>,
    /// Why the worker paused the events pipeline itself, if it did.
    pause_reason: Option<String>,
    /// The pipelines of ingest_pipelines.
    listed: Vec<Listed>,
}

/// One pipeline's counters from the ledger, and its paused flag.
#[derive(Default, Clone)]
struct Counts {
    pipeline: String,
    files_ok: i64,
    files_failed: i64,
    rows_ok: i64,
    rows_rej: i64,
    paused: bool,
}

/// Every pipeline's counters (ingest_counters, summed over its shards), the events pipeline's
/// pause reason and the other pipelines, waiting at most a second for a lock on the tables
/// (`Err`: why not).
/// `events_only`: the tables as 0.2.0 has them (no pipeline column, no ingest_pipelines, no
/// counters: the ledger is summed).
fn read_counts(events_only: bool) -> Result<Read, String> {
    let nest = crate::guc::begin();
    crate::guc::set(
        "lock_timeout",
        "1s",
        pg_sys::GucContext::PGC_USERSET,
        pg_sys::GucAction::GUC_ACTION_SAVE,
    );
    let r = crate::worker::txn::subtransaction(|| {
        Spi::connect(|c| {
            let events_paused = c
                .select(
                    "SELECT coalesce((SELECT paused FROM public.ingest_control), false),
                            (SELECT pg_catalog.to_jsonb(c) ->> 'reason' FROM public.ingest_control c WHERE paused)",
                    None,
                    &[],
                )?
                .first()
                .get_two::<bool, String>()?;
            let by_pipeline = if events_only {
                "SELECT 'events', count(*) FILTER (WHERE status = 'done'),
                        count(*) FILTER (WHERE status IN ('failed', 'changed')),
                        coalesce(sum(rows_ok), 0)::bigint, coalesce(sum(rows_rejected), 0)::bigint
                   FROM public.ingest_ledger"
            } else {
                // A few rows per pipeline (its shards), kept by triggers on the ledger: O(1) in
                // its size. (0.3.0's table, one row per pipeline, reads the same way.)
                "SELECT pipeline, pg_catalog.sum(files_done)::pg_catalog.int8,
                        pg_catalog.sum(files_failed)::pg_catalog.int8,
                        pg_catalog.sum(rows_ok)::pg_catalog.int8,
                        pg_catalog.sum(rows_rejected)::pg_catalog.int8
                   FROM public.ingest_counters GROUP BY pipeline"
            };
            let mut counts = Vec::new();
            for r in c.select(by_pipeline, None, &[])? {
                counts.push(Counts {
                    pipeline: r.get::<String>(1)?.unwrap_or_default(),
                    files_ok: r.get::<i64>(2)?.unwrap_or(0),
                    files_failed: r.get::<i64>(3)?.unwrap_or(0),
                    rows_ok: r.get::<i64>(4)?.unwrap_or(0),
                    rows_rej: r.get::<i64>(5)?.unwrap_or(0),
                    paused: false,
                });
            }
            if let Some(ev) = counts.iter_mut().find(|c| c.pipeline == settings::EVENTS_PIPELINE) {
                ev.paused = events_paused.0.unwrap_or(false);
            } else {
                counts.push(Counts {
                    pipeline: settings::EVENTS_PIPELINE.into(),
                    paused: events_paused.0.unwrap_or(false),
                    ..Counts::default()
                });
            }
            let mut listed = Vec::new();
            if !events_only {
                for r in c.select(
                    "SELECT pipeline_name, target::pg_catalog.text, format, input_dir, paused,
                            CASE WHEN pg_catalog.jsonb_typeof(options -> 'trigger_interval') OPERATOR(pg_catalog.=) 'number'
                                 THEN (options ->> 'trigger_interval')::pg_catalog.numeric::pg_catalog.int8 END
                       FROM public.ingest_pipelines ORDER BY pipeline_name",
                    None,
                    &[],
                )? {
                    listed.push(Listed {
                        name: r.get::<String>(1)?.unwrap_or_default(),
                        target: r.get::<String>(2)?.unwrap_or_default(),
                        format: r.get::<String>(3)?.unwrap_or_default(),
                        input_dir: r.get::<String>(4)?.unwrap_or_default(),
                        paused: r.get::<bool>(5)?.unwrap_or(false),
                        trigger_interval_ms: r.get::<i64>(6)?,
                    });
                }
            }
            Ok::<_, pgrx::spi::Error>(Read {
                counts,
                pause_reason: events_paused.1,
                listed,
            })
        })
        .unwrap_or_else(|e| error!("{e}"))
    });
    crate::guc::end(nest);
    r.map_err(|e| e.to_string())
}

/// What the worker waits for when it waits on a lock: the lock and who holds it (pids and
/// roles; not their queries, which a monitor role may not see).
pub(super) fn lock_wait(pid: i32) -> Option<String> {
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
