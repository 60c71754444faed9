//! Inserting through PostgreSQL's own COPY FROM machinery, fed with a binary COPY stream built in
//! Rust (`ecommerce_events::pgcopy`). COPY keeps full table semantics (defaults, identity,
//! constraints, indexes, triggers, partitions) and uses the server's multi-insert path.

use ecommerce_events::pgcopy::copy_columns;
use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::{c_int, c_void, CString};

thread_local! {
    /// The stream COPY is reading: pointer, length, position. The data-source callback has no
    /// argument, so the current stream lives here, on the worker's only thread.
    static FEED: Cell<(*const u8, usize, usize)> = const { Cell::new((std::ptr::null(), 0, 0)) };
}

unsafe extern "C-unwind" fn read_feed(
    outbuf: *mut c_void,
    _minread: c_int,
    maxread: c_int,
) -> c_int {
    FEED.with(|f| {
        let (ptr, len, pos) = f.get();
        let n = (len - pos).min(maxread.max(0) as usize);
        if n > 0 {
            std::ptr::copy_nonoverlapping(ptr.add(pos), outbuf as *mut u8, n);
        }
        f.set((ptr, len, pos + n));
        n as c_int
    })
}

fn pg_string(s: &str) -> *mut pg_sys::Node {
    let c = CString::new(s).expect("no NUL in identifiers");
    unsafe { pg_sys::makeString(pg_sys::pstrdup(c.as_ptr())) as *mut pg_sys::Node }
}

/// Runs `COPY public.user_events (…) FROM <stream> (FORMAT binary)`; returns the rows inserted.
/// Raises a PostgreSQL ERROR on failure (run it in a subtransaction).
pub fn copy_into_user_events(stream: &[u8]) -> u64 {
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
        FEED.with(|f| f.set((std::ptr::null(), 0, 0)));
        pg_sys::free_parsestate(pstate);
        // Keep the lock until the transaction ends, like COPY does.
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        n
    }
}
