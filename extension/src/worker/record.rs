//! Around the ingest step of a trigger: pending files and lag (published before ingesting, so
//! they stay true while a trigger is blocked), then the batch history row and the counters.

use super::say::Topic;
use super::sql;
use super::state::{pg_now, Reason, Tally, Worker};
use super::txn::transaction;
use crate::settings::Settings;
use crate::shared::STATUS;
use ecommerce_events::ledger::FileStatus;
use ecommerce_events::plan::is_pending;
use ecommerce_events::Candidate;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::time::Instant;

impl Worker {
    /// Which candidates still wait for bytes to be read: their number, and when the oldest of
    /// them was first seen (the ledger's discovery time, or when this worker first saw a file
    /// the ledger does not know yet; never the file's mtime, which a copy can set to any date).
    /// Also updates which files stay active (looked at in the next trigger).
    pub fn pending_of(
        &mut self,
        st: &Settings,
        candidates: &[Candidate],
    ) -> (i64, pg_sys::TimestampTz) {
        let now = pg_now();
        let mut pending = 0i64;
        let mut oldest = pg_sys::TimestampTz::MAX;
        let mut first_seen = HashMap::new();
        self.active.clear();
        for cand in candidates {
            let e = self.ledger.as_ref().and_then(|l| l.get(&cand.name));
            let waiting = is_pending(e, cand, st.compressed(&cand.name));
            if waiting {
                pending += 1;
                let seen = match e {
                    Some(e) if e.discovered_at != 0 => e.discovered_at,
                    _ => {
                        let t = *self.first_seen.get(&cand.name).unwrap_or(&now);
                        first_seen.insert(cand.name.clone(), t);
                        t
                    }
                };
                oldest = oldest.min(seen);
            }
            if waiting || e.is_some_and(|e| e.status == FileStatus::Growing) {
                self.active.insert(cand.name.clone());
            }
        }
        self.first_seen = first_seen;
        (pending, if pending > 0 { oldest } else { 0 })
    }

    /// Publishes the pending files and the lag before ingesting, so that they are true while a
    /// trigger is blocked (a lock on the table).
    pub fn publish_pending(&mut self, st: &Settings, candidates: &[Candidate]) {
        let (pending, oldest) = self.pending_of(st, candidates);
        let mut s = STATUS.exclusive();
        s.pending_files = pending;
        s.oldest_pending_at = oldest;
    }

    /// After a trigger: which files stay active, the pending count and lag, the batch history
    /// row, and the status counters.
    pub fn record(
        &mut self,
        st: &Settings,
        candidates: &[Candidate],
        tally: Tally,
        started: Instant,
        started_at: pg_sys::TimestampTz,
        reason: Reason,
    ) {
        let Tally {
            files,
            rows,
            rejected,
        } = tally;
        let (pending, oldest) = self.pending_of(st, candidates);
        let elapsed = started.elapsed();
        let ms = elapsed.as_secs_f64() * 1000.0;
        let rps = if ms > 0.0 {
            rows as f64 / elapsed.as_secs_f64()
        } else {
            0.0
        };
        // One history row per trigger that ingested rows (a file that only failed is no batch).
        let ingested = rows + rejected > 0;
        if ingested {
            // The batch history is informational: a failure here is reported, never fatal.
            let logged = transaction(|| {
                Spi::run_with_args(
                    sql::INSERT_BATCH_LOG,
                    &[
                        pgrx::datum::TimestampWithTimeZone::try_from(started_at)
                            .ok()
                            .into(),
                        reason.as_str().into(),
                        files.into(),
                        rows.into(),
                        rejected.into(),
                        ms.into(),
                        rps.into(),
                        super::me::pipeline().into(),
                    ],
                )
                .unwrap_or_else(|e| error!("{e}"))
            });
            match logged {
                Ok(()) => self.settled(Topic::BatchLog),
                Err(e) => self.say_keyed(
                    Topic::BatchLog,
                    e.sqlstate.clone(),
                    format!("cannot record the batch in ingest_batch_log: {e}"),
                    true,
                ),
            }
        }
        {
            let mut s = STATUS.exclusive();
            s.last_trigger_at = started_at;
            s.last_trigger_ms = ms;
            if ingested {
                s.last_batch_ms = ms;
                s.last_batch_rows = rows;
                s.rows_per_second = rps;
            }
            s.pending_files = pending;
            s.oldest_pending_at = oldest;
        }
    }
}
