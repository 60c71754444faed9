//! Shared memory: each ingestion worker's live status, read by ingest_status() and
//! ingest_workers(), and its wake-up latch. One slot per worker: slot 0 is the events pipeline's
//! first worker (configured in postgresql.conf); the others are handed out by that worker when
//! it starts a worker of a pipeline (or the events pipeline's further workers).

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Set in `_PG_init` when the library is loaded through shared_preload_libraries.
pub static PRELOADED: AtomicBool = AtomicBool::new(false);

pub const ERR_LEN: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum WorkerState {
    #[default]
    Stopped = 0,
    /// Connected, waiting for CREATE EXTENSION in the configured database.
    WaitingForExtension = 1,
    Running = 2,
    Paused = 3,
    /// Cannot ingest: the input folder is unusable or `file_pattern` is invalid (see last_error).
    Error = 4,
    /// The launcher waits for the database named by `ecommerce_ingest.database` to exist.
    WaitingForDatabase = 5,
    /// The extension's SQL objects are of another version than the library (`detail` says
    /// which): waits for ALTER EXTENSION ... UPDATE.
    WaitingForUpdate = 6,
    /// Ingesting, but processed files cannot be archived, deleted or moved (see `detail`).
    Degraded = 7,
    /// Blocked on a lock held by another session. Never stored: ingest_status() finds it in
    /// the lock manager, since a blocked worker cannot say so itself.
    WaitingForLock = 8,
    /// The server is a hot standby (recovery in progress): nothing is written until it is
    /// promoted.
    Standby = 9,
}

impl WorkerState {
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Stopped => "no_worker",
            WorkerState::WaitingForExtension
            | WorkerState::WaitingForDatabase
            | WorkerState::WaitingForUpdate => "waiting",
            WorkerState::Running => "running",
            WorkerState::Paused => "paused",
            WorkerState::Error => "error",
            WorkerState::Degraded => "degraded",
            WorkerState::WaitingForLock => "waiting_for_lock",
            WorkerState::Standby => "standby",
        }
    }
}

impl WorkerState {
    /// Which state speaks for a pipeline whose workers are in different states: the higher.
    fn weight(self) -> u8 {
        match self {
            WorkerState::Running | WorkerState::Paused => 0,
            WorkerState::Stopped => 1,
            WorkerState::Standby => 2,
            WorkerState::WaitingForExtension | WorkerState::WaitingForDatabase => 3,
            WorkerState::WaitingForLock => 4,
            WorkerState::Degraded => 5,
            WorkerState::WaitingForUpdate => 6,
            WorkerState::Error => 7,
        }
    }
}

#[derive(Clone, Copy)]
pub struct Status {
    pub pid: i32,
    pub state: WorkerState,
    /// `MyLatch` of the worker process, in shared memory: other backends set it to wake it.
    pub latch: usize,
    pub trigger_requested: bool,
    /// Bumped by ingest_retry(): the worker reloads its ledger cache.
    pub ledger_generation: u64,
    pub last_trigger_at: pg_sys::TimestampTz,
    /// Duration of the last trigger, even one that found nothing (milliseconds).
    pub last_trigger_ms: f64,
    pub last_batch_ms: f64,
    pub last_batch_rows: i64,
    pub rows_per_second: f64,
    pub pending_files: i64,
    /// Modification time of the oldest file with unread bytes (0: none).
    pub oldest_pending_at: pg_sys::TimestampTz,
    pub last_error_at: pg_sys::TimestampTz,
    pub last_error_len: usize,
    pub last_error: [u8; ERR_LEN],
    /// The last chunk gave up waiting for a lock (lock_timeout); cleared by the next commit.
    pub blocked: bool,
    /// Why the state is `error`, `degraded` or waiting for an update (empty otherwise).
    pub detail_len: usize,
    pub detail: [u8; ERR_LEN],
}

impl Default for Status {
    fn default() -> Self {
        Status {
            pid: 0,
            state: WorkerState::Stopped,
            latch: 0,
            trigger_requested: false,
            ledger_generation: 0,
            last_trigger_at: 0,
            last_trigger_ms: 0.0,
            last_batch_ms: 0.0,
            last_batch_rows: 0,
            rows_per_second: 0.0,
            pending_files: 0,
            oldest_pending_at: 0,
            last_error_at: 0,
            last_error_len: 0,
            last_error: [0; ERR_LEN],
            blocked: false,
            detail_len: 0,
            detail: [0; ERR_LEN],
        }
    }
}

// SAFETY: Status is plain old data (integers, a byte array, a fieldless enum): it has no
// pointer into a process's own memory (`latch` is an address in shared memory) and is valid
// when zeroed, as PGRXSharedMemory requires.
unsafe impl PGRXSharedMemory for Status {}

/// Most pipelines with a worker at once (the events pipeline included).
pub const MAX_PIPELINES: usize = 32;
/// Most workers at once, all pipelines together (each has a slot).
pub const MAX_SLOTS: usize = 64;
/// Longest pipeline name (as the catalog's CHECK allows).
pub const NAME_LEN: usize = 64;

/// A worker's slot: its pipeline's name (empty: free), which of the pipeline's workers it is,
/// and its status.
#[derive(Clone, Copy)]
pub struct Slot {
    pub name_len: usize,
    pub name: [u8; NAME_LEN],
    /// 0-based: worker `index` of the pipeline's `workers` (see ingest_core::share).
    pub index: u32,
    /// When the events worker handed the slot out (to start its worker).
    pub claimed_at: pg_sys::TimestampTz,
    pub status: Status,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            name_len: 0,
            name: [0; NAME_LEN],
            index: 0,
            claimed_at: 0,
            status: Status::default(),
        }
    }
}

impl Slot {
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.name[..self.name_len]).unwrap_or("")
    }
}

#[derive(Clone, Copy)]
pub struct Slots {
    pub slots: [Slot; MAX_SLOTS],
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            slots: [Slot::default(); MAX_SLOTS],
        }
    }
}

impl Slots {
    /// The slot of worker `index` of the pipeline named `name`.
    pub fn find(&self, name: &str, index: u32) -> Option<usize> {
        if name == crate::settings::EVENTS_PIPELINE && index == 0 {
            return Some(0);
        }
        (1..MAX_SLOTS).find(|&i| {
            let s = &self.slots[i];
            s.name_len > 0 && s.name() == name && s.index == index
        })
    }

    /// The slots of every worker of the pipeline named `name`, by worker index.
    pub fn of(&self, name: &str) -> Vec<usize> {
        let mut v: Vec<usize> = (0..MAX_SLOTS)
            .filter(|&i| {
                let s = &self.slots[i];
                (i == 0 && name == crate::settings::EVENTS_PIPELINE)
                    || (i > 0 && s.name_len > 0 && s.name() == name)
            })
            .collect();
        v.sort_by_key(|&i| self.slots[i].index);
        v
    }

    /// The slot of worker `index` of `name`, taking a free one if it has none (`None`: all
    /// taken).
    pub fn claim(&mut self, name: &str, index: u32) -> Option<usize> {
        if let Some(i) = self.find(name, index) {
            return Some(i);
        }
        let i = (1..MAX_SLOTS).find(|&i| self.slots[i].name_len == 0)?;
        let n = name.len().min(NAME_LEN);
        self.slots[i] = Slot::default();
        self.slots[i].name[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.slots[i].name_len = n;
        self.slots[i].index = index;
        // SAFETY: reads the clock; callable from any backend.
        self.slots[i].claimed_at = unsafe { pg_sys::GetCurrentTimestamp() };
        Some(i)
    }
}

// SAFETY: Slots is plain old data (see Status; the names are byte arrays), valid when zeroed.
unsafe impl PGRXSharedMemory for Slots {}

// SAFETY: the name is unique to this extension; the lock is initialised by pg_shmem_init! in
// `init`, from _PG_init of the preloaded library, before any process uses it.
pub static SLOTS: PgLwLock<Slots> = unsafe { PgLwLock::new(c"ecommerce_ingest_status") };

/// This process's slot (0 for the events worker, the launcher and every other backend).
static MY_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Makes this process the worker of slot `i` (a pipeline worker, at its start).
pub fn set_my_slot(i: usize) {
    MY_SLOT.store(i.min(MAX_SLOTS - 1), Ordering::Relaxed);
}

pub fn my_slot() -> usize {
    MY_SLOT.load(Ordering::Relaxed)
}

/// The status of this process's pipeline (see [`MY_SLOT`]), under the shared lock.
pub struct MyStatus;

pub static STATUS: MyStatus = MyStatus;

pub struct StatusRead<'a>(pgrx::lwlock::PgLwLockShareGuard<'a, Slots>, usize);
pub struct StatusWrite<'a>(pgrx::lwlock::PgLwLockExclusiveGuard<'a, Slots>, usize);

impl std::ops::Deref for StatusRead<'_> {
    type Target = Status;
    fn deref(&self) -> &Status {
        &self.0.slots[self.1].status
    }
}
impl std::ops::Deref for StatusWrite<'_> {
    type Target = Status;
    fn deref(&self) -> &Status {
        &self.0.slots[self.1].status
    }
}
impl std::ops::DerefMut for StatusWrite<'_> {
    fn deref_mut(&mut self) -> &mut Status {
        &mut self.0.slots[self.1].status
    }
}

impl MyStatus {
    pub fn share(&self) -> StatusRead<'static> {
        StatusRead(SLOTS.share(), my_slot())
    }
    pub fn exclusive(&self) -> StatusWrite<'static> {
        StatusWrite(SLOTS.exclusive(), my_slot())
    }
}

pub fn init() {
    pgrx::pg_shmem_init!(SLOTS);
}

pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

impl Status {
    pub fn error(&self) -> Option<String> {
        (self.last_error_len > 0)
            .then(|| String::from_utf8_lossy(&self.last_error[..self.last_error_len]).into_owned())
    }

    pub fn set_error(&mut self, msg: &str) {
        self.last_error_len = copy_capped(&mut self.last_error, msg);
        // SAFETY: reads the clock; callable from any backend.
        self.last_error_at = unsafe { pg_sys::GetCurrentTimestamp() };
    }

    pub fn detail(&self) -> Option<String> {
        (self.detail_len > 0)
            .then(|| String::from_utf8_lossy(&self.detail[..self.detail_len]).into_owned())
    }

    /// Sets the state and what explains it (`None`: nothing to explain).
    pub fn set_state(&mut self, state: WorkerState, detail: Option<&str>) {
        self.state = state;
        self.detail_len = detail.map_or(0, |d| copy_capped(&mut self.detail, d));
    }
}

/// One status for a pipeline's workers (`all`: by worker index, the first worker first): the
/// first worker's pid and trigger times, the most serious state (and what explains it), the
/// sums of pending files and rates, the oldest pending file, the latest error. A later worker
/// that stopped (it is started again within seconds) does not make the pipeline `no_worker`.
pub fn combined(all: &[Status]) -> Status {
    let Some(first) = all.first() else {
        return Status::default();
    };
    let mut c = *first;
    for s in &all[1..] {
        if s.pid == 0 && s.state == WorkerState::Stopped {
            continue;
        }
        if s.state.weight() > c.state.weight() {
            c.state = s.state;
            c.detail = s.detail;
            c.detail_len = s.detail_len;
        }
        c.pending_files += s.pending_files;
        c.rows_per_second += s.rows_per_second;
        c.last_batch_rows += s.last_batch_rows;
        c.last_batch_ms = c.last_batch_ms.max(s.last_batch_ms);
        c.last_trigger_at = c.last_trigger_at.max(s.last_trigger_at);
        c.last_trigger_ms = c.last_trigger_ms.max(s.last_trigger_ms);
        if s.oldest_pending_at != 0
            && (c.oldest_pending_at == 0 || s.oldest_pending_at < c.oldest_pending_at)
        {
            c.oldest_pending_at = s.oldest_pending_at;
        }
        if s.last_error_len > 0 && s.last_error_at > c.last_error_at {
            c.last_error = s.last_error;
            c.last_error_len = s.last_error_len;
            c.last_error_at = s.last_error_at;
        }
        c.blocked |= s.blocked;
    }
    c
}

/// Copies `msg` into `buf`, cut on a character boundary; returns the length copied.
fn copy_capped(buf: &mut [u8; ERR_LEN], msg: &str) -> usize {
    let mut n = msg.len().min(ERR_LEN);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    buf[..n].copy_from_slice(&msg.as_bytes()[..n]);
    n
}

/// Asks the events pipeline's workers to run a trigger now (the first of them also starts and
/// stops the other pipelines' workers). Returns false when no worker runs.
pub fn wake_worker(trigger: bool) -> bool {
    wake_pipeline(crate::settings::EVENTS_PIPELINE, trigger)
}

/// Asks the workers of the pipeline named `name` to run a trigger now. Returns false when no
/// worker runs for it.
pub fn wake_pipeline(name: &str, trigger: bool) -> bool {
    if !preloaded() {
        return false;
    }
    let slots = SLOTS.share().of(name);
    slots
        .into_iter()
        .fold(false, |woke, i| wake_slot(i, trigger) | woke)
}

/// Asks every worker of pipeline `name` to reload its copy of the ledger (ingest_retry()).
pub fn reload_ledger(name: &str) {
    if !preloaded() {
        return;
    }
    let mut all = SLOTS.exclusive();
    for i in all.of(name) {
        all.slots[i].status.ledger_generation += 1;
    }
}

fn wake_slot(i: usize, trigger: bool) -> bool {
    if !preloaded() {
        return false;
    }
    let mut all = SLOTS.exclusive();
    let s = &mut all.slots[i].status;
    if trigger {
        s.trigger_requested = true;
    }
    if s.pid == 0 || s.latch == 0 {
        return false;
    }
    // SAFETY: `latch` is the worker's MyLatch, in shared memory, published by the worker at start
    // and cleared (under this same lock, held here) by its exit hook before the latch can go.
    unsafe { pg_sys::SetLatch(s.latch as *mut pg_sys::Latch) };
    true
}

/// Wakes the worker once the current transaction commits, so it sees what the transaction
/// wrote (waking it earlier would let it read the old state and sleep again).
pub fn wake_worker_at_commit() {
    if preloaded() {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, || {
            wake_worker(true);
        });
    }
}

/// Wakes the worker of pipeline `name` once the current transaction commits (and the events
/// worker, which starts and stops the pipelines' workers).
pub fn wake_pipeline_at_commit(name: &str) {
    if preloaded() {
        let name = name.to_string();
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
            wake_pipeline(&name, true);
            wake_worker(true);
        });
    }
}
