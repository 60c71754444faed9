//! Rows in PostgreSQL's COPY text format: values separated by a tab, the row ended by a
//! newline, NULL as `\N`, and backslash, tab, newline and carriage return escaped, so that
//! `COPY … (FORMAT text)` receives exactly each field's text; PostgreSQL converts the types.
//! NDJSON values are turned into text by the kind of their target column.

use crate::mapping::ColumnKind;
use serde_json::value::RawValue;
use serde_json::Value;
use std::io::{self, Write};

/// A NULL value.
pub const NULL: &[u8] = b"\\N";

#[inline]
fn needs_escape(b: u8) -> bool {
    matches!(b, b'\\' | b'\t' | b'\n' | b'\r')
}

#[inline]
fn escape_of(b: u8) -> &'static [u8] {
    match b {
        b'\\' => b"\\\\",
        b'\t' => b"\\t",
        b'\n' => b"\\n",
        _ => b"\\r",
    }
}

/// Appends `s` (UTF-8 text) escaped for COPY text.
#[inline]
pub fn escape_into(out: &mut Vec<u8>, mut s: &[u8]) {
    while let Some(i) = s.iter().position(|&b| needs_escape(b)) {
        out.extend_from_slice(&s[..i]);
        out.extend_from_slice(escape_of(s[i]));
        s = &s[i + 1..];
    }
    out.extend_from_slice(s);
}

/// Appends Latin-1 bytes `s` converted to UTF-8 and escaped for COPY text.
pub fn escape_latin1_into(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if b < 0x80 {
            if needs_escape(b) {
                out.extend_from_slice(escape_of(b));
            } else {
                out.push(b);
            }
        } else {
            out.push(0xC0 | (b >> 6));
            out.push(0x80 | (b & 0x3F));
        }
    }
}

/// Latin-1 bytes as a UTF-8 string.
pub fn latin1_to_string(s: &[u8]) -> String {
    s.iter().map(|&b| b as char).collect()
}

/// Latin-1 bytes converted to UTF-8, appended to `out`.
pub fn latin1_to_utf8(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if b < 0x80 {
            out.push(b);
        } else {
            out.push(0xC0 | (b >> 6));
            out.push(0x80 | (b & 0x3F));
        }
    }
}

/// An `io::Write` that escapes what it is given for COPY text (for serializers).
pub struct Escaper<'a>(pub &'a mut Vec<u8>);

impl Write for Escaper<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        escape_into(self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a JSON value cannot be given to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

/// Appends one JSON value as the COPY text of a column of kind `kind` (no separator):
/// null is NULL; a `Json` column gets the value serialized (a string keeps its quotes); an
/// `Array` column gets a JSON array as a PostgreSQL array literal (`{…}`, elements
/// double-quoted, nested arrays nested, nulls NULL); otherwise a string is its text, a number
/// its literal, a bool `true`/`false`, an object or array its JSON text.
/// Fails on a string holding U+0000 (PostgreSQL text cannot hold it) in a non-JSON column.
pub fn encode_json_value(
    out: &mut Vec<u8>,
    value: &Value,
    kind: ColumnKind,
) -> Result<(), ValueError> {
    match (value, kind) {
        (Value::Null, _) => out.extend_from_slice(NULL),
        (_, ColumnKind::Json) => json_text(out, value),
        (Value::Array(a), ColumnKind::Array) => {
            let mut lit = Vec::new();
            array_literal(&mut lit, a)?;
            escape_into(out, &lit);
        }
        (Value::String(s), _) => {
            if s.as_bytes().contains(&0) {
                return Err(nul_error());
            }
            escape_into(out, s.as_bytes())
        }
        (Value::Bool(b), _) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        (Value::Number(n), _) => {
            let _ = write!(out, "{n}");
        }
        (Value::Object(_) | Value::Array(_), _) => json_text(out, value),
    }
    Ok(())
}

/// Appends one JSON value, given as its text in the file (`raw`: one JSON value, as
/// `serde_json::value::RawValue` holds it), as the COPY text of a column of kind `kind`: null is
/// NULL; a `Json` column gets the text as written (key order, spacing and every digit kept, as
/// COPY would be given it); an `Array` column gets a JSON array as a PostgreSQL array literal;
/// otherwise a string is its text, a number its literal as written (all its digits: a
/// `numeric` column gets exactly the value of the file), a bool `true`/`false`, an object or
/// array its JSON text as written. Fails on a string holding U+0000 in a non-JSON column.
pub fn encode_raw_json(
    out: &mut Vec<u8>,
    raw: &RawValue,
    kind: ColumnKind,
) -> Result<(), ValueError> {
    let text = raw.get();
    match (text.as_bytes().first(), kind) {
        (Some(b'n'), _) => out.extend_from_slice(NULL),
        (_, ColumnKind::Json) => escape_into(out, text.as_bytes()),
        (Some(b'['), ColumnKind::Array) => {
            let mut lit = Vec::new();
            raw_array_literal(&mut lit, raw)?;
            escape_into(out, &lit);
        }
        (Some(b'"'), _) => {
            let s = json_string(raw)?;
            escape_into(out, s.as_bytes())
        }
        // true, false, a number, an object or an array: its text as written.
        _ => escape_into(out, text.as_bytes()),
    }
    Ok(())
}

/// The string a JSON string literal stands for.
fn json_string(raw: &RawValue) -> Result<String, ValueError> {
    let s: String = serde_json::from_str(raw.get()).map_err(|e| ValueError(e.to_string()))?;
    if s.as_bytes().contains(&0) {
        return Err(nul_error());
    }
    Ok(s)
}

/// A PostgreSQL array literal of the JSON array `raw`, not yet escaped for COPY (elements as
/// in [`encode_raw_json`]: numbers and nested objects as written).
fn raw_array_literal(out: &mut Vec<u8>, raw: &RawValue) -> Result<(), ValueError> {
    let items: Vec<&RawValue> =
        serde_json::from_str(raw.get()).map_err(|e| ValueError(e.to_string()))?;
    out.push(b'{');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let text = v.get();
        match text.as_bytes().first() {
            Some(b'n') => out.extend_from_slice(b"NULL"),
            Some(b'[') => raw_array_literal(out, v)?,
            Some(b'"') => quoted_element(out, json_string(v)?.as_bytes()),
            Some(b'{') => quoted_element(out, text.as_bytes()),
            _ => out.extend_from_slice(text.as_bytes()),
        }
    }
    out.push(b'}');
    Ok(())
}

fn nul_error() -> ValueError {
    ValueError("the string contains U+0000 (NUL), which PostgreSQL text cannot store".into())
}

fn json_text(out: &mut Vec<u8>, value: &Value) {
    // Serializing a Value into memory cannot fail.
    let _ = serde_json::to_writer(Escaper(out), value);
}

/// A PostgreSQL array literal of JSON array `a`, not yet escaped for COPY.
fn array_literal(out: &mut Vec<u8>, a: &[Value]) -> Result<(), ValueError> {
    out.push(b'{');
    for (i, v) in a.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match v {
            Value::Null => out.extend_from_slice(b"NULL"),
            Value::Array(inner) => array_literal(out, inner)?,
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Value::String(s) => {
                if s.as_bytes().contains(&0) {
                    return Err(nul_error());
                }
                quoted_element(out, s.as_bytes())
            }
            Value::Object(_) => quoted_element(out, v.to_string().as_bytes()),
        }
    }
    out.push(b'}');
    Ok(())
}

fn quoted_element(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Decodes one COPY text line (with or without its final newline) into its values (`None` for
/// NULL): the inverse of the encoding here, for tests and diagnostics. Handles the escapes
/// written here plus PostgreSQL's `\b \f \v`, octal and `\x` hex escapes.
pub fn decode_line(line: &[u8]) -> Vec<Option<Vec<u8>>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut out = Vec::new();
    for raw in line.split(|&b| b == b'\t') {
        if raw == NULL {
            out.push(None);
            continue;
        }
        let mut v = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            i += 1;
            if b != b'\\' || i == raw.len() {
                v.push(b);
                continue;
            }
            let c = raw[i];
            i += 1;
            match c {
                b'n' => v.push(b'\n'),
                b't' => v.push(b'\t'),
                b'r' => v.push(b'\r'),
                b'b' => v.push(8),
                b'f' => v.push(12),
                b'v' => v.push(11),
                b'0'..=b'7' => {
                    let mut n = (c - b'0') as u32;
                    for _ in 0..2 {
                        match raw.get(i) {
                            Some(&d @ b'0'..=b'7') => {
                                n = n * 8 + (d - b'0') as u32;
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    v.push(n as u8);
                }
                other => v.push(other),
            }
        }
        out.push(Some(v));
    }
    out
}
