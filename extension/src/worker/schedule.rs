//! Which files a trigger ingests and in which groups: each candidate's plan and the groups of
//! one transaction (the rules are `ecommerce_events::plan`), the reading thread, back-off.

use super::ingest::{self, Member, GROUP_MAX_FILES};
use super::say::Topic;
use super::state::{now_ns, Flow, Next, Tally, Worker};
use super::watch;
use crate::settings::Settings;
use ecommerce_events::pipeline::Pipeline;
use ecommerce_events::plan::{
    is_young, next_group, plan_known, plan_known_compressed, wake_at_age, Backoff, GroupItem, Plan,
    BACKOFF_MEMORY,
};
use ecommerce_events::Candidate;
use pgrx::prelude::*;
use std::time::{Duration, Instant};

/// Batches the reading thread may prepare ahead of the worker (each up to `batch_rows` rows).
const READ_AHEAD: usize = 4;

/// A candidate to ingest, and whether it is young.
pub type Todo<'c> = (&'c Candidate, bool);

impl Worker {
    /// The reading thread, started on first use with every signal blocked (signals belong to
    /// the worker's own thread).
    fn reading_thread(&mut self) -> Option<&mut Pipeline> {
        if self.pipeline.is_none() {
            let started = {
                let _blocked = watch::BlockAllSignals::new();
                Pipeline::start(READ_AHEAD)
            };
            match started {
                Ok(p) => {
                    self.pipeline = Some(p);
                    self.settled(Topic::Reader);
                }
                Err(e) => self.say(
                    Topic::Reader,
                    format!("cannot start the file-reading thread: {e}"),
                    true,
                ),
            }
        }
        self.pipeline.as_mut()
    }

    /// Which of the candidates need ingesting, oldest first (with whether each is young);
    /// applies what is due to the others (processed action, changed-file check) and sets
    /// `wake_in` for young files to look at again.
    pub fn plan<'c>(
        &mut self,
        st: &Settings,
        candidates: &'c [Candidate],
        wake_in: &mut Option<Duration>,
    ) -> Vec<Todo<'c>> {
        let now = now_ns();
        let min_age = st.min_file_age.as_nanos() as i64;
        let mut todo = Vec::new();
        for cand in candidates {
            let young = is_young(now, cand.mtime_ns, min_age);
            let known = self.entry(&cand.name).cloned();
            let plan = match &known {
                None => Plan::Ingest,
                Some(e) => {
                    let seen = self.changed_seen.get(&cand.name).copied();
                    if st.compressed(&cand.name) {
                        plan_known_compressed(e, cand, young, seen)
                    } else {
                        plan_known(e, cand, young, seen)
                    }
                }
            };
            match plan {
                // A failed file whose move to the failed folder did not work before.
                Plan::Nothing if self.action_retry.contains(&cand.name) => {
                    self.after_failed(st, cand)
                }
                Plan::Nothing => {}
                Plan::Ingest => todo.push((cand, young)),
                Plan::AfterDone => self.after_done(st, cand),
                Plan::LookAgainSoon => {
                    *wake_in = Some(wake_at_age(*wake_in, cand.mtime_ns, min_age, now))
                }
                Plan::CheckChanged => {
                    if let Some(e) = known {
                        self.check_changed(st, cand, &e);
                    }
                }
            }
        }
        todo
    }

    /// Ingests the planned files in groups (see `ecommerce_events::plan::next_group`). `Err`: the
    /// ledger changed under us; reload it and look again at once.
    pub fn ingest(
        &mut self,
        st: &Settings,
        todo: &[Todo<'_>],
        wake_in: &mut Option<Duration>,
    ) -> Result<Tally, Next> {
        let now = Instant::now();
        let items: Vec<GroupItem> = todo
            .iter()
            .map(|(cand, _)| GroupItem {
                left: cand
                    .size
                    .saturating_sub(self.entry(&cand.name).map_or(0, |e| e.resume.byte)),
                backoff: match self.backoff.get(&cand.name) {
                    Some(b) if b.until > now => Backoff::Waiting,
                    Some(_) => Backoff::Due,
                    None => Backoff::None,
                },
            })
            .collect();
        let mut tally = Tally::default();
        let mut next = 0;
        'groups: loop {
            super::orphan::exit_if_orphaned();
            pg_sys::check_for_interrupts!();
            let members = next_group(&items, &mut next, st.chunk_bytes, GROUP_MAX_FILES);
            if members.is_empty() {
                break;
            }
            let group: Vec<Member<'_>> = members
                .iter()
                .map(|&i| {
                    let (cand, young) = todo[i];
                    Member {
                        cand,
                        before: self.entry(&cand.name).cloned(),
                        young,
                    }
                })
                .collect();
            let Some(pipe) = self.reading_thread() else {
                break;
            };
            let outcomes = ingest::ingest_group(st, pipe, &group);
            if !pipe.is_running() {
                self.say(
                    Topic::Reader,
                    "the file-reading thread stopped; starting a new one".into(),
                    true,
                );
                self.pipeline = None;
            }
            for (m, outcome) in group.iter().zip(outcomes) {
                match self.handle(st, m, outcome, &mut tally, wake_in) {
                    Flow::Next => {}
                    Flow::Stop => break 'groups,
                    Flow::Reload => {
                        return Err(Next {
                            backlog: true,
                            wake_in: None,
                        })
                    }
                }
            }
        }
        Ok(tally)
    }

    /// Wakes up when the first backed-off file may be retried; forgets old back-offs.
    pub fn retry_backed_off_at(&mut self, wake_in: &mut Option<Duration>) {
        let now = Instant::now();
        self.backoff.retain(|_, b| b.until + BACKOFF_MEMORY > now);
        if let Some(d) = self
            .backoff
            .values()
            .map(|b| b.until.saturating_duration_since(now))
            .min()
        {
            let d = d.max(Duration::from_millis(1));
            *wake_in = Some(wake_in.map_or(d, |w| w.min(d)));
        }
    }
}
