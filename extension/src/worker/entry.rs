//! The ingestion workers' processes: their entry points (the events worker, and a worker per
//! pipeline of ingest_pipelines), signals, exit hook, and the loop that waits for a
//! notification, `ingest_trigger()` or the trigger interval, then runs a trigger.

use super::session;
use super::state::{set_state_because, Next, Reason, Worker};
use super::supervise::Definition;
use crate::settings::Settings;
use crate::shared::{WorkerState, STATUS};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::time::Instant;

unsafe extern "C-unwind" fn on_sighup(sig: i32) {
    // SAFETY: PostgreSQL's own handler: sets ConfigReloadPending and the latch.
    unsafe { pg_sys::SignalHandlerForConfigReload(sig) }
}

unsafe extern "C-unwind" fn on_sigterm(sig: i32) {
    // SAFETY: PostgreSQL's own handler: sets the interrupt flags and the latch.
    unsafe { pg_sys::die(sig) }
}

/// SIGHUP: reload flag and latch (the main loop reloads). SIGTERM: PostgreSQL's own handler, so
/// a wait on a lock is interrupted at shutdown. Then the process's signals are unblocked. Used
/// by the launcher too.
pub fn handle_signals() {
    // SAFETY: called once at the start of a background worker, on its only thread, before
    // signals are unblocked; the handlers only call PostgreSQL's async-signal-safe handlers.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(on_sighup));
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(on_sigterm));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// Clears the worker's entry in shared memory when the process exits, however it exits.
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
    run();
}

/// A pipeline's worker (or one of the events pipeline's further workers): its slot in shared
/// memory is the argument, its pipeline's name the extra bytes (both from the events worker, see
/// supervise.rs); the slot says which of the pipeline's workers it is.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ecommerce_ingest_pipeline_main(arg: pg_sys::Datum) {
    let slot = arg.value();
    let name = BackgroundWorker::get_extra().to_string();
    crate::shared::set_my_slot(slot);
    let index = crate::shared::SLOTS.share().slots[crate::shared::my_slot()].index;
    super::me::serve(&name, index);
    run();
}

fn run() {
    handle_signals();
    let db = crate::settings::database();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    // SAFETY: registered once, on the worker's thread; on_exit only touches shared memory.
    unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0)) };
    {
        let mut s = STATUS.exclusive();
        // SAFETY: MyProcPid and MyLatch are set for this process before its main function runs;
        // the latch lives in shared memory as long as the process does (on_exit clears it).
        s.pid = unsafe { pg_sys::MyProcPid };
        s.latch = unsafe { pg_sys::MyLatch } as usize;
        s.state = WorkerState::Running;
    }
    if let Err(e) = session::pin() {
        error!("ecommerce_ingest: cannot pin the worker's session settings: {e}");
    }
    // Its row in pg_stat_activity names the pipeline, and which of its workers it is after the
    // first.
    let (pipeline, index) = (super::me::pipeline(), super::me::index());
    let app = match index {
        0 => format!("ecommerce_ingest pipeline {pipeline}"),
        i => format!("ecommerce_ingest pipeline {pipeline} worker {}", i + 1),
    };
    crate::guc::set(
        "application_name",
        &app,
        pg_sys::GucContext::PGC_USERSET,
        pg_sys::GucAction::GUC_ACTION_SET,
    );
    if super::me::is_first_events_worker() {
        log!("ecommerce_ingest worker started (database {db:?})");
    } else {
        log!(
            "ecommerce_ingest worker {} of pipeline {pipeline:?} started (database {db:?})",
            index + 1
        );
    }
    let mut w = Worker::default();
    let mut reason = Reason::Start;
    loop {
        // A hot standby: nothing may be written (not even a row lock) until it is promoted.
        // Look again every second: ingestion starts within a second of promotion.
        if w.on_standby() {
            let st = Settings::read();
            reason = w.wait(
                &st,
                &Next {
                    backlog: false,
                    wake_in: Some(std::time::Duration::from_secs(1)),
                },
            );
            if reason != Reason::Manual {
                reason = Reason::Start;
            }
            continue;
        }
        // pgrx's SIGHUP handling does not reload the configuration: do it here.
        // SAFETY: the flag is set by the signal handler and read on the worker's own thread.
        unsafe {
            if pg_sys::ConfigReloadPending != 0 {
                pg_sys::ConfigReloadPending = 0;
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
        }
        let st = if super::me::is_generic() {
            match w.pipeline_definition() {
                Definition::Ready(st) => *st,
                Definition::Invalid => {
                    reason = w.wait(&Settings::read(), &Next::IDLE);
                    continue;
                }
                // Dropped (or re-created: its ledger is another): this worker's work is over.
                Definition::Gone => {
                    log!(
                        "ecommerce_ingest: pipeline {:?} is gone; its worker stops",
                        super::me::pipeline()
                    );
                    return;
                }
            }
        } else {
            Settings::read()
        };
        // One worker too many (the pipeline's `workers` went down): its files are another's.
        let share = ingest_core::Share::new(super::me::index(), st.workers);
        if share.surplus() {
            log!(
                "ecommerce_ingest: pipeline {:?} now has {} worker(s); worker {} stops",
                super::me::pipeline(),
                st.workers,
                share.index + 1
            );
            return;
        }
        w.share = share;
        w.apply_lock_timeout(&st);
        let next = w.trigger(&st, reason);
        if super::me::is_first_events_worker() {
            w.supervise(&st, reason);
        }
        reason = w.wait(&st, &next);
    }
}

impl Worker {
    /// True while the server is in recovery (a hot standby): the state says `standby`, once.
    fn on_standby(&mut self) -> bool {
        // SAFETY: reads shared memory's recovery state; callable from any backend.
        let standby = unsafe { pg_sys::RecoveryInProgress() };
        if standby {
            if !self.standby {
                set_state_because(
                    WorkerState::Standby,
                    "the server is a hot standby (recovery in progress): nothing is ingested until it is promoted",
                );
                log!("ecommerce_ingest: the server is a hot standby; waiting for promotion");
                self.standby = true;
            }
        } else if std::mem::take(&mut self.standby) {
            log!("ecommerce_ingest: the server was promoted; ingesting");
        }
        standby
    }

    /// How long any of the worker's statements waits for a lock another session holds:
    /// `ecommerce_ingest.lock_timeout`, for the session (set again after a reload changes it).
    /// A transaction that gives up rolls back and is retried; meanwhile the status says
    /// waiting_for_lock (see outcome.rs).
    fn apply_lock_timeout(&mut self, st: &Settings) {
        if self.lock_timeout == Some(st.lock_timeout) {
            return;
        }
        crate::guc::set(
            "lock_timeout",
            &format!("{}ms", st.lock_timeout.as_millis()),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucAction::GUC_ACTION_SET,
        );
        self.lock_timeout = Some(st.lock_timeout);
    }

    /// Waits for the next reason to run a trigger: at once for a backlog; otherwise the latch
    /// (ingest_trigger(), a signal), a notification from the watcher's pipe, `next.wake_in` or
    /// the trigger interval, whichever comes first.
    fn wait(&mut self, st: &Settings, next: &Next) -> Reason {
        if next.backlog {
            // A backlog never waits on the latch, where a dead postmaster is noticed.
            super::orphan::exit_if_orphaned();
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
        // SAFETY: waits on this process's own latch and the watcher's pipe, which stays open
        // while `self.watcher` holds it; interrupts are checked after the wait.
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
}
