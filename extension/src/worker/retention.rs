//! Old history deleted while the worker is idle, or after minutes of steady work
//! (`plan::housekeeping_due`; `ecommerce_ingest.history_retention`): this
//! pipeline's rejected rows and batch history older than the retention, a batch at a time, each
//! batch its own short transaction (with the worker's lock_timeout: a lock held on those tables
//! makes it give up and try at the next idle trigger, never holding ingestion back). The ledger
//! and the chunk rows are kept: the ledger is what makes a file exactly once (docs/scale.md).
//! Also while idle, at most once a minute: this pipeline's counters folded into one row; and
//! the records of files that left the input folder longer ago than
//! `ecommerce_ingest.ledger_retention` deleted, each worker its own share, a batch at a time.
//! (When a file leaves is recorded here too, at the end of each trigger.)

use super::say::Topic;
use super::sql;
use super::state::Worker;
use super::txn::transaction;
use crate::settings::Settings;
use ecommerce_events::plan::history_prune_due;
use ecommerce_events::Candidate;
use pgrx::prelude::*;
use std::time::{Duration, Instant};

/// Rows deleted per table and pass.
const PRUNE_BATCH: i64 = 5_000;

/// Shortest time between two folds of the counters.
const FOLD_EVERY: Duration = Duration::from_secs(60);

impl Worker {
    /// Deletes old history if it is time to (see [`history_prune_due`]).
    pub fn prune_history(&mut self, st: &Settings) {
        let since = self.pruned_at.map(|t| t.elapsed());
        if !history_prune_due(st.history_retention, since, self.prune_more) {
            return;
        }
        let Some(keep) = st.history_retention else {
            return;
        };
        let secs = keep.as_secs_f64();
        let pipeline = super::me::pipeline();
        let result = transaction(|| {
            Spi::connect_mut(|c| {
                let mut more = false;
                for statement in [sql::PRUNE_REJECTS, sql::PRUNE_BATCHES] {
                    let n = c
                        .update(
                            statement,
                            None,
                            &[pipeline.into(), secs.into(), PRUNE_BATCH.into()],
                        )?
                        .len() as i64;
                    more |= n >= PRUNE_BATCH;
                }
                Ok::<_, pgrx::spi::Error>(more)
            })
            .unwrap_or_else(|e| error!("{e}"))
        });
        self.pruned_at = Some(Instant::now());
        match result {
            Ok(more) => {
                self.prune_more = more;
                self.settled(Topic::Retention);
            }
            Err(e) => {
                self.prune_more = false;
                self.say(
                    Topic::Retention,
                    format!("could not delete old history (ecommerce_ingest.history_retention): {e}; tried again in a minute"),
                    false,
                );
            }
        }
    }

    /// Folds this pipeline's counters into their shard 0 (`sql::FOLD_COUNTERS`), at most once
    /// every [`FOLD_EVERY`]: the shards that the ledger's writers add to (one per backend) do
    /// not pile up. A shard a writer holds is skipped, never waited for.
    pub fn fold_counters(&mut self) {
        if self.folded_at.is_some_and(|t| t.elapsed() < FOLD_EVERY) {
            return;
        }
        self.folded_at = Some(Instant::now());
        let pipeline = super::me::pipeline();
        let result = transaction(|| {
            Spi::connect_mut(|c| {
                c.update(sql::FOLD_COUNTERS, None, &[pipeline.into()])
                    .map(|_| ())
            })
            .unwrap_or_else(|e| error!("{e}"))
        });
        match result {
            Ok(()) => self.settled(Topic::Counters),
            Err(e) => self.say(
                Topic::Counters,
                format!("could not fold the counters of ingest_status() (ingest_counters): {e}; tried again in a minute"),
                false,
            ),
        }
    }

    /// Records which files left the folder in this trigger (archived, deleted, moved, or found
    /// gone by a full scan) and which of those recorded as gone are there again.
    pub fn record_left_and_back(&mut self, candidates: &[Candidate]) {
        let leaving = std::mem::take(&mut self.leaving);
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        let back: Vec<String> = candidates
            .iter()
            .filter(|c| ledger.get(&c.name).is_some_and(|e| e.left_at.is_some()))
            .map(|c| c.name.clone())
            .collect();
        let r = ledger
            .mark_left(&leaving)
            .and_then(|()| ledger.mark_back(&back));
        if let Err(e) = r {
            self.say(
                Topic::Retention,
                format!("could not record which files left the input folder: {e}; looked at again at the next full scan"),
                false,
            );
        }
    }

    /// Deletes the records of files that left the folder longer ago than
    /// `ecommerce_ingest.ledger_retention`, [`PRUNE_BATCH`] at a time (this worker's share).
    pub fn forget_gone_files(&mut self, st: &Settings) {
        let since = self.forgot_at.map(|t| t.elapsed());
        if !history_prune_due(st.ledger_retention, since, self.forget_more) {
            return;
        }
        let (Some(keep), Some(ledger)) = (st.ledger_retention, self.ledger.as_mut()) else {
            return;
        };
        self.forgot_at = Some(Instant::now());
        let due = ledger.prunable(keep, PRUNE_BATCH as usize);
        self.forget_more = false;
        // Looked at once more, under its exact name, just before: a file that is in the folder
        // again (whatever the pattern says now, and even if recording its return failed) keeps
        // its record, which says it is back.
        let (back, names): (Vec<String>, Vec<String>) = due.into_iter().partition(|n| {
            !std::fs::symlink_metadata(st.input_dir.join(n))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        });
        let back_failed = ledger.mark_back(&back).err();
        let forgotten = if names.is_empty() {
            Ok(0)
        } else {
            ledger.forget(&names, keep)
        };
        if let Some(e) = back_failed {
            self.say(
                Topic::Retention,
                format!("could not record that files are back in the input folder: {e}; their records are kept"),
                false,
            );
        }
        match forgotten {
            Ok(n) => {
                self.forget_more = names.len() as i64 >= PRUNE_BATCH && n > 0;
                self.settled(Topic::Retention);
            }
            Err(e) => self.say(
                Topic::Retention,
                format!("could not delete the records of files gone long ago (ecommerce_ingest.ledger_retention): {e}; tried again in a minute"),
                false,
            ),
        }
    }
}
