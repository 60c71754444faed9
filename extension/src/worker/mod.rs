//! The background worker: wakes on notifications, ingest_trigger() or the trigger interval,
//! scans the input folder, and ingests what is new, file by file.
//!
//! Read it top-down: `entry` (the process and its wait loop) runs `trigger` (probe, check the
//! folders, list, plan, ingest, record), which uses `scan` (the input folder), `schedule` (what
//! to ingest, in which groups), `ingest` and `chunk` (the transactions), `outcome` (what each
//! file's turn came to), `finish` (archive, delete, failed, vanished, changed files) and
//! `record` (status and history), and `retention` (old history deleted while idle). `ledger` is the one home of the file ledger; `sql` holds
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
