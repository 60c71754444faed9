//! The options of a pipeline: the file format (`csv`, `tsv`, `ndjson`) and the JSON object of
//! settings given to `ingest_create_pipeline`, checked key by key with messages that name the
//! key and what it accepts; and merging an `ALTER` patch into stored options.

use crate::compression::Compression;
use crate::shown::excerpt;
use serde_json::{Map, Value};
use std::fmt;

/// Character encoding of the input files; rows always reach PostgreSQL as UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// ISO-8859-1: every byte is the character of the same code, converted to UTF-8.
    Latin1,
}

/// CSV/TSV dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    /// `None`: no quoting (the default for TSV); every byte is data up to a delimiter.
    pub quote: Option<u8>,
    /// Escape inside quotes (PostgreSQL CSV): escape+quote or escape+escape is the second
    /// character. `None` only when `quote` is `None`; equals `quote` by default (`""` doubling).
    pub escape: Option<u8>,
    pub header: bool,
    /// An unquoted field equal to this is NULL; a quoted field never is.
    pub null: String,
    pub encoding: Encoding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Csv(CsvOptions),
    Ndjson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionChoice {
    /// By the file name's suffix (`.gz`, `.zst`).
    Auto,
    Forced(Compression),
}

impl CompressionChoice {
    /// The compression of the file named `file_name`.
    pub fn for_file(self, file_name: &str) -> Compression {
        match self {
            CompressionChoice::Auto => Compression::of_name(file_name),
            CompressionChoice::Forced(c) => c,
        }
    }
}

/// How file columns (CSV/TSV header names, NDJSON keys) map to table columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnMapping {
    /// Header names (or keys) match table column names, case-insensitively.
    ByName,
    /// `(file column, table column)` pairs from the `mapping` option; the other file columns
    /// still match by name. An empty table column (`null` in the option) ignores the file
    /// column.
    Explicit(Vec<(String, String)>),
    /// Header-less file: `Some(columns)`: field `i` goes to `columns[i]` (`None`: skipped);
    /// `None`: fields go to the table's insertable columns in table order.
    Positional(Option<Vec<Option<String>>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessedAction {
    Keep,
    Archive,
    Delete,
}

/// Pipeline settings from the options object; `None` when absent (the caller's defaults apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineSettings {
    pub file_patterns: Option<Vec<String>>,
    pub trigger_interval_ms: Option<u64>,
    pub max_files_per_trigger: Option<u64>,
    pub chunk_size_kb: Option<u64>,
    pub batch_rows: Option<u64>,
    pub min_file_age_ms: Option<u64>,
    pub processed_action: Option<ProcessedAction>,
    pub archive_dir: Option<String>,
    pub failed_dir: Option<String>,
    /// How many workers ingest the pipeline's files (see [`crate::share`]).
    pub workers: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOptions {
    pub format: Format,
    /// "csv", "tsv" or "ndjson".
    pub format_name: &'static str,
    pub compression: CompressionChoice,
    pub mapping: ColumnMapping,
    pub settings: PipelineSettings,
    /// Encoding of NDJSON files (`Format::Ndjson` carries no options); CSV/TSV keep theirs in
    /// [`CsvOptions::encoding`]. Use [`PipelineOptions::encoding`].
    pub ndjson_encoding: Encoding,
    /// Error mode and de-duplication key (see [`crate::policy`]).
    pub policy: crate::policy::RowPolicy,
    /// The staging table's declared columns, for a transform (see [`crate::staging`]);
    /// `None`: shaped like the target.
    pub batch_columns: Option<Vec<crate::staging::BatchColumn>>,
}

impl PipelineOptions {
    /// The file patterns to use: the `file_pattern` option or the format's defaults.
    pub fn patterns(&self) -> Vec<String> {
        self.settings
            .file_patterns
            .clone()
            .unwrap_or_else(|| default_patterns(self.format_name))
    }

    /// The encoding of the files (UTF-8 unless the `encoding` option says otherwise).
    pub fn encoding(&self) -> Encoding {
        match &self.format {
            Format::Csv(c) => c.encoding,
            Format::Ndjson => self.ndjson_encoding,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    /// The format is not csv, tsv or ndjson.
    UnknownFormat(String),
    /// The options text is not JSON.
    NotJson(String),
    /// The options are JSON but not an object.
    NotObject(String),
    /// A key this format does not know (a typo?).
    UnknownKey {
        key: String,
        format: &'static str,
        valid: Vec<&'static str>,
    },
    /// A key with a value of the wrong type or out of range.
    Invalid {
        key: String,
        expected: String,
        found: String,
    },
    /// Keys that do not go together.
    Conflict(String),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::UnknownFormat(s) => write!(
                f,
                "unknown format \"{}\": expected \"csv\", \"tsv\" or \"ndjson\"",
                excerpt(s, 64)
            ),
            OptionError::NotJson(e) => write!(
                f,
                "the options are not valid JSON ({}); expected a JSON object such as \
                 {{\"delimiter\": \";\"}}",
                excerpt(e, 200)
            ),
            OptionError::NotObject(s) => write!(
                f,
                "the options must be a JSON object such as {{\"header\": false}}, not {}",
                excerpt(s, 80)
            ),
            OptionError::UnknownKey { key, format, valid } => write!(
                f,
                "unknown option \"{}\" for format {format}; valid options are: {}",
                excerpt(key, 64),
                valid.join(", ")
            ),
            OptionError::Invalid {
                key,
                expected,
                found,
            } => write!(
                f,
                "option \"{}\" must be {expected}, not {}",
                excerpt(key, 80),
                excerpt(found, 80)
            ),
            OptionError::Conflict(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for OptionError {}

const SETTINGS_KEYS: &[&str] = &[
    "file_pattern",
    "trigger_interval",
    "max_files_per_trigger",
    "chunk_size",
    "batch_rows",
    "min_file_age",
    "processed_action",
    "archive_dir",
    "failed_dir",
    "workers",
];
const CSV_KEYS: &[&str] = &[
    "delimiter",
    "quote",
    "escape",
    "header",
    "null",
    "encoding",
    "compression",
    "columns",
    "mapping",
];
const NDJSON_KEYS: &[&str] = &["mapping", "compression", "encoding"];

/// The default file patterns of a format ("csv", "tsv", "ndjson"); empty for another name.
pub fn default_patterns(format_name: &str) -> Vec<String> {
    let bases: &[&str] = match format_name {
        "csv" => &["*.csv"],
        "tsv" => &["*.tsv"],
        "ndjson" => &["*.ndjson", "*.jsonl"],
        _ => &[],
    };
    let mut out = Vec::new();
    for b in bases {
        out.push(b.to_string());
        out.push(format!("{b}.gz"));
        out.push(format!("{b}.zst"));
    }
    out
}

fn invalid(key: &str, expected: &str, found: &Value) -> OptionError {
    OptionError::Invalid {
        key: key.to_string(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// One ASCII character that is not CR or LF.
fn one_char(key: &str, v: &Value) -> Result<u8, OptionError> {
    const WHAT: &str = "a string of one ASCII character other than CR and LF (such as \";\")";
    match v {
        Value::String(s) if s.len() == 1 && s.is_ascii() && s != "\r" && s != "\n" => {
            Ok(s.as_bytes()[0])
        }
        _ => Err(invalid(key, WHAT, v)),
    }
}

fn int_in(key: &str, v: &Value, lo: u64, hi: u64, unit: &str) -> Result<u64, OptionError> {
    match v.as_u64() {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(invalid(
            key,
            &format!("an integer from {lo} to {hi} ({unit})"),
            v,
        )),
    }
}

fn string(key: &str, v: &Value) -> Result<String, OptionError> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(invalid(key, "a non-empty string", v)),
    }
}

fn pattern(key: &str, v: &Value) -> Result<String, OptionError> {
    match v {
        Value::String(s) if !s.is_empty() && !s.contains('/') && !s.contains('\0') => Ok(s.clone()),
        _ => Err(invalid(
            key,
            "a file name pattern such as \"*.csv\" (no '/'), or an array of them",
            v,
        )),
    }
}

/// Checks `options_json` for `format` and returns the pipeline's options.
pub fn parse_options(format: &str, options_json: &str) -> Result<PipelineOptions, OptionError> {
    let format_name: &'static str = match format.trim().to_ascii_lowercase().as_str() {
        "csv" => "csv",
        "tsv" => "tsv",
        "ndjson" => "ndjson",
        _ => return Err(OptionError::UnknownFormat(format.to_string())),
    };
    let text = if options_json.trim().is_empty() {
        "{}"
    } else {
        options_json
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| OptionError::NotJson(e.to_string()))?;
    let obj = match value {
        Value::Object(m) => m,
        other => return Err(OptionError::NotObject(other.to_string())),
    };
    let ndjson = format_name == "ndjson";
    let valid: Vec<&'static str> = if ndjson { NDJSON_KEYS } else { CSV_KEYS }
        .iter()
        .chain(SETTINGS_KEYS)
        .chain(crate::policy::POLICY_KEYS)
        .chain(crate::staging::STAGING_KEYS)
        .copied()
        .collect();
    for key in obj.keys() {
        if !valid.contains(&key.as_str()) {
            return Err(OptionError::UnknownKey {
                key: key.clone(),
                format: format_name,
                valid,
            });
        }
    }
    let settings = parse_settings(&obj)?;
    let policy = crate::policy::parse_policy(&obj)?;
    let batch_columns = crate::staging::parse_batch_columns(&obj)?;
    let compression = match obj.get("compression") {
        None => CompressionChoice::Auto,
        Some(v) => match v.as_str().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("auto") => CompressionChoice::Auto,
            Some("none") => CompressionChoice::Forced(Compression::None),
            Some("gzip") => CompressionChoice::Forced(Compression::Gzip),
            Some("zstd") => CompressionChoice::Forced(Compression::Zstd),
            _ => {
                return Err(invalid(
                    "compression",
                    "\"auto\", \"none\", \"gzip\" or \"zstd\"",
                    v,
                ))
            }
        },
    };
    let encoding = match obj.get("encoding") {
        None => Encoding::Utf8,
        Some(v) => match v.as_str().map(|s| s.to_ascii_uppercase()).as_deref() {
            Some("UTF8" | "UTF-8") => Encoding::Utf8,
            Some("LATIN1" | "ISO-8859-1" | "ISO8859-1") => Encoding::Latin1,
            _ => {
                return Err(invalid(
                    "encoding",
                    "\"UTF8\", \"UTF-8\", \"LATIN1\" or \"ISO-8859-1\"",
                    v,
                ))
            }
        },
    };
    let explicit = match obj.get("mapping") {
        None => None,
        Some(v) => Some(parse_mapping(v)?),
    };
    if ndjson {
        return Ok(PipelineOptions {
            format: Format::Ndjson,
            format_name,
            compression,
            mapping: explicit.map_or(ColumnMapping::ByName, ColumnMapping::Explicit),
            settings,
            ndjson_encoding: encoding,
            policy,
            batch_columns,
        });
    }
    let tsv = format_name == "tsv";
    let delimiter = match obj.get("delimiter") {
        None => {
            if tsv {
                b'\t'
            } else {
                b','
            }
        }
        Some(v) => one_char("delimiter", v)?,
    };
    let quote = match obj.get("quote") {
        None => (!tsv).then_some(b'"'),
        Some(Value::Null) => None,
        Some(v) => Some(one_char("quote", v).map_err(|_| {
            invalid(
                "quote",
                "a string of one ASCII character other than CR and LF, or null for no quoting",
                v,
            )
        })?),
    };
    let escape = match obj.get("escape") {
        None => quote,
        Some(v) => {
            let e = one_char("escape", v)?;
            if quote.is_none() {
                return Err(OptionError::Conflict(
                    "option \"escape\" only applies inside quoted fields, and \"quote\" is null \
                     (no quoting): set \"quote\" too, or remove \"escape\""
                        .into(),
                ));
            }
            Some(e)
        }
    };
    if quote == Some(delimiter) {
        return Err(OptionError::Conflict(format!(
            "options \"delimiter\" and \"quote\" must differ (both are {:?})",
            delimiter as char
        )));
    }
    let header = match obj.get("header") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(invalid("header", "true or false", v)),
    };
    let null = match obj.get("null") {
        None => String::new(),
        Some(Value::String(s)) => {
            if s.contains(['\r', '\n']) {
                return Err(invalid(
                    "null",
                    "a string without CR or LF",
                    &Value::String(s.clone()),
                ));
            }
            if s.as_bytes().contains(&delimiter) {
                return Err(OptionError::Conflict(format!(
                    "option \"null\" (\"{}\") must not contain the delimiter {:?}",
                    excerpt(s, 64),
                    delimiter as char
                )));
            }
            s.clone()
        }
        Some(v) => return Err(invalid("null", "a string (such as \"\" or \"NULL\")", v)),
    };
    let columns = match obj.get("columns") {
        None => None,
        Some(v) => Some(parse_columns(v)?),
    };
    if header && columns.is_some() {
        return Err(OptionError::Conflict(
            "option \"columns\" names the fields of a file without a header: it needs \
             \"header\": false (with a header, use \"mapping\" to rename columns)"
                .into(),
        ));
    }
    if !header && explicit.is_some() {
        return Err(OptionError::Conflict(
            "option \"mapping\" maps header names, but \"header\" is false: name the fields by \
             position with \"columns\" instead"
                .into(),
        ));
    }
    let mapping = match (header, explicit) {
        (true, Some(m)) => ColumnMapping::Explicit(m),
        (true, None) => ColumnMapping::ByName,
        (false, _) => ColumnMapping::Positional(columns),
    };
    Ok(PipelineOptions {
        format: Format::Csv(CsvOptions {
            delimiter,
            quote,
            escape,
            header,
            null,
            encoding,
        }),
        format_name,
        compression,
        mapping,
        settings,
        ndjson_encoding: Encoding::Utf8,
        policy,
        batch_columns,
    })
}

fn parse_mapping(v: &Value) -> Result<Vec<(String, String)>, OptionError> {
    const WHAT: &str = "an object {\"file column\": \"table column\", …} (null ignores the file \
                        column)";
    let Value::Object(m) = v else {
        return Err(invalid("mapping", WHAT, v));
    };
    let mut out = Vec::with_capacity(m.len());
    for (k, t) in m {
        if k.trim().is_empty() {
            return Err(invalid(
                "mapping",
                "keys that are non-empty file column names",
                v,
            ));
        }
        let target = match t {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::Null => String::new(),
            _ => {
                return Err(OptionError::Invalid {
                    key: format!("mapping.{k}"),
                    expected: "a table column name (a non-empty string), or null to ignore the \
                               file column"
                        .into(),
                    found: t.to_string(),
                })
            }
        };
        out.push((k.clone(), target));
    }
    Ok(out)
}

fn parse_columns(v: &Value) -> Result<Vec<Option<String>>, OptionError> {
    const WHAT: &str = "a non-empty array of table column names by field position (null skips a \
                        field), such as [\"id\", null, \"name\"]";
    let Value::Array(a) = v else {
        return Err(invalid("columns", WHAT, v));
    };
    if a.is_empty() || a.iter().all(Value::is_null) {
        return Err(invalid("columns", WHAT, v));
    }
    let mut out = Vec::with_capacity(a.len());
    for e in a {
        match e {
            Value::Null => out.push(None),
            Value::String(s) if !s.is_empty() => {
                if out.iter().flatten().any(|o: &String| o == s) {
                    return Err(OptionError::Conflict(format!(
                        "option \"columns\" names column \"{}\" twice",
                        excerpt(s, 64)
                    )));
                }
                out.push(Some(s.clone()))
            }
            _ => return Err(invalid("columns", WHAT, v)),
        }
    }
    Ok(out)
}

fn parse_settings(obj: &Map<String, Value>) -> Result<PipelineSettings, OptionError> {
    let mut s = PipelineSettings::default();
    if let Some(v) = obj.get("file_pattern") {
        s.file_patterns = Some(match v {
            Value::Array(a) if !a.is_empty() => a
                .iter()
                .map(|p| pattern("file_pattern", p))
                .collect::<Result<_, _>>()?,
            Value::Array(_) => return Err(pattern("file_pattern", v).unwrap_err()),
            _ => vec![pattern("file_pattern", v)?],
        });
    }
    let get = |k: &str, lo, hi, unit| obj.get(k).map(|v| int_in(k, v, lo, hi, unit)).transpose();
    s.trigger_interval_ms = get("trigger_interval", 10, 86_400_000, "milliseconds")?;
    s.max_files_per_trigger = get("max_files_per_trigger", 1, 1_000_000, "files")?;
    s.chunk_size_kb = get("chunk_size", 64, 16_777_216, "kB")?;
    s.batch_rows = get("batch_rows", 1, 1_000_000, "rows")?;
    s.min_file_age_ms = get("min_file_age", 0, 86_400_000, "milliseconds")?;
    s.workers = get(
        "workers",
        1,
        u64::from(crate::share::MAX_WORKERS),
        "workers",
    )?;
    if let Some(v) = obj.get("processed_action") {
        s.processed_action = Some(match v.as_str() {
            Some("keep") => ProcessedAction::Keep,
            Some("archive") => ProcessedAction::Archive,
            Some("delete") => ProcessedAction::Delete,
            _ => {
                return Err(invalid(
                    "processed_action",
                    "\"keep\", \"archive\" or \"delete\"",
                    v,
                ))
            }
        });
    }
    s.archive_dir = obj
        .get("archive_dir")
        .map(|v| string("archive_dir", v))
        .transpose()?;
    s.failed_dir = obj
        .get("failed_dir")
        .map(|v| string("failed_dir", v))
        .transpose()?;
    Ok(s)
}

/// Merges an `ALTER` patch into stored options: keys of `patch_json` replace those of
/// `old_json`, a JSON null in the patch removes the key. Both must be JSON objects. The result
/// is not checked: pass it to [`parse_options`].
pub fn merge_options(old_json: &str, patch_json: &str) -> Result<String, OptionError> {
    let parse = |t: &str| -> Result<Map<String, Value>, OptionError> {
        let t = if t.trim().is_empty() { "{}" } else { t };
        match serde_json::from_str(t).map_err(|e| OptionError::NotJson(e.to_string()))? {
            Value::Object(m) => Ok(m),
            other => Err(OptionError::NotObject(other.to_string())),
        }
    };
    let mut old = parse(old_json)?;
    for (k, v) in parse(patch_json)? {
        if v.is_null() {
            old.remove(&k);
        } else {
            old.insert(k, v);
        }
    }
    Ok(Value::Object(old).to_string())
}
