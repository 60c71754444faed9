//! The launcher: a background worker connected to no database (only the shared catalogs), which
//! starts the ingestion worker once the database named by `ecommerce_ingest.database` exists, and
//! starts it again 5 s after it stops. Both start on a hot standby too (once it is consistent):
//! the worker then says `standby` and writes nothing until the server is promoted. A database that does not exist (a typo, or not created
//! yet) is then reported once and waited for, instead of the worker dying at every restart.

use crate::shared::{WorkerState, STATUS};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use std::ffi::CStr;
use std::time::Duration;

/// Pause before the worker is started again after it stopped (as a static worker's restart
/// time), and between two checks for a missing database.
const RESTART_AFTER: Duration = Duration::from_secs(5);

pub fn register() {
    BackgroundWorkerBuilder::new("ecommerce_ingest launcher")
        .set_type("ecommerce_ingest launcher")
        .set_library("ecommerce_ingest")
        .set_function("ecommerce_ingest_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(RESTART_AFTER))
        .load();
}

/// Whether a database of that name exists. A heap scan of pg_database, as the autovacuum
/// launcher does: a process connected to no database may not have the shared catalogs'
/// indexes in its relation cache (their descriptions come from a file the first database
/// connection writes), and looking one up from here is a FATAL error.
fn database_exists(name: &str) -> bool {
    // SAFETY: on the launcher's own thread inside a transaction. pg_database is a catalog with
    // fixed-width leading columns: a heap tuple's data starts `t_hoff` bytes into its header and
    // begins with FormData_pg_database (datname is its second field, a NameData), exactly as
    // PostgreSQL's GETSTRUCT does; the tuple stays valid until the next heap_getnext.
    super::txn::transaction(|| unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, lock);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        let mut found = false;
        loop {
            let tup = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tup.is_null() {
                break;
            }
            let data = (*tup).t_data;
            let form = (data as *const u8).add((*data).t_hoff as usize)
                as *const pg_sys::FormData_pg_database;
            if CStr::from_ptr((*form).datname.data.as_ptr()).to_bytes() == name.as_bytes() {
                found = true;
                break;
            }
        }
        pg_sys::heap_endscan(scan);
        pg_sys::table_close(rel, lock);
        found
    })
    .unwrap_or(false)
}

/// Sleeps `d` unless woken; exits at once on SIGTERM or postmaster death.
fn pause(d: Duration) {
    // SAFETY: waits on this process's own latch, on its own thread.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            d.as_millis() as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        pg_sys::check_for_interrupts!();
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ecommerce_ingest_launcher_main(_arg: pg_sys::Datum) {
    super::entry::handle_signals();
    BackgroundWorker::connect_worker_to_spi(None, None);
    let db = crate::settings::database();
    let mut said_missing = false;
    loop {
        if !database_exists(&db) {
            if !said_missing {
                log!(
                    "ecommerce_ingest: database {db:?} (ecommerce_ingest.database) does not exist; \
                     the worker starts once it is created"
                );
                said_missing = true;
            }
            STATUS.exclusive().state = WorkerState::WaitingForDatabase;
            pause(RESTART_AFTER);
            continue;
        }
        said_missing = false;
        let started = BackgroundWorkerBuilder::new("ecommerce_ingest worker")
            .set_type("ecommerce_ingest")
            .set_library("ecommerce_ingest")
            .set_function("ecommerce_ingest_worker_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_restart_time(None)
            // SAFETY: MyProcPid is set for this process before its main function runs.
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            .load_dynamic();
        match started {
            Ok(w) => {
                if w.wait_for_startup().is_ok() {
                    let _ = w.wait_for_shutdown();
                }
            }
            Err(_) => warning!(
                "ecommerce_ingest: cannot start the ingestion worker (max_worker_processes reached?); trying again in {} s",
                RESTART_AFTER.as_secs()
            ),
        }
        pause(RESTART_AFTER);
    }
}
