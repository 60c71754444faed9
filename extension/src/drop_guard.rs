//! A ProcessUtility hook for two statements about this extension:
//! - `DROP EXTENSION ecommerce_ingest` would drop `user_events` with it: refused while the table
//!   holds events, unless the user says CASCADE;
//! - `CREATE EXTENSION ecommerce_ingest` and `ALTER EXTENSION ecommerce_ingest UPDATE` wake the
//!   worker when they commit, so ingestion starts at once instead of at the next trigger
//!   interval.
//!
//! The hook runs in the session of whoever runs the statement (a superuser, for these), with
//! that session's search_path: its queries pin `search_path` to `pg_catalog, pg_temp` for their
//! duration, so nothing a database owner put in `public` is picked up by a superuser here.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;
use std::ffi::{c_char, CStr};

/// The hook that was installed before ours (called after our checks). Written once, in
/// `_PG_init` of the postmaster, before any backend exists; only read afterwards.
static mut PREV: pg_sys::ProcessUtility_hook_type = None;

pub fn install() {
    // SAFETY: _PG_init runs once in the postmaster, single-threaded, before any statement.
    unsafe {
        PREV = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(hook);
    }
}

/// SAFETY: `stmt` is a valid DropStmt from the parse tree being executed.
unsafe fn names_this_extension(stmt: *mut pg_sys::DropStmt) -> bool {
    let objects = PgList::<pg_sys::Node>::from_pg((*stmt).objects);
    let found = objects.iter_ptr().any(|n| {
        !n.is_null()
            && (*n).type_ == pg_sys::NodeTag::T_String
            && CStr::from_ptr((*(n as *mut pg_sys::String)).sval).to_bytes() == b"ecommerce_ingest"
    });
    found
}

/// SAFETY: `node` is NULL or the utility statement being executed (a valid parse node).
unsafe fn check(node: *mut pg_sys::Node) {
    if node.is_null() {
        return;
    }
    if (*node).type_ == pg_sys::NodeTag::T_CreateExtensionStmt {
        let stmt = node as *mut pg_sys::CreateExtensionStmt;
        if CStr::from_ptr((*stmt).extname).to_bytes() == b"ecommerce_ingest" {
            crate::shared::wake_worker_at_commit();
        }
        return;
    }
    if (*node).type_ == pg_sys::NodeTag::T_AlterExtensionStmt {
        let stmt = node as *mut pg_sys::AlterExtensionStmt;
        if CStr::from_ptr((*stmt).extname).to_bytes() == b"ecommerce_ingest" {
            crate::shared::wake_worker_at_commit();
        }
        return;
    }
    if (*node).type_ != pg_sys::NodeTag::T_DropStmt {
        return;
    }
    let stmt = node as *mut pg_sys::DropStmt;
    if (*stmt).removeType != pg_sys::ObjectType::OBJECT_EXTENSION || !names_this_extension(stmt) {
        return;
    }
    let cascade = (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE;
    let events = crate::guc::with_safe_search_path(|| {
        // Wait for the worker's chunk in flight, and keep the next one waiting until we commit.
        Spi::run_with_args(
            "SELECT pg_catalog.pg_advisory_xact_lock($1)",
            &[crate::shared::DROP_LOCK_KEY.into()],
        )
        .unwrap_or_else(|e| error!("{e}"));
        if cascade {
            return 0;
        }
        Spi::get_one::<i64>(
            "SELECT CASE WHEN pg_catalog.to_regclass('public.user_events') IS NULL
                           OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension
                                           WHERE extname OPERATOR(pg_catalog.=) 'ecommerce_ingest')
                         THEN 0
                         ELSE (SELECT pg_catalog.count(*) FROM public.user_events) END",
        )
        .ok()
        .flatten()
        .unwrap_or(0)
    });
    if events > 0 {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            format!("DROP EXTENSION ecommerce_ingest would delete the {events} ingested events in user_events"),
            "ecommerce_ingest::drop_guard",
        )
        .set_detail("user_events, the file ledger and the rejects belong to the extension and are dropped with it.")
        .set_hint("Keep a copy first (CREATE TABLE events_copy AS TABLE user_events), then run DROP EXTENSION ecommerce_ingest CASCADE to confirm.")
        .report(PgLogLevel::ERROR);
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    check((*pstmt).utilityStmt);
    match PREV {
        Some(prev) => prev(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
        None => pg_sys::standard_ProcessUtility(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
    }
}
