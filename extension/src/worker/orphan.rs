//! A worker whose postmaster is gone (SIGKILLed, killed by the OOM killer): an orphan, which
//! must stop, and must never archive or delete a file on its way out.
//!
//! Such a worker keeps running until it next waits on its latch, and a backlog never waits.
//! Meanwhile its commits are not replicated: the WAL senders exited with the postmaster, and
//! PostgreSQL gives up waiting for a synchronous standby when the postmaster dies ("canceling
//! the wait for synchronous replication", the commit stays local). With no WAL sender left,
//! `pg_stat_replication` is empty, so "flushed on every streaming standby" would hold for any
//! commit, and a file whose rows never reached the standby could leave the folder just before
//! that standby is promoted: lost.

use pgrx::pg_sys;

extern "C-unwind" {
    /// PostgreSQL's own check (storage/pmsignal.h; not in pgrx's bindings): reads the
    /// postmaster-death pipe, which is at its end as soon as the postmaster's files are closed.
    fn PostmasterIsAliveInternal() -> bool;
}

/// Whether the postmaster is gone: a background worker is the postmaster's child, and a
/// child whose parent dies is handed to another process; or, earlier still, the death pipe
/// that the WAL senders watch is at its end. (A dying process closes its files before its
/// children are handed on: a WAL sender may see the pipe end and exit, emptying
/// `pg_stat_replication`, while `getppid()` still names the postmaster.)
pub fn postmaster_gone() -> bool {
    // SAFETY: getppid() cannot fail; PostmasterPid is set before any child starts and is
    // never changed afterwards. PostmasterIsAliveInternal() is a non-blocking read of the
    // pipe every child inherits, called on the worker's own thread (it raises FATAL only if
    // the pipe itself is broken, as PostgreSQL's own callers accept).
    unsafe { libc::getppid() != pg_sys::PostmasterPid || !PostmasterIsAliveInternal() }
}

/// Exits at once (as `WL_EXIT_ON_PM_DEATH` does in a wait) if the postmaster is gone.
pub fn exit_if_orphaned() {
    if postmaster_gone() {
        // SAFETY: proc_exit runs PostgreSQL's exit callbacks and ends the process; called on
        // the worker's own thread between transactions, as WaitLatch would call it.
        unsafe { pg_sys::proc_exit(1) }
    }
}
