//! A pipeline's staging table: `pg_temp.ingest_batch`, shaped like the target (its columns, its
//! defaults and generated columns, its CHECK and NOT NULL constraints except NOT NULL on
//! identity columns: a row they refuse is a reject of its own, before the target) or like the
//! transform's declared `batch_columns` (staged_shape.rs), created
//! by the worker in the transaction that needs it and dropped at its commit (`ON COMMIT DROP`):
//! it never outlives the transaction, and being temporary it is seen by no other session and no
//! pg_dump. A chunk's rows are COPYed into it (as the pipeline's owner: defaults run with the
//! owner's privileges; a value refused there is a reject, as for a plain pipeline), then they
//! go into the target through the planner, in a security-restricted operation, before the
//! chunk's ledger row: [`apply_transform`] runs the user's transform as the pipeline's owner;
//! [`apply_rows`] runs an `INSERT … SELECT` (with `ON CONFLICT … DO NOTHING` for a
//! de-duplication key; plain where COPY cannot write: row-level security applies, a view) as
//! the inserting role, and a row the target refuses is found and left out, as with COPY.

use super::txn::{subtransaction, DbError};
use crate::pipeline::PipelineDef;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;

/// The staging table's name, as transforms see it (`$batch` in a transform is replaced by it).
pub const BATCH: &str = "pg_temp.ingest_batch";

thread_local! {
    /// The local transaction id (`MyProc->lxid`) the staging table was created in.
    static CREATED_IN: Cell<Option<u32>> = const { Cell::new(None) };
}

fn current_lxid() -> u32 {
    // SAFETY: MyProc is this backend's PGPROC, set for the life of the process.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// What [`apply`] did with the staged rows.
pub struct Applied {
    /// Rows the statement inserted (a transform: the rows staged).
    pub rows: i64,
    /// Rows skipped because their key was there already (`dedup_key`).
    pub duplicates: i64,
}

/// The staging table of this transaction, created if it is not there yet, and empty (a group
/// transaction stages its files one after the other). Returns its oid.
pub fn begin(def: &PipelineDef) -> Result<pg_sys::Oid, DbError> {
    let lxid = current_lxid();
    if CREATED_IN.with(Cell::get) == Some(lxid) {
        subtransaction(|| {
            Spi::run(&format!("TRUNCATE {BATCH}")).unwrap_or_else(|e| error!("{e}"))
        })?;
    } else {
        subtransaction(|| create(def))?;
        CREATED_IN.with(|c| c.set(Some(lxid)));
    }
    subtransaction(|| {
        Spi::get_one::<pg_sys::Oid>(&format!(
            "SELECT pg_catalog.to_regclass('{BATCH}')::pg_catalog.oid"
        ))
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_else(|| error!("the staging table {BATCH} is missing"))
    })
}

/// Creates the staging table for `def`'s target. The names in the statements are the
/// catalog's, quoted by PostgreSQL (`regclass`, `quote_ident`): nothing of a file's.
fn create(def: &PipelineDef) {
    let names = Spi::get_three_with_args::<String, String, String>(
        "SELECT $1::pg_catalog.regclass::pg_catalog.text,
                pg_catalog.quote_ident(pg_catalog.pg_get_userbyid($2)),
                pg_catalog.quote_ident(pg_catalog.pg_get_userbyid($3))",
        &[
            def.target.into(),
            def.owner.into(),
            def.insert_role().into(),
        ],
    )
    .unwrap_or_else(|e| error!("{e}"));
    let (Some(target), Some(owner), Some(inserter)) = names else {
        error!("the target or the owner of pipeline {:?} is gone", def.name)
    };
    if let Some(cols) = &def.batch {
        // Declared columns: names and types as PostgreSQL spells them (staged_shape.rs).
        Spi::run(&format!(
            "CREATE TEMP TABLE ingest_batch ({}) ON COMMIT DROP",
            crate::staged_shape::column_list_sql(cols)
        ))
        .unwrap_or_else(|e| error!("{e}"));
        Spi::run(&format!(
            "GRANT SELECT, INSERT ON {BATCH} TO {owner}, {inserter}"
        ))
        .unwrap_or_else(|e| error!("{e}"));
        return;
    }
    Spi::run(&format!(
        "CREATE TEMP TABLE ingest_batch (LIKE {target} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS) ON COMMIT DROP"
    ))
    .unwrap_or_else(|e| error!("{e}"));
    // An identity column has no default here (it is the target's to assign): not NOT NULL
    // either, or every row without it would be refused.
    let identity: Vec<String> = Spi::connect(|c| {
        c.select(
            "SELECT pg_catalog.quote_ident(attname) FROM pg_catalog.pg_attribute
              WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0
                AND NOT attisdropped AND attidentity OPERATOR(pg_catalog.<>) ''",
            None,
            &[def.target.into()],
        )?
        .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
        .collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_else(|e| error!("{e}"));
    for col in identity {
        Spi::run(&format!(
            "ALTER TABLE {BATCH} ALTER COLUMN {col} DROP NOT NULL"
        ))
        .unwrap_or_else(|e| error!("{e}"));
    }
    Spi::run(&format!(
        "GRANT SELECT, INSERT ON {BATCH} TO {owner}, {inserter}"
    ))
    .unwrap_or_else(|e| error!("{e}"));
}

/// Runs the pipeline's transform over the staged rows, as the pipeline's owner. `staged`: rows
/// in the staging table (all of them count as applied: what the transform did with them is its
/// own business).
pub fn apply_transform(
    def: &PipelineDef,
    transform: &str,
    staged: i64,
) -> Result<Applied, DbError> {
    if staged > 0 {
        run_as(def.owner, &transform.replace("$batch", BATCH), &[])?;
        // Session-level advisory locks a transform took would outlive its transaction in the
        // worker's session: released here.
        subtransaction(|| {
            Spi::run("SELECT pg_catalog.pg_advisory_unlock_all()").unwrap_or_else(|e| error!("{e}"))
        })?;
    }
    Ok(Applied {
        rows: staged,
        duplicates: 0,
    })
}

/// A staged row the target refused (by its 1-based position in the staging table).
pub struct RefusedRow {
    pub position: usize,
    pub error: DbError,
}

/// What [`apply_rows`] did: the rows inserted and skipped as duplicates, and the rows the
/// target refused.
pub struct AppliedRows {
    pub applied: Applied,
    pub refused: Vec<RefusedRow>,
    /// The search stopped after more than `max_refused` refusals (the file fails anyway): the
    /// counts are not the whole chunk's.
    pub stopped: bool,
}

/// Without a transform: moves the staged rows into the target with one `INSERT … SELECT` (see
/// [`insert_statement`]) as the inserting role, and if the target refuses a row (a foreign key,
/// a trigger, a view's INSTEAD OF trigger, a policy's WITH CHECK), finds it by halves — each
/// attempt a subtransaction over a range of the staged rows, named by their `ctid`s in the
/// order they were staged (a TID scan: an attempt reads only its own rows) — so that only the
/// refused rows are left out and every other row goes in, as with COPY into a table. Stops
/// after more than `max_refused` refusals (the file's verdict is known). An error that is not
/// a row's fault comes back as `Err`.
pub fn apply_rows(
    def: &PipelineDef,
    columns: &[String],
    staged: i64,
    max_refused: Option<u64>,
) -> Result<AppliedRows, DbError> {
    let mut out = AppliedRows {
        applied: Applied {
            rows: 0,
            duplicates: 0,
        },
        refused: Vec::new(),
        stopped: false,
    };
    if staged == 0 {
        return Ok(out);
    }
    let all = insert_statement(def, columns, false)?;
    let result = run_as_inserter(def, &all, &[]);
    release_advisory_locks()?;
    match result {
        Ok(n) => out.applied.rows = n,
        Err(e) if e.is_row_level() => {
            let ctids = staged_ctids()?;
            let search = Search {
                def,
                ranged: insert_statement(def, columns, true)?,
                ctids: &ctids,
                max_refused,
            };
            search.halves(0, ctids.len(), e, &mut out)?;
            release_advisory_locks()?;
        }
        Err(e) => return Err(e),
    }
    let refused = out.refused.len() as i64;
    out.applied.duplicates = if def.options.policy.dedup_key.is_some() && !out.stopped {
        staged - refused - out.applied.rows
    } else {
        0
    };
    Ok(out)
}

/// The staged rows' `ctid`s in staging order: the table is filled by COPY in this transaction
/// and never updated or deleted from, so a sequential scan returns its rows in the order they
/// were staged (local buffers: no synchronized scan starts mid-table).
fn staged_ctids() -> Result<Vec<String>, DbError> {
    subtransaction(|| {
        // Not read-only: a read-only SPI query would use the transaction's first snapshot,
        // taken before the rows were staged.
        Spi::connect_mut(|c| {
            c.update(
                &format!("SELECT ctid::pg_catalog.text FROM {BATCH}"),
                None,
                &[],
            )?
            .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_else(|e| error!("{e}"))
    })
}

/// A search for the rows the target refuses among staged rows.
struct Search<'a> {
    def: &'a PipelineDef,
    /// [`insert_statement`] of the rows whose `ctid` is in `$1`.
    ranged: String,
    ctids: &'a [String],
    max_refused: Option<u64>,
}

impl Search<'_> {
    /// Staged rows `from..to` (0-based), known to hold a refused row (`e`, from the attempt on
    /// all of them).
    fn halves(
        &self,
        from: usize,
        to: usize,
        e: DbError,
        out: &mut AppliedRows,
    ) -> Result<(), DbError> {
        if out.stopped {
            return Ok(());
        }
        if to - from == 1 {
            out.refused.push(RefusedRow {
                position: from + 1,
                error: e,
            });
            out.stopped = self
                .max_refused
                .is_some_and(|max| out.refused.len() as u64 > max);
            return Ok(());
        }
        let mid = from + (to - from) / 2;
        for (a, b) in [(from, mid), (mid, to)] {
            if out.stopped {
                break;
            }
            let range: Vec<String> = self.ctids[a..b].to_vec();
            match run_as_inserter(self.def, &self.ranged, &[range.into()]) {
                Ok(n) => out.applied.rows += n,
                Err(e) if e.is_row_level() => self.halves(a, b, e, out)?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Session-level advisory locks that the target's triggers (or a transform) took would outlive
/// their transaction in the worker's session: released after each statement that moves rows.
pub fn release_advisory_locks() -> Result<(), DbError> {
    subtransaction(|| {
        Spi::run("SELECT pg_catalog.pg_advisory_unlock_all()").unwrap_or_else(|e| error!("{e}"))
    })
}

/// Runs `sql` as the pipeline's inserting role; the rows it wrote.
fn run_as_inserter(
    def: &PipelineDef,
    sql: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> Result<i64, DbError> {
    run_as(def.insert_role(), sql, args)
}

/// Runs `sql` as `role` in a security-restricted subtransaction; the rows it wrote.
///
/// A superuser's SQL resolves nothing in a schema others can write to (a function planted in
/// public that matches its arguments better than pg_catalog's would run as the superuser): its
/// search_path is pg_catalog, pg_temp, and a superuser's transform names its tables with their
/// schema. Anyone else's runs with a session's default search_path, as that role (the target's
/// triggers, a view's INSTEAD OF functions, find their tables as in the role's own sessions).
fn run_as(
    role: pg_sys::Oid,
    sql: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> Result<i64, DbError> {
    // SAFETY: a catalog lookup by oid on the worker's thread inside a transaction.
    let superuser = unsafe { pg_sys::superuser_arg(role) };
    let search_path = if superuser {
        "pg_catalog, pg_temp"
    } else {
        "\"$user\", public"
    };
    subtransaction(|| {
        crate::restricted::as_owner(role, search_path, || {
            Spi::connect_mut(|c| c.update(sql, None, args).map(|r| r.len() as i64))
                .unwrap_or_else(|e| error!("{e}"))
        })
    })
}

/// `INSERT INTO <target> (<columns>) SELECT <columns> FROM pg_temp.ingest_batch`, with
/// `ON CONFLICT (<key>) DO NOTHING` for a de-duplication key; `ranged`: only the staged rows
/// whose `ctid` is in `$1` (text[]). Identifiers quoted by PostgreSQL.
fn insert_statement(
    def: &PipelineDef,
    columns: &[String],
    ranged: bool,
) -> Result<String, DbError> {
    let key = def.options.policy.dedup_key.clone().unwrap_or_default();
    subtransaction(|| {
        Spi::get_three_with_args::<String, String, String>(
            "SELECT $1::pg_catalog.regclass::pg_catalog.text,
                    (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') FROM pg_catalog.unnest($2::pg_catalog.text[]) c),
                    (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') FROM pg_catalog.unnest($3::pg_catalog.text[]) c)",
            &[def.target.into(), columns.to_vec().into(), key.into()],
        )
        .unwrap_or_else(|e| error!("{e}"))
    })
    .map(|(target, cols, key)| {
        let (target, cols) = (target.unwrap_or_default(), cols.unwrap_or_default());
        let only = if ranged {
            " WHERE ctid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]::pg_catalog.tid[])"
        } else {
            ""
        };
        match key {
            Some(k) if !k.is_empty() => format!(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM {BATCH}{only} ON CONFLICT ({k}) DO NOTHING"
            ),
            _ => format!("INSERT INTO {target} ({cols}) SELECT {cols} FROM {BATCH}{only}"),
        }
    })
}
