//! Running SQL with a search_path nobody but a superuser can write to, in a session whose own
//! search_path is not ours to trust (a ProcessUtility hook runs in the user's session).

use pgrx::pg_sys;

/// Runs `f` with `search_path = pg_catalog, pg_temp`, as a function's `SET search_path` clause
/// does: the previous value comes back when `f` returns (and, on an ERROR, when the transaction
/// or subtransaction aborts, which undoes the GUC nest level).
pub fn with_safe_search_path<R>(f: impl FnOnce() -> R) -> R {
    let nest = begin();
    set(
        "search_path",
        "pg_catalog, pg_temp",
        pg_sys::GucContext::PGC_USERSET,
        pg_sys::GucAction::GUC_ACTION_SAVE,
    );
    let r = f();
    end(nest);
    r
}

/// Sets a setting for the session (`GUC_ACTION_SET`) or until the current GUC nest level ends
/// (`GUC_ACTION_SAVE`). An invalid value raises an ERROR.
pub fn set(
    name: &str,
    value: &str,
    context: pg_sys::GucContext::Type,
    action: pg_sys::GucAction::Type,
) {
    set_at(name, value, context, action, pg_sys::PGERROR as i32);
}

/// Like [`set`]; with `elevel` WARNING an invalid value is logged and skipped instead of raised.
/// Returns whether the setting was applied.
pub fn set_at(
    name: &str,
    value: &str,
    context: pg_sys::GucContext::Type,
    action: pg_sys::GucAction::Type,
    elevel: i32,
) -> bool {
    let name = std::ffi::CString::new(name).expect("no NUL in setting names");
    let value = std::ffi::CString::new(value).expect("no NUL in setting values");
    // SAFETY: on a backend's main thread inside a transaction, with NUL-terminated strings that
    // outlive the call.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            elevel,
            false,
        ) > 0
    }
}

/// Opens a GUC nest level: settings made with `GUC_ACTION_SAVE` until [`end`] are undone then.
pub fn begin() -> i32 {
    // SAFETY: on a backend's main thread; paired with `end`.
    unsafe { pg_sys::NewGUCNestLevel() }
}

/// Closes the nest level `begin` opened, restoring what was saved in it.
pub fn end(nest: i32) {
    // SAFETY: the nest level from `begin`, closed once.
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
}
