//! ingest_workers(): one row per running ingestion worker (a pipeline with `workers` > 1 has
//! several), from shared memory only. ingest_status() sums them per pipeline.

use super::status::{lock_wait, ts};
use crate::shared::{self, WorkerState};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

/// Every worker that has a slot in shared memory, by pipeline (events first) and worker number.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_workers() -> TableIterator<
    'static,
    (
        name!(pipeline, String),
        name!(worker, i32),
        name!(pid, Option<i32>),
        name!(state, String),
        name!(files_pending, Option<i64>),
        name!(last_trigger_at, Option<TimestampWithTimeZone>),
        name!(last_batch_rows, Option<i64>),
        name!(rows_per_second, Option<f64>),
        name!(last_error, Option<String>),
        name!(last_error_at, Option<TimestampWithTimeZone>),
        name!(detail, String),
    ),
> {
    if !shared::preloaded() {
        return TableIterator::new(Vec::new());
    }
    let slots = *shared::SLOTS.share();
    let mut rows: Vec<_> = (0..shared::MAX_SLOTS)
        .filter(|&i| i == 0 || slots.slots[i].name_len > 0)
        .map(|i| {
            let slot = &slots.slots[i];
            let s = slot.status;
            let name = if i == 0 {
                crate::settings::EVENTS_PIPELINE.to_string()
            } else {
                slot.name().to_string()
            };
            let running = s.pid != 0;
            let waits = running.then(|| lock_wait(s.pid)).flatten();
            let (state, detail) = match waits {
                Some(why) => (WorkerState::WaitingForLock, why),
                None => (s.state, s.detail().unwrap_or_default()),
            };
            let triggered = s.last_trigger_at != 0;
            (
                name,
                slot.index as i32 + 1,
                running.then_some(s.pid),
                state.name().to_string(),
                running.then_some(s.pending_files),
                ts(s.last_trigger_at),
                triggered.then_some(s.last_batch_rows),
                triggered.then_some(s.rows_per_second),
                s.error(),
                ts(s.last_error_at),
                detail,
            )
        })
        .collect();
    rows.sort_by(|a, b| {
        let events = |n: &str| n != crate::settings::EVENTS_PIPELINE;
        (events(&a.0), &a.0, a.1).cmp(&(events(&b.0), &b.0, b.1))
    });
    TableIterator::new(rows)
}
