//! Running code as a table's owner, in a security-restricted operation (as PostgreSQL runs
//! index expressions during VACUUM): whatever the owner attached to the table (triggers,
//! defaults, constraints, policies) runs with the owner's privileges, cannot change the session
//! (SET ROLE, session settings), and every setting changed meanwhile is undone.

use pgrx::pg_sys;

/// Runs `f` as `owner`, restricted, with `search_path` set to `search_path` for its duration.
/// If `f` raises an ERROR, the (sub)transaction's abort restores the user id and the settings.
pub fn as_owner<R>(owner: pg_sys::Oid, search_path: &str, f: impl FnOnce() -> R) -> R {
    let mut save_user: pg_sys::Oid = pg_sys::InvalidOid;
    let mut save_sec: std::ffi::c_int = 0;
    // SAFETY: on a backend's main thread inside a transaction; the saved user and security
    // context are put back below, or by the abort of the transaction on an ERROR.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut save_user, &mut save_sec);
        pg_sys::SetUserIdAndSecContext(
            owner,
            save_sec
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as std::ffi::c_int
                | pg_sys::SECURITY_RESTRICTED_OPERATION as std::ffi::c_int,
        );
    }
    let nest = crate::guc::begin();
    crate::guc::set(
        "search_path",
        search_path,
        pg_sys::GucContext::PGC_USERSET,
        pg_sys::GucAction::GUC_ACTION_SAVE,
    );
    let r = f();
    // Discards every setting changed inside (as PostgreSQL does after index functions).
    // SAFETY: the nest level opened above.
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    // SAFETY: restores what was saved above, on the same thread.
    unsafe { pg_sys::SetUserIdAndSecContext(save_user, save_sec) };
    r
}
