//! The CSV/TSV byte state machine, with PostgreSQL's `COPY … (FORMAT csv)` semantics: where a
//! record ends (a newline outside quotes; inside quotes, escape+quote does not close them), and
//! splitting a record into fields, telling quoted from unquoted ones (only an unquoted field
//! can be NULL) without allocating per field.

use crate::options::CsvOptions;

/// Delimiter, quote and escape of a dialect.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: Option<u8>,
    /// Escape inside quotes (equal to the quote by default).
    pub escape: Option<u8>,
}

impl Dialect {
    pub fn of(o: &CsvOptions) -> Dialect {
        Dialect {
            delimiter: o.delimiter,
            quote: o.quote,
            escape: o.escape.or(o.quote),
        }
    }

    /// The escape that matters when finding a record's end: none when it is the quote itself
    /// (then the quote simply toggles, as in PostgreSQL).
    fn line_escape(&self) -> Option<u8> {
        match (self.quote, self.escape) {
            (Some(q), Some(e)) if q != e => Some(e),
            _ => None,
        }
    }
}

/// Progress of the search for the end of a record, kept across buffer refills.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanState {
    /// Bytes of the record already scanned.
    pub scanned: usize,
    pub in_quote: bool,
    last_was_escape: bool,
    /// Newlines inside quotes seen so far.
    pub quoted_newlines: u64,
}

/// Finds where records end: at a newline (for NDJSON, any newline; for CSV, one outside quotes).
#[derive(Debug, Clone, Copy)]
pub enum Scanner {
    Lines,
    Csv {
        quote: Option<u8>,
        line_escape: Option<u8>,
    },
}

impl Scanner {
    pub fn csv(d: &Dialect) -> Scanner {
        Scanner::Csv {
            quote: d.quote,
            line_escape: d.line_escape(),
        }
    }

    /// Index in `data` of the newline ending the record that starts at `data[0]`, scanning on
    /// from `st.scanned`; `None` if `data` holds no end yet (`st` then covers all of `data`).
    #[inline]
    pub fn find_end(&self, data: &[u8], st: &mut ScanState) -> Option<usize> {
        let mut i = st.scanned;
        let (quote, line_escape) = match *self {
            Scanner::Lines | Scanner::Csv { quote: None, .. } => {
                let found = data[i..].iter().position(|&b| b == b'\n').map(|k| i + k);
                st.scanned = found.unwrap_or(data.len());
                return found;
            }
            Scanner::Csv {
                quote: Some(q),
                line_escape,
            } => (q, line_escape),
        };
        while i < data.len() {
            if !st.in_quote {
                match data[i..].iter().position(|&b| b == b'\n' || b == quote) {
                    None => i = data.len(),
                    Some(k) => {
                        i += k;
                        if data[i] == b'\n' {
                            st.scanned = i;
                            return Some(i);
                        }
                        st.in_quote = true;
                        st.last_was_escape = false;
                        i += 1;
                    }
                }
            } else {
                let b = data[i];
                i += 1;
                if Some(b) == line_escape {
                    st.last_was_escape = !st.last_was_escape;
                    continue;
                }
                if b == quote && !st.last_was_escape {
                    st.in_quote = false;
                }
                if b == b'\n' {
                    st.quoted_newlines += 1;
                }
                st.last_was_escape = false;
            }
        }
        st.scanned = data.len();
        None
    }
}

/// One field of a split record: bytes `[start, end)` of the record itself (`decoded` false) or
/// of the decoded buffer (a field that had quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpan {
    pub start: usize,
    pub end: usize,
    pub decoded: bool,
}

impl FieldSpan {
    /// The field's bytes.
    #[inline]
    pub fn bytes<'a>(&self, record: &'a [u8], decoded: &'a [u8]) -> &'a [u8] {
        if self.decoded {
            &decoded[self.start..self.end]
        } else {
            &record[self.start..self.end]
        }
    }
}

/// The record ends inside a quoted field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unterminated {
    /// Field (0-based) whose quote is not closed.
    pub field: usize,
}

/// Splits `record` (without its line terminator) into fields as PostgreSQL does: a quote
/// anywhere in a field opens a quoted part; inside it, escape followed by quote or escape is
/// that second character, and a quote closes it. Quoted fields are decoded into `decoded`;
/// spans of at most `keep` fields go to `spans`. Returns the number of fields.
pub fn split(
    d: &Dialect,
    record: &[u8],
    spans: &mut Vec<FieldSpan>,
    decoded: &mut Vec<u8>,
    keep: usize,
) -> Result<usize, Unterminated> {
    spans.clear();
    decoded.clear();
    let delim = d.delimiter;
    let len = record.len();
    let mut i = 0;
    let mut count = 0;
    loop {
        let field_start = i;
        // Unquoted so far: the field is a slice of the record.
        let stop = match d.quote {
            None => record[i..].iter().position(|&b| b == delim),
            Some(q) => record[i..].iter().position(|&b| b == delim || b == q),
        };
        let k = stop.map_or(len, |k| i + k);
        if k == len || record[k] == delim {
            if count < keep {
                spans.push(FieldSpan {
                    start: field_start,
                    end: k,
                    decoded: false,
                });
            }
            count += 1;
            if k == len {
                return Ok(count);
            }
            i = k + 1;
            continue;
        }
        // A quote: decode the field into `decoded`.
        let q = d.quote.unwrap_or(0);
        let esc = d.escape.unwrap_or(q);
        let out_start = decoded.len();
        decoded.extend_from_slice(&record[field_start..k]);
        i = k + 1;
        let mut in_quote = true;
        let ended_by_delim;
        loop {
            if in_quote {
                if i >= len {
                    return Err(Unterminated { field: count });
                }
                let c = record[i];
                i += 1;
                if c == esc && i < len && (record[i] == esc || record[i] == q) {
                    decoded.push(record[i]);
                    i += 1;
                } else if c == q {
                    in_quote = false;
                } else {
                    decoded.push(c);
                }
            } else {
                if i >= len {
                    ended_by_delim = false;
                    break;
                }
                let c = record[i];
                i += 1;
                if c == delim {
                    ended_by_delim = true;
                    break;
                } else if c == q {
                    in_quote = true;
                } else {
                    decoded.push(c);
                }
            }
        }
        if count < keep {
            spans.push(FieldSpan {
                start: out_start,
                end: decoded.len(),
                decoded: true,
            });
        } else {
            decoded.truncate(out_start);
        }
        count += 1;
        if !ended_by_delim {
            return Ok(count);
        }
    }
}
