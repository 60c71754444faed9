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
    let events = crate::guc::with_safe_search_path(|| guard(cascade));
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

/// One of the extension's own tables, found through the extension's dependencies (never by a
/// name another role could have taken).
struct Member {
    oid: pg_sys::Oid,
    relkind: String,
    owner: pg_sys::Oid,
    /// Schema-qualified and quoted, for the count.
    qualified: String,
}

fn member(relname: &str) -> Option<Member> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT c.oid, c.relkind::pg_catalog.text, c.relowner,
                    pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)
               FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_depend d
                 ON d.refobjid OPERATOR(pg_catalog.=) e.oid
                AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
                AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.deptype OPERATOR(pg_catalog.=) 'e'
               JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.objid
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              WHERE e.extname OPERATOR(pg_catalog.=) 'ecommerce_ingest'
                AND c.relname OPERATOR(pg_catalog.=) $1",
            None,
            &[relname.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let r = rows.first();
        Ok(Some(Member {
            oid: r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
            relkind: r.get::<String>(2)?.unwrap_or_default(),
            owner: r.get::<pg_sys::Oid>(3)?.unwrap_or(pg_sys::InvalidOid),
            qualified: r.get::<String>(4)?.unwrap_or_default(),
        }))
    })
    .unwrap_or_else(|e| error!("{e}"))
}

/// Orders the DROP with the worker and counts the events it would delete (0 with CASCADE, or
/// when the extension does not exist here). Nothing is resolved by name through a schema a
/// non-superuser could control: the extension's tables are found by its dependencies, the
/// schema is checked first (trust.rs), and the count runs as the table's owner, restricted, on
/// a table that is still a table.
fn guard(cascade: bool) -> i64 {
    let trusted = match crate::trust::extension_schema().unwrap_or_else(|e| error!("{e}")) {
        crate::trust::Schema::Missing => return 0,
        crate::trust::Schema::Trusted => true,
        crate::trust::Schema::Untrusted(_) => false,
    };
    // Wait for the worker's chunk in flight, and keep the next one waiting until we commit:
    // the worker's transactions take this table first (worker/sql.rs, FIRST_LOCK).
    if let Some(control) = member("ingest_control") {
        // SAFETY: a relation oid from the catalog, locked for the rest of the transaction.
        unsafe {
            pg_sys::LockRelationOid(control.oid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE)
        };
    }
    if cascade {
        return 0;
    }
    let refuse = |why: &str| -> ! {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            format!("DROP EXTENSION ecommerce_ingest cannot tell how many events user_events holds: {why}"),
            "ecommerce_ingest::drop_guard",
        )
        .set_hint("Keep a copy of what you need first, then run DROP EXTENSION ecommerce_ingest CASCADE to confirm.")
        .report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    };
    if !trusted {
        refuse("the extension's schema cannot be trusted (see ingest_status())");
    }
    let Some(events) = member("user_events") else {
        return 0;
    };
    if events.relkind != "r" && events.relkind != "p" {
        refuse("it is no longer a table (its owner changed it)");
    }
    let sql = format!("SELECT pg_catalog.count(*) FROM {}", events.qualified);
    crate::restricted::as_owner(events.owner, "pg_catalog, pg_temp", || {
        Spi::get_one::<i64>(&sql)
            .unwrap_or_else(|e| error!("{e}"))
            .unwrap_or(0)
    })
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
