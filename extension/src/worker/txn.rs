//! Transactions and subtransactions that turn a PostgreSQL ERROR into a Rust `Err`,
//! so one bad file or statement never kills the worker.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;
use std::panic::AssertUnwindSafe;

/// An ERROR raised inside a (sub)transaction: its SQLSTATE and message.
#[derive(Debug, Clone)]
pub struct DbError {
    pub sqlstate: String,
    pub message: String,
    code: i32,
    /// Raised where a new row is checked against row-level security's WITH CHECK policies or
    /// a view's WITH CHECK OPTION (PostgreSQL's `ExecWithCheckOptions`): the row's fault,
    /// though its SQLSTATE (42501) is also that of a missing privilege. Told apart by where
    /// it was raised, not by its message, which the server's language translates.
    refused_by_check_option: bool,
}

impl DbError {
    /// Errors caused by the row's own values: data exceptions (22), integrity violations (23),
    /// a WITH CHECK OPTION violation (44), a row-level security policy's WITH CHECK, and
    /// exceptions raised by user triggers (P0). Anything else is not the row's fault.
    pub fn is_row_level(&self) -> bool {
        self.sqlstate.starts_with("22")
            || self.sqlstate.starts_with("23")
            || self.sqlstate.starts_with("44")
            || self.sqlstate.starts_with("P0")
            || self.refused_by_check_option
    }
}

impl DbError {
    /// Raises this error again as a PostgreSQL ERROR with its original SQLSTATE.
    pub fn raise(&self) -> ! {
        pgrx::pg_sys::panic::ErrorReport::new(
            pgrx::PgSqlErrorCode::from(self.code),
            self.message.clone(),
            "ecommerce_ingest",
        )
        .report(pgrx::PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.sqlstate)
    }
}

fn caught(e: CaughtError) -> DbError {
    match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => {
            let mut message = r.message().to_string();
            if let Some(d) = r.detail() {
                message.push_str(": ");
                message.push_str(d);
            }
            let code = r.sql_error_code() as i32;
            // The five-character SQLSTATE, e.g. 23514.
            // SAFETY: unpack_sql_state returns a pointer to a static NUL-terminated buffer.
            let sqlstate = unsafe { std::ffi::CStr::from_ptr(pg_sys::unpack_sql_state(code)) }
                .to_string_lossy()
                .into_owned();
            let refused_by_check_option = r.function_name() == Some("ExecWithCheckOptions");
            DbError {
                sqlstate,
                message,
                code,
                refused_by_check_option,
            }
        }
    }
}

/// Runs `f` in a new transaction and commits it. An ERROR (in `f` or at commit) rolls the
/// transaction back and comes back as `Err`.
pub fn transaction<R>(f: impl FnOnce() -> R) -> Result<R, DbError> {
    // SAFETY: called on the worker's own thread outside any transaction (each caller runs its
    // transactions one after another, never nested).
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let f = AssertUnwindSafe(f);
    let result = PgTryBuilder::new(move || {
        let r = f();
        // SAFETY: the snapshot pushed above is still the active one; commit ends the transaction.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(r)
    })
    .catch_others(|e| Err(caught(e)))
    .catch_rust_panic(|e| Err(caught(e)))
    .execute();
    if result.is_err() {
        // SAFETY: the ERROR left the transaction in an aborted state; this is how PostgreSQL's
        // own loops recover (AbortCurrentTransaction from the top memory context).
        unsafe {
            pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            pg_sys::AbortCurrentTransaction();
            pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        }
    }
    result
}

/// Runs `f` in a subtransaction of the current transaction: an ERROR rolls back only what
/// `f` did, and comes back as `Err`.
pub fn subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, DbError> {
    // SAFETY: inside a transaction on the worker's thread; the memory context and resource
    // owner saved here are restored on both paths, as PL/pgSQL's exception blocks do.
    unsafe {
        let cx = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cx);
        let f = AssertUnwindSafe(f);
        PgTryBuilder::new(move || {
            let r = f();
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(cx);
            pg_sys::CurrentResourceOwner = owner;
            Ok(r)
        })
        .catch_others(move |e| {
            pg_sys::MemoryContextSwitchTo(cx);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(cx);
            pg_sys::CurrentResourceOwner = owner;
            Err(caught(e))
        })
        .execute()
    }
}
