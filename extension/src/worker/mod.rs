//! The background worker: wakes on notifications, ingest_trigger() or the trigger interval,
//! scans the input folder, and ingests what is new, file by file.

mod copy;
mod files;
mod ingest;
mod launcher;
mod ledger;
mod marker;
mod say;
mod session;
mod sql;
mod txn;
mod watch;

use crate::settings::{ProcessedAction, Settings};
use crate::shared::{WorkerState, STATUS};
use ecommerce_events::folders::{self, FolderError, FolderRole, Folders, Protected};
use ecommerce_events::pipeline::Pipeline;
use ecommerce_events::{
    classify, dir_mtime_ns, list_dir, sort_oldest_first, Candidate, EntryKind, FilePattern,
};
use ingest::FileOutcome;
use ledger::{Entry, Identity, Ledger, Status, Update};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use say::{Said, Topic};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use txn::transaction;

/// Registers the launcher, which starts the ingestion worker (see launcher.rs).
pub fn register() {
    launcher::register();
}

unsafe extern "C-unwind" fn on_sighup(sig: i32) {
    pg_sys::SignalHandlerForConfigReload(sig)
}

unsafe extern "C-unwind" fn on_sigterm(sig: i32) {
    pg_sys::die(sig)
}

/// SIGHUP: reload flag and latch (the main loop reloads). SIGTERM: PostgreSQL's own handler, so
/// a wait on a lock is interrupted at shutdown. Then the worker's signals are unblocked.
fn handle_signals() {
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(on_sighup));
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(on_sigterm));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    let mut s = STATUS.exclusive();
    s.pid = 0;
    s.latch = 0;
    s.state = WorkerState::Stopped;
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ecommerce_ingest_worker_main(_arg: pg_sys::Datum) {
    handle_signals();
    let db = crate::settings::database();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0)) };
    {
        let mut s = STATUS.exclusive();
        s.pid = unsafe { pg_sys::MyProcPid };
        s.latch = unsafe { pg_sys::MyLatch } as usize;
        s.state = WorkerState::Running;
    }
    if let Err(e) = session::pin() {
        error!("ecommerce_ingest: cannot pin the worker's session settings: {e}");
    }
    log!("ecommerce_ingest worker started (database {db:?})");
    let mut w = Worker::default();
    let mut reason = Reason::Start;
    loop {
        unsafe {
            if pg_sys::ConfigReloadPending != 0 {
                pg_sys::ConfigReloadPending = 0;
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
        }
        let st = Settings::read();
        let next = w.trigger(&st, reason);
        reason = w.wait(&st, &next);
    }
}

/// Why a trigger runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
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
    fn as_str(self) -> &'static str {
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

/// SQLSTATE of a lock not obtained within lock_timeout.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How often a folder whose mtime changed is rescanned in full although notifications work.
const SAFETY_RESCAN_EVERY: Duration = Duration::from_secs(60);

/// What the last full scan looked at, and when.
struct Scanned {
    dir: PathBuf,
    pattern: String,
    /// The folder's mtime, read just before listing it.
    mtime: i64,
    at: Instant,
}

/// What the loop does after a trigger.
struct Next {
    backlog: bool,
    /// A young file to look at again (to finish it once it is old enough).
    wake_in: Option<Duration>,
}

/// What decides where processed files go: a change is applied to the files already done at
/// the next trigger (with a full scan).
#[derive(Debug, Clone, PartialEq)]
struct Actions {
    processed_action: ProcessedAction,
    archive_dir: PathBuf,
    failed_dir: PathBuf,
}

impl Actions {
    fn of(st: &Settings) -> Actions {
        Actions {
            processed_action: st.processed_action,
            archive_dir: st.archive_dir.clone(),
            failed_dir: st.failed_dir.clone(),
        }
    }
}

#[derive(Default)]
struct Worker {
    ledger: Option<Ledger>,
    ledger_key: (i64, u64),
    watcher: Option<watch::Watcher>,
    /// What was last said about each topic: each message is logged once.
    said: Said,
    /// The processed actions of the last trigger.
    actions: Option<Actions>,
    /// A processed file could not be archived, deleted or moved into this folder: state
    /// `degraded`, and why.
    action_problem: Option<(PathBuf, String)>,
    /// Files whose processed action failed: looked at again at every trigger.
    action_retry: HashSet<String>,
    /// When this worker first saw each pending file that the ledger does not know yet.
    first_seen: HashMap<String, pg_sys::TimestampTz>,
    /// The extension's oid, once known; and the one the marker was last written for.
    extension_oid: Option<u32>,
    marker_written: Option<u32>,
    /// Changed files already reported, by (size, mtime).
    changed_seen: HashMap<String, (u64, i64)>,
    /// Files whose last chunk failed in the database: not before this instant; failure count.
    backoff: HashMap<String, (Instant, u32)>,
    /// The last full scan.
    scanned: Option<Scanned>,
    /// Names that still need work (new, in progress, growing, retrying).
    active: HashSet<String>,
    /// The thread that reads and encodes files ahead of the database work.
    pipeline: Option<Pipeline>,
}

/// Batches the reading thread may prepare ahead of the worker (each up to `batch_rows` rows).
const READ_AHEAD: usize = 4;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn pg_now() -> pg_sys::TimestampTz {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn set_state(state: WorkerState) {
    STATUS.exclusive().set_state(state, None);
}

fn set_state_because(state: WorkerState, why: &str) {
    STATUS.exclusive().set_state(state, Some(why));
}

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
    OtherVersion(String),
    Found {
        oid: i64,
        paused: bool,
        tablespaces: Vec<(String, PathBuf)>,
        ledger: Option<Ledger>,
    },
}

/// The folders of the server that the worker must never touch.
fn protected_folders(tablespaces: &[(String, PathBuf)]) -> Vec<Protected> {
    let data = crate::settings::data_dir();
    let mut out = vec![
        Protected::DataDirectory(folders::canonical(&data)),
        Protected::Wal(folders::canonical(&data.join("pg_wal"))),
    ];
    for (name, path) in tablespaces {
        out.push(Protected::Tablespace {
            name: name.clone(),
            path: folders::canonical(path),
        });
    }
    for setting in ["config_file", "hba_file", "ident_file"] {
        if let Some(file) = crate::settings::server_setting(setting) {
            if let Some(dir) = Path::new(&file).parent() {
                let dir = folders::canonical(&crate::settings::resolve(&dir.to_string_lossy()));
                let p = Protected::Configuration(dir);
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// The configured folders may be used (see `ecommerce_events::folders`).
fn check_folders(st: &Settings, tablespaces: &[(String, PathBuf)]) -> Result<(), FolderError> {
    if st.input_unset {
        return Err(FolderError::NotSet(FolderRole::Input));
    }
    let f = Folders {
        input: st.input_dir.clone(),
        archive: st.archive_dir.clone(),
        failed: st.failed_dir.clone(),
    };
    folders::check_folders(&f, &protected_folders(tablespaces))
}

/// Files, rows and rejected rows a trigger ingested.
#[derive(Default)]
struct Tally {
    files: i32,
    rows: i64,
    rejected: i64,
}

/// What the ingest loop does after a file's outcome.
enum Flow {
    Next,
    /// Paused, or the extension's tables are gone: end this trigger.
    Stop,
    /// The ledger changed under us: reload it and look again at once.
    Reload,
}

/// The earliest wake-up among `wake_in` and the moment a file modified at `mtime` (Unix ns) is
/// `min_age` old.
fn wake_at_age(wake_in: Option<Duration>, mtime: i64, min_age: i64) -> Duration {
    let d = Duration::from_nanos((mtime + min_age - now_ns()).max(1_000_000) as u64);
    wake_in.map_or(d, |w| w.min(d))
}

/// What a trigger does with a file the ledger already knows.
enum Plan {
    Nothing,
    Ingest,
    /// Done and unchanged: only the processed action (archive/delete) may be due.
    AfterDone,
    /// Still young and fully read: look again once it is old enough.
    LookAgainSoon,
    /// Its size or mtime differ from what was ingested: same bytes, or changed content?
    CheckChanged,
}

fn plan_known(e: &Entry, cand: &Candidate, young: bool, changed_seen: Option<&(u64, i64)>) -> Plan {
    // The ledger keeps mtimes in microseconds (timestamptz); the file system has nanoseconds.
    // Size and mtime alone are not enough: `rsync -t` or `cp -p` of other content keep both, but
    // give another inode or ctime. (Rows written by 0.1.0 have no identity: size and mtime.)
    let same = e.size == cand.size
        && e.mtime_ns.div_euclid(1000) == cand.mtime_ns.div_euclid(1000)
        && e.identity.is_none_or(|i| i == Identity::of(cand));
    match e.status {
        Status::Done if same => Plan::AfterDone,
        // Nothing was consumed from it (it was empty): new bytes are simply new.
        Status::Done if e.resume.byte == 0 => Plan::Ingest,
        Status::Done => Plan::CheckChanged,
        Status::Changed if changed_seen != Some(&(cand.size, cand.mtime_ns)) => Plan::CheckChanged,
        Status::Changed => Plan::Nothing,
        Status::Failed if same => Plan::Nothing,
        Status::Failed | Status::Error => Plan::Ingest,
        Status::Ingesting | Status::Growing if cand.size < e.resume.byte => Plan::CheckChanged,
        Status::Ingesting => Plan::Ingest,
        Status::Growing if cand.size > e.resume.byte || !young => Plan::Ingest,
        Status::Growing => Plan::LookAgainSoon,
    }
}

impl Worker {
    fn say(&mut self, topic: Topic, msg: String, is_error: bool) {
        self.said.say(topic, msg, is_error)
    }

    fn say_keyed(&mut self, topic: Topic, key: String, msg: String, is_error: bool) {
        self.said.say_keyed(topic, key, msg, is_error)
    }

    fn settled(&mut self, topic: Topic) {
        self.said.settled(&topic);
    }

    fn wait(&mut self, st: &Settings, next: &Next) -> Reason {
        if next.backlog {
            pg_sys::check_for_interrupts!();
            if std::mem::take(&mut STATUS.exclusive().trigger_requested) {
                return Reason::Manual;
            }
            return Reason::Backlog;
        }
        let timeout = next
            .wake_in
            .map_or(st.trigger_interval, |w| w.min(st.trigger_interval));
        let mut events = pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
        let fd = match &self.watcher {
            Some(w) => {
                events |= pg_sys::WL_SOCKET_READABLE;
                w.fd()
            }
            None => pg_sys::PGINVALID_SOCKET,
        };
        let started = Instant::now();
        let rc = unsafe {
            let rc = pg_sys::WaitLatchOrSocket(
                pg_sys::MyLatch,
                events as i32,
                fd,
                timeout.as_millis().max(1) as std::ffi::c_long,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
            pg_sys::check_for_interrupts!();
            rc
        };
        let notified = self.watcher.as_ref().is_some_and(|w| w.drain());
        if std::mem::take(&mut STATUS.exclusive().trigger_requested) {
            Reason::Manual
        } else if notified {
            Reason::Notify
        } else if rc & pg_sys::WL_TIMEOUT as i32 != 0 || started.elapsed() >= timeout {
            Reason::Interval
        } else {
            Reason::Wakeup
        }
    }

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

    fn ensure_watcher(&mut self, dir: &std::path::Path) {
        if self.watcher.as_ref().is_some_and(|w| w.dir == dir) {
            return;
        }
        self.watcher = None;
        match watch::Watcher::new(dir) {
            Ok(w) => {
                self.watcher = Some(w);
                self.settled(Topic::Watch);
            }
            Err(e) => self.say(
                Topic::Watch,
                format!(
                    "no file-system notifications for {}: {e}; polling every trigger_interval",
                    dir.display()
                ),
                false,
            ),
        }
    }

    /// One trigger: check the extension and the paused flag, check the folders, list the input
    /// folder, plan, ingest, record.
    fn trigger(&mut self, st: &Settings, reason: Reason) -> Next {
        let idle = Next {
            backlog: false,
            wake_in: None,
        };
        let started = Instant::now();
        let started_at = pg_now();
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
            self.watcher = None;
            self.scanned = None;
            let msg = e.to_string();
            self.say(Topic::Folders, msg.clone(), true);
            set_state_because(WorkerState::Error, &msg);
            let mut s = STATUS.exclusive();
            s.pending_files = 0;
            s.last_trigger_at = started_at;
            return idle;
        }
        self.settled(Topic::Folders);
        let pattern = match FilePattern::new(&st.file_pattern) {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("ecommerce_ingest.file_pattern: {e}");
                self.say(Topic::Pattern, msg.clone(), true);
                set_state_because(WorkerState::Error, &msg);
                return idle;
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
                self.watcher = None;
                self.scanned = None;
                let msg = format!("input folder {}: {e}", st.input_dir.display());
                self.say(Topic::Dir, msg.clone(), true);
                set_state_because(WorkerState::Error, &msg);
                let mut s = STATUS.exclusive();
                s.pending_files = 0;
                s.last_trigger_at = started_at;
                return idle;
            }
        };
        self.settled(Topic::Dir);
        if loaded_now && !paused {
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
        self.publish_pending(&candidates);
        let tally = match self.ingest(st, &todo, &mut wake_in) {
            Ok(t) => t,
            Err(reload) => return reload,
        };
        self.retry_backed_off_at(&mut wake_in);
        self.record(&candidates, tally, started, started_at, reason);
        self.remember_installation(st);
        Next { backlog, wake_in }
    }

    /// Checks that the extension exists at this library's version, reads the paused flag and
    /// the tablespaces, and (re)loads the ledger when it is new or changed. `Err`: what to do
    /// instead of a trigger.
    fn probe(&mut self) -> Result<Probe, Next> {
        let generation = STATUS.share().ledger_generation;
        let stale_key = if self.ledger.is_none() {
            (-1, u64::MAX)
        } else {
            self.ledger_key
        };
        let probe = transaction(|| {
            Spi::connect_mut(|c| {
                c.update(
                    sql::CHUNK_LOCK,
                    None,
                    &[crate::shared::DROP_LOCK_KEY.into()],
                )?;
                let ext = c.select(sql::EXTENSION, None, &[])?;
                if ext.is_empty() {
                    return Ok(ProbeRow::Missing);
                }
                let row = ext.first();
                let oid = row.get::<i64>(1)?.unwrap_or_default();
                let version = row.get::<String>(2)?.unwrap_or_default();
                if version != env!("CARGO_PKG_VERSION") {
                    return Ok(ProbeRow::OtherVersion(version));
                }
                let paused = c
                    .select(sql::PAUSED, None, &[])?
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
                let ledger = if stale_key != (oid, generation) {
                    Some(Ledger::load(c)?)
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
            Err(e) => {
                self.say(
                    Topic::Control,
                    format!("cannot read the extension's tables: {e}"),
                    true,
                );
                return Err(Next {
                    backlog: false,
                    wake_in: None,
                });
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
            self.ledger_key = (oid, generation);
            self.changed_seen.clear();
        }
        // Paused: still look at the folder, so files_pending and the lag stay true, but ingest
        // nothing (and apply no processed action).
        if paused {
            set_state(WorkerState::Paused);
        } else if let Some((_, why)) = self.action_problem.clone() {
            set_state_because(WorkerState::Degraded, &why);
        } else {
            set_state(WorkerState::Running);
        }
        Ok(Probe {
            paused,
            loaded_now,
            tablespaces,
        })
    }

    /// A new installation of the extension (empty ledger) next to files that an earlier one
    /// ingested from this folder: ingesting them would store their rows again. Pauses (once,
    /// unless a user already paused or resumed) and says why. Returns whether paused.
    fn pause_if_recreated(&mut self, st: &Settings, candidates: &[Candidate]) -> bool {
        let (Some(now), Some(ledger)) = (self.installation(st), self.ledger.as_ref()) else {
            return false;
        };
        let before = marker::read(&crate::settings::data_dir());
        if !marker::recreated(
            before.as_ref(),
            &now,
            ledger.files.is_empty(),
            candidates.len(),
        ) {
            return false;
        }
        let why = format!(
            "the extension was created again while {} file(s) were in the input folder {}, from which an earlier installation ingested files (its record of them was dropped with it): ingesting them again would store their rows twice. Move away the files that were ingested before, then SELECT ingest_resume()",
            candidates.len(),
            st.input_dir.display()
        );
        let paused = transaction(|| {
            Spi::run_with_args(sql::PAUSE_WITH_REASON, &[why.as_str().into()])
                .unwrap_or_else(|e| error!("{e}"));
            Spi::get_one::<bool>(sql::PAUSED)
                .unwrap_or_else(|e| error!("{e}"))
                .unwrap_or(false)
        });
        match paused {
            Ok(true) => {
                self.say(Topic::SelfPause, format!("paused: {why}"), true);
                set_state(WorkerState::Paused);
                true
            }
            Ok(false) => false,
            Err(e) => {
                self.say(
                    Topic::SelfPause,
                    format!("cannot pause after a re-created extension: {e}"),
                    true,
                );
                // Safer to ingest nothing this time and try again.
                true
            }
        }
    }

    /// This database, extension and input folder.
    fn installation(&self, st: &Settings) -> Option<marker::Marker> {
        Some(marker::Marker {
            // SAFETY: MyDatabaseId is set once the worker is connected, and never changes.
            database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            extension: self.extension_oid?,
            input_dir: st.input_dir.clone(),
        })
    }

    /// Once something was ingested (the ledger is not empty), remembers this installation in
    /// the data directory's marker (see marker.rs).
    fn remember_installation(&mut self, st: &Settings) {
        let Some(now) = self.installation(st) else {
            return;
        };
        let ingested = self.ledger.as_ref().is_some_and(|l| !l.files.is_empty());
        if !ingested || self.marker_written == Some(now.extension) {
            return;
        }
        let dir = crate::settings::data_dir();
        if marker::read(&dir).as_ref() != Some(&now) {
            if let Err(e) = marker::write(&dir, &now) {
                self.say(
                    Topic::Marker,
                    format!(
                        "cannot write {}: {e}; a re-created extension could not tell which files were ingested before",
                        dir.join("ecommerce_ingest.marker").display()
                    ),
                    true,
                );
                return;
            }
        }
        self.settled(Topic::Marker);
        self.marker_written = Some(now.extension);
    }

    /// Which of the candidates need ingesting, oldest first (with whether each is young); applies
    /// what is due to the others (processed action, changed-file check) and sets `wake_in` for
    /// young files to look at again.
    fn plan<'c>(
        &mut self,
        st: &Settings,
        candidates: &'c [Candidate],
        wake_in: &mut Option<Duration>,
    ) -> Vec<(&'c Candidate, bool)> {
        let now = now_ns();
        let min_age = st.min_file_age.as_nanos() as i64;
        let mut todo: Vec<(&Candidate, bool)> = Vec::new();
        let soon = |wake_in: &mut Option<Duration>, mtime: i64| {
            *wake_in = Some(wake_at_age(*wake_in, mtime, min_age));
        };
        for cand in candidates {
            let young = now - cand.mtime_ns < min_age;
            let plan = match self.ledger.as_ref().and_then(|l| l.files.get(&cand.name)) {
                None => Plan::Ingest,
                Some(e) => plan_known(e, cand, young, self.changed_seen.get(&cand.name)),
            };
            match plan {
                // A failed file whose move to the failed folder did not work before.
                Plan::Nothing if self.action_retry.contains(&cand.name) => {
                    self.after_failed(st, cand)
                }
                Plan::Nothing => {}
                Plan::Ingest => todo.push((cand, young)),
                Plan::AfterDone => self.after_done(st, cand),
                Plan::LookAgainSoon => soon(wake_in, cand.mtime_ns),
                Plan::CheckChanged => {
                    let e = self
                        .ledger
                        .as_ref()
                        .and_then(|l| l.files.get(&cand.name))
                        .cloned();
                    if let Some(e) = e {
                        self.check_changed(st, cand, &e);
                    }
                }
            }
        }
        todo
    }

    /// Ingests the planned files in groups. `Err`: the ledger changed under us; reload it and
    /// look again at once.
    fn ingest(
        &mut self,
        st: &Settings,
        todo: &[(&Candidate, bool)],
        wake_in: &mut Option<Duration>,
    ) -> Result<Tally, Next> {
        let mut tally = Tally::default();
        let mut next_file = 0;
        'groups: while next_file < todo.len() {
            pg_sys::check_for_interrupts!();
            let group = self.next_group(st, todo, &mut next_file);
            if group.is_empty() {
                break;
            }
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

    /// The next group from `todo[*next..]`: consecutive files, up to GROUP_MAX_FILES and about
    /// one chunk of bytes in all. A bigger file, or one that failed before (so that a file that
    /// keeps failing never rolls back a group of others), forms a group of its own; files still
    /// backed off are skipped.
    fn next_group<'c>(
        &self,
        st: &Settings,
        todo: &[(&'c Candidate, bool)],
        next: &mut usize,
    ) -> Vec<ingest::Member<'c>> {
        let mut group = Vec::new();
        let mut bytes = 0u64;
        while let Some(&(cand, young)) = todo.get(*next) {
            let retry = match self.backoff.get(&cand.name) {
                Some(b) if b.0 > Instant::now() => {
                    *next += 1;
                    continue;
                }
                Some(_) => true,
                None => false,
            };
            let before = self
                .ledger
                .as_ref()
                .and_then(|l| l.files.get(&cand.name))
                .cloned();
            let left = cand
                .size
                .saturating_sub(before.as_ref().map_or(0, |e| e.resume.byte));
            let alone =
                retry || bytes + left > st.chunk_bytes || group.len() >= ingest::GROUP_MAX_FILES;
            if alone && !group.is_empty() {
                break;
            }
            bytes += left;
            group.push(ingest::Member {
                cand,
                before,
                young,
            });
            *next += 1;
            if retry {
                break;
            }
        }
        group
    }

    /// Wakes up when the first backed-off file may be retried; forgets old back-offs.
    fn retry_backed_off_at(&mut self, wake_in: &mut Option<Duration>) {
        let now_i = Instant::now();
        self.backoff
            .retain(|_, b| b.0 + Duration::from_secs(120) > now_i);
        if let Some(d) = self
            .backoff
            .values()
            .map(|b| b.0.saturating_duration_since(now_i))
            .min()
        {
            let d = d.max(Duration::from_millis(1));
            *wake_in = Some(wake_in.map_or(d, |w| w.min(d)));
        }
    }

    /// Which candidates still wait for bytes to be read: their number, and when the oldest of
    /// them was first seen (the ledger's discovery time, or when this worker first saw a file
    /// the ledger does not know yet; never the file's mtime, which a copy can set to any date).
    /// Also updates which files stay active (looked at in the next trigger).
    fn pending_of(&mut self, candidates: &[Candidate]) -> (i64, pg_sys::TimestampTz) {
        let now = pg_now();
        let mut pending = 0i64;
        let mut oldest = pg_sys::TimestampTz::MAX;
        let mut first_seen = HashMap::new();
        self.active.clear();
        for cand in candidates {
            let e = self.ledger.as_ref().and_then(|l| l.files.get(&cand.name));
            let waiting = match e {
                None => true,
                Some(e) => {
                    matches!(e.status, Status::Ingesting | Status::Error)
                        || (e.status == Status::Growing && cand.size > e.resume.byte)
                }
            };
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
            if waiting || e.is_some_and(|e| e.status == Status::Growing) {
                self.active.insert(cand.name.clone());
            }
        }
        self.first_seen = first_seen;
        (pending, if pending > 0 { oldest } else { 0 })
    }

    /// Publishes the pending files and the lag before ingesting, so that they are true while a
    /// trigger is blocked (a lock on the table).
    fn publish_pending(&mut self, candidates: &[Candidate]) {
        let (pending, oldest) = self.pending_of(candidates);
        let mut s = STATUS.exclusive();
        s.pending_files = pending;
        s.oldest_pending_at = oldest;
    }

    /// After a trigger: which files stay active, the pending count and lag, the batch history
    /// row, and the status counters.
    fn record(
        &mut self,
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
        let (pending, oldest) = self.pending_of(candidates);
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

    /// Takes in one file's outcome: counts it, updates the ledger copy, logs, backs off.
    fn handle(
        &mut self,
        st: &Settings,
        m: &ingest::Member<'_>,
        outcome: FileOutcome,
        tally: &mut Tally,
        wake_in: &mut Option<Duration>,
    ) -> Flow {
        let min_age = st.min_file_age.as_nanos() as i64;
        let mtime = m.cand.mtime_ns;
        let soon = |w: &mut Option<Duration>| *w = Some(wake_at_age(*w, mtime, min_age));
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
                if std::mem::take(&mut STATUS.exclusive().blocked) {
                    self.say(
                        Topic::Lock,
                        "the lock was released; ingesting again".into(),
                        false,
                    );
                    self.settled(Topic::Lock);
                }
                self.remember(&m.cand.name, entry);
                self.settled(Topic::File(m.cand.name.clone()));
                self.backoff.remove(&m.cand.name);
                match status {
                    Status::Done => self.after_done(st, m.cand),
                    Status::Failed => self.after_failed(st, m.cand),
                    Status::Changed => {
                        let name = &m.cand.name;
                        self.say(
                            Topic::File(name.clone()),
                            format!("file {name:?} is not resumed: it changed since its first rows were committed (ingest_files.error says how); the committed rows stay, the rest is not ingested; give the new content a new name"),
                            true,
                        );
                        // Said once: the next triggers see the same file and stay quiet.
                        self.changed_seen
                            .insert(m.cand.name.clone(), (m.cand.size, m.cand.mtime_ns));
                        self.after_failed(st, m.cand)
                    }
                    Status::Growing => soon(wake_in),
                    _ => {}
                }
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
            FileOutcome::Paused => {
                set_state(WorkerState::Paused);
                return Flow::Stop;
            }
            FileOutcome::Wait(msg) => {
                if let Some(msg) = msg {
                    self.say(Topic::File(m.cand.name.clone()), msg.clone(), true);
                    if m.before.is_none() {
                        self.record_refused_status(
                            &m.cand.name,
                            m.cand.size,
                            m.cand.mtime_ns,
                            &msg,
                            Status::Error,
                        );
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
                if let Some(e) = entry {
                    self.remember(&m.cand.name, e);
                }
                // The extension's tables are gone (DROP EXTENSION): stop this trigger
                // quietly; the next one finds the extension missing and waits.
                if matches!(error.sqlstate.as_str(), "42P01" | "3F000") {
                    self.ledger = None;
                    self.scanned = None;
                    return Flow::Stop;
                }
                // Gave up waiting for a lock (lock_timeout): not the file's fault. End this
                // trigger, look at the folder again and retry at once.
                if error.sqlstate == LOCK_NOT_AVAILABLE {
                    STATUS.exclusive().blocked = true;
                    self.say(
                        Topic::Lock,
                        format!(
                            "waiting for a lock held by another session ({error}); file {:?} and the files behind it are retried every lock_timeout",
                            m.cand.name
                        ),
                        false,
                    );
                    *wake_in = Some(Duration::from_millis(1));
                    return Flow::Stop;
                }
                // Back off: 1 s, 2 s, 4 s ... up to a minute between attempts.
                let failures = self.backoff.get(&m.cand.name).map_or(0, |b| b.1) + 1;
                let delay = Duration::from_secs(1 << failures.min(6)).min(Duration::from_secs(60));
                self.backoff
                    .insert(m.cand.name.clone(), (Instant::now() + delay, failures));
                self.say_keyed(
                    Topic::File(m.cand.name.clone()),
                    format!("db:{}", error.sqlstate),
                    format!(
                        "file {:?}: {error}; the chunk was rolled back and will be retried in {} s",
                        m.cand.name,
                        delay.as_secs()
                    ),
                    true,
                );
            }
        }
        Flow::Next
    }

    /// The files to consider in this trigger, oldest first. A full scan lists and stats the whole
    /// folder; otherwise only the names notifications reported and the files still in progress
    /// are looked at, so a trigger's cost does not grow with the files ingested before.
    fn look(
        &mut self,
        st: &Settings,
        pattern: &FilePattern,
        mut full: bool,
    ) -> std::io::Result<Vec<Candidate>> {
        let dir = &st.input_dir;
        let dir_mtime = dir_mtime_ns(dir)?;
        self.ensure_watcher(dir);
        let inbox = self.watcher.as_ref().map(|w| w.take_inbox());
        // With a healthy watcher the notified names are enough; a changed folder mtime only
        // asks for a safety rescan, at most once a minute (notifications can miss changes made
        // by other hosts on network file systems).
        full |= match (&inbox, &self.scanned) {
            (None, _) | (_, None) => true,
            (Some(i), Some(sc)) => {
                i.rescan
                    || sc.dir != *dir
                    || sc.pattern != st.file_pattern
                    || (sc.mtime != dir_mtime && sc.at.elapsed() >= SAFETY_RESCAN_EVERY)
            }
        };
        if full {
            let listing = list_dir(dir, pattern)?;
            for sk in &listing.skipped {
                self.refused_once(&sk.name, &sk.reason);
            }
            let present: HashSet<&str> = listing.files.iter().map(|c| c.name.as_str()).collect();
            let gone: Vec<String> = self
                .active
                .iter()
                .filter(|n| !present.contains(n.as_str()))
                .cloned()
                .collect();
            self.vanished(&gone);
            self.scanned = Some(Scanned {
                dir: dir.clone(),
                pattern: st.file_pattern.clone(),
                mtime: dir_mtime,
                at: Instant::now(),
            });
            return Ok(listing.files);
        }
        let mut names: HashSet<String> = inbox.map(|i| i.names).unwrap_or_default();
        names.extend(self.active.iter().cloned());
        names.extend(self.action_retry.iter().cloned());
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            match classify(dir, &name, pattern) {
                EntryKind::File(c) => files.push(c),
                EntryKind::Refused(sk) => self.refused_once(&sk.name, &sk.reason),
                EntryKind::Ignored => {
                    if self.active.contains(&name) {
                        self.vanished(std::slice::from_ref(&name));
                    }
                }
            }
        }
        sort_oldest_first(&mut files);
        Ok(files)
    }

    /// Files that were still in progress and are gone from the folder. A file whose complete
    /// lines were all ingested while it was young is finished as it is; a file that was never
    /// read (a transient error) is forgotten; a partly ingested one is marked failed, saying how
    /// far it got (its committed rows stay).
    fn vanished(&mut self, names: &[String]) {
        for name in names {
            self.active.remove(name);
            let Some(e) = self
                .ledger
                .as_ref()
                .and_then(|l| l.files.get(name))
                .cloned()
            else {
                continue;
            };
            // What a file still in progress ends as once it is gone.
            let end = match e.status {
                Status::Growing => Some((
                    Status::Done,
                    "removed before it settled; every complete line it had was ingested"
                        .to_string(),
                )),
                Status::Ingesting => Some((
                    Status::Failed,
                    format!(
                        "removed from the folder before it was fully ingested: its lines up to {} \
                         (its first {} bytes) are in user_events, the rest was never read",
                        e.resume.line.saturating_sub(1),
                        e.resume.byte
                    ),
                )),
                _ => None,
            };
            if let Some((status, msg)) = end {
                if status == Status::Failed {
                    self.say(
                        Topic::File(name.clone()),
                        format!("file {name:?}: {msg}"),
                        true,
                    );
                }
                let u = Update::status_only(name, status, e.size, e.mtime_ns, e.resume, Some(msg));
                self.write_status(&u, Some(&e));
                continue;
            }
            if e.status == Status::Error {
                let gone = transaction(|| {
                    Spi::run_with_args(sql::LEDGER_FORGET_UNREAD, &[name.as_str().into()])
                        .unwrap_or_else(|e| error!("{e}"))
                });
                if gone.is_ok() {
                    if let Some(l) = self.ledger.as_mut() {
                        l.files.remove(name);
                    }
                    self.settled(Topic::File(name.clone()));
                }
            }
        }
    }

    /// Records a non-regular entry (symlink, FIFO, directory) once in the ledger as failed.
    fn refused_once(&mut self, name: &str, reason: &str) {
        let known = self
            .ledger
            .as_ref()
            .is_some_and(|l| l.files.contains_key(name));
        if !known {
            self.say(
                Topic::File(name.to_string()),
                format!("file {name:?}: {reason}"),
                true,
            );
            self.record_refused_status(name, 0, 0, reason, Status::Failed);
        }
    }

    /// Writes a ledger update that commits no rows in its own transaction and, once it is
    /// committed, takes it into the ledger copy (`before`: the file's entry until now).
    fn write_status(&mut self, u: &Update<'_>, before: Option<&Entry>) {
        let written = transaction(|| {
            Spi::connect_mut(|c| ledger::write(c, u)).unwrap_or_else(|e| error!("{e}"))
        });
        if written.is_ok() {
            self.remember(u.name, Entry::after(u, before));
        }
    }

    fn remember(&mut self, name: &str, e: Entry) {
        if let Some(l) = self.ledger.as_mut() {
            l.files.insert(name.to_string(), e);
        }
    }

    fn record_refused_status(
        &mut self,
        name: &str,
        size: u64,
        mtime_ns: i64,
        reason: &str,
        status: Status,
    ) {
        let u = Update::status_only(
            name,
            status,
            size,
            mtime_ns,
            Default::default(),
            Some(reason.to_string()),
        );
        self.write_status(&u, None);
    }

    /// A done file seen again with another size or mtime: same content (touched) or changed?
    fn check_changed(&mut self, st: &Settings, cand: &Candidate, e: &Entry) {
        let path = st.input_dir.join(&cand.name);
        let now_hash = ecommerce_events::reader::hash_file(&path)
            .ok()
            .map(ledger::hash_hex);
        if now_hash.is_some() && now_hash == e.hash && e.status == Status::Done {
            // Touched or copied again with the same bytes: not new data. Only the size and
            // mtime the ledger compares with are updated; what was committed stays as it was.
            let name = cand.name.as_str();
            let touched = transaction(|| {
                Spi::run_with_args(
                    sql::LEDGER_TOUCH,
                    &[
                        name.into(),
                        (cand.size as i64).into(),
                        ledger::pg_time(cand.mtime_ns).into(),
                        (cand.dev as i64).into(),
                        (cand.inode as i64).into(),
                        ledger::pg_time(cand.ctime_ns).into(),
                    ],
                )
                .unwrap_or_else(|e| error!("{e}"))
            });
            if touched.is_ok() {
                let mut entry = e.clone();
                entry.size = cand.size;
                entry.mtime_ns = cand.mtime_ns;
                entry.identity = Some(Identity::of(cand));
                self.remember(name, entry);
            }
            self.after_done(st, cand);
            return;
        }
        let msg = format!(
            "file {:?} changed after it was ingested ({} bytes, hash {}) and now has {} bytes, hash {}: its new content is NOT ingested; give it a new name to ingest it",
            cand.name,
            e.resume.byte,
            e.hash.as_deref().unwrap_or("-"),
            cand.size,
            now_hash.as_deref().unwrap_or("unreadable")
        );
        self.say(Topic::File(cand.name.clone()), msg.clone(), true);
        let u = Update::status_only(
            &cand.name,
            Status::Changed,
            e.size,
            e.mtime_ns,
            e.resume,
            Some(msg),
        );
        self.write_status(&u, Some(e));
        self.changed_seen
            .insert(cand.name.clone(), (cand.size, cand.mtime_ns));
        self.after_failed(st, cand);
    }

    /// The processed action for a file done: archive, delete, or nothing (keep).
    fn after_done(&mut self, st: &Settings, cand: &Candidate) {
        match st.processed_action {
            ProcessedAction::Keep => {}
            ProcessedAction::Delete => self.act(st, cand, Act::Delete),
            ProcessedAction::Archive => self.act(st, cand, Act::Archive),
        }
    }

    /// A file that failed as a whole, or changed: to the failed folder, unless keep.
    fn after_failed(&mut self, st: &Settings, cand: &Candidate) {
        if st.processed_action != ProcessedAction::Keep {
            self.act(st, cand, Act::MoveToFailed);
        }
    }

    /// Archives, deletes or moves the file `cand` was about, if it is still that file: a file
    /// replaced under the same name meanwhile is left alone (the worker never moves or deletes
    /// a file it did not judge). A failure is logged once per folder (not per file) and makes
    /// the state `degraded` until an action succeeds there again.
    fn act(&mut self, st: &Settings, cand: &Candidate, act: Act) {
        let name = cand.name.as_str();
        let src = st.input_dir.join(name);
        self.action_retry.remove(name);
        match std::fs::symlink_metadata(&src) {
            // Already moved (the action is repeated after a crash): nothing to do.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Ok(md) if md.dev() != cand.dev || md.ino() != cand.inode => {
                self.say(
                    Topic::File(name.to_string()),
                    format!(
                        "file {name:?} was replaced by another file after it was ingested: the new one is left in place, not {}",
                        act.verb()
                    ),
                    false,
                );
                return;
            }
            _ => {}
        }
        let folder = match act {
            Act::Archive => st.archive_dir.clone(),
            Act::MoveToFailed => st.failed_dir.clone(),
            Act::Delete => st.input_dir.clone(),
        };
        let r = match act {
            Act::Delete => files::delete(&src),
            Act::Archive | Act::MoveToFailed => {
                if files::same_dir(&folder, &st.input_dir) {
                    Err(std::io::Error::other(
                        "it is the input folder itself (under another path): files moved there would be ingested again",
                    ))
                } else {
                    files::move_into(&src, &folder, name).map(|_| ())
                }
            }
        };
        let topic = Topic::Action(folder.clone());
        match r {
            Ok(()) => {
                if self.action_problem.as_ref().is_some_and(|p| p.0 == folder) {
                    self.action_problem = None;
                }
                self.settled(topic);
            }
            Err(e) => {
                let msg = format!(
                    "processed files cannot be {} {}: {e} (first seen with {name:?}); they stay in the input folder, already ingested, and are retried at every trigger",
                    act.verb(),
                    folder.display()
                );
                self.say_keyed(topic, format!("{:?}", e.kind()), msg.clone(), true);
                self.action_problem = Some((folder, msg.clone()));
                self.action_retry.insert(name.to_string());
                if STATUS.share().state == WorkerState::Running {
                    set_state_because(WorkerState::Degraded, &msg);
                }
            }
        }
    }
}

/// What happens to a file once judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Archive,
    Delete,
    MoveToFailed,
}

impl Act {
    fn verb(self) -> &'static str {
        match self {
            Act::Archive => "archived into",
            Act::Delete => "deleted from",
            Act::MoveToFailed => "moved into",
        }
    }
}
