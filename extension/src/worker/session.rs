//! The worker's own session settings, pinned after it connects: the database owner's
//! `ALTER DATABASE … SET` (applied to every connection, the worker's too) must not decide what
//! a superuser process resolves, as whom it runs, how it handles errors, how long it may wait, or
//! whether it may write. Every database- and role-level setting is undone (the server's own
//! value applies), then the settings below are pinned.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// A setting the worker fixes for itself, and why.
struct Pinned {
    name: &'static str,
    value: &'static str,
    why: &'static str,
}

/// Every setting a database owner can attach to the database (user-settable ones) that changes
/// what the worker's SQL means or whether it can run. Everything else a database or role
/// setting may change (work_mem, enable_*, DateStyle ...) affects cost or output formats only:
/// the worker reads and writes binary values and schema-qualifies every name.
const PINNED: &[Pinned] = &[
    Pinned {
        name: "search_path",
        value: "pg_catalog, pg_temp",
        why: "nothing the worker runs may resolve to an object a database owner created",
    },
    Pinned {
        name: "role",
        value: "none",
        why: "the worker acts as itself; rows are inserted as the table's owner (copy.rs)",
    },
    Pinned {
        name: "default_transaction_read_only",
        value: "off",
        why: "the worker writes",
    },
    Pinned {
        name: "default_transaction_isolation",
        value: "read committed",
        why: "serializable would fail chunks on conflicts nobody can fix",
    },
    Pinned {
        name: "default_transaction_deferrable",
        value: "off",
        why: "same",
    },
    Pinned {
        name: "statement_timeout",
        value: "0",
        why: "a big chunk is one statement; a timeout would fail it again at every retry",
    },
    Pinned {
        name: "lock_timeout",
        value: "0",
        why: "then set to ecommerce_ingest.lock_timeout (entry.rs; then waiting_for_lock)",
    },
    Pinned {
        name: "idle_in_transaction_session_timeout",
        value: "0",
        why: "the worker never idles in a transaction; a timeout would kill it",
    },
    Pinned {
        name: "session_replication_role",
        value: "origin",
        why: "triggers and foreign keys of the target always fire",
    },
    Pinned {
        name: "transform_null_equals",
        value: "off",
        why: "SQL means what it says",
    },
    Pinned {
        name: "standard_conforming_strings",
        value: "on",
        why: "SQL literals mean what they say",
    },
    Pinned {
        name: "exit_on_error",
        value: "off",
        why: "an error in one chunk must be caught and retried, not end the worker",
    },
    Pinned {
        name: "row_security",
        value: "on",
        why: "with off, a table with policies would make inserts fail instead of applying them",
    },
];

fn set(name: &str, value: &str) {
    crate::guc::set(
        name,
        value,
        pg_sys::GucContext::PGC_SUSET,
        pg_sys::GucAction::GUC_ACTION_SET,
    );
}

/// Every setting a database or role attached to this session (`ALTER DATABASE … SET`,
/// `ALTER ROLE … SET`): its name and the server's own value (the configuration file's, else the
/// built-in default). Run once search_path is pinned (the query names pg_catalog objects only).
fn attached_settings() -> Vec<(String, String)> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT s.name::pg_catalog.text,
                    coalesce((SELECT f.setting FROM pg_catalog.pg_file_settings f
                               WHERE f.name OPERATOR(pg_catalog.=) s.name AND f.error IS NULL
                               ORDER BY f.seqno DESC LIMIT 1), s.boot_val)
               FROM pg_catalog.pg_settings s
              WHERE s.source OPERATOR(pg_catalog.=) ANY (ARRAY['database', 'user', 'database user'])",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for r in rows {
            out.push((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<String>(2)?.unwrap_or_default(),
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| error!("{e}"))
}

/// The session runs as the user it connected as (the bootstrap superuser): a database setting
/// `session_authorization = someone` would otherwise make the whole worker run as that role.
fn restore_session_user() {
    // SAFETY: inside a transaction on the worker's thread; the name is copied at once.
    let name = unsafe {
        let authenticated = pg_sys::GetAuthenticatedUserId();
        if pg_sys::GetSessionUserId() == authenticated {
            return;
        }
        let p = pg_sys::GetUserNameFromId(authenticated, false);
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    set("session_authorization", &name);
}

/// Pins the settings above for the rest of the session (a later reload of postgresql.conf does
/// not undo a session-level setting). `synchronous_commit` keeps the server's value: a file is
/// archived or deleted only once its commit is flushed (finish.rs), whatever the setting.
pub fn pin() -> Result<(), super::txn::DbError> {
    super::txn::transaction(|| {
        // search_path first: the query below must resolve nothing in a user's schema.
        set("search_path", "pg_catalog, pg_temp");
        restore_session_user();
        for (name, value) in attached_settings() {
            let undone = crate::guc::set_at(
                &name,
                &value,
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucAction::GUC_ACTION_SET,
                pg_sys::WARNING as i32,
            );
            pgrx::debug1!(
                "ecommerce_ingest: ignores the database or role setting {name} (undone: {undone})"
            );
        }
        for p in PINNED {
            set(p.name, p.value);
            pgrx::debug1!("ecommerce_ingest: {} = '{}' ({})", p.name, p.value, p.why);
        }
        staging_buffers();
    })
}

/// Local buffers for a pipeline's staging table (staging.rs), which holds a chunk's rows
/// (`chunk_size`, 64 MB of input by default): with the default 8 MB most of a staged chunk
/// would be written out and read back. Raised, never lowered, before the session's first
/// temporary table (the only time it may change). The buffers are allocated as the staging
/// table grows and then kept for the worker's life: a worker that stages rows (transform,
/// dedup_key, row-level security, a view, a Citus table) keeps up to this much private memory
/// (docs/pipelines.md, Workers); one that stages nothing uses none.
fn staging_buffers() {
    const STAGING_TEMP_BUFFERS_KB: i32 = 64 * 1024;
    // SAFETY: a GUC variable of this backend (in 8 kB blocks), read on its own thread.
    let blocks = unsafe { pg_sys::num_temp_buffers };
    if blocks < STAGING_TEMP_BUFFERS_KB / 8 {
        set("temp_buffers", &format!("{STAGING_TEMP_BUFFERS_KB}kB"));
    }
}
