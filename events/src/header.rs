//! The header line: maps each required column to its position in the file.

use crate::schema::{Column, COLUMNS};
use crate::shown::name_list;
use csv::ByteRecord;
use std::fmt;

/// Most characters of one found column name shown in [`HeaderError::Missing`].
pub const SHOWN_NAME_CHARS: usize = 64;
/// Most found column names shown in [`HeaderError::Missing`].
pub const SHOWN_NAMES: usize = 20;
/// Most bytes of found column names shown in [`HeaderError::Missing`], separators included:
/// with the fixed text and the missing names the message stays within about 1 KiB.
pub const SHOWN_NAMES_BYTES: usize = 768;

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
    /// Not text: NUL bytes or invalid UTF-8 in the header, or no header line at all.
    NotText(NotText),
    Missing {
        missing: Vec<&'static str>,
        /// The header's names as shown: each cut to [`SHOWN_NAME_CHARS`] characters, at most
        /// [`SHOWN_NAMES`] of them and [`SHOWN_NAMES_BYTES`] bytes (the file may be anything,
        /// e.g. a configuration file given by mistake: the message must not copy it).
        found: Vec<String>,
        /// How many more names the header has.
        more: usize,
    },
    Duplicate(&'static str),
}

/// Why a header is not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotText {
    NulBytes,
    InvalidUtf8,
    /// No line break within the first `within_bytes` bytes.
    NoHeaderLine {
        within_bytes: u64,
    },
}

impl fmt::Display for NotText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotText::NulBytes => f.write_str("NUL bytes in the header line"),
            NotText::InvalidUtf8 => f.write_str("the header line is not valid UTF-8"),
            NotText::NoHeaderLine { within_bytes } => write!(
                f,
                "no header line within the first {} KiB",
                within_bytes / 1024
            ),
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Empty => {
                f.write_str("the file is empty: expected a header line naming the columns")
            }
            HeaderError::NotText(why) => write!(f, "the file is not text: {why}"),
            HeaderError::Missing {
                missing,
                found,
                more,
            } => {
                write!(
                    f,
                    "the header lacks required column(s) {}; found columns: ",
                    missing.join(", ")
                )?;
                match (found.is_empty(), *more) {
                    (true, 0) => f.write_str("(none)"),
                    (true, n) => write!(f, "{n} not shown"),
                    (false, 0) => f.write_str(&found.join(", ")),
                    (false, n) => write!(f, "{}, … and {n} more", found.join(", ")),
                }
            }
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
        let mut names = Vec::with_capacity(rec.len());
        for (i, raw) in rec.iter().enumerate() {
            if raw.contains(&0) {
                return Err(HeaderError::NotText(NotText::NulBytes));
            }
            let name = std::str::from_utf8(raw)
                .map_err(|_| HeaderError::NotText(NotText::InvalidUtf8))?
                .trim();
            names.push(name);
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
            let (found, more) = name_list(&names, SHOWN_NAME_CHARS, SHOWN_NAMES, SHOWN_NAMES_BYTES);
            return Err(HeaderError::Missing {
                missing,
                found,
                more,
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> ByteRecord {
        ByteRecord::from(fields.to_vec())
    }

    fn missing(fields: &[&str]) -> (Vec<String>, usize, String) {
        match HeaderMap::from_record(&record(fields)) {
            Err(e @ HeaderError::Missing { .. }) => {
                let msg = e.to_string();
                let HeaderError::Missing { found, more, .. } = e else {
                    unreachable!()
                };
                (found, more, msg)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_short_header_is_shown_whole() {
        let (found, more, msg) = missing(&["user_id", " Foo "]);
        assert_eq!((found, more), (vec!["user_id".into(), "Foo".into()], 0));
        assert!(msg.ends_with("found columns: user_id, Foo"), "{msg}");
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis() {
        let long = "n".repeat(1000);
        let (found, more, msg) = missing(&[&long, "é".repeat(80).as_str()]);
        assert_eq!(more, 0);
        assert_eq!(found[0], format!("{}…", "n".repeat(63)));
        assert_eq!(found[1], format!("{}…", "é".repeat(63)));
        assert!(!msg.contains(&"n".repeat(64)), "{msg}");
    }

    #[test]
    fn many_names_end_with_how_many_more() {
        let names: Vec<String> = (0..50).map(|i| format!("col{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (found, more, msg) = missing(&refs);
        assert_eq!((found.len(), more), (20, 30));
        assert!(msg.ends_with("col18, col19, … and 30 more"), "{msg}");
    }

    #[test]
    fn a_configuration_file_read_as_a_header_gives_a_short_message() {
        // A first line of many long comma-separated "names", some with wide characters.
        let line: Vec<String> = (0..500)
            .map(|i| format!("# setting_{i} = '{}' 日本語", "v".repeat(200)))
            .collect();
        let refs: Vec<&str> = line.iter().map(String::as_str).collect();
        let (found, more, msg) = missing(&refs);
        assert!(msg.len() <= 1024, "{} bytes: {msg}", msg.len());
        assert!(found.iter().all(|n| n.chars().count() <= SHOWN_NAME_CHARS));
        assert_eq!(found.len() + more, 500);
        assert!(msg.contains(&format!("… and {more} more")), "{msg}");
    }

    #[test]
    fn control_characters_in_names_stay_escaped() {
        let (found, _, msg) = missing(&["a\u{1b}[2Jb", "x\ry"]);
        assert_eq!(found, vec!["a\\u{1b}[2Jb".to_string(), "x\\ry".to_string()]);
        assert!(!msg.contains('\u{1b}') && !msg.contains('\r'), "{msg:?}");
    }

    #[test]
    fn no_names_at_all() {
        let e = HeaderError::Missing {
            missing: vec!["user_id"],
            found: vec![],
            more: 0,
        };
        assert!(e.to_string().ends_with("found columns: (none)"));
        let e = HeaderError::Missing {
            missing: vec!["user_id"],
            found: vec![],
            more: 3,
        };
        assert!(e.to_string().ends_with("found columns: 3 not shown"));
    }

    #[test]
    fn not_text_reasons() {
        let nul = HeaderMap::from_record(&ByteRecord::from(vec![&b"a\0"[..], b"b"]));
        assert_eq!(nul, Err(HeaderError::NotText(NotText::NulBytes)));
        let bad = HeaderMap::from_record(&ByteRecord::from(vec![&b"\xff"[..]]));
        assert_eq!(bad, Err(HeaderError::NotText(NotText::InvalidUtf8)));
        assert_eq!(
            HeaderError::NotText(NotText::NoHeaderLine {
                within_bytes: 65536
            })
            .to_string(),
            "the file is not text: no header line within the first 64 KiB"
        );
    }
}
