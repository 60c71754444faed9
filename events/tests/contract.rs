//! The event file contract (/work/shared/contract/events.md), checked through the public API:
//! `EventReader` on real files, `list_dir` and `FilePattern`. No PostgreSQL.

use ecommerce_events::reader::hash_file;
use ecommerce_events::{
    is_temporary_name, list_dir, Changed, DeviceType, EventReader, EventType, FilePattern,
    HeaderError, OpenError, Outcome, Record, Resume, COLUMNS,
};
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use tempfile::TempDir;

const HEADER: &str = "user_id,event_type,product_id,product_name,product_category,price,event_timestamp,session_id,device_type";
/// 2024-05-01T12:30:00Z, microseconds since the Unix epoch.
const T0: i64 = 1_714_566_600_000_000;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An owned copy of a valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    user_id: String,
    event_type: EventType,
    product_id: String,
    product_name: String,
    product_category: String,
    price_cents: i64,
    event_timestamp_us: i64,
    session_id: String,
    device_type: DeviceType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Valid(Row),
    Rejected {
        column: Option<&'static str>,
        message: String,
        raw: String,
    },
}

/// An owned copy of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    line: u64,
    start: u64,
    end: u64,
    terminated: bool,
    got: Got,
}

impl Rec {
    fn row(&self) -> &Row {
        match &self.got {
            Got::Valid(r) => r,
            other => panic!("line {}: expected a valid row, got {other:?}", self.line),
        }
    }
    fn rejected(&self) -> (Option<&'static str>, &str, &str) {
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

fn own(rec: Record<'_>) -> Rec {
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

fn next(r: &mut EventReader) -> Option<Rec> {
    r.next_record().expect("reading a record").map(own)
}

/// Every remaining record, then the content hash (which must exist at the end of the file).
fn drain(r: &mut EventReader) -> (Vec<Rec>, u64) {
    let mut out = Vec::new();
    while let Some(rec) = next(r) {
        out.push(rec);
    }
    assert!(r.at_eof());
    assert!(next(r).is_none(), "stays at the end");
    let hash = r.content_hash().expect("a hash once the end was reached");
    (out, hash)
}

fn open(path: &Path) -> EventReader {
    EventReader::open(path, None).unwrap_or_else(|e| panic!("open {path:?}: {e}"))
}

fn read_all(path: &Path) -> Vec<Rec> {
    drain(&mut open(path)).0
}

fn write(dir: &TempDir, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn open_err(path: &Path) -> OpenError {
    match EventReader::open(path, None) {
        Ok(_) => panic!("{path:?} opened, expected an error"),
        Err(e) => e,
    }
}

/// Runs `f` on another thread and fails the test if it takes longer than `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("did not finish in time (hang?)")
}

fn col(name: &str) -> usize {
    COLUMNS.iter().position(|c| *c == name).unwrap()
}

/// The CSV text of the default good row's fields.
fn fields() -> [String; 9] {
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
fn good() -> Row {
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

fn good_line() -> String {
    fields().join(",")
}

/// The default row with one column's CSV text replaced.
fn line_with(column: &str, csv_text: &str) -> String {
    let mut f = fields();
    f[col(column)] = csv_text.to_string();
    f.join(",")
}

/// Concatenates `(text, terminator)` pieces; returns the bytes and each piece's (start, end).
fn build(pieces: &[(&[u8], &str)]) -> (Vec<u8>, Vec<(u64, u64)>) {
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

fn valid(line: u64, span: (u64, u64), terminated: bool, row: Row) -> Rec {
    Rec {
        line,
        start: span.0,
        end: span.1,
        terminated,
        got: Got::Valid(row),
    }
}

// ---------------------------------------------------------------------------------------------
// Quoting
// ---------------------------------------------------------------------------------------------

#[test]
fn quoted_commas_doubled_quotes_and_line_breaks() {
    let dir = TempDir::new().unwrap();
    let r1 = line_with("product_name", r#""Widget, large ""XL""""#);
    let r2 = line_with("product_name", "\"Line one\nLine two, \"\"quoted\"\"\"");
    let r3 = line_with("product_category", "\"Home, Garden\"");
    let r4 = line_with("device_type", "\"tablet\"");
    let (data, spans) = build(&[
        (HEADER.as_bytes(), "\n"),
        (r1.as_bytes(), "\n"),
        (r2.as_bytes(), "\n"),
        (r3.as_bytes(), "\n"),
        (r4.as_bytes(), "\n"),
    ]);
    let p = write(&dir, "q.csv", &data);
    let recs = read_all(&p);
    let name = |n: &str| Row {
        product_name: n.into(),
        ..good()
    };
    assert_eq!(
        recs,
        vec![
            valid(2, spans[1], true, name(r#"Widget, large "XL""#)),
            valid(3, spans[2], true, name("Line one\nLine two, \"quoted\"")),
            // The embedded newline counts: the next record starts on line 5.
            valid(
                5,
                spans[3],
                true,
                Row {
                    product_category: "Home, Garden".into(),
                    ..good()
                }
            ),
            valid(
                6,
                spans[4],
                true,
                Row {
                    device_type: DeviceType::Tablet,
                    ..good()
                }
            ),
        ]
    );
}

#[test]
fn crlf_inside_quotes_is_data_and_counts_as_a_line() {
    let dir = TempDir::new().unwrap();
    let r1 = line_with("product_name", "\"a\r\nb\r\n\"");
    let r2 = good_line();
    let (data, spans) = build(&[
        (HEADER.as_bytes(), "\r\n"),
        (r1.as_bytes(), "\r\n"),
        (r2.as_bytes(), "\r\n"),
    ]);
    let p = write(&dir, "q.csv", &data);
    assert_eq!(
        read_all(&p),
        vec![
            valid(
                2,
                spans[1],
                true,
                Row {
                    product_name: "a\r\nb\r\n".into(),
                    ..good()
                }
            ),
            valid(5, spans[2], true, good()),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Line endings
// ---------------------------------------------------------------------------------------------

/// Header plus three good rows with the given terminators; checks lines, offsets, flags and
/// the resume position after each record.
fn check_endings(terms: [&str; 4], expect_last_terminated: bool) {
    let dir = TempDir::new().unwrap();
    let rows: Vec<String> = (1..=3)
        .map(|i| line_with("user_id", &format!("user_{i}")))
        .collect();
    let (data, spans) = build(&[
        (HEADER.as_bytes(), terms[0]),
        (rows[0].as_bytes(), terms[1]),
        (rows[1].as_bytes(), terms[2]),
        (rows[2].as_bytes(), terms[3]),
    ]);
    let p = write(&dir, "e.csv", &data);
    let mut r = open(&p);
    assert_eq!(
        r.position(),
        Resume {
            byte: spans[0].1,
            line: 2
        },
        "after the header ({terms:?})"
    );
    for i in 0..3 {
        let rec = next(&mut r).unwrap();
        let last = i == 2;
        assert_eq!(
            rec,
            valid(
                i as u64 + 2,
                spans[i + 1],
                !last || expect_last_terminated,
                Row {
                    user_id: format!("user_{}", i + 1),
                    ..good()
                }
            ),
            "{terms:?}"
        );
        let next_line = if last && !expect_last_terminated {
            i as u64 + 2
        } else {
            i as u64 + 3
        };
        assert_eq!(
            r.position(),
            Resume {
                byte: spans[i + 1].1,
                line: next_line
            },
            "{terms:?}"
        );
    }
    assert!(next(&mut r).is_none());
    assert_eq!(r.position().byte, data.len() as u64);
}

#[test]
fn lf_line_endings() {
    check_endings(["\n", "\n", "\n", "\n"], true);
}

#[test]
fn crlf_line_endings() {
    check_endings(["\r\n", "\r\n", "\r\n", "\r\n"], true);
}

#[test]
fn mixed_line_endings() {
    check_endings(["\r\n", "\n", "\r\n", "\n"], true);
    check_endings(["\n", "\r\n", "\n", "\r\n"], true);
}

#[test]
fn no_trailing_newline_only_the_last_record_is_unterminated() {
    check_endings(["\n", "\n", "\n", ""], false);
    check_endings(["\r\n", "\r\n", "\r\n", ""], false);
}

#[test]
fn blank_lines_are_skipped_and_counted() {
    for nl in ["\n", "\r\n"] {
        let dir = TempDir::new().unwrap();
        let bad = line_with("price", "abc");
        let (data, spans) = build(&[
            (HEADER.as_bytes(), nl),
            (b"", nl),
            (good_line().as_bytes(), nl),
            (b"", nl),
            (b"", nl),
            (bad.as_bytes(), nl),
            (b"", nl),
        ]);
        let p = write(&dir, "b.csv", &data);
        let recs = read_all(&p);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], valid(3, spans[2], true, good()));
        assert_eq!(
            (recs[1].line, recs[1].start, recs[1].end),
            (6, spans[5].0, spans[5].1)
        );
        // The raw text is the record's own line, without the blank lines around it.
        assert_eq!(recs[1].rejected().2, bad);
    }
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

#[test]
fn utf8_bom_before_the_header() {
    for nl in ["\n", "\r\n"] {
        let dir = TempDir::new().unwrap();
        let mut head = b"\xEF\xBB\xBF".to_vec();
        head.extend_from_slice(HEADER.as_bytes());
        let (data, spans) = build(&[(&head, nl), (good_line().as_bytes(), nl)]);
        let p = write(&dir, "bom.csv", &data);
        let mut r = open(&p);
        assert!(r.header().extra_columns().is_empty());
        assert_eq!(r.header().width(), 9);
        let (recs, hash) = drain(&mut r);
        assert_eq!(recs, vec![valid(2, spans[1], true, good())]);
        // The hash covers every byte, the BOM included.
        assert_eq!(hash, hash_file(&p).unwrap());
    }
}

#[test]
fn utf8_bom_before_a_quoted_first_header_name() {
    let dir = TempDir::new().unwrap();
    let data = format!("\u{feff}\"user_id\",{}\n{}\n", &HEADER[8..], good_line());
    let p = write(&dir, "bom.csv", data);
    let recs = read_all(&p);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].row(), &good());
}

#[test]
fn header_in_another_order() {
    let dir = TempDir::new().unwrap();
    let names: Vec<&str> = COLUMNS.iter().rev().copied().collect();
    let values: Vec<String> = fields().into_iter().rev().collect();
    let data = format!("{}\n{}\n", names.join(","), values.join(","));
    let p = write(&dir, "o.csv", data);
    let r = open(&p);
    assert_eq!(r.header().width(), 9);
    assert_eq!(read_all(&p)[0].row(), &good());
}

#[test]
fn header_names_ignore_case_and_surrounding_spaces() {
    let dir = TempDir::new().unwrap();
    let head = " USER_ID ,Event_Type,  product_id,Product_Name\t,PRODUCT_CATEGORY,Price,\"Event_Timestamp \",session_ID,device_type ";
    let data = format!("{head}\n{}\n", good_line());
    let p = write(&dir, "c.csv", data);
    assert_eq!(read_all(&p)[0].row(), &good());
}

#[test]
fn extra_columns_are_ignored_and_reported() {
    let dir = TempDir::new().unwrap();
    let head = format!("note,{HEADER}, Extra Col ");
    let row = format!("anything,{},\"x, y\"", good_line());
    let short = good_line();
    let (data, spans) = build(&[
        (head.as_bytes(), "\n"),
        (row.as_bytes(), "\n"),
        (short.as_bytes(), "\n"),
    ]);
    let p = write(&dir, "x.csv", &data);
    let mut r = open(&p);
    assert_eq!(
        r.header().extra_columns(),
        &["note".to_string(), "Extra Col".to_string()]
    );
    assert_eq!(r.header().width(), 11);
    let (recs, _) = drain(&mut r);
    assert_eq!(recs[0], valid(2, spans[1], true, good()));
    // Every row must have the header's width, extras included.
    let (column, message, raw) = recs[1].rejected();
    assert_eq!(column, None);
    assert_eq!(message, "expected 11 fields as in the header, found 9");
    assert_eq!(raw, short);
}

#[test]
fn missing_column_fails_the_file() {
    let dir = TempDir::new().unwrap();
    let without: Vec<&str> = COLUMNS.iter().copied().filter(|c| *c != "price").collect();
    let p = write(&dir, "m.csv", format!("{}\n", without.join(",")));
    match open_err(&p) {
        OpenError::Header(HeaderError::Missing {
            missing,
            found,
            more,
        }) => {
            assert_eq!(missing, vec!["price"]);
            assert_eq!(found, without);
            assert_eq!(more, 0);
        }
        other => panic!("{other:?}"),
    }
    // Several missing: all named, in contract order; the message says what is lacking.
    let p = write(&dir, "m2.csv", "device_type,user_id,foo\n");
    let e = open_err(&p);
    match &e {
        OpenError::Header(HeaderError::Missing { missing, found, .. }) => {
            assert_eq!(
                missing,
                &vec![
                    "event_type",
                    "product_id",
                    "product_name",
                    "product_category",
                    "price",
                    "event_timestamp",
                    "session_id"
                ]
            );
            assert_eq!(found, &vec!["device_type", "user_id", "foo"]);
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("lacks required column(s) event_type, product_id"),
        "{msg}"
    );
    assert!(
        msg.contains("found columns: device_type, user_id, foo"),
        "{msg}"
    );
}

#[test]
fn duplicated_column_fails_the_file() {
    let dir = TempDir::new().unwrap();
    let p = write(&dir, "d.csv", format!("{HEADER},user_id\n"));
    assert!(matches!(
        open_err(&p),
        OpenError::Header(HeaderError::Duplicate("user_id"))
    ));
    // The same name in another case is the same column.
    let p = write(&dir, "d2.csv", format!("{HEADER}, Device_Type \n"));
    assert!(matches!(
        open_err(&p),
        OpenError::Header(HeaderError::Duplicate("device_type"))
    ));
}

#[test]
fn empty_file_fails_the_file() {
    let dir = TempDir::new().unwrap();
    for (name, data) in [("e.csv", &b""[..]), ("nl.csv", b"\n\r\n\n")] {
        let p = write(&dir, name, data);
        assert!(
            matches!(open_err(&p), OpenError::Header(HeaderError::Empty)),
            "{name}"
        );
    }
}

#[test]
fn header_only_file_has_no_records() {
    let dir = TempDir::new().unwrap();
    for (name, data) in [
        ("h1.csv", format!("{HEADER}\n")),
        ("h2.csv", format!("{HEADER}\r\n")),
        ("h3.csv", HEADER.to_string()),
    ] {
        let p = write(&dir, name, &data);
        let mut r = open(&p);
        assert_eq!(r.size(), data.len() as u64);
        let (recs, hash) = drain(&mut r);
        assert!(recs.is_empty(), "{name}");
        assert_eq!(hash, hash_file(&p).unwrap());
    }
}

#[test]
fn binary_file_fails_the_file() {
    let dir = TempDir::new().unwrap();
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0\x01\0\0\0".to_vec();
    elf.extend_from_slice(b",\n\0\0\x10\x20\n");
    elf.extend((0..4096u32).map(|i| (i * 31 % 256) as u8));
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0".to_vec();
    let zeros = vec![0u8; 8192];
    let latin1 = b"user_id,caf\xe9,pr\xeax\n".to_vec();
    let utf16 = "user_id,event_type\n"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect::<Vec<u8>>();
    for (name, data) in [
        ("elf.csv", elf),
        ("png.csv", png),
        ("zeros.csv", zeros),
        ("latin1.csv", latin1),
        ("utf16.csv", utf16),
    ] {
        let p = write(&dir, name, data);
        match open_err(&p) {
            OpenError::Header(HeaderError::NotText(_) | HeaderError::Missing { .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    // NUL bytes and invalid UTF-8 in an otherwise complete header: not text.
    let p = write(&dir, "nul.csv", format!("{HEADER},\0\n"));
    assert!(matches!(
        open_err(&p),
        OpenError::Header(HeaderError::NotText(_))
    ));
    let mut h = HEADER.as_bytes().to_vec();
    h.extend_from_slice(b",\xff\xfe\n");
    let p = write(&dir, "bad.csv", h);
    assert!(matches!(
        open_err(&p),
        OpenError::Header(HeaderError::NotText(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// One bad row each, between good rows: (column, CSV text, expected column, expected message).
#[test]
fn each_kind_of_bad_value_rejects_its_row_only() {
    const PRICE: &str =
        "expected a decimal number 0 <= price < 100000000 with at most 2 fraction digits (like 19.99)";
    const TS: &str = "expected an ISO 8601 date and time like 2024-05-01T12:30:00Z (optional fraction up to microseconds, optional offset like +02:00)";
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, String, String)> = vec![
        // Empty fields, one per column.
        ("user_id", "".into(), "must not be empty".into()),
        (
            "event_type",
            "".into(),
            "expected 'view' or 'purchase', found \"\"".into(),
        ),
        ("product_id", "".into(), "must not be empty".into()),
        ("product_name", "\"\"".into(), "must not be empty".into()),
        ("product_category", "".into(), "must not be empty".into()),
        (
            "price",
            "".into(),
            "must not be empty; expected a decimal number like 19.99, found \"\"".into(),
        ),
        ("event_timestamp", "".into(), format!("{TS}, found \"\"")),
        ("session_id", "".into(), "must not be empty".into()),
        (
            "device_type",
            "".into(),
            "expected 'mobile', 'desktop' or 'tablet', found \"\"".into(),
        ),
        // Enumerations.
        (
            "event_type",
            "click".into(),
            "expected 'view' or 'purchase', found \"click\"".into(),
        ),
        (
            "device_type",
            "phone".into(),
            "expected 'mobile', 'desktop' or 'tablet', found \"phone\"".into(),
        ),
        // Prices.
        ("price", "-1".into(), format!("{PRICE}, found \"-1\"")),
        ("price", "1.234".into(), format!("{PRICE}, found \"1.234\"")),
        ("price", "$5".into(), format!("{PRICE}, found \"$5\"")),
        ("price", "5€".into(), format!("{PRICE}, found \"5€\"")),
        ("price", "\"1,000\"".into(), format!("{PRICE}, found \"1,000\"")),
        (
            "price",
            "100000000".into(),
            format!("{PRICE}, found \"100000000\""),
        ),
        ("price", "abc".into(), format!("{PRICE}, found \"abc\"")),
        // Timestamps.
        (
            "event_timestamp",
            "01/05/2024 12:30:00".into(),
            format!("{TS}, found \"01/05/2024 12:30:00\""),
        ),
        (
            "event_timestamp",
            "2024-02-30T12:00:00Z".into(),
            "the timestamp's date does not exist (month or day out of range), found \"2024-02-30T12:00:00Z\"".into(),
        ),
        (
            "event_timestamp",
            "2024-05-01T12:30:00.1234567Z".into(),
            "expected at most 6 fraction digits (microseconds) in the timestamp, found \"2024-05-01T12:30:00.1234567Z\"".into(),
        ),
        (
            "event_timestamp",
            "2024-05-01T12:30:00+2:00".into(),
            format!("{TS}, found \"2024-05-01T12:30:00+2:00\""),
        ),
        (
            "event_timestamp",
            "2024-05-01T12:30:00+24:00".into(),
            "the timestamp's offset is out of range, found \"2024-05-01T12:30:00+24:00\"".into(),
        ),
        // Text over the limit.
        (
            "user_id",
            long(51),
            "expected at most 50 characters, found 51".into(),
        ),
        (
            "product_id",
            long(51),
            "expected at most 50 characters, found 51".into(),
        ),
        (
            "product_name",
            long(201),
            "expected at most 200 characters, found 201".into(),
        ),
        (
            "product_category",
            long(101),
            "expected at most 100 characters, found 101".into(),
        ),
        (
            "session_id",
            long(101),
            "expected at most 100 characters, found 101".into(),
        ),
        // Characters, not bytes: 51 two-byte characters are too many.
        (
            "user_id",
            "é".repeat(51),
            "expected at most 50 characters, found 51".into(),
        ),
        // NUL byte.
        ("session_id", "se\0ss".into(), "contains a NUL byte".into()),
    ];
    let dir = TempDir::new().unwrap();
    let mut data = format!("{HEADER}\n{}\n", good_line());
    let mut lines = Vec::new();
    for (column, text, _) in &cases {
        let l = line_with(column, text);
        data.push_str(&l);
        data.push('\n');
        lines.push(l);
    }
    data.push_str(&good_line());
    data.push('\n');
    let p = write(&dir, "bad.csv", &data);
    let recs = read_all(&p);
    assert_eq!(recs.len(), cases.len() + 2);
    assert_eq!(recs[0].row(), &good());
    assert_eq!(recs[0].line, 2);
    for (i, (column, _, message)) in cases.iter().enumerate() {
        let rec = &recs[i + 1];
        assert_eq!(rec.line, i as u64 + 3);
        assert!(rec.terminated);
        let raw = lines[i].replace('\0', "\\0");
        assert_eq!(
            rec.got,
            Got::Rejected {
                column: Some(column),
                message: message.clone(),
                raw,
            },
            "case {i}: {column}"
        );
    }
    let last = recs.last().unwrap();
    assert_eq!(last.row(), &good());
    assert_eq!(last.line, cases.len() as u64 + 3);
}

#[test]
fn non_utf8_bytes_in_a_field() {
    let dir = TempDir::new().unwrap();
    let mut data = format!("{HEADER}\n").into_bytes();
    let bad = b"user_1,view,prod_0042,Caf\xe9 cr\xe8me,Electronics,19.99,2024-05-01T12:30:00Z,sess_1,mobile"
        .to_vec();
    data.extend_from_slice(&bad);
    data.push(b'\n');
    data.extend_from_slice(good_line().as_bytes());
    data.push(b'\n');
    let p = write(&dir, "u.csv", &data);
    let recs = read_all(&p);
    let (column, message, raw) = recs[0].rejected();
    assert_eq!(column, Some("product_name"));
    assert_eq!(message, "is not valid UTF-8 (invalid byte at position 3)");
    assert_eq!(raw, String::from_utf8_lossy(&bad));
    assert_eq!(recs[1].row(), &good());
    assert_eq!(recs[1].line, 3);
}

#[test]
fn wrong_field_count() {
    let dir = TempDir::new().unwrap();
    let few = "user_1,view,prod_0042";
    let many = format!("{},extra", good_line());
    let p = write(
        &dir,
        "w.csv",
        format!("{HEADER}\n{few}\n{many}\n{}\n", good_line()),
    );
    let recs = read_all(&p);
    assert_eq!(
        recs[0].rejected(),
        (None, "expected 9 fields as in the header, found 3", few)
    );
    assert_eq!(
        recs[1].rejected(),
        (
            None,
            "expected 9 fields as in the header, found 10",
            many.as_str()
        )
    );
    assert_eq!((recs[2].line, recs[2].row()), (4, &good()));
}

#[test]
fn text_exactly_at_the_limit_counts_characters_not_bytes() {
    let dir = TempDir::new().unwrap();
    let user = "é".repeat(50); // 100 bytes
    let product = "🙂".repeat(50); // 200 bytes
    let name = "€, \"".repeat(50); // 200 characters, with commas and quotes
    let category = "ü".repeat(100);
    let session = "日".repeat(100);
    let mut f = fields();
    f[col("user_id")] = user.clone();
    f[col("product_id")] = product.clone();
    f[col("product_name")] = format!("\"{}\"", name.replace('"', "\"\""));
    f[col("product_category")] = category.clone();
    f[col("session_id")] = session.clone();
    let ascii = [
        ("user_id", "u".repeat(50)),
        ("product_id", "p".repeat(50)),
        ("product_name", "n".repeat(200)),
        ("product_category", "c".repeat(100)),
        ("session_id", "s".repeat(100)),
    ];
    let mut data = format!("{HEADER}\n{}\n", f.join(","));
    for (c, v) in &ascii {
        data.push_str(&line_with(c, v));
        data.push('\n');
    }
    let p = write(&dir, "l.csv", data);
    let recs = read_all(&p);
    assert_eq!(
        recs[0].row(),
        &Row {
            user_id: user,
            product_id: product,
            product_name: name,
            product_category: category,
            session_id: session,
            ..good()
        }
    );
    let r = |i: usize| recs[i].row().clone();
    assert_eq!(r(1).user_id, ascii[0].1);
    assert_eq!(r(2).product_id, ascii[1].1);
    assert_eq!(r(3).product_name, ascii[2].1);
    assert_eq!(r(4).product_category, ascii[3].1);
    assert_eq!(r(5).session_id, ascii[4].1);
}

#[test]
fn prices_in_cents_and_event_types() {
    let dir = TempDir::new().unwrap();
    let cases = [
        ("19.99", 1999),
        ("5", 500),
        ("5.0", 500),
        ("0.5", 50),
        ("0", 0),
        ("99999999.99", 9_999_999_999),
        ("\"7.05\"", 705),
    ];
    let mut data = format!("{HEADER}\n");
    for (p, _) in &cases {
        let mut f = fields();
        f[col("price")] = p.to_string();
        f[col("event_type")] = "purchase".into();
        f[col("device_type")] = "desktop".into();
        data.push_str(&f.join(","));
        data.push('\n');
    }
    let p = write(&dir, "p.csv", data);
    let recs = read_all(&p);
    for (rec, (text, cents)) in recs.iter().zip(cases) {
        assert_eq!(
            rec.row(),
            &Row {
                price_cents: cents,
                event_type: EventType::Purchase,
                device_type: DeviceType::Desktop,
                ..good()
            },
            "{text}"
        );
    }
}

#[test]
fn timestamps_with_and_without_offsets_are_the_same_instant() {
    let dir = TempDir::new().unwrap();
    let cases: [(&str, i64); 16] = [
        ("2024-05-01T12:30:00Z", T0),
        ("2024-05-01T12:30:00z", T0),
        ("2024-05-01T14:30:00+02:00", T0),
        ("2024-05-01T07:00:00-0530", T0),
        ("2024-05-01T18:00:00+05:30", T0),
        ("2024-05-01T12:30:00", T0),
        ("2024-05-01 12:30:00", T0),
        ("2024-05-01 14:30:00+02:00", T0),
        ("2024-05-01T12:30:00.1Z", T0 + 100_000),
        ("2024-05-01T12:30:00.12Z", T0 + 120_000),
        ("2024-05-01T12:30:00.123", T0 + 123_000),
        ("2024-05-01T12:30:00.1234+00:00", T0 + 123_400),
        ("2024-05-01T12:30:00.12345Z", T0 + 123_450),
        ("2024-05-01T14:30:00.123456+02:00", T0 + 123_456),
        ("2024-05-01T07:00:00.000001-0530", T0 + 1),
        ("2024-05-01T12:30:00.000000Z", T0),
    ];
    let mut data = format!("{HEADER}\n");
    for (ts, _) in &cases {
        data.push_str(&line_with("event_timestamp", ts));
        data.push('\n');
    }
    let p = write(&dir, "t.csv", data);
    let recs = read_all(&p);
    assert_eq!(recs.len(), cases.len());
    for (rec, (ts, us)) in recs.iter().zip(cases) {
        assert_eq!(rec.row().event_timestamp_us, us, "{ts}");
    }
}

#[test]
fn rejection_is_per_row() {
    let dir = TempDir::new().unwrap();
    let rows = [
        line_with("user_id", "user_a"),
        line_with("event_type", "click"),
        line_with("user_id", "user_b"),
        "only,three,fields".to_string(),
        line_with("user_id", "user_c"),
        line_with("price", "1.999"),
    ];
    let mut pieces: Vec<(&[u8], &str)> = vec![(HEADER.as_bytes(), "\n")];
    pieces.extend(rows.iter().map(|r| (r.as_bytes(), "\n")));
    let (data, spans) = build(&pieces);
    let p = write(&dir, "r.csv", &data);
    let recs = read_all(&p);
    assert_eq!(recs.len(), 6);
    for (i, u) in [(0, "user_a"), (2, "user_b"), (4, "user_c")] {
        assert_eq!(
            recs[i],
            valid(
                i as u64 + 2,
                spans[i + 1],
                true,
                Row {
                    user_id: u.into(),
                    ..good()
                }
            )
        );
    }
    for (i, column) in [(1, Some("event_type")), (3, None), (5, Some("price"))] {
        assert_eq!(recs[i].line, i as u64 + 2);
        assert_eq!((recs[i].start, recs[i].end), spans[i + 1]);
        let (c, _, raw) = recs[i].rejected();
        assert_eq!(c, column);
        assert_eq!(raw, rows[i]);
    }
}

// ---------------------------------------------------------------------------------------------
// Raw text of rejected rows
// ---------------------------------------------------------------------------------------------

#[test]
fn raw_text_is_the_exact_line_capped() {
    let dir = TempDir::new().unwrap();
    let bad = line_with("event_type", "click"); // 68 bytes
    let nul = line_with("session_id", "a\0b");
    let multi = line_with("user_id", "ééééé"); // é at bytes 0..10
    let multi_bad = format!("{multi},x");
    let data = format!("{HEADER}\r\n{bad}\r\n{nul}\r\n{multi_bad}\r\n\"open, quote\r\n");
    let p = write(&dir, "raw.csv", &data);

    let recs = read_all(&p);
    assert_eq!(recs[0].rejected().2, bad);
    assert_eq!(
        recs[1].rejected().2,
        format!("{}a\\0b,mobile", &nul[..nul.len() - 10])
    );
    assert_eq!(recs[2].rejected().2, multi_bad);
    // An unterminated quote runs to the end of the file: its raw text has no final line break.
    assert_eq!(recs[3].rejected().2, "\"open, quote");

    // Capped: the first `cap` bytes and an ellipsis.
    let mut r = open(&p).with_raw_cap(10);
    let (recs, _) = drain(&mut r);
    assert_eq!(recs[0].rejected().2, format!("{}…", &bad[..10]));
    // Exactly at the cap (the line terminator does not count): no ellipsis.
    let mut r = open(&p).with_raw_cap(bad.len());
    assert_eq!(next(&mut r).unwrap().rejected().2, bad);
    let mut r = open(&p).with_raw_cap(bad.len() - 1);
    assert_eq!(
        next(&mut r).unwrap().rejected().2,
        format!("{}…", &bad[..bad.len() - 1])
    );
    // The cap never splits a character.
    let mut r = open(&p).with_raw_cap(5);
    let (recs, _) = drain(&mut r);
    assert_eq!(recs[2].rejected().2, "éé…");
}

// ---------------------------------------------------------------------------------------------
// Unterminated quotes
// ---------------------------------------------------------------------------------------------

#[test]
fn unterminated_quote_at_end_of_file_is_rejected_and_not_terminated() {
    let dir = TempDir::new().unwrap();
    let open_rec = "user_2,view,prod_1,\"Half written\nsecond line,Electronics";
    for tail in ["", "\n", "\r\n"] {
        let data = format!("{HEADER}\n{}\n{open_rec}{tail}", good_line());
        let p = write(&dir, "u.csv", &data);
        let recs = within(10, move || read_all(&p));
        assert_eq!(recs.len(), 2, "{tail:?}");
        assert_eq!(recs[0].row(), &good());
        let rec = &recs[1];
        assert_eq!(rec.line, 3);
        assert_eq!(rec.end, data.len() as u64);
        // The record only ended because the file did: it is not complete yet, whatever the last
        // byte is (a producer writing in place may still be writing it).
        assert!(!rec.terminated, "{tail:?}");
        let (column, message, raw) = rec.rejected();
        assert_eq!(column, None);
        assert_eq!(
            message,
            "expected 9 fields as in the header, found 4 (unterminated quote or truncated line at end of file?)"
        );
        assert_eq!(raw, open_rec);
    }
    // A huge file after an opening quote still ends, with one rejected record.
    let mut data = format!("{HEADER}\n\"").into_bytes();
    data.extend(std::iter::repeat_n(b"abc,def\n".iter().copied(), 200_000).flatten());
    let p = write(&dir, "big.csv", &data);
    let recs = within(60, move || read_all(&p));
    assert_eq!(recs.len(), 1);
    assert!(!recs[0].terminated);
    assert_eq!(recs[0].rejected().0, None);
}

#[test]
fn closed_quotes_at_end_of_file_are_terminated() {
    let dir = TempDir::new().unwrap();
    for last in [
        line_with("device_type", "\"mobile\""),
        line_with("device_type", "\"mob\"\"ile\""),
        line_with("product_name", "\"two\nlines\""),
    ] {
        let data = format!("{HEADER}\n{last}\n");
        let p = write(&dir, "c.csv", &data);
        let recs = read_all(&p);
        assert_eq!(recs.len(), 1);
        assert!(recs[0].terminated, "{last}");
        assert_eq!(recs[0].end, data.len() as u64);
        // Without the final newline it is not terminated.
        let p = write(&dir, "c2.csv", format!("{HEADER}\n{last}"));
        assert!(!read_all(&p)[0].terminated, "{last}");
    }
}

// ---------------------------------------------------------------------------------------------
// Resume and content hash
// ---------------------------------------------------------------------------------------------

fn resume_file(nl: &str, bom: bool, last_term: &str) -> Vec<u8> {
    let rows = [
        line_with("user_id", "user_1"),
        line_with(
            "product_name",
            &format!("\"multi{nl}line, \"\"quoted\"\"\""),
        ),
        line_with("price", "1.234"),
        String::new(),                            // a blank line
        line_with("user_id", "\u{feff}user_bom"), // a field that starts with U+FEFF
        "too,few".to_string(),
        line_with("user_id", "user_7"),
    ];
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    out.extend_from_slice(HEADER.as_bytes());
    out.extend_from_slice(nl.as_bytes());
    for (i, r) in rows.iter().enumerate() {
        out.extend_from_slice(r.as_bytes());
        out.extend_from_slice(if i + 1 == rows.len() { last_term } else { nl }.as_bytes());
    }
    out
}

#[test]
fn resume_from_any_position_gives_exactly_the_rest() {
    let dir = TempDir::new().unwrap();
    for nl in ["\n", "\r\n"] {
        for bom in [false, true] {
            for last_term in [nl, ""] {
                let data = resume_file(nl, bom, last_term);
                let p = write(&dir, "r.csv", &data);
                let (full, full_hash) = drain(&mut open(&p));
                assert_eq!(full_hash, hash_file(&p).unwrap());
                assert_eq!(full.len(), 6);
                assert_eq!(
                    full.iter().map(|r| r.line).collect::<Vec<_>>(),
                    vec![2, 3, 5, 7, 8, 9]
                );
                assert_eq!(full[3].row().user_id, "\u{feff}user_bom");
                assert_eq!(full[5].terminated, !last_term.is_empty());
                for k in 0..=full.len() {
                    let mut a = open(&p);
                    for rec in &full[..k] {
                        assert_eq!(&next(&mut a).unwrap(), rec);
                    }
                    assert_eq!(a.content_hash(), None, "no hash before the end");
                    let pos = a.position();
                    if k > 0 {
                        assert_eq!(pos.byte, full[k - 1].end);
                    }
                    if k < full.len() && full[k].start == pos.byte {
                        assert_eq!(pos.line, full[k].line);
                    }
                    drop(a);
                    let mut b = EventReader::open(&p, Some(pos)).unwrap();
                    assert_eq!(b.position(), pos);
                    let (rest, hash) = drain(&mut b);
                    assert_eq!(rest, full[k..], "nl={nl:?} bom={bom} k={k}");
                    assert_eq!(hash, full_hash, "nl={nl:?} bom={bom} k={k}");
                    // Resuming at a record's own start and line (a held, unterminated record).
                    if k < full.len() {
                        let at = Resume {
                            byte: full[k].start,
                            line: full[k].line,
                        };
                        let (rest, hash) = drain(&mut EventReader::open(&p, Some(at)).unwrap());
                        assert_eq!(rest, full[k..], "nl={nl:?} bom={bom} k={k} (start)");
                        assert_eq!(hash, full_hash);
                    }
                }
                // A resume point at or before the header means "from the first record".
                for early in [Resume::default(), Resume { byte: 3, line: 1 }] {
                    let (rest, hash) = drain(&mut EventReader::open(&p, Some(early)).unwrap());
                    assert_eq!(rest, full);
                    assert_eq!(hash, full_hash);
                }
            }
        }
    }
}

fn xxh3(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::default();
    h.write(bytes);
    h.finish()
}

#[test]
fn resume_checked_against_the_hash_of_the_committed_bytes() {
    let dir = TempDir::new().unwrap();
    for nl in ["\n", "\r\n"] {
        let data = resume_file(nl, true, nl);
        let p = write(&dir, "r.csv", &data);
        let (full, full_hash) = drain(&mut open(&p));
        for k in 1..=full.len() {
            let mut a = open(&p);
            for _ in 0..k {
                next(&mut a).unwrap();
            }
            let at = a.position();
            // The hash a commit up to here records.
            assert_eq!(
                a.prefix_hash(at.byte).unwrap(),
                xxh3(&data[..at.byte as usize])
            );
            drop(a);
            let good = xxh3(&data[..at.byte as usize]);
            let mut r = EventReader::open_checked(&p, Some(at), Some(good)).unwrap();
            let (rest, hash) = drain(&mut r);
            assert_eq!(rest, full[k..], "nl={nl:?} k={k}");
            assert_eq!(hash, full_hash);
            match EventReader::open_checked(&p, Some(at), Some(good ^ 1)) {
                Err(OpenError::Changed(Changed::PrefixDiffers {
                    committed,
                    expected,
                    found,
                })) => assert_eq!((committed, expected, found), (at.byte, good ^ 1, good)),
                other => panic!("k={k}: {:?}", other.map(|_| "opened")),
            }
        }
    }
    // Without a resume point (or at byte 0) there is nothing to check.
    let p = write(&dir, "s.csv", resume_file("\n", false, "\n"));
    assert!(EventReader::open_checked(&p, None, Some(1)).is_ok());
    assert!(EventReader::open_checked(&p, Some(Resume::default()), Some(1)).is_ok());
}

#[test]
fn a_committed_file_replaced_by_an_unreadable_one_is_reported_as_changed() {
    // The prefix is checked before the header: an emptied or binary file that was half read is
    // "changed", not "empty" (done) or "not text" (failed for another reason).
    let dir = TempDir::new().unwrap();
    let data = resume_file("\n", false, "\n");
    let p = write(&dir, "r.csv", &data);
    let at = Resume {
        byte: data.len() as u64 - 10,
        line: 5,
    };
    let good = xxh3(&data[..at.byte as usize]);
    std::fs::write(&p, vec![0u8; data.len()]).unwrap();
    assert!(matches!(
        EventReader::open_checked(&p, Some(at), Some(good)),
        Err(OpenError::Changed(Changed::PrefixDiffers { .. }))
    ));
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(
        EventReader::open_checked(&p, Some(at), Some(good)),
        Err(OpenError::Changed(Changed::Shorter { size: 0, .. }))
    ));
}

#[test]
fn resume_after_the_file_grew() {
    // A producer writing in place: the last line is incomplete, then completed.
    let dir = TempDir::new().unwrap();
    let r1 = line_with("user_id", "user_1");
    let r2 = line_with("user_id", "user_2");
    let p = write(&dir, "g.csv", format!("{HEADER}\n{r1}\n{}", &r2[..20]));
    let mut a = open(&p);
    let first = next(&mut a).unwrap();
    assert!(first.terminated);
    let partial = next(&mut a).unwrap();
    assert!(!partial.terminated);
    // Hold the partial record: resume at its start and line.
    let held = Resume {
        byte: partial.start,
        line: partial.line,
    };
    drop(a);
    std::fs::write(&p, format!("{HEADER}\n{r1}\n{r2}\n{r1}\n")).unwrap();
    let mut b = EventReader::open(&p, Some(held)).unwrap();
    let (rest, hash) = drain(&mut b);
    assert_eq!(rest.len(), 2);
    assert_eq!(
        (rest[0].line, rest[0].row().user_id.as_str()),
        (3, "user_2")
    );
    assert_eq!(
        (rest[1].line, rest[1].row().user_id.as_str()),
        (4, "user_1")
    );
    assert!(rest.iter().all(|r| r.terminated));
    assert_eq!(hash, hash_file(&p).unwrap());
}

#[test]
fn content_hash_tracks_content() {
    let dir = TempDir::new().unwrap();
    let a = format!("{HEADER}\n{}\n", good_line());
    let b = format!("{HEADER}\n{}\n", line_with("price", "19.98"));
    let pa = write(&dir, "a.csv", &a);
    let pa2 = write(&dir, "a copy.csv", &a);
    let pb = write(&dir, "b.csv", &b);
    let pc = write(&dir, "c.csv", format!("{a}\n")); // one more byte
    let h = |p: &Path| drain(&mut open(p)).1;
    assert_eq!(h(&pa), h(&pa2));
    assert_eq!(h(&pa), hash_file(&pa).unwrap());
    assert_ne!(h(&pa), h(&pb));
    assert_ne!(h(&pa), h(&pc));
    assert_ne!(h(&pb), h(&pc));
}

#[test]
fn large_file_crosses_buffer_boundaries() {
    // Records spanning the parser's 256 KiB chunks, in CRLF: exact lines and offsets throughout,
    // and resuming anywhere gives the same result.
    let dir = TempDir::new().unwrap();
    let mut pieces: Vec<String> = Vec::new();
    let mut data = format!("\u{feff}{HEADER}\r\n").into_bytes();
    let mut expect = Vec::new();
    let mut line = 2;
    for i in 0..12_000u64 {
        let l = if i % 7 == 3 {
            line_with("product_name", &format!("\"name {i}\r\nsecond\""))
        } else {
            line_with("user_id", &format!("user_{i}"))
        };
        let start = data.len() as u64;
        data.extend_from_slice(l.as_bytes());
        data.extend_from_slice(b"\r\n");
        expect.push((line, start, data.len() as u64));
        line += if i % 7 == 3 { 2 } else { 1 };
        pieces.push(l);
    }
    let p = write(&dir, "big.csv", &data);
    let (full, hash) = drain(&mut open(&p));
    assert_eq!(hash, hash_file(&p).unwrap());
    assert_eq!(
        full.iter()
            .map(|r| (r.line, r.start, r.end))
            .collect::<Vec<_>>(),
        expect
    );
    assert!(full
        .iter()
        .all(|r| matches!(r.got, Got::Valid(_)) && r.terminated));
    for k in [1, 999, 5000, 11_999] {
        let mut a = open(&p);
        for _ in 0..k {
            next(&mut a).unwrap();
        }
        let pos = a.position();
        let (rest, h) = drain(&mut EventReader::open(&p, Some(pos)).unwrap());
        assert_eq!(rest, full[k..]);
        assert_eq!(h, hash);
    }
}

// ---------------------------------------------------------------------------------------------
// What may be opened
// ---------------------------------------------------------------------------------------------

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn open_refuses_directories_fifos_and_symlinks() {
    let dir = TempDir::new().unwrap();
    let d = dir.path().join("dir.csv");
    std::fs::create_dir(&d).unwrap();
    assert!(matches!(open_err(&d), OpenError::NotRegular("directory")));

    let fifo = dir.path().join("fifo.csv");
    mkfifo(&fifo);
    let f2 = fifo.clone();
    let e = within(5, move || EventReader::open(&f2, None).err());
    assert!(matches!(e, Some(OpenError::NotRegular("FIFO"))), "{e:?}");
    let f2 = fifo.clone();
    let e = within(5, move || hash_file(&f2).err());
    assert!(matches!(e, Some(OpenError::NotRegular("FIFO"))), "{e:?}");

    let target = write(&dir, "real.csv", format!("{HEADER}\n{}\n", good_line()));
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(matches!(
        open_err(&link),
        OpenError::NotRegular("symbolic link")
    ));
    assert!(matches!(
        hash_file(&link),
        Err(OpenError::NotRegular("symbolic link"))
    ));
    assert_eq!(
        open_err(&link).to_string(),
        "not a regular file (symbolic link); never read"
    );
    let dangling = dir.path().join("dangling.csv");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    assert!(matches!(
        open_err(&dangling),
        OpenError::NotRegular("symbolic link")
    ));

    match open_err(&dir.path().join("missing.csv")) {
        OpenError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    // The regular file itself opens.
    assert_eq!(read_all(&target).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// File selection
// ---------------------------------------------------------------------------------------------

fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    filetime::set_symlink_file_times(
        p,
        filetime::FileTime::from_unix_time(secs, nanos),
        filetime::FileTime::from_unix_time(secs, nanos),
    )
    .unwrap();
}

#[test]
fn list_dir_selects_regular_files_oldest_first() {
    let dir = TempDir::new().unwrap();
    let body = format!("{HEADER}\n");
    let files = [
        ("b.csv", 2_000, 0),
        ("a.csv", 3_000, 0),
        ("with space 'single' \"double\" é日本.csv", 1_000, 5),
        ("f.csv", 4_000, 0),
        ("e.csv", 4_000, 0), // same time: by name
        ("late.csv", 4_000, 1),
    ];
    for (name, secs, nanos) in files {
        let p = write(&dir, name, &body);
        set_mtime(&p, secs, nanos);
    }
    // Ignored silently: temporary names and names that do not match.
    for name in [".x.csv", "x.csv.tmp", "x.csv.part", "notes.txt", "x.CSV"] {
        let p = write(&dir, name, &body);
        set_mtime(&p, 500, 0);
    }
    // Matching entries that are never read.
    std::fs::create_dir(dir.path().join("d.csv")).unwrap();
    mkfifo(&dir.path().join("p.csv"));
    std::os::unix::fs::symlink(dir.path().join("a.csv"), dir.path().join("l.csv")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("dangling.csv"))
        .unwrap();
    let bad_name = OsStr::from_bytes(b"bad\xff.csv");
    std::fs::write(dir.path().join(bad_name), &body).unwrap();

    let pattern = FilePattern::new("*.csv").unwrap();
    let listing = within(10, {
        let d = dir.path().to_path_buf();
        move || list_dir(&d, &pattern).unwrap()
    });
    let names: Vec<&str> = listing.files.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "with space 'single' \"double\" é日本.csv",
            "b.csv",
            "a.csv",
            "e.csv",
            "f.csv",
            "late.csv"
        ]
    );
    for c in &listing.files {
        let md = std::fs::symlink_metadata(dir.path().join(&c.name)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(c.size, body.len() as u64);
        assert_eq!(c.inode, md.ino());
        assert_eq!(c.mtime_ns, md.mtime() * 1_000_000_000 + md.mtime_nsec());
        // Names are opaque but usable: the file opens by its listed name.
        assert!(read_all(&dir.path().join(&c.name)).is_empty());
    }
    assert_eq!(listing.files[0].mtime_ns, 1_000_000_000_005);
    assert_eq!(listing.files[5].mtime_ns, 4_000_000_000_001);

    let mut skipped: Vec<(String, String)> = listing
        .skipped
        .iter()
        .map(|s| (s.name.clone(), s.reason.clone()))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            (
                "bad\u{fffd}.csv".to_string(),
                "the file name is not valid UTF-8".to_string()
            ),
            (
                "d.csv".to_string(),
                "not a regular file (directory); never read".to_string()
            ),
            (
                "dangling.csv".to_string(),
                "not a regular file (symbolic link); never read".to_string()
            ),
            (
                "l.csv".to_string(),
                "not a regular file (symbolic link); never read".to_string()
            ),
            (
                "p.csv".to_string(),
                "not a regular file (FIFO); never read".to_string()
            ),
        ]
    );
}

#[test]
fn list_dir_of_a_missing_directory_is_an_error() {
    let dir = TempDir::new().unwrap();
    let pattern = FilePattern::new("*.csv").unwrap();
    assert!(list_dir(&dir.path().join("nope"), &pattern).is_err());
    let empty = list_dir(dir.path(), &pattern).unwrap();
    assert!(empty.files.is_empty() && empty.skipped.is_empty());
}

#[test]
fn file_patterns() {
    assert!(FilePattern::new("in/*.csv").is_err());
    assert!(FilePattern::new("/tmp/*.csv").is_err());
    assert!(FilePattern::new("../*.csv").is_err());
    assert!(FilePattern::new("[").is_err());
    let p = FilePattern::new("*.csv").unwrap();
    for yes in ["x.csv", "a b.csv", "é日本.csv", "'q\".csv", "x.tmp.csv"] {
        assert!(p.matches(yes), "{yes}");
    }
    for no in [".hidden.csv", "x.CSV", "x.csv.tmp", "x.csvx", "x.txt"] {
        assert!(!p.matches(no), "{no}");
    }
    let q = FilePattern::new("events_??.csv").unwrap();
    assert!(q.matches("events_01.csv"));
    assert!(!q.matches("events_1.csv"));
    let r = FilePattern::new("[ab]*.csv").unwrap();
    assert!(r.matches("a1.csv") && r.matches("b.csv") && !r.matches("c.csv"));
}

#[test]
fn temporary_names() {
    for t in [".x.csv", ".", "x.csv.tmp", "x.csv.part", ".partial"] {
        assert!(is_temporary_name(t), "{t}");
    }
    for n in ["x.csv", "x.tmp.csv", "part.csv", "tmp"] {
        assert!(!is_temporary_name(n), "{n}");
    }
}

#[test]
fn a_binary_file_with_an_open_quote_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin.csv");
    let mut bytes = b"\x7fELF\"".to_vec();
    bytes.resize(3 * 1024 * 1024, b'x');
    std::fs::write(&path, &bytes).unwrap();
    match EventReader::open(&path, None) {
        Err(OpenError::Header(HeaderError::NotText(why))) => {
            assert_eq!(why.to_string(), "no header line within the first 64 KiB")
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a binary file was accepted"),
    }
}
