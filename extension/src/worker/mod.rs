//! The background workers: wake on notifications, ingest_trigger() or the trigger interval,
//! scan the input folder, and ingest what is new, file by file. A pipeline may have several;
//! each owns a share of the file names (`me`, ingest_core::share) and does all of this for its
//! share only.
//!
//! Read it top-down: `entry` (the process and its wait loop) runs `trigger` (probe, check the
//! folders, list, plan, ingest, record), which uses `scan` (the input folder), `schedule` (what
//! to ingest, in which groups), `ingest` and `chunk` (the transactions), `outcome` (what each
//! file's turn came to), `finish` (archive, delete, failed, vanished, changed files),
//! `record` (status and history) and `retention` (old history, records of files gone long
//! ago, the counters' fold). `supervise` starts the other workers (from the events pipeline's
//! first). `ledger` is the one home of the file ledger and of claiming a file; `sql` holds
//! every statement; `txn` turns PostgreSQL errors into `Result`s. The decisions themselves are
//! pure functions in `ecommerce_events::plan`.

mod chunk;
mod copy;
mod entry;
mod files;
mod finish;
mod folders;
mod ingest;
mod launcher;
mod ledger;
mod marker;
pub(crate) mod me;
mod orphan;
mod outcome;
mod record;
mod retention;
mod say;
mod scan;
mod schedule;
mod session;
pub(crate) mod sql;
mod staging;
mod state;
mod supervise;
mod trigger;
pub(crate) mod txn;
mod watch;

/// Registers the launcher, which starts the ingestion worker (see launcher.rs).
pub fn register() {
    launcher::register();
}
