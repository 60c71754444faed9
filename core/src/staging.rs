//! The declared shape of a transform's staging table (`batch_columns`): the columns a
//! transform reads from `$batch` when the files' columns are not the target's (an enrichment
//! with a lookup, a fan-out into several tables). Without it the staging table is shaped like
//! the target. Parsed and checked here; the types are resolved by PostgreSQL when the pipeline
//! is created.

use crate::options::OptionError;
use serde_json::{Map, Value};

/// The option key of this module (valid for every format).
pub const STAGING_KEYS: &[&str] = &["batch_columns"];

/// Most columns a declared staging table may have (PostgreSQL's own limit per table).
pub const MAX_BATCH_COLUMNS: usize = 1600;

/// Longest column name PostgreSQL keeps whole (NAMEDATALEN - 1).
pub const MAX_NAME_BYTES: usize = 63;

/// One declared column of the staging table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchColumn {
    /// The column's name, as written (a PostgreSQL identifier, quoted when used).
    pub name: String,
    /// Its type, as PostgreSQL would read it in a column definition (`numeric(12,2)`,
    /// `text[]`, `myschema.mytype`); resolved by PostgreSQL, never spliced into SQL.
    pub type_name: String,
}

fn invalid(expected: &str, found: &Value) -> OptionError {
    OptionError::Invalid {
        key: "batch_columns".to_string(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

const EXPECTED: &str =
    "a non-empty array of {\"name\": …, \"type\": …} objects, such as [{\"name\": \"sku\", \"type\": \"text\"}]";

/// Reads `batch_columns` of an options object (`None`: absent, the staging table is shaped
/// like the target).
pub fn parse_batch_columns(
    obj: &Map<String, Value>,
) -> Result<Option<Vec<BatchColumn>>, OptionError> {
    let Some(v) = obj.get("batch_columns") else {
        return Ok(None);
    };
    let items = match v {
        Value::Array(a) if !a.is_empty() => a,
        _ => return Err(invalid(EXPECTED, v)),
    };
    if items.len() > MAX_BATCH_COLUMNS {
        return Err(invalid(
            &format!("at most {MAX_BATCH_COLUMNS} columns"),
            &Value::from(items.len()),
        ));
    }
    let mut out: Vec<BatchColumn> = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(o) = item else {
            return Err(invalid(EXPECTED, item));
        };
        if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "name" | "type")) {
            return Err(invalid(
                &format!("objects with the keys \"name\" and \"type\" only (not {k:?})"),
                item,
            ));
        }
        let text = |key: &str| match o.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() && !s.contains('\0') => {
                Ok(s.trim().to_string())
            }
            _ => Err(invalid(
                &format!("objects whose \"{key}\" is a non-empty string"),
                item,
            )),
        };
        let (name, type_name) = (text("name")?, text("type")?);
        if name.len() > MAX_NAME_BYTES {
            return Err(invalid(
                &format!("column names of at most {MAX_NAME_BYTES} bytes (PostgreSQL would cut a longer one)"),
                item,
            ));
        }
        if out.iter().any(|c| c.name == name) {
            return Err(OptionError::Conflict(format!(
                "option \"batch_columns\" names the column {name:?} twice"
            )));
        }
        out.push(BatchColumn { name, type_name });
    }
    Ok(Some(out))
}
