//! SQL text and database errors: quoting a literal, the text of an error.

use std::fmt::Write as _;

/// Quotes a SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The text of a database error: message, detail and hint.
pub fn db_error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut s = format!("{}: {}", d.severity(), d.message());
            if let Some(x) = d.detail() {
                let _ = write!(s, " DETAIL: {x}");
            }
            if let Some(x) = d.hint() {
                let _ = write!(s, " HINT: {x}");
            }
            s
        }
        None => e.to_string(),
    }
}

/// Expects `r` to be a database error; returns its text.
pub fn expect_db_error<T: std::fmt::Debug>(r: Result<T, postgres::Error>, what: &str) -> String {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => db_error_text(&e),
    }
}
