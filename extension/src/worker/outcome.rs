//! What one file's turn of ingestion came to, taken in: counted, recorded in the ledger's copy,
//! logged once, backed off, or the trigger stopped.

use super::ingest::{FileOutcome, Member, LOCK_NOT_AVAILABLE};
use super::say::Topic;
use super::state::{now_ns, set_state, BackedOff, Flow, Tally, Worker};
use crate::settings::Settings;
use crate::shared::{WorkerState, STATUS};
use ecommerce_events::ledger::{Entry, FileStatus, Update};
use ecommerce_events::plan::{backoff_delay, wake_at_age, Seen};
use ecommerce_events::Resume;
use std::time::{Duration, Instant};

impl Worker {
    /// Takes in one file's outcome: counts it, updates the ledger's copy, logs, backs off.
    pub fn handle(
        &mut self,
        st: &Settings,
        m: &Member<'_>,
        outcome: FileOutcome,
        tally: &mut Tally,
        wake_in: &mut Option<Duration>,
    ) -> Flow {
        let min_age = st.min_file_age.as_nanos() as i64;
        let mtime = m.cand.mtime_ns;
        let soon = |w: &mut Option<Duration>| *w = Some(wake_at_age(*w, mtime, min_age, now_ns()));
        let name = &m.cand.name;
        match outcome {
            FileOutcome::Progress {
                entry,
                rows: r,
                rejected: j,
            } => {
                let status = entry.status;
                if r + j > 0 {
                    tally.files += 1;
                }
                tally.rows += r;
                tally.rejected += j;
                if let Some(l) = self.ledger.as_mut() {
                    l.committed(name, entry);
                }
                self.settled(Topic::File(name.clone()));
                self.backoff.remove(name);
                match status {
                    FileStatus::Done => self.after_done(st, m.cand),
                    FileStatus::Growing => soon(wake_in),
                    _ => {}
                }
            }
            FileOutcome::Refused { status, message } => {
                let u = refused_update(m, status, message);
                let written = match self.ledger.as_mut() {
                    Some(l) => l.write_status(&u),
                    None => return Flow::Stop,
                };
                if let Err(error) = written {
                    return self.db_failed(m, error, wake_in);
                }
                self.backoff.remove(name);
                if status == FileStatus::Changed {
                    self.say(
                        Topic::File(name.clone()),
                        format!("file {name:?} is not resumed: it changed since its first rows were committed (ingest_files.error says how); the committed rows stay, the rest is not ingested; give the new content a new name"),
                        true,
                    );
                    // Said once: the next triggers see the same file and stay quiet.
                    self.changed_seen.insert(name.clone(), Seen::of(m.cand));
                } else {
                    self.settled(Topic::File(name.clone()));
                }
                self.after_failed(st, m.cand);
            }
            FileOutcome::Stale => {
                self.say(
                    Topic::Stale,
                    "the file ledger was changed by another session; reloading it".into(),
                    false,
                );
                self.ledger = None;
                return Flow::Reload;
            }
            FileOutcome::Busy => {
                // Not the file's fault, nor the others': they go on; the status says
                // waiting_for_lock until a trigger gets through without it.
                self.blocked = true;
                STATUS.exclusive().blocked = true;
                self.say(
                    Topic::Lock,
                    format!("file {name:?}: its ledger row is held by another session; retried every lock_timeout, the other files go on"),
                    false,
                );
                let retry = st.lock_timeout;
                *wake_in = Some(wake_in.map_or(retry, |w| w.min(retry)));
            }
            FileOutcome::Paused => {
                set_state(WorkerState::Paused);
                return Flow::Stop;
            }
            FileOutcome::Wait(msg) => {
                if let Some(msg) = msg {
                    self.say(Topic::File(name.clone()), msg.clone(), true);
                    if m.before.is_none() {
                        // Recorded so that ingest_files shows it; forgotten if it goes away.
                        let u = Update::status_of(
                            m.cand,
                            FileStatus::Error,
                            Resume::default(),
                            Some(msg),
                        );
                        if let Some(l) = self.ledger.as_mut() {
                            let _ = l.write_status(&u);
                        }
                    }
                }
                if m.young {
                    soon(wake_in);
                }
            }
            FileOutcome::DbFailed {
                error,
                rows: r,
                rejected: j,
                entry,
            } => {
                tally.rows += r;
                tally.rejected += j;
                if let (Some(e), Some(l)) = (entry, self.ledger.as_mut()) {
                    l.committed(name, e);
                }
                return self.db_failed(m, error, wake_in);
            }
        }
        Flow::Next
    }

    /// A chunk (or a ledger write) failed in the database and was rolled back.
    fn db_failed(
        &mut self,
        m: &Member<'_>,
        error: super::txn::DbError,
        wake_in: &mut Option<Duration>,
    ) -> Flow {
        let name = &m.cand.name;
        // The extension's tables are gone (DROP EXTENSION): stop this trigger quietly; the next
        // one finds the extension missing and waits. (A missing relation can also be the
        // user's: a trigger naming a table that does not exist. That one is reported.)
        if matches!(error.sqlstate.as_str(), "42P01" | "3F000")
            && matches!(
                super::txn::transaction(crate::trust::extension_schema),
                Ok(Ok(crate::trust::Schema::Missing))
            )
        {
            self.ledger = None;
            self.scanned = None;
            return Flow::Stop;
        }
        // Gave up waiting for a lock (lock_timeout): not the file's fault. End this trigger,
        // look at the folder again and retry at once.
        if error.sqlstate == LOCK_NOT_AVAILABLE {
            self.blocked = true;
            STATUS.exclusive().blocked = true;
            self.say(
                Topic::Lock,
                format!(
                    "waiting for a lock held by another session ({error}); file {name:?} and the files behind it are retried every lock_timeout"
                ),
                false,
            );
            *wake_in = Some(Duration::from_millis(1));
            return Flow::Stop;
        }
        let failures = self.backoff.get(name).map_or(0, |b| b.failures) + 1;
        let delay = backoff_delay(failures);
        self.backoff.insert(
            name.clone(),
            BackedOff {
                until: Instant::now() + delay,
                failures,
            },
        );
        self.say_keyed(
            Topic::File(name.clone()),
            format!("db:{}", error.sqlstate),
            format!(
                "file {name:?}: {error}; the chunk was rolled back and will be retried in {} s",
                delay.as_secs()
            ),
            true,
        );
        Flow::Next
    }
}

/// The ledger change for a file judged without ingesting a row. A changed file's row stays
/// about the file that was ingested (its size, mtime, identity and committed offset).
fn refused_update<'a>(m: &'a Member<'_>, status: FileStatus, message: String) -> Update<'a> {
    let before: Option<&Entry> = m.before.as_ref().filter(|_| status == FileStatus::Changed);
    // Whatever was committed of the file before stays recorded (a growing file refused later
    // by its pipeline's on_error keeps its committed offset).
    let resume = m.before.as_ref().map(|b| b.resume).unwrap_or_default();
    let mut u = Update::status_of(m.cand, status, resume, Some(message));
    if let Some(b) = before {
        u.size = b.size;
        u.mtime_ns = b.mtime_ns;
        u.identity = b.identity;
    }
    u
}
