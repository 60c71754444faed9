//! Which file column goes to which table column: CSV/TSV header names (or field positions) and
//! NDJSON keys resolved against the target table's columns, with errors that name every
//! column at fault.
//!
//! Rules. Names match exactly first, else case-insensitively (header names are trimmed). With
//! an explicit mapping, the file columns it names go where it says (an empty table name, from
//! `null` in the option, ignores the file column), and the other file columns still match by
//! name, except to a table column the mapping already fills: that file column is ignored
//! (listed in `extra`). A file column matching no table column is ignored (`extra`). A file
//! column matching a generated or `GENERATED ALWAYS` identity column is an error.

use crate::options::ColumnMapping;
use crate::shown::{excerpt, quoted_list};
use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// json or jsonb.
    Json,
    /// Any array type.
    Array,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    pub kind: ColumnKind,
    /// NOT NULL, no default, not identity or generated: a row must give it.
    pub required: bool,
    /// False for `GENERATED ALWAYS AS (…) STORED` and `GENERATED ALWAYS AS IDENTITY`.
    pub insertable: bool,
}

/// The COPY column list of a CSV/TSV file and where each value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Target column names, in COPY column-list order.
    pub copy_columns: Vec<String>,
    /// File field index for each copy column.
    pub source_fields: Vec<usize>,
    /// File columns ignored (header names; `#n` for a skipped position n, 1-based).
    pub extra: Vec<String>,
    /// Number of fields every record must have.
    pub expected_fields: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingError {
    /// The header has no column names.
    EmptyHeader,
    /// Mapping by name needs a header line.
    NoHeader,
    /// Required table columns (NOT NULL, no default) no file column fills.
    MissingRequired {
        columns: Vec<String>,
        file_columns: Vec<String>,
    },
    /// A mapping (or `columns`) names a table column the table does not have.
    UnknownTableColumn {
        name: String,
        table_columns: Vec<String>,
    },
    /// The mapping names a file column the header does not have.
    UnknownFileColumn { name: String, header: Vec<String> },
    /// A generated or identity-always column would be written.
    NotInsertable { column: String, file_column: String },
    /// Two file columns go to one table column.
    Duplicate {
        column: String,
        first: String,
        second: String,
    },
    /// No file column goes to any table column.
    NothingMapped {
        file_columns: Vec<String>,
        table_columns: Vec<String>,
    },
    /// Positional mapping (header false) does not apply to NDJSON.
    PositionalForNdjson,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MappingError::EmptyHeader => f.write_str(
                "the header line has no column names; give the file a header, or set \
                 \"header\": false (with \"columns\") in the pipeline options",
            ),
            MappingError::NoHeader => f.write_str(
                "columns are mapped by header name but the file has no header; set \
                 \"header\": true or name the fields with \"columns\"",
            ),
            MappingError::MissingRequired {
                columns,
                file_columns,
            } => write!(
                f,
                "required table column{} {} (NOT NULL without default) {} no value in the file; \
                 the file's columns are {}; add {} to the file, map a file column to {} with \
                 \"mapping\", or give {} a default",
                if columns.len() > 1 { "s" } else { "" },
                quoted_list(columns),
                if columns.len() > 1 { "get" } else { "gets" },
                quoted_list(file_columns),
                if columns.len() > 1 { "them" } else { "it" },
                if columns.len() > 1 { "them" } else { "it" },
                if columns.len() > 1 { "them" } else { "it" },
            ),
            MappingError::UnknownTableColumn {
                name,
                table_columns,
            } => write!(
                f,
                "the pipeline options name table column \"{}\", which the table does not have; \
                 its columns are {}",
                excerpt(name, 64),
                quoted_list(table_columns)
            ),
            MappingError::UnknownFileColumn { name, header } => write!(
                f,
                "\"mapping\" names file column \"{}\", which the header does not have; the \
                 header's columns are {}",
                excerpt(name, 64),
                quoted_list(header)
            ),
            MappingError::NotInsertable {
                column,
                file_column,
            } => write!(
                f,
                "file column \"{}\" goes to table column \"{}\", which is generated (GENERATED \
                 ALWAYS) and cannot be written; map it elsewhere or ignore it with \
                 \"mapping\": {{\"{}\": null}}",
                excerpt(file_column, 64),
                excerpt(column, 64),
                excerpt(file_column, 64)
            ),
            MappingError::Duplicate {
                column,
                first,
                second,
            } => write!(
                f,
                "file columns \"{}\" and \"{}\" both go to table column \"{}\"; ignore one with \
                 \"mapping\": {{\"{}\": null}}",
                excerpt(first, 64),
                excerpt(second, 64),
                excerpt(column, 64),
                excerpt(second, 64)
            ),
            MappingError::NothingMapped {
                file_columns,
                table_columns,
            } => write!(
                f,
                "no file column matches a table column: the file has {}, the table has {}; \
                 rename them or use \"mapping\"",
                quoted_list(file_columns),
                quoted_list(table_columns)
            ),
            MappingError::PositionalForNdjson => {
                f.write_str("NDJSON keys are mapped by name; \"columns\" does not apply")
            }
        }
    }
}

impl std::error::Error for MappingError {}

/// Index of the target column named `name`: exact match first, else case-insensitive.
pub fn find_target(target: &[TargetColumn], name: &str) -> Option<usize> {
    target.iter().position(|c| c.name == name).or_else(|| {
        let lower = name.to_lowercase();
        target.iter().position(|c| c.name.to_lowercase() == lower)
    })
}

fn names(target: &[TargetColumn]) -> Vec<String> {
    target.iter().map(|c| c.name.clone()).collect()
}

/// Collects `(file column label, field index, target index)` into a [`Resolved`], checking
/// insertable, duplicates and required columns.
fn finish(
    pairs: Vec<(String, usize, usize)>,
    mut extra: Vec<String>,
    expected_fields: usize,
    file_columns: &[String],
    target: &[TargetColumn],
) -> Result<Resolved, MappingError> {
    let mut taken: Vec<Option<&str>> = vec![None; target.len()];
    for (label, _, t) in &pairs {
        if !target[*t].insertable {
            return Err(MappingError::NotInsertable {
                column: target[*t].name.clone(),
                file_column: label.clone(),
            });
        }
        if let Some(first) = taken[*t] {
            return Err(MappingError::Duplicate {
                column: target[*t].name.clone(),
                first: first.to_string(),
                second: label.clone(),
            });
        }
        taken[*t] = Some(label);
    }
    let missing: Vec<String> = target
        .iter()
        .zip(&taken)
        .filter(|(c, t)| c.required && c.insertable && t.is_none())
        .map(|(c, _)| c.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(MappingError::MissingRequired {
            columns: missing,
            file_columns: file_columns.to_vec(),
        });
    }
    if pairs.is_empty() {
        return Err(MappingError::NothingMapped {
            file_columns: file_columns.to_vec(),
            table_columns: names(target),
        });
    }
    extra.dedup();
    Ok(Resolved {
        copy_columns: pairs
            .iter()
            .map(|(_, _, t)| target[*t].name.clone())
            .collect(),
        source_fields: pairs.iter().map(|(_, f, _)| *f).collect(),
        extra,
        expected_fields,
    })
}

/// Resolves the COPY column list of a CSV/TSV file (see the module's rules). `header`: the
/// header's names (`None` for a header-less file); `target`: the table's columns in order.
pub fn resolve(
    header: Option<&[String]>,
    mapping: &ColumnMapping,
    target: &[TargetColumn],
) -> Result<Resolved, MappingError> {
    if let ColumnMapping::Positional(cols) = mapping {
        let mut pairs = Vec::new();
        let mut extra = Vec::new();
        let (expected, labels): (usize, Vec<String>) = match cols {
            Some(cols) => {
                for (i, c) in cols.iter().enumerate() {
                    match c {
                        None => extra.push(format!("#{}", i + 1)),
                        Some(name) => {
                            let t = find_target(target, name).ok_or_else(|| {
                                MappingError::UnknownTableColumn {
                                    name: name.clone(),
                                    table_columns: names(target),
                                }
                            })?;
                            pairs.push((format!("#{} ({name})", i + 1), i, t));
                        }
                    }
                }
                let labels = cols.iter().flatten().cloned().collect();
                (cols.len(), labels)
            }
            None => {
                for (t, c) in target.iter().enumerate().filter(|(_, c)| c.insertable) {
                    pairs.push((c.name.clone(), pairs.len(), t));
                }
                let labels = pairs.iter().map(|p| p.0.clone()).collect();
                (pairs.len(), labels)
            }
        };
        let expected = match header {
            Some(h) => h.len().max(expected),
            None => expected,
        };
        return finish(pairs, extra, expected, &labels, target);
    }
    let header = header.ok_or(MappingError::NoHeader)?;
    let trimmed: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    if trimmed.iter().all(String::is_empty) {
        return Err(MappingError::EmptyHeader);
    }
    let explicit: &[(String, String)] = match mapping {
        ColumnMapping::Explicit(m) => m,
        _ => &[],
    };
    // Field index -> Some(target) / None (ignored), from the explicit mapping.
    let mut by_mapping: Vec<Option<Option<usize>>> = vec![None; trimmed.len()];
    let mut mapped_targets = Vec::new();
    for (file_col, table_col) in explicit {
        let fc = file_col.trim();
        let idx = trimmed
            .iter()
            .position(|h| h == fc)
            .or_else(|| {
                let l = fc.to_lowercase();
                trimmed.iter().position(|h| h.to_lowercase() == l)
            })
            .ok_or_else(|| MappingError::UnknownFileColumn {
                name: file_col.clone(),
                header: trimmed.clone(),
            })?;
        if table_col.is_empty() {
            by_mapping[idx] = Some(None);
            continue;
        }
        let t = find_target(target, table_col).ok_or_else(|| MappingError::UnknownTableColumn {
            name: table_col.clone(),
            table_columns: names(target),
        })?;
        by_mapping[idx] = Some(Some(t));
        mapped_targets.push(t);
    }
    let mut pairs = Vec::new();
    let mut extra = Vec::new();
    for (i, h) in trimmed.iter().enumerate() {
        let t = match by_mapping[i] {
            Some(t) => t,
            None => find_target(target, h).filter(|t| !mapped_targets.contains(t)),
        };
        match t {
            Some(t) => pairs.push((h.clone(), i, t)),
            None => extra.push(h.clone()),
        }
    }
    finish(pairs, extra, trimmed.len(), &trimmed, target)
}

/// How NDJSON keys map to table columns.
#[derive(Debug, Clone)]
pub struct NdjsonColumns {
    exact: HashMap<String, Option<usize>>,
    folded: HashMap<String, Option<usize>>,
    /// Indexes of the required (insertable) target columns.
    pub required: Vec<usize>,
}

impl NdjsonColumns {
    /// The target column index of JSON key `key`: `Some(Some(i))`, `Some(None)` for a key that
    /// is ignored on purpose (mapped to null, or matching a generated column), `None` for a key
    /// matching nothing.
    pub fn lookup(&self, key: &str) -> Option<Option<usize>> {
        if let Some(t) = self.exact.get(key) {
            return Some(*t);
        }
        self.folded.get(&key.to_lowercase()).copied()
    }
}

/// The key lookup of NDJSON files: a key matches a table column exactly, else
/// case-insensitively; an explicit mapping renames (its keys match exactly, else
/// case-insensitively, and the table columns it fills are not matched by name). Keys matching a
/// generated column are ignored.
pub fn ndjson_columns(
    target: &[TargetColumn],
    mapping: &ColumnMapping,
) -> Result<NdjsonColumns, MappingError> {
    let explicit: &[(String, String)] = match mapping {
        ColumnMapping::Explicit(m) => m,
        ColumnMapping::ByName => &[],
        ColumnMapping::Positional(_) => return Err(MappingError::PositionalForNdjson),
    };
    let mut exact = HashMap::new();
    let mut folded = HashMap::new();
    let mut mapped: Vec<(usize, &str)> = Vec::new();
    for (key, col) in explicit {
        let t = if col.is_empty() {
            None
        } else {
            let t = find_target(target, col).ok_or_else(|| MappingError::UnknownTableColumn {
                name: col.clone(),
                table_columns: names(target),
            })?;
            if !target[t].insertable {
                return Err(MappingError::NotInsertable {
                    column: target[t].name.clone(),
                    file_column: key.clone(),
                });
            }
            if let Some((_, first)) = mapped.iter().find(|(m, _)| *m == t) {
                return Err(MappingError::Duplicate {
                    column: target[t].name.clone(),
                    first: first.to_string(),
                    second: key.clone(),
                });
            }
            mapped.push((t, key));
            Some(t)
        };
        exact.insert(key.clone(), t);
        folded.entry(key.to_lowercase()).or_insert(t);
    }
    for (i, c) in target.iter().enumerate() {
        if mapped.iter().any(|(t, _)| *t == i) {
            continue;
        }
        let t = c.insertable.then_some(i);
        exact.entry(c.name.clone()).or_insert(t);
        folded.entry(c.name.to_lowercase()).or_insert(t);
    }
    let required = target
        .iter()
        .enumerate()
        .filter(|(_, c)| c.required && c.insertable)
        .map(|(i, _)| i)
        .collect();
    Ok(NdjsonColumns {
        exact,
        folded,
        required,
    })
}
