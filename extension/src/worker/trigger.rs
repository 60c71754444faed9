//! A trigger, top-down: probe the extension (exists, at this version, paused?) and the
//! tablespaces, check the folders, list the input folder, plan, ingest, record.

use super::folders::check_folders;
use super::ingest::LOCK_NOT_AVAILABLE;
use super::ledger::Ledger;
use super::say::Topic;
use super::sql;
use super::state::{pg_now, set_state, set_state_because, Actions, Next, Reason, Worker};
use super::txn::transaction;
use crate::settings::Settings;
use crate::shared::{WorkerState, STATUS};
use crate::trust::{self, Schema};
use ecommerce_events::plan::housekeeping_due;
use ecommerce_events::FilePattern;
use pgrx::prelude::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the probe at the start of a trigger found.
struct Probe {
    paused: bool,
    /// The ledger was (re)loaded: a full scan follows.
    loaded_now: bool,
    /// Tablespaces' names and folders (never read from).
    tablespaces: Vec<(String, PathBuf)>,
}

/// The probe's transaction's result.
enum ProbeRow {
    Missing,
    /// The extension's schema cannot be trusted, or its table cannot be written: why.
    Untrusted(String),
    OtherVersion(String),
    Found {
        oid: i64,
        paused: bool,
        tablespaces: Vec<(String, PathBuf)>,
        ledger: Option<Ledger>,
    },
}

impl Worker {
    /// One trigger: check the extension and the paused flag, check the folders, list the input
    /// folder, plan, ingest, record.
    pub fn trigger(&mut self, st: &Settings, reason: Reason) -> Next {
        let started = Instant::now();
        let started_at = pg_now();
        let was_blocked = std::mem::take(&mut self.blocked);
        let Probe {
            mut paused,
            loaded_now,
            tablespaces,
        } = match self.probe() {
            Ok(p) => p,
            Err(next) => return next,
        };
        if let Err(e) = check_folders(st, &tablespaces) {
            // Nothing is read, moved or deleted until the settings are fixed.
            return self.unusable_folder(Topic::Folders, e.to_string(), started_at);
        }
        self.settled(Topic::Folders);
        let pattern = match FilePattern::new(&st.file_pattern) {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("ecommerce_ingest.file_pattern: {e}");
                self.say(Topic::Pattern, msg.clone(), true);
                set_state_because(WorkerState::Error, &msg);
                return Next::IDLE;
            }
        };
        self.settled(Topic::Pattern);
        // A changed processed action applies to the files already done: look at all of them.
        let actions = Actions::of(st);
        let actions_changed = self.actions.as_ref() != Some(&actions);
        self.actions = Some(actions);
        let full =
            matches!(reason, Reason::Start | Reason::Manual) || loaded_now || actions_changed;
        let candidates = match self.look(st, &pattern, full) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("input folder {}: {e}", st.input_dir.display());
                return self.unusable_folder(Topic::Dir, msg, started_at);
            }
        };
        self.settled(Topic::Dir);
        // (Only the events pipeline outlives a DROP EXTENSION: the others go with it.)
        if loaded_now && !paused && super::me::is_first_events_worker() {
            paused = self.pause_if_recreated(st, &candidates);
        }

        let mut wake_in: Option<Duration> = None;
        let mut todo = if paused {
            Vec::new()
        } else {
            self.plan(st, &candidates, &mut wake_in)
        };
        let backlog = todo.len() > st.max_files_per_trigger;
        todo.truncate(st.max_files_per_trigger);
        // What waits is known now: if the ingest below blocks (a lock), the status still tells.
        self.publish_pending(st, &candidates);
        let tally = match self.ingest(st, &todo, &mut wake_in) {
            Ok(t) => t,
            Err(reload) => return reload,
        };
        self.retry_backed_off_at(&mut wake_in);
        self.record_left_and_back(&candidates);
        let idle = tally.files == 0 && !backlog;
        self.record(st, &candidates, tally, started, started_at, reason);
        // Housekeeping (old history, the counters' shards, records of files gone long ago) runs
        // while nothing waits, or anyway after minutes without a pause (a steady stream must not
        // starve it); never while paused (the tables are left alone).
        if idle {
            self.busy_since = None;
        } else if self.busy_since.is_none() {
            self.busy_since = Some(Instant::now());
        }
        let busy_for = self.busy_since.map(|t| t.elapsed());
        if !paused && housekeeping_due(idle, busy_for) {
            // The pipeline's first worker only (the others would wait on its rows).
            if super::me::index() == 0 {
                self.prune_history(st);
                self.fold_counters();
            }
            // Each worker forgets its own share's files gone long ago.
            self.forget_gone_files(st);
        }
        if was_blocked && !self.blocked {
            STATUS.exclusive().blocked = false;
            self.say(
                Topic::Lock,
                "the lock was released; ingesting again".into(),
                false,
            );
            self.settled(Topic::Lock);
        }
        if super::me::is_first_events_worker() {
            self.remember_installation(st);
        }
        Next { backlog, wake_in }
    }

    /// The folders cannot be used (refused settings, or the input folder unreadable): state
    /// `error` saying why, nothing pending, no watcher until they can.
    fn unusable_folder(
        &mut self,
        topic: Topic,
        msg: String,
        started_at: pg_sys::TimestampTz,
    ) -> Next {
        self.watcher = None;
        self.scanned = None;
        self.say(topic, msg.clone(), true);
        set_state_because(WorkerState::Error, &msg);
        let mut s = STATUS.exclusive();
        s.pending_files = 0;
        s.last_trigger_at = started_at;
        Next::IDLE
    }

    /// Checks that the extension exists at this library's version, reads the paused flag and
    /// the tablespaces, and (re)loads the ledger when it is new or changed. `Err`: what to do
    /// instead of a trigger.
    fn probe(&mut self) -> Result<Probe, Next> {
        let generation = STATUS.share().ledger_generation;
        let share = self.share;
        let stale_key = match &self.ledger {
            // (A guarded write found the copy out of date: see ledger.rs.)
            Some(l) if !l.stale => self.ledger_key,
            _ => (-1, u64::MAX, share),
        };
        let probe = transaction(|| {
            Spi::connect_mut(|c| {
                // (A lock held by another session cannot block it for ever: the session's
                // lock_timeout is ecommerce_ingest.lock_timeout, see entry.rs.)
                let Some(ext) = trust::extension()? else {
                    return Ok(ProbeRow::Missing);
                };
                let (oid, version) = (ext.oid, ext.version);
                // Nothing is read through the schema before it is known to be trustworthy.
                if let Schema::Untrusted(why) = ext.schema {
                    return Ok(ProbeRow::Untrusted(why));
                }
                if version != env!("CARGO_PKG_VERSION") {
                    return Ok(ProbeRow::OtherVersion(version));
                }
                c.update(sql::FIRST_LOCK, None, &[])?;
                if !super::me::is_generic() && events_table_in_citus(c)? {
                    return Ok(ProbeRow::Untrusted(
                        crate::citus::EVENTS_TABLE_DISTRIBUTED.to_string(),
                    ));
                }
                let paused = c
                    .select(sql::PAUSED, None, &[super::me::pipeline().into()])?
                    .first()
                    .get_one::<bool>()?
                    .unwrap_or(false);
                let mut tablespaces = Vec::new();
                for r in c.select(sql::TABLESPACES, None, &[])? {
                    let name = r.get::<String>(1)?.unwrap_or_default();
                    let location = r.get::<String>(2)?.unwrap_or_default();
                    if !location.is_empty() {
                        tablespaces.push((name, PathBuf::from(location)));
                    }
                }
                let ledger = if stale_key != (oid, generation, share) {
                    Some(Ledger::load(c, share)?)
                } else {
                    None
                };
                Ok::<_, pgrx::spi::Error>(ProbeRow::Found {
                    oid,
                    paused,
                    tablespaces,
                    ledger,
                })
            })
            .unwrap_or_else(|e| error!("{e}"))
        });
        let (oid, paused, tablespaces, loaded) = match probe {
            // Another session holds a lock on the extension's tables (VACUUM FULL, ALTER TABLE,
            // a DROP EXTENSION waiting for its turn): say so and look again at once.
            Err(e) if e.sqlstate == LOCK_NOT_AVAILABLE => {
                self.blocked = true;
                STATUS.exclusive().blocked = true;
                self.say(
                    Topic::Lock,
                    format!("waiting for a lock held by another session on the extension's tables ({e}); retried every lock_timeout"),
                    false,
                );
                return Err(Next {
                    backlog: false,
                    wake_in: Some(Duration::from_millis(1)),
                });
            }
            Err(e) => {
                self.say(
                    Topic::Control,
                    format!("cannot read the extension's tables: {e}"),
                    true,
                );
                return Err(Next::IDLE);
            }
            Ok(ProbeRow::Missing) => {
                self.ledger = None;
                self.scanned = None;
                self.watcher = None;
                set_state(WorkerState::WaitingForExtension);
                let db = crate::settings::database();
                self.say(
                    Topic::Control,
                    format!("waiting for CREATE EXTENSION ecommerce_ingest in database {db:?}"),
                    false,
                );
                // CREATE EXTENSION wakes us at once; this is only a fallback.
                return Err(Next {
                    backlog: false,
                    wake_in: Some(Duration::from_secs(5)),
                });
            }
            Ok(ProbeRow::Untrusted(why)) => {
                self.ledger = None;
                self.scanned = None;
                self.watcher = None;
                self.say(Topic::Control, why.clone(), true);
                set_state_because(WorkerState::Error, &why);
                return Err(Next {
                    backlog: false,
                    wake_in: Some(Duration::from_secs(5)),
                });
            }
            Ok(ProbeRow::OtherVersion(v)) => {
                // The library was upgraded but not the SQL objects (or the reverse): the
                // tables may lack what this library writes. Wait for ALTER EXTENSION.
                self.ledger = None;
                self.scanned = None;
                self.watcher = None;
                let msg = format!(
                    "the extension's SQL objects are version {v} but the loaded library is {}: run ALTER EXTENSION ecommerce_ingest UPDATE in database {:?} (nothing is ingested until then)",
                    env!("CARGO_PKG_VERSION"),
                    crate::settings::database()
                );
                self.say(Topic::Version, msg.clone(), false);
                set_state_because(WorkerState::WaitingForUpdate, &msg);
                return Err(Next {
                    backlog: false,
                    wake_in: Some(Duration::from_secs(5)),
                });
            }
            Ok(ProbeRow::Found {
                oid,
                paused,
                tablespaces,
                ledger,
            }) => (oid, paused, tablespaces, ledger),
        };
        self.settled(Topic::Control);
        self.settled(Topic::Version);
        self.extension_oid = Some(oid as u32);
        let loaded_now = loaded.is_some();
        if let Some(l) = loaded {
            self.ledger = Some(l);
            self.ledger_key = (oid, generation, share);
            self.changed_seen.clear();
        }
        // Paused: still look at the folder, so files_pending and the lag stay true, but ingest
        // nothing (and apply no processed action).
        if paused {
            set_state(WorkerState::Paused);
        } else if let Some(p) = self.action_problem.clone() {
            set_state_because(WorkerState::Degraded, &p.message);
        } else {
            set_state(WorkerState::Running);
        }
        Ok(Probe {
            paused,
            loaded_now,
            tablespaces,
        })
    }
}

/// `public.user_events` is a Citus table (the events pipeline's COPY must not write into it).
fn events_table_in_citus(c: &pgrx::spi::SpiClient<'_>) -> Result<bool, pgrx::spi::Error> {
    let oid = c
        .select(
            "SELECT pg_catalog.to_regclass('public.user_events')::pg_catalog.oid",
            None,
            &[],
        )?
        .first()
        .get_one::<pg_sys::Oid>()?;
    match oid {
        Some(o) => crate::citus::is_citus_table(c, o),
        None => Ok(false),
    }
}
