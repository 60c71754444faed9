//! The header line: maps each required column to its position in the file.

use crate::schema::{Column, COLUMNS};
use csv::ByteRecord;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMap {
    index: [usize; 9],
    width: usize,
    extra: Vec<String>,
}

/// Why a header cannot be used: the file fails as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// No header line at all (empty file).
    Empty,
    /// Not text: NUL bytes or invalid UTF-8 in the header.
    NotText(String),
    Missing {
        missing: Vec<&'static str>,
        found: Vec<String>,
    },
    Duplicate(&'static str),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Empty => {
                f.write_str("the file is empty: expected a header line naming the columns")
            }
            HeaderError::NotText(why) => write!(f, "the file is not text: {why}"),
            HeaderError::Missing { missing, found } => write!(
                f,
                "the header lacks required column(s) {}; found columns: {}",
                missing.join(", "),
                if found.is_empty() {
                    "(none)".to_string()
                } else {
                    found.join(", ")
                }
            ),
            HeaderError::Duplicate(c) => write!(f, "the header names column {c} more than once"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl HeaderMap {
    /// Builds the map from the header record. Names are matched case-insensitively, trimmed.
    pub fn from_record(rec: &ByteRecord) -> Result<Self, HeaderError> {
        if rec.is_empty() || (rec.len() == 1 && rec[0].is_empty()) {
            return Err(HeaderError::Empty);
        }
        let mut index = [usize::MAX; 9];
        let mut extra = Vec::new();
        let mut found = Vec::new();
        for (i, raw) in rec.iter().enumerate() {
            if raw.contains(&0) {
                return Err(HeaderError::NotText("NUL bytes in the header line".into()));
            }
            let name = std::str::from_utf8(raw)
                .map_err(|_| HeaderError::NotText("the header line is not valid UTF-8".into()))?
                .trim();
            found.push(name.chars().take(60).collect::<String>());
            match Column::ALL
                .iter()
                .find(|c| c.name().eq_ignore_ascii_case(name))
            {
                Some(&c) => {
                    if index[c as usize] != usize::MAX {
                        return Err(HeaderError::Duplicate(c.name()));
                    }
                    index[c as usize] = i;
                }
                None => extra.push(name.to_string()),
            }
        }
        let missing: Vec<&'static str> = (0..9)
            .filter(|&i| index[i] == usize::MAX)
            .map(|i| COLUMNS[i])
            .collect();
        if !missing.is_empty() {
            found.truncate(20);
            return Err(HeaderError::Missing { missing, found });
        }
        Ok(HeaderMap {
            index,
            width: rec.len(),
            extra,
        })
    }

    pub fn index(&self, c: Column) -> usize {
        self.index[c as usize]
    }
    /// Number of fields every record must have.
    pub fn width(&self) -> usize {
        self.width
    }
    /// Unknown columns, ignored.
    pub fn extra_columns(&self) -> &[String] {
        &self.extra
    }
}
