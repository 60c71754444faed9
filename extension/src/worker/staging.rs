//! A pipeline's staging table: `pg_temp.ingest_batch`, shaped like the target (its columns, its
//! defaults and generated columns, its CHECK and NOT NULL constraints except NOT NULL on
//! identity columns: a row they refuse is a reject of its own, before the target), created
//! by the worker in the transaction that needs it and dropped at its commit (`ON COMMIT DROP`):
//! it never outlives the transaction, and being temporary it is seen by no other session and no
//! pg_dump. A chunk's rows are COPYed into it (as the pipeline's owner: defaults run with the
//! owner's privileges; a value refused there is a reject, as for a plain pipeline), then
//! [`apply`] moves them into the target through the planner — the user's transform, or an
//! `INSERT … SELECT` with `ON CONFLICT … DO NOTHING` for a de-duplication key, or a plain
//! `INSERT … SELECT` where COPY cannot write (row-level security applies, a view) — as the
//! pipeline's owner, in a security-restricted operation, before the chunk's ledger row.

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

/// Moves the staged rows into the target, as the pipeline's owner: the transform, or an
/// `INSERT … SELECT` of `columns` (the columns the files gave) — `ON CONFLICT (key) DO
/// NOTHING` with a de-duplication key. `staged`: rows in the staging table.
pub fn apply(def: &PipelineDef, columns: &[String], staged: i64) -> Result<Applied, DbError> {
    if staged == 0 {
        return Ok(Applied {
            rows: 0,
            duplicates: 0,
        });
    }
    let sql = match &def.transform {
        Some(t) => t.replace("$batch", BATCH),
        None => insert_statement(def, columns)?,
    };
    // The transform is the owner's own SQL; the INSERT is the pipeline's inserting role's.
    let role = if def.transform.is_some() {
        def.owner
    } else {
        def.insert_role()
    };
    // A superuser's transform resolves nothing in a schema others can write to (a function
    // planted in public that matches its arguments better than pg_catalog's would run as the
    // superuser): its search_path is pg_catalog, pg_temp, and it names its tables with their
    // schema. Anyone else's runs with a session's default search_path, as its owner.
    // SAFETY: a catalog lookup by oid on the worker's thread inside a transaction.
    let superuser = unsafe { pg_sys::superuser_arg(role) };
    let search_path = if superuser {
        "pg_catalog, pg_temp"
    } else {
        "\"$user\", public"
    };
    let n = subtransaction(|| {
        crate::restricted::as_owner(role, search_path, || {
            Spi::connect_mut(|c| c.update(&sql, None, &[]).map(|r| r.len() as i64))
                .unwrap_or_else(|e| error!("{e}"))
        })
    })?;
    // Session-level advisory locks a transform took would outlive its transaction in the
    // worker's session: released here.
    subtransaction(|| {
        Spi::run("SELECT pg_catalog.pg_advisory_unlock_all()").unwrap_or_else(|e| error!("{e}"))
    })?;
    Ok(match (&def.transform, &def.options.policy.dedup_key) {
        (Some(_), _) => Applied {
            rows: staged,
            duplicates: 0,
        },
        (None, Some(_)) => Applied {
            rows: n,
            duplicates: staged - n,
        },
        (None, None) => Applied {
            rows: n,
            duplicates: 0,
        },
    })
}

/// `INSERT INTO <target> (<columns>) SELECT <columns> FROM pg_temp.ingest_batch`, with
/// `ON CONFLICT (<key>) DO NOTHING` for a de-duplication key. Identifiers quoted by PostgreSQL.
fn insert_statement(def: &PipelineDef, columns: &[String]) -> Result<String, DbError> {
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
        match key {
            Some(k) if !k.is_empty() => format!(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM {BATCH} ON CONFLICT ({k}) DO NOTHING"
            ),
            _ => format!("INSERT INTO {target} ({cols}) SELECT {cols} FROM {BATCH}"),
        }
    })
}
