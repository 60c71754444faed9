//! Old history deleted while the worker is idle (`ecommerce_ingest.history_retention`): this
//! pipeline's rejected rows and batch history older than the retention, a batch at a time, each
//! batch its own short transaction (with the worker's lock_timeout: a lock held on those tables
//! makes it give up and try at the next idle trigger, never holding ingestion back). The ledger
//! and the chunk rows are kept: the ledger is what makes a file exactly once (docs/scale.md).

use super::say::Topic;
use super::sql;
use super::state::Worker;
use super::txn::transaction;
use crate::settings::Settings;
use ecommerce_events::plan::history_prune_due;
use pgrx::prelude::*;
use std::time::Instant;

/// Rows deleted per table and pass.
const PRUNE_BATCH: i64 = 5_000;

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
}
