//! What a pipeline does with bad rows and with rows already in its table: the error mode
//! (`on_error`: keep the good rows, or fail the whole file on the first bad row, or above a
//! count or ratio of bad rows) and the de-duplication key (`dedup_key`). Pure decisions, tested
//! here; the worker applies them.

use crate::options::OptionError;
use serde_json::{Map, Value};

/// `on_error`: what a bad row (a reject) does to its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Keep the good rows, reject the bad ones (Spark's PERMISSIVE/DROPMALFORMED, with the bad
    /// rows kept in ingest_rejects).
    #[default]
    SkipRow,
    /// The first bad row fails the whole file: none of its rows is inserted (FAILFAST).
    FailFile,
    /// The file fails as a whole when its bad rows are more than `max_rejects` or a greater
    /// share than `max_reject_ratio` (Snowflake's `SKIP_FILE_n` / `SKIP_FILE_n%`); below
    /// that, as `SkipRow`.
    SkipFile,
}

/// The options of this module, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowPolicy {
    pub on_error: OnError,
    /// `SkipFile`: most rejects a file may have.
    pub max_rejects: Option<u64>,
    /// `SkipFile`: largest share of rejects among a file's rows, in millionths.
    pub max_reject_ppm: Option<u32>,
    /// Columns of a unique index or constraint of the target: a row whose key is already there
    /// (or earlier in the same file) is skipped and counted as a duplicate.
    pub dedup_key: Option<Vec<String>>,
}

/// The option keys of this module (valid for every format).
pub const POLICY_KEYS: &[&str] = &["on_error", "max_rejects", "max_reject_ratio", "dedup_key"];

fn invalid(key: &str, expected: &str, found: &Value) -> OptionError {
    OptionError::Invalid {
        key: key.to_string(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// Reads the policy keys of an options object.
pub fn parse_policy(obj: &Map<String, Value>) -> Result<RowPolicy, OptionError> {
    let on_error = match obj.get("on_error") {
        None => OnError::SkipRow,
        Some(v) => match v.as_str() {
            Some("skip_row") => OnError::SkipRow,
            Some("fail_file") => OnError::FailFile,
            Some("skip_file") => OnError::SkipFile,
            _ => {
                return Err(invalid(
                    "on_error",
                    "\"skip_row\" (keep good rows, reject bad ones), \"fail_file\" (the first bad row fails the file) or \"skip_file\" (with max_rejects and/or max_reject_ratio)",
                    v,
                ))
            }
        },
    };
    let max_rejects = match obj.get("max_rejects") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| invalid("max_rejects", "an integer ≥ 0", v))?,
        ),
    };
    let max_reject_ppm = match obj.get("max_reject_ratio") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => Some((r * 1e6).round() as u32),
            _ => {
                return Err(invalid(
                    "max_reject_ratio",
                    "a number from 0 to 1 (0.05: 5 %)",
                    v,
                ))
            }
        },
    };
    if on_error == OnError::SkipFile && max_rejects.is_none() && max_reject_ppm.is_none() {
        return Err(OptionError::Conflict(
            "\"on_error\": \"skip_file\" needs \"max_rejects\" and/or \"max_reject_ratio\"".into(),
        ));
    }
    if on_error != OnError::SkipFile && (max_rejects.is_some() || max_reject_ppm.is_some()) {
        return Err(OptionError::Conflict(
            "\"max_rejects\" and \"max_reject_ratio\" apply with \"on_error\": \"skip_file\""
                .into(),
        ));
    }
    let dedup_key = match obj.get("dedup_key") {
        None => None,
        Some(Value::Array(a)) if !a.is_empty() => {
            let mut cols = Vec::with_capacity(a.len());
            for c in a {
                match c.as_str() {
                    Some(s) if !s.is_empty() && !cols.iter().any(|x: &String| x == s) => {
                        cols.push(s.to_string())
                    }
                    _ => {
                        return Err(invalid(
                            "dedup_key",
                            "an array of distinct table column names",
                            &Value::Array(a.clone()),
                        ))
                    }
                }
            }
            Some(cols)
        }
        Some(v) => {
            return Err(invalid(
                "dedup_key",
                "an array of the table's column names (a unique key)",
                v,
            ))
        }
    };
    Ok(RowPolicy {
        on_error,
        max_rejects,
        max_reject_ppm,
        dedup_key,
    })
}

/// What the rejects of a file (so far) mean for it under `p`: `Some(why)` when the file must fail
/// as a whole. `finished`: the whole file was read (a ratio is judged only then; a count as soon
/// as it is passed).
pub fn file_fails(p: &RowPolicy, rows: u64, rejects: u64, finished: bool) -> Option<String> {
    match p.on_error {
        OnError::SkipRow => None,
        OnError::FailFile => (rejects > 0).then(|| {
            "on_error is fail_file and a row was rejected: no row of the file is ingested".into()
        }),
        OnError::SkipFile => {
            if let Some(max) = p.max_rejects {
                if rejects > max {
                    return Some(format!(
                        "more than max_rejects ({max}) rows rejected: no row of the file is ingested"
                    ));
                }
            }
            let total = rows + rejects;
            match p.max_reject_ppm {
                Some(ppm) if finished && total > 0 && rejects * 1_000_000 > ppm as u64 * total => {
                    Some(format!(
                        "{rejects} of {total} rows rejected ({:.2} %), above max_reject_ratio ({}): no row of the file is ingested",
                        rejects as f64 * 100.0 / total as f64,
                        ppm as f64 / 1e6
                    ))
                }
                _ => None,
            }
        }
    }
}

/// Whether the whole file must be read in one transaction under `p`: a mode that can fail a
/// file after some of its rows were inserted must be able to roll them all back.
/// How many more rows may be refused before the file's verdict is decided under `p` (`None`: no
/// count decides it; a ratio is only known at the file's end), given `rejected` so far: a search
/// for refused rows can stop once this is exceeded, as the file fails whatever it finds next.
pub fn refusals_allowed(p: &RowPolicy, rejected: u64) -> Option<u64> {
    match p.on_error {
        OnError::SkipRow => None,
        OnError::FailFile => Some(0),
        OnError::SkipFile => p.max_rejects.map(|max| max.saturating_sub(rejected)),
    }
}

pub fn whole_file_in_one_transaction(p: &RowPolicy) -> bool {
    p.on_error != OnError::SkipRow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RowPolicy, OptionError> {
        let v: Value = serde_json::from_str(json).unwrap();
        parse_policy(v.as_object().unwrap())
    }

    #[test]
    fn a_search_for_refused_rows_stops_once_the_verdict_is_known() {
        let fail = parse(r#"{"on_error": "fail_file"}"#).unwrap();
        assert_eq!(refusals_allowed(&fail, 0), Some(0));
        let skip = parse(r#"{"on_error": "skip_file", "max_rejects": 5}"#).unwrap();
        assert_eq!(refusals_allowed(&skip, 2), Some(3));
        assert_eq!(refusals_allowed(&skip, 9), Some(0));
        let ratio = parse(r#"{"on_error": "skip_file", "max_reject_ratio": 0.1}"#).unwrap();
        assert_eq!(refusals_allowed(&ratio, 2), None);
        assert_eq!(refusals_allowed(&RowPolicy::default(), 7), None);
    }

    #[test]
    fn modes_and_their_limits() {
        assert_eq!(parse("{}").unwrap(), RowPolicy::default());
        let p = parse(r#"{"on_error": "skip_file", "max_reject_ratio": 0.05}"#).unwrap();
        assert_eq!(p.max_reject_ppm, Some(50_000));
        assert!(parse(r#"{"on_error": "skip_file"}"#).is_err());
        assert!(parse(r#"{"max_rejects": 3}"#).is_err());
        assert!(parse(r#"{"on_error": "FAILFAST"}"#).is_err());
        assert!(parse(r#"{"on_error": "skip_file", "max_reject_ratio": 1.5}"#).is_err());
        assert!(parse(r#"{"dedup_key": []}"#).is_err());
        assert!(parse(r#"{"dedup_key": ["a", "a"]}"#).is_err());
        assert_eq!(
            parse(r#"{"dedup_key": ["a", "b"]}"#).unwrap().dedup_key,
            Some(vec!["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn when_a_file_fails() {
        let keep = RowPolicy::default();
        assert_eq!(file_fails(&keep, 10, 10, true), None);
        let fail = parse(r#"{"on_error": "fail_file"}"#).unwrap();
        assert_eq!(file_fails(&fail, 10, 0, true), None);
        assert!(file_fails(&fail, 0, 1, false).is_some());
        let count = parse(r#"{"on_error": "skip_file", "max_rejects": 2}"#).unwrap();
        assert_eq!(file_fails(&count, 100, 2, true), None);
        assert!(file_fails(&count, 1, 3, false).is_some());
        let ratio = parse(r#"{"on_error": "skip_file", "max_reject_ratio": 0.1}"#).unwrap();
        // Judged at the end only: 1 of 1 early on is not yet a verdict.
        assert_eq!(file_fails(&ratio, 0, 1, false), None);
        assert_eq!(file_fails(&ratio, 90, 10, true), None);
        assert!(file_fails(&ratio, 89, 11, true).is_some());
        assert!(whole_file_in_one_transaction(&ratio));
        assert!(!whole_file_in_one_transaction(&keep));
    }
}
