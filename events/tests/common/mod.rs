//! The event file contract (docs/contract.md), checked through the public API:
//! `EventReader` on real files, `list_dir` and `FilePattern`. No PostgreSQL. One test file per
//! topic (header, quoting, lines, values, rejects, resume, files); this module is what they
//! share: the header, the default good row and variations of it, owned copies of records, and
//! helpers that write, open and read files.

// Each test file uses only some of these.
#![allow(dead_code)]

use ecommerce_events::{DeviceType, EventReader, EventType, OpenError, Outcome, Record, COLUMNS};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use tempfile::TempDir;

pub const HEADER: &str = "user_id,event_type,product_id,product_name,product_category,price,event_timestamp,session_id,device_type";
/// 2024-05-01T12:30:00Z, microseconds since the Unix epoch.
pub const T0: i64 = 1_714_566_600_000_000;

/// An owned copy of a valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub user_id: String,
    pub event_type: EventType,
    pub product_id: String,
    pub product_name: String,
    pub product_category: String,
    pub price_cents: i64,
    pub event_timestamp_us: i64,
    pub session_id: String,
    pub device_type: DeviceType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Valid(Row),
    Rejected {
        column: Option<&'static str>,
        message: String,
        raw: String,
    },
}

/// An owned copy of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub line: u64,
    pub start: u64,
    pub end: u64,
    pub terminated: bool,
    pub got: Got,
}

impl Rec {
    pub fn row(&self) -> &Row {
        match &self.got {
            Got::Valid(r) => r,
            other => panic!("line {}: expected a valid row, got {other:?}", self.line),
        }
    }
    pub fn rejected(&self) -> (Option<&'static str>, &str, &str) {
        match &self.got {
            Got::Rejected {
                column,
                message,
                raw,
            } => (*column, message, raw),
            other => panic!("line {}: expected a rejected row, got {other:?}", self.line),
        }
    }
}

pub fn own(rec: Record<'_>) -> Rec {
    let Record {
        line,
        start,
        end,
        terminated,
        outcome,
    } = rec;
    let got = match outcome {
        Outcome::Valid(v) => Got::Valid(Row {
            user_id: v.user_id.to_string(),
            event_type: v.event_type,
            product_id: v.product_id.to_string(),
            product_name: v.product_name.to_string(),
            product_category: v.product_category.to_string(),
            price_cents: v.price.cents(),
            event_timestamp_us: v.event_timestamp_us,
            session_id: v.session_id.to_string(),
            device_type: v.device_type,
        }),
        Outcome::Rejected { error, raw } => Got::Rejected {
            column: error.column,
            message: error.message,
            raw,
        },
    };
    Rec {
        line,
        start,
        end,
        terminated,
        got,
    }
}

pub fn next(r: &mut EventReader) -> Option<Rec> {
    r.next_record().expect("reading a record").map(own)
}

/// Every remaining record, then the content hash (which must exist at the end of the file).
pub fn drain(r: &mut EventReader) -> (Vec<Rec>, u64) {
    let mut out = Vec::new();
    while let Some(rec) = next(r) {
        out.push(rec);
    }
    assert!(r.at_eof());
    assert!(next(r).is_none(), "stays at the end");
    let hash = r.content_hash().expect("a hash once the end was reached");
    (out, hash)
}

pub fn open(path: &Path) -> EventReader {
    EventReader::open(path, None).unwrap_or_else(|e| panic!("open {path:?}: {e}"))
}

pub fn read_all(path: &Path) -> Vec<Rec> {
    drain(&mut open(path)).0
}

pub fn write(dir: &TempDir, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, data).unwrap();
    p
}

pub fn open_err(path: &Path) -> OpenError {
    match EventReader::open(path, None) {
        Ok(_) => panic!("{path:?} opened, expected an error"),
        Err(e) => e,
    }
}

/// Runs `f` on another thread and fails the test if it takes longer than `secs`.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("did not finish in time (hang?)")
}

pub fn col(name: &str) -> usize {
    COLUMNS.iter().position(|c| *c == name).unwrap()
}

/// The CSV text of the default good row's fields.
pub fn fields() -> [String; 9] {
    [
        "user_1",
        "view",
        "prod_0042",
        "Phone",
        "Electronics",
        "19.99",
        "2024-05-01T12:30:00Z",
        "sess_1",
        "mobile",
    ]
    .map(String::from)
}

/// The default good row, as the reader must return it.
pub fn good() -> Row {
    Row {
        user_id: "user_1".into(),
        event_type: EventType::View,
        product_id: "prod_0042".into(),
        product_name: "Phone".into(),
        product_category: "Electronics".into(),
        price_cents: 1999,
        event_timestamp_us: T0,
        session_id: "sess_1".into(),
        device_type: DeviceType::Mobile,
    }
}

pub fn good_line() -> String {
    fields().join(",")
}

/// The default row with one column's CSV text replaced.
pub fn line_with(column: &str, csv_text: &str) -> String {
    let mut f = fields();
    f[col(column)] = csv_text.to_string();
    f.join(",")
}

/// Concatenates `(text, terminator)` pieces; returns the bytes and each piece's (start, end).
pub fn build(pieces: &[(&[u8], &str)]) -> (Vec<u8>, Vec<(u64, u64)>) {
    let mut out = Vec::new();
    let mut spans = Vec::new();
    for (text, term) in pieces {
        let s = out.len() as u64;
        out.extend_from_slice(text);
        out.extend_from_slice(term.as_bytes());
        spans.push((s, out.len() as u64));
    }
    (out, spans)
}

pub fn valid(line: u64, span: (u64, u64), terminated: bool, row: Row) -> Rec {
    Rec {
        line,
        start: span.0,
        end: span.1,
        terminated,
        got: Got::Valid(row),
    }
}

pub fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}
