//! Inserting through PostgreSQL's own COPY FROM machinery, fed with a binary COPY stream built in
//! Rust (`ecommerce_events::pgcopy`). COPY keeps full table semantics (defaults, identity,
//! constraints, indexes, triggers, partitions) and uses the server's multi-insert path.
//!
//! The rows are inserted as the table's owner, in a security-restricted operation (as
//! PostgreSQL runs index expressions during VACUUM): triggers, defaults and constraints that
//! the owner wrote run with the owner's privileges, never the worker's superuser ones, and
//! cannot change the session (SET ROLE, session settings) behind the worker's back.

use ecommerce_events::pgcopy::copy_columns;
use pgrx::pg_sys;
use pgrx::prelude::pg_guard;
use std::cell::Cell;
use std::ffi::{c_int, c_void, CString};

thread_local! {
    /// The stream COPY is reading: pointer, length, position. The data-source callback has no
    /// argument, so the current stream lives here, on the worker's only thread. Invariant: the
    /// pointer is non-null only while `copy_into_user_events` runs, and then points into the
    /// `stream` slice it was given, which outlives the COPY.
    static FEED: Cell<(*const u8, usize, usize)> = const { Cell::new((std::ptr::null(), 0, 0)) };
}

/// COPY's data-source callback: hands out the next bytes of the current stream.
#[pg_guard]
unsafe extern "C-unwind" fn read_feed(
    outbuf: *mut c_void,
    _minread: c_int,
    maxread: c_int,
) -> c_int {
    FEED.with(|f| {
        let (ptr, len, pos) = f.get();
        let n = (len - pos).min(maxread.max(0) as usize);
        if n > 0 {
            // SAFETY: `ptr[pos..pos + n]` is inside the stream (see FEED), and COPY's buffer
            // has room for `maxread` bytes.
            unsafe { std::ptr::copy_nonoverlapping(ptr.add(pos), outbuf as *mut u8, n) };
        }
        f.set((ptr, len, pos + n));
        n as c_int
    })
}

fn pg_string(s: &str) -> *mut pg_sys::Node {
    let c = CString::new(s).expect("no NUL in identifiers");
    // SAFETY: pstrdup copies the NUL-terminated string into the current memory context.
    unsafe { pg_sys::makeString(pg_sys::pstrdup(c.as_ptr())) as *mut pg_sys::Node }
}

/// Runs `COPY public.user_events (…) FROM <stream> (FORMAT binary)` as the table's owner;
/// returns the rows inserted. Raises a PostgreSQL ERROR on failure: run it in a subtransaction,
/// whose abort also restores the user id and the settings changed below.
pub fn copy_into_user_events(stream: &[u8]) -> u64 {
    // SAFETY: called on the worker's own thread inside a (sub)transaction. Every pointer handed
    // to PostgreSQL is either palloc'd in the current memory context or `stream`, which
    // outlives the COPY (FEED's invariant). On an ERROR, PostgreSQL's subtransaction abort
    // closes the relation, releases the COPY state and restores the user id and GUC nest level.
    unsafe {
        let lock = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        let rv = pg_sys::makeRangeVar(
            pg_sys::pstrdup(c"public".as_ptr()),
            pg_sys::pstrdup(c"user_events".as_ptr()),
            -1,
        );
        let rel = pg_sys::table_openrv(rv, lock);
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel,
            lock,
            std::ptr::null_mut(),
            false,
            false,
        );
        let mut columns: *mut pg_sys::List = std::ptr::null_mut();
        for c in copy_columns() {
            columns = pg_sys::lappend(columns, pg_string(c) as *mut c_void);
        }
        let format =
            pg_sys::makeDefElem(pg_sys::pstrdup(c"format".as_ptr()), pg_string("binary"), -1);
        let options = pg_sys::lappend(std::ptr::null_mut(), format as *mut c_void);
        FEED.with(|f| f.set((stream.as_ptr(), stream.len(), 0)));
        // As the owner, restricted (see the module doc). The owner's triggers see the search
        // path a session of theirs would start with (PostgreSQL's default): they run with the
        // owner's privileges, so nothing they resolve can do more than the owner could.
        let owner = (*(*rel).rd_rel).relowner;
        let n = crate::restricted::as_owner(owner, "\"$user\", public", || {
            let cstate = pg_sys::BeginCopyFrom(
                pstate,
                rel,
                std::ptr::null_mut(),
                std::ptr::null(),
                false,
                Some(read_feed),
                columns,
                options,
            );
            let n = pg_sys::CopyFrom(cstate);
            pg_sys::EndCopyFrom(cstate);
            n
        });
        FEED.with(|f| f.set((std::ptr::null(), 0, 0)));
        pg_sys::free_parsestate(pstate);
        // Keep the lock until the transaction ends, like COPY does.
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        n
    }
}
