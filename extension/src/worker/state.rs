//! The worker's state between triggers, and the small types its steps share.

use super::ledger::Ledger;
use super::say::{Said, Topic};
use super::watch;
use crate::settings::{ProcessedAction, Settings};
use crate::shared::{WorkerState, STATUS};
use ecommerce_events::pipeline::Pipeline;
use ecommerce_events::plan::Seen;
use ingest_core::Share;
use pgrx::pg_sys;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a trigger runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Start,
    /// ingest_trigger(), ingest_resume(), CREATE EXTENSION.
    Manual,
    Notify,
    Interval,
    /// Woken without a request (a signal).
    Wakeup,
    /// More files were ready than one trigger takes.
    Backlog,
}

impl Reason {
    /// As recorded in ingest_batches.trigger.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Manual => "manual",
            Reason::Notify => "notify",
            Reason::Interval => "interval",
            Reason::Wakeup => "wakeup",
            Reason::Backlog => "backlog",
        }
    }
}

/// What the loop does after a trigger.
pub struct Next {
    pub backlog: bool,
    /// When to look again at the latest (a young file to finish, a back-off that expires).
    pub wake_in: Option<Duration>,
}

impl Next {
    /// Nothing more to do until something happens (or the trigger interval).
    pub const IDLE: Next = Next {
        backlog: false,
        wake_in: None,
    };
}

/// What the last full scan looked at, and when.
pub struct Scanned {
    pub dir: PathBuf,
    pub pattern: String,
    /// The folder's mtime, read just before listing it.
    pub mtime: i64,
    pub at: Instant,
}

/// What decides where processed files go: a change is applied to the files already done at
/// the next trigger (with a full scan).
#[derive(Debug, Clone, PartialEq)]
pub struct Actions {
    pub processed_action: ProcessedAction,
    pub archive_dir: PathBuf,
    pub failed_dir: PathBuf,
}

impl Actions {
    pub fn of(st: &Settings) -> Actions {
        Actions {
            processed_action: st.processed_action,
            archive_dir: st.archive_dir.clone(),
            failed_dir: st.failed_dir.clone(),
        }
    }
}

/// A file whose last chunk failed in the database: not retried before `until`.
#[derive(Debug, Clone, Copy)]
pub struct BackedOff {
    pub until: Instant,
    pub failures: u32,
}

/// A processed file could not be archived, deleted or moved into `folder`.
#[derive(Debug, Clone)]
pub struct ActionProblem {
    pub folder: PathBuf,
    pub message: String,
}

/// Files, rows and rejected rows a trigger ingested.
#[derive(Default)]
pub struct Tally {
    pub files: i32,
    pub rows: i64,
    pub rejected: i64,
}

/// What the ingest loop does after a file's outcome.
pub enum Flow {
    Next,
    /// Paused, blocked on a lock, or the extension's tables are gone: end this trigger.
    Stop,
    /// The ledger changed under us: reload it and look again at once.
    Reload,
}

#[derive(Default)]
pub struct Worker {
    /// The ledger's copy, and which extension and ledger generation it was loaded for.
    pub ledger: Option<Ledger>,
    pub ledger_key: (i64, u64, Share),
    /// This worker's share of the pipeline's files, as of this trigger.
    pub share: Share,
    pub watcher: Option<watch::Watcher>,
    /// What was last said about each topic: each message is logged once.
    pub said: Said,
    /// The processed actions of the last trigger.
    pub actions: Option<Actions>,
    /// State `degraded` while set.
    pub action_problem: Option<ActionProblem>,
    /// Files whose processed action failed: looked at again at every trigger.
    pub action_retry: HashSet<String>,
    /// When this worker first saw each pending file that the ledger does not know yet.
    pub first_seen: HashMap<String, pg_sys::TimestampTz>,
    /// The extension's oid, once known; and the one the marker was last written for.
    pub extension_oid: Option<u32>,
    pub marker_written: Option<u32>,
    /// Changed files already reported, as they were then.
    pub changed_seen: HashMap<String, Seen>,
    pub backoff: HashMap<String, BackedOff>,
    /// The last full scan.
    pub scanned: Option<Scanned>,
    /// Names that still need work (new, in progress, growing, retrying).
    pub active: HashSet<String>,
    /// The thread that reads and encodes files ahead of the database work.
    pub pipeline: Option<Pipeline>,
    /// The session's lock_timeout, as last set (see entry.rs).
    pub lock_timeout: Option<Duration>,
    /// This trigger gave up waiting for a lock (the status says waiting_for_lock until a
    /// trigger gets through).
    pub blocked: bool,
    /// The events worker: the pipelines' workers it started, and when it last looked.
    pub children: HashMap<(String, u32), super::supervise::Child>,
    pub supervised_at: Option<Instant>,
    /// A pipeline worker: when its pipeline was created (a re-created one is another).
    pub pipeline_created: Option<i64>,
    /// The server was a hot standby at the last look.
    pub standby: bool,
    /// When old history was last deleted, and whether that pass found more (retention.rs).
    pub pruned_at: Option<Instant>,
    pub prune_more: bool,
    /// Files seen to leave the input folder in this trigger (recorded at its end).
    pub leaving: Vec<String>,
    /// When records of files gone long ago were last deleted, and whether more are due.
    pub forgot_at: Option<Instant>,
    pub forget_more: bool,
    /// Since when every trigger found work (`None`: the last one was idle).
    pub busy_since: Option<Instant>,
    /// When this pipeline's counters were last folded into shard 0 (retention.rs).
    pub folded_at: Option<Instant>,
}

impl Worker {
    pub fn say(&mut self, topic: Topic, msg: String, is_error: bool) {
        self.said.say(topic, msg, is_error)
    }

    pub fn say_keyed(&mut self, topic: Topic, key: String, msg: String, is_error: bool) {
        self.said.say_keyed(topic, key, msg, is_error)
    }

    pub fn settled(&mut self, topic: Topic) {
        self.said.settled(&topic);
    }

    /// The ledger's entry for `name`, if the ledger is loaded and knows it.
    pub fn entry(&self, name: &str) -> Option<&ecommerce_events::ledger::Entry> {
        self.ledger.as_ref().and_then(|l| l.get(name))
    }
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn pg_now() -> pg_sys::TimestampTz {
    // SAFETY: reads the clock; no PostgreSQL state is touched.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

pub fn set_state(state: WorkerState) {
    STATUS.exclusive().set_state(state, None);
}

pub fn set_state_because(state: WorkerState, why: &str) {
    STATUS.exclusive().set_state(state, Some(why));
}
