//! Running SQL with a search_path nobody but a superuser can write to, in a session whose own
//! search_path is not ours to trust (a ProcessUtility hook runs in the user's session).

use pgrx::pg_sys;

/// Runs `f` with `search_path = pg_catalog, pg_temp`, as a function's `SET search_path` clause
/// does: the previous value comes back when `f` returns (and, on an ERROR, when the transaction
/// or subtransaction aborts, which undoes the GUC nest level).
pub fn with_safe_search_path<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: on a backend's main thread inside a transaction; the strings are NUL-terminated
    // statics; NewGUCNestLevel/AtEOXact_GUC pair up as in fmgr_security_definer.
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
        nest
    };
    let r = f();
    // SAFETY: the nest level opened above.
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    r
}
