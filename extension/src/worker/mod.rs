//! The background worker: wakes on notifications, ingest_trigger() or the trigger interval,
//! scans the input folder, and ingests what is new, file by file.

mod copy;
mod files;
mod ingest;
mod launcher;
mod ledger;
mod sql;
mod txn;
mod watch;

use crate::settings::{ProcessedAction, Settings};
use crate::shared::{WorkerState, STATUS};
use ecommerce_events::pipeline::Pipeline;
use ecommerce_events::{
    classify, dir_mtime_ns, list_dir, sort_oldest_first, Candidate, EntryKind, FilePattern,
};
use ingest::FileOutcome;
use ledger::{Entry, Ledger, Status, Update};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
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
    log!("ecommerce_ingest worker started (database {db:?})");
    let mut w = Worker::default();
    let mut reason = "start";
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

#[derive(Default)]
struct Worker {
    ledger: Option<Ledger>,
    ledger_key: (i64, u64),
    watcher: Option<watch::Watcher>,
    /// What was last said about each topic (a file, the folder...): each message is logged once.
    said: HashMap<String, String>,
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
    STATUS.exclusive().state = state;
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
    let same = e.size == cand.size && e.mtime_ns.div_euclid(1000) == cand.mtime_ns.div_euclid(1000);
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
    /// Logs `msg` under `topic` unless it is what was said last time; also the status' last error.
    fn say(&mut self, topic: &str, msg: String, is_error: bool) {
        let key = msg.clone();
        self.say_keyed(topic, key, msg, is_error)
    }

    /// Like `say`, but repeats are recognised by `key` (messages may hold changing values).
    fn say_keyed(&mut self, topic: &str, key: String, msg: String, is_error: bool) {
        if self.said.get(topic) == Some(&key) {
            return;
        }
        if is_error {
            warning!("ecommerce_ingest: {msg}");
            STATUS.exclusive().set_error(&msg);
        } else {
            log!("ecommerce_ingest: {msg}");
        }
        self.said.insert(topic.to_string(), key);
    }

    fn settled(&mut self, topic: &str) {
        self.said.remove(topic);
    }

    fn wait(&mut self, st: &Settings, next: &Next) -> &'static str {
        if next.backlog {
            pg_sys::check_for_interrupts!();
            if std::mem::take(&mut STATUS.exclusive().trigger_requested) {
                return "manual";
            }
            return "backlog";
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
            "manual"
        } else if notified {
            "notify"
        } else if rc & pg_sys::WL_TIMEOUT as i32 != 0 || started.elapsed() >= timeout {
            "interval"
        } else {
            "wakeup"
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
                    self.settled("reader");
                }
                Err(e) => self.say(
                    "reader",
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
                self.settled("watch");
            }
            Err(e) => self.say(
                "watch",
                format!(
                    "no file-system notifications for {}: {e}; polling every trigger_interval",
                    dir.display()
                ),
                false,
            ),
        }
    }

    /// One trigger: check the extension and the paused flag, list the folder, plan, ingest,
    /// record.
    fn trigger(&mut self, st: &Settings, reason: &'static str) -> Next {
        let idle = Next {
            backlog: false,
            wake_in: None,
        };
        let started = Instant::now();
        let started_at = pg_now();
        let (paused, loaded_now) = match self.probe() {
            Ok(p) => p,
            Err(next) => return next,
        };
        let pattern = match FilePattern::new(&st.file_pattern) {
            Ok(p) => p,
            Err(e) => {
                self.say(
                    "pattern",
                    format!("ecommerce_ingest.file_pattern: {e}"),
                    true,
                );
                set_state(WorkerState::Error);
                return idle;
            }
        };
        self.settled("pattern");
        let full = reason == "start" || reason == "manual" || loaded_now;
        let candidates = match self.look(st, &pattern, full) {
            Ok(c) => c,
            Err(e) => {
                self.watcher = None;
                self.scanned = None;
                self.say(
                    "dir",
                    format!("input folder {}: {e}", st.input_dir.display()),
                    true,
                );
                let mut s = STATUS.exclusive();
                s.state = WorkerState::Error;
                s.pending_files = 0;
                s.last_trigger_at = started_at;
                return idle;
            }
        };
        self.settled("dir");

        let mut wake_in: Option<Duration> = None;
        let mut todo = if paused {
            Vec::new()
        } else {
            self.plan(st, &candidates, &mut wake_in)
        };
        let backlog = todo.len() > st.max_files_per_trigger;
        todo.truncate(st.max_files_per_trigger);
        let tally = match self.ingest(st, &todo, &mut wake_in) {
            Ok(t) => t,
            Err(reload) => return reload,
        };
        self.retry_backed_off_at(&mut wake_in);
        self.record(&candidates, tally, started, started_at, reason);
        Next { backlog, wake_in }
    }

    /// Checks that the extension exists, reads the paused flag, and (re)loads the ledger when it
    /// is new or changed. Returns (paused, ledger loaded now), or what to do instead.
    fn probe(&mut self) -> Result<(bool, bool), Next> {
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
                let Some(oid) = c
                    .select(sql::EXTENSION_OID, None, &[])?
                    .first()
                    .get_one::<i64>()?
                else {
                    return Ok(None);
                };
                let paused = c
                    .select(sql::PAUSED, None, &[])?
                    .first()
                    .get_one::<bool>()?
                    .unwrap_or(false);
                let ledger = if stale_key != (oid, generation) {
                    Some(Ledger::load(c)?)
                } else {
                    None
                };
                Ok::<_, pgrx::spi::Error>(Some((oid, paused, ledger)))
            })
            .unwrap_or_else(|e| error!("{e}"))
        });
        let (oid, paused, loaded) = match probe {
            Err(e) => {
                self.say(
                    "control",
                    format!("cannot read the extension's tables: {e}"),
                    true,
                );
                return Err(Next {
                    backlog: false,
                    wake_in: None,
                });
            }
            Ok(None) => {
                self.ledger = None;
                self.scanned = None;
                self.watcher = None;
                set_state(WorkerState::WaitingForExtension);
                let db = crate::settings::database();
                self.say(
                    "control",
                    format!("waiting for CREATE EXTENSION ecommerce_ingest in database {db:?}"),
                    false,
                );
                // CREATE EXTENSION wakes us at once; this is only a fallback.
                return Err(Next {
                    backlog: false,
                    wake_in: Some(Duration::from_secs(5)),
                });
            }
            Ok(Some(p)) => p,
        };
        self.settled("control");
        let loaded_now = loaded.is_some();
        if let Some(l) = loaded {
            self.ledger = Some(l);
            self.ledger_key = (oid, generation);
            self.changed_seen.clear();
        }
        // Paused: still look at the folder, so files_pending and the lag stay true, but ingest
        // nothing (and apply no processed action).
        set_state(if paused {
            WorkerState::Paused
        } else {
            WorkerState::Running
        });
        Ok((paused, loaded_now))
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
                Plan::Nothing => {}
                Plan::Ingest => todo.push((cand, young)),
                Plan::AfterDone => self.after_done(st, &cand.name),
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
                    "reader",
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

    /// After a trigger: which files stay active, the pending count and lag, the batch history
    /// row, and the status counters.
    fn record(
        &mut self,
        candidates: &[Candidate],
        tally: Tally,
        started: Instant,
        started_at: pg_sys::TimestampTz,
        reason: &'static str,
    ) {
        let Tally {
            files,
            rows,
            rejected,
        } = tally;
        // Files that still need attention stay active; pending ones still have bytes to read.
        let mut pending = 0i64;
        let mut oldest = i64::MAX;
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
                oldest = oldest.min(cand.mtime_ns);
            }
            if waiting || e.is_some_and(|e| e.status == Status::Growing) {
                self.active.insert(cand.name.clone());
            }
        }
        let elapsed = started.elapsed();
        let ms = elapsed.as_secs_f64() * 1000.0;
        let rps = if ms > 0.0 {
            rows as f64 / elapsed.as_secs_f64()
        } else {
            0.0
        };
        if files > 0 {
            // The batch history is informational: a failure here is reported, never fatal.
            let logged = transaction(|| {
                Spi::run_with_args(
                    sql::INSERT_BATCH_LOG,
                    &[
                        pgrx::datum::TimestampWithTimeZone::try_from(started_at)
                            .ok()
                            .into(),
                        reason.into(),
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
                Ok(()) => self.settled("batch_log"),
                Err(e) => self.say_keyed(
                    "batch_log",
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
            if files > 0 {
                s.last_batch_ms = ms;
                s.last_batch_rows = rows;
                s.rows_per_second = rps;
            }
            s.pending_files = pending;
            s.oldest_pending_at = if pending > 0 {
                ledger::pg_time(oldest).into()
            } else {
                0
            };
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
                if r + j > 0 || status == Status::Failed {
                    tally.files += 1;
                }
                tally.rows += r;
                tally.rejected += j;
                self.remember(&m.cand.name, entry);
                self.settled(&m.cand.name);
                self.backoff.remove(&m.cand.name);
                match status {
                    Status::Done => self.after_done(st, &m.cand.name),
                    Status::Failed => self.after_failed(st, &m.cand.name),
                    Status::Growing => soon(wake_in),
                    _ => {}
                }
            }
            FileOutcome::Stale => {
                self.say(
                    "stale",
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
                    self.say(&m.cand.name, msg.clone(), true);
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
                // Back off: 1 s, 2 s, 4 s ... up to a minute between attempts.
                let failures = self.backoff.get(&m.cand.name).map_or(0, |b| b.1) + 1;
                let delay = Duration::from_secs(1 << failures.min(6)).min(Duration::from_secs(60));
                self.backoff
                    .insert(m.cand.name.clone(), (Instant::now() + delay, failures));
                self.say_keyed(
                    &m.cand.name,
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
                    self.say(name, format!("file {name:?}: {msg}"), true);
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
                    self.settled(name);
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
            self.say(name, format!("file {name:?}: {reason}"), true);
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
                    ],
                )
                .unwrap_or_else(|e| error!("{e}"))
            });
            if touched.is_ok() {
                let mut entry = e.clone();
                entry.size = cand.size;
                entry.mtime_ns = cand.mtime_ns;
                self.remember(name, entry);
            }
            self.after_done(st, &cand.name);
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
        self.say(&cand.name, msg.clone(), true);
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
        if st.processed_action != ProcessedAction::Keep {
            self.after_failed(st, &cand.name);
        }
    }

    fn after_done(&mut self, st: &Settings, name: &str) {
        let src = st.input_dir.join(name);
        let r = match st.processed_action {
            ProcessedAction::Keep => return,
            ProcessedAction::Delete => files::delete(&src),
            ProcessedAction::Archive => files::move_into(&src, &st.archive_dir, name).map(|_| ()),
        };
        if let Err(e) = r {
            self.say(
                &format!("{name}/action"),
                format!("file {name:?} was ingested but could not be archived or deleted: {e}"),
                true,
            );
        }
    }

    fn after_failed(&mut self, st: &Settings, name: &str) {
        if st.processed_action == ProcessedAction::Keep {
            return;
        }
        let src = st.input_dir.join(name);
        if let Err(e) = files::move_into(&src, &st.failed_dir, name) {
            self.say(
                &format!("{name}/action"),
                format!("file {name:?} could not be moved to the failed folder: {e}"),
                true,
            );
        }
    }
}
