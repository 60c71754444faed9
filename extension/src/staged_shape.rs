//! A transform's declared staging table (`batch_columns`): its column types resolved by
//! PostgreSQL's own type-name parser, written back schema-qualified when the pipeline is
//! created (so the worker, whose search_path is not the creator's, resolves the same types),
//! and turned into a column list for `CREATE TEMP TABLE` from the catalog's spelling only.

use crate::worker::txn::subtransaction;
use ingest_core::mapping::{ColumnKind, TargetColumn};
use ingest_core::staging::BatchColumn;
use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// A declared staging column with its type resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedColumn {
    pub name: String,
    pub type_oid: pg_sys::Oid,
    pub typmod: i32,
}

/// Resolves each column's type as `CREATE TABLE` would (with its modifier: `numeric(12,2)`),
/// with the current search_path (in the extension's functions: pg_catalog, pg_temp, so a
/// type of the user's own is named with its schema). `Err`: which column, and PostgreSQL's reason.
pub fn resolve(cols: &[BatchColumn]) -> Result<Vec<StagedColumn>, String> {
    let mut out = Vec::with_capacity(cols.len());
    for c in cols {
        let text = CString::new(c.type_name.as_str())
            .map_err(|_| format!("batch_columns: column {:?}: a NUL in its type", c.name))?;
        let parsed = subtransaction(|| {
            let (mut oid, mut typmod) = (pg_sys::InvalidOid, -1i32);
            // SAFETY: a NUL-terminated string and two out-pointers to locals, on the backend's
            // own thread inside a transaction; an ERROR (a syntax error) is caught by the
            // subtransaction.
            unsafe { pg_sys::parseTypeString(text.as_ptr(), &mut oid, &mut typmod, true) };
            (oid, typmod)
        });
        match parsed {
            Ok((oid, typmod)) if oid != pg_sys::InvalidOid => {
                if let Some(why) = unusable_kind(oid) {
                    return Err(format!(
                        "batch_columns: column {:?}: type {:?} {why}",
                        c.name, c.type_name
                    ));
                }
                out.push(StagedColumn {
                    name: c.name.clone(),
                    type_oid: oid,
                    typmod,
                })
            }
            Ok(_) => {
                return Err(format!(
                    "batch_columns: column {:?}: type {:?} does not exist (a type outside pg_catalog is named with its schema, such as public.my_type)",
                    c.name, c.type_name
                ))
            }
            Err(e) => {
                return Err(format!(
                    "batch_columns: column {:?}: type {:?} is not a type name: {}",
                    c.name, c.type_name, e.message
                ))
            }
        }
    }
    Ok(out)
}

/// Why a column of a table cannot have this type, as the worker will create it: a pseudo-type
/// (`record`, `anyelement`, …: no table column can), or a temporary type (the creator's
/// session's own: the worker's session has none of that name).
fn unusable_kind(oid: pg_sys::Oid) -> Option<&'static str> {
    // SAFETY: catalog lookups of an existing type on the backend's own thread.
    let typtype = unsafe { pg_sys::get_typtype(oid) } as u8;
    if typtype == pg_sys::TYPTYPE_PSEUDO {
        return Some("is a pseudo-type, which no table column can have");
    }
    let namespace = pgrx::Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT typnamespace FROM pg_catalog.pg_type WHERE oid OPERATOR(pg_catalog.=) $1",
        &[oid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(pg_sys::InvalidOid);
    // SAFETY: a namespace lookup by oid on the backend's own thread.
    if namespace != pg_sys::InvalidOid && unsafe { pg_sys::isAnyTempNamespace(namespace) } {
        return Some(
            "is a temporary type (of your session only): the pipeline's worker cannot see it",
        );
    }
    None
}

/// The type as the catalog spells it, with its modifier, schema-qualified unless built in
/// (`numeric(12,2)`, `pg_catalog.text`, `shop."SKU"`): safe to write into SQL.
pub fn type_sql(c: &StagedColumn) -> String {
    let flags = (pg_sys::FORMAT_TYPE_TYPEMOD_GIVEN | pg_sys::FORMAT_TYPE_FORCE_QUALIFY) as u16;
    // SAFETY: a catalog lookup of an existing type on the backend's own thread; the result is
    // a palloc'd NUL-terminated string, copied at once.
    unsafe {
        let p = pg_sys::format_type_extended(c.type_oid, c.typmod, flags);
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// A name quoted as an identifier when it must be (PostgreSQL's `quote_identifier`).
pub fn ident_sql(name: &str) -> String {
    let c = CString::new(name).unwrap_or_default();
    // SAFETY: a NUL-terminated string; the result is either it or a palloc'd quoted copy, read
    // at once.
    unsafe {
        CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr()))
            .to_string_lossy()
            .into_owned()
    }
}

/// The column list of `CREATE TABLE ingest_batch (…)`: identifiers quoted and types spelled
/// by PostgreSQL.
pub fn column_list_sql(cols: &[StagedColumn]) -> String {
    cols.iter()
        .map(|c| format!("{} {}", ident_sql(&c.name), type_sql(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The declared columns as the mapping sees them: JSON or array by type (domains by their base
/// type), none required, all insertable.
pub fn as_target_columns(cols: &[StagedColumn]) -> Vec<TargetColumn> {
    cols.iter()
        .map(|c| {
            // SAFETY: catalog lookups of an existing type on the backend's own thread.
            let base = unsafe { pg_sys::getBaseType(c.type_oid) };
            let kind = if base == pg_sys::JSONOID || base == pg_sys::JSONBOID {
                ColumnKind::Json
            } else if unsafe { pg_sys::get_element_type(base) } != pg_sys::InvalidOid {
                ColumnKind::Array
            } else {
                ColumnKind::Other
            };
            TargetColumn {
                name: c.name.clone(),
                kind,
                required: false,
                insertable: true,
            }
        })
        .collect()
}

/// The first declared type `role` has no USAGE privilege on (named), if any.
pub fn first_unusable(cols: &[StagedColumn], role: pg_sys::Oid) -> Option<String> {
    cols.iter().find_map(|c| {
        // SAFETY: an ACL check by oids on the backend's own thread inside a transaction.
        let ok = unsafe {
            pg_sys::pg_type_aclcheck(c.type_oid, role, pg_sys::ACL_USAGE as pg_sys::AclMode)
        } == pg_sys::AclResult::ACLCHECK_OK;
        (!ok).then(|| type_sql(c))
    })
}

/// The options JSON with each `batch_columns` type replaced by PostgreSQL's qualified
/// spelling (what the worker resolves later, whatever its search_path).
pub fn normalized_options(options_json: &str, cols: &[StagedColumn]) -> String {
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_str(options_json) else {
        return options_json.to_string();
    };
    let list: Vec<serde_json::Value> = cols
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "type": type_sql(c)}))
        .collect();
    obj.insert("batch_columns".into(), serde_json::Value::Array(list));
    serde_json::Value::Object(obj).to_string()
}
