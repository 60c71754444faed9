//! Inserting through PostgreSQL's own COPY FROM machinery, fed from memory: a binary COPY
//! stream built in Rust for the events pipeline (`ecommerce_events::pgcopy`), a COPY text stream
//! for the other pipelines (`ingest_core::textcopy`; PostgreSQL converts every value exactly as
//! `COPY … FROM` does). COPY keeps full table semantics (defaults, identity, constraints,
//! indexes, triggers, partitions) and uses the server's multi-insert path.
//!
//! The events' rows are inserted as the table's owner, a pipeline's rows as the pipeline's
//! owner, in a security-restricted operation (as PostgreSQL runs index expressions during
//! VACUUM): triggers, defaults and constraints run with that role's privileges, never the
//! worker's superuser ones, and cannot change the session (SET ROLE, session settings) behind
//! the worker's back.

use ecommerce_events::pgcopy::copy_columns;
use pgrx::pg_sys;
use pgrx::prelude::pg_guard;
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};

thread_local! {
    /// The stream COPY is reading: pointer, length, position. The data-source callback has no
    /// argument, so the current stream lives here, on the worker's only thread. Invariant: the
    /// pointer is non-null only while `copy_from` runs, and then points into the `stream` slice
    /// it was given, which outlives the COPY.
    static FEED: Cell<(*const u8, usize, usize)> = const { Cell::new((std::ptr::null(), 0, 0)) };
    /// Where the last failed COPY stopped: its line in the stream (1-based) and the index of the
    /// column it was converting, if any (see `note_failure`).
    static FAILED_AT: Cell<Option<(u64, Option<usize>)>> = const { Cell::new(None) };
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

/// The leading fields of PostgreSQL 15's `CopyFromStateData` (commands/copyfrom_internal.h),
/// up to the ones its own error context reports: the line and the column being converted.
#[repr(C)]
struct CopyFromStateHead {
    copy_src: c_int,
    copy_file: *mut c_void,
    fe_msgbuf: *mut c_void,
    eol_type: c_int,
    file_encoding: c_int,
    need_transcoding: bool,
    conversion_proc: pg_sys::Oid,
    rel: pg_sys::Relation,
    attnumlist: *mut pg_sys::List,
    filename: *mut c_char,
    is_program: bool,
    data_source_cb: *mut c_void,
    opts: pg_sys::CopyFormatOptions,
    convert_select_flags: *mut bool,
    where_clause: *mut pg_sys::Node,
    cur_relname: *const c_char,
    cur_lineno: u64,
    cur_attname: *const c_char,
}

/// Error context callback pushed around CopyFrom: PostgreSQL calls it while an ERROR is being
/// raised, before the subtransaction unwinds. It records the line COPY was at and which column
/// it was converting, so the row at fault is found without trying the rows one by one.
#[pg_guard]
unsafe extern "C-unwind" fn note_failure(arg: *mut c_void) {
    // SAFETY: `arg` is the CopyFromState of the COPY in progress (pushed by `copy_from` right
    // after BeginCopyFrom, popped before EndCopyFrom). Only plain fields are read; the column
    // name pointer is never dereferenced, only compared with the addresses of the relation's
    // own attribute names (where COPY points it), so a layout mismatch could at worst give no
    // or a wrong hint, which the caller verifies by inserting that row alone.
    unsafe {
        let st = arg as *const CopyFromStateHead;
        let line = (*st).cur_lineno;
        let att = (*st).cur_attname;
        let rel = (*st).rel;
        let mut column = None;
        if !att.is_null() && !rel.is_null() {
            let desc = (*rel).rd_att;
            for i in 0..(*desc).natts as usize {
                let a = (*desc).attrs.as_ptr().add(i);
                if (*a).attname.data.as_ptr() == att {
                    column = Some(i);
                    break;
                }
            }
        }
        FAILED_AT.with(|f| f.set(Some((line, column))));
    }
}

/// Where the last failed COPY stopped: the line of its stream (1-based) and the name of the
/// column it was converting, if it was converting one. Cleared by the next COPY.
pub fn last_failure() -> Option<(u64, Option<String>)> {
    FAILED_AT.with(|f| f.get()).map(|(line, col)| {
        let name = col.and_then(|i| {
            COLUMN_NAMES.with(|n| {
                let names = n.take();
                let name = names.get(i).cloned();
                n.set(names);
                name
            })
        });
        (line, name)
    })
}

thread_local! {
    /// The attribute names of the relation of the last COPY, by attribute index.
    static COLUMN_NAMES: Cell<Vec<String>> = const { Cell::new(Vec::new()) };
}

/// Puts back the error context stack as it was before `note_failure` was pushed, when dropped
/// (also while a PostgreSQL ERROR unwinds the frame as a Rust panic).
struct PopContext(*mut pg_sys::ErrorContextCallback);

impl Drop for PopContext {
    fn drop(&mut self) {
        // SAFETY: the worker's own thread; `self.0` is the entry that was on top before ours,
        // which outlives this frame.
        unsafe { pg_sys::error_context_stack = self.0 };
    }
}

fn pg_string(s: &str) -> *mut pg_sys::Node {
    let c = CString::new(s).expect("no NUL in identifiers");
    // SAFETY: pstrdup copies the NUL-terminated string into the current memory context.
    unsafe { pg_sys::makeString(pg_sys::pstrdup(c.as_ptr())) as *mut pg_sys::Node }
}

/// Which relation a COPY writes into.
pub enum Into<'a> {
    /// public.user_events, as its owner, binary.
    UserEvents,
    /// A pipeline's target, as the pipeline's owner, COPY text format with these columns.
    Table {
        oid: pg_sys::Oid,
        owner: pg_sys::Oid,
        columns: &'a [String],
    },
}

/// Runs `COPY public.user_events (…) FROM <stream> (FORMAT binary)` as the table's owner;
/// returns the rows inserted. Raises a PostgreSQL ERROR on failure: run it in a subtransaction,
/// whose abort also restores the user id and the settings changed below.
pub fn copy_into_user_events(stream: &[u8]) -> u64 {
    copy_from(&Into::UserEvents, stream)
}

/// Runs the COPY (see [`Into`]); returns the rows inserted. Raises a PostgreSQL ERROR on
/// failure (run it in a subtransaction); then [`last_failure`] says where it stopped.
pub fn copy_from(into: &Into<'_>, stream: &[u8]) -> u64 {
    FAILED_AT.with(|f| f.set(None));
    // SAFETY: called on the worker's own thread inside a (sub)transaction. Every pointer handed
    // to PostgreSQL is either palloc'd in the current memory context or `stream`, which
    // outlives the COPY (FEED's invariant). On an ERROR, PostgreSQL's subtransaction abort
    // closes the relation, releases the COPY state and restores the user id, the GUC nest level
    // and the error context stack.
    unsafe {
        let lock = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        let rel = match into {
            Into::UserEvents => {
                let rv = pg_sys::makeRangeVar(
                    pg_sys::pstrdup(c"public".as_ptr()),
                    pg_sys::pstrdup(c"user_events".as_ptr()),
                    -1,
                );
                pg_sys::table_openrv(rv, lock)
            }
            Into::Table { oid, .. } => pg_sys::table_open(*oid, lock),
        };
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
        let format = match into {
            Into::UserEvents => {
                for c in copy_columns() {
                    columns = pg_sys::lappend(columns, pg_string(c) as *mut c_void);
                }
                "binary"
            }
            Into::Table { columns: cols, .. } => {
                for c in cols.iter() {
                    columns = pg_sys::lappend(columns, pg_string(c) as *mut c_void);
                }
                "text"
            }
        };
        let format =
            pg_sys::makeDefElem(pg_sys::pstrdup(c"format".as_ptr()), pg_string(format), -1);
        let options = pg_sys::lappend(std::ptr::null_mut(), format as *mut c_void);
        FEED.with(|f| f.set((stream.as_ptr(), stream.len(), 0)));
        let names: Vec<String> = {
            let desc = (*rel).rd_att;
            (0..(*desc).natts as usize)
                .map(|i| {
                    let a = (*desc).attrs.as_ptr().add(i);
                    std::ffi::CStr::from_ptr((*a).attname.data.as_ptr())
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        COLUMN_NAMES.with(|n| n.set(names));
        // As the owner (see the module doc). Their triggers see the search path a session of
        // theirs would start with (PostgreSQL's default): they run with the owner's
        // privileges, so nothing they resolve can do more than the owner could.
        let owner = match into {
            Into::UserEvents => (*(*rel).rd_rel).relowner,
            Into::Table { owner, .. } => *owner,
        };
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
            let mut ctx = pg_sys::ErrorContextCallback {
                previous: pg_sys::error_context_stack,
                callback: Some(note_failure),
                arg: cstate as *mut c_void,
            };
            pg_sys::error_context_stack = &mut ctx;
            // Popped however CopyFrom ends: an ERROR comes back through pgrx as a Rust panic
            // that unwinds this frame (and pgrx's boundary puts back the stack as it was at the
            // call, with `ctx` on it), so the pop must not be left to the normal path.
            let pop = PopContext(ctx.previous);
            let n = pg_sys::CopyFrom(cstate);
            drop(pop);
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
