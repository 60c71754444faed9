//! Property tests (proptest): generated inputs, checked against independent oracles.
//!
//! - (a) Arbitrary RFC 4180 files under a valid header (columns in any order): fields with
//!   commas, quotes, CR and LF inside quotes, empty fields, blank lines, LF or CRLF line ends, a
//!   byte-order mark or not, a final line break or not; rows of any width. Our reader's records
//!   (start offset, line, end, field values, outcome) agree with the csv crate's own plain
//!   reading of the same bytes, and with where the writer put each record.
//! - (b) Arbitrary valid events (every column within the contract's rules, docs/contract.md:
//!   texts of 1 to n characters of any kind, prices in every accepted form, timestamps in every
//!   accepted form with the expected instant computed independently with chrono), written as CSV
//!   under a header in any column order with extra columns: read back and validated, they equal
//!   the originals (timestamps as microseconds, prices as cents), on the lines they were written.
//! - (c) Valid rows encoded with the binary COPY encoder decode back, with a small test-only
//!   decoder (common/pgcopy_decode.rs), to the same values; so do single-tuple streams and
//!   streams whose file id was set afterwards.
//!
//! What lands in the table is checked end to end against a real PostgreSQL elsewhere (tests/).

mod common;
#[path = "common/pgcopy_decode.rs"]
mod pgcopy_decode;

use common::{drain, open, Got, Rec, Row};
use ecommerce_events::pgcopy::CopyEncoder;
use ecommerce_events::{
    parse_price, parse_timestamp, validate, Column, DeviceType, EventType, HeaderMap, Price,
    ValidRow, COLUMNS,
};
use pgcopy_decode::{decode_events, EventTuple};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use tempfile::TempDir;

/// `cases` generated inputs per property (moderate: the whole events suite stays well under 20 s
/// in a debug build), or `PROPTEST_CASES` of them for a longer local run.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig::with_cases(cases)
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// Characters CSV and the reader care about, and a few multi-byte ones.
const SPECIAL: &[char] = &[
    ',', '"', '\r', '\n', ' ', '\t', ';', '\\', 'é', '日', '\u{feff}', '😀',
];

fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => select(SPECIAL),
        4 => proptest::char::range('a', 'z'),
        1 => any::<char>().prop_filter("NUL is refused", |c| *c != '\0'),
    ]
}

/// A valid text value: 1 to `max` characters, often short, sometimes exactly `max`.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(text_char(), 1..=8.min(max)),
        1 => vec(text_char(), max..=max),
        1 => vec(text_char(), 1..=max),
    ]
    .prop_map(|v| v.into_iter().collect())
}

/// A price in one of its accepted forms (`5`, `5.0`, `5.00`, `005.5`, `19.99`), with its cents.
fn price() -> impl Strategy<Value = (String, i64)> {
    let cents = prop_oneof![
        3 => 0i64..10_000_000_000,
        2 => 0i64..10_000,
        1 => Just(0i64),
        1 => Just(9_999_999_999i64),
    ];
    (cents, 0usize..3, 0u8..3).prop_map(|(cents, zeros, form)| {
        let (int, frac) = (cents / 100, cents % 100);
        let i = format!("{}{int}", "0".repeat(zeros));
        let text = match (frac, form) {
            (0, 0) => i,
            (0, 1) => format!("{i}.0"),
            (0, _) => format!("{i}.00"),
            (f, 0) if f % 10 == 0 => format!("{i}.{}", f / 10),
            (f, _) => format!("{i}.{f:02}"),
        };
        (text, cents)
    })
}

/// A timestamp in one of its accepted forms, with the instant it means, computed with chrono
/// (second 60 is the next minute's first second, as in PostgreSQL).
fn timestamp() -> impl Strategy<Value = (String, i64)> {
    (
        (0i32..=9999, 1u32..=12, 0u32..31),
        (
            0u32..=23,
            0u32..=59,
            prop_oneof![4 => 0u32..=59, 1 => Just(60u32)],
        ),
        proptest::option::of(vec(0u8..=9, 1..=6)),
        select(&['T', 't', ' '][..]),
        (0u8..6, any::<bool>(), 0i64..=23, 0i64..=59),
    )
        .prop_map(|((y, mo, d), (h, mi, s), frac, sep, (form, neg, oh, om))| {
            let first = chrono::NaiveDate::from_ymd_opt(y, mo, 1).unwrap();
            let next = if mo == 12 {
                chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1).unwrap()
            } else {
                chrono::NaiveDate::from_ymd_opt(y, mo + 1, 1).unwrap()
            };
            let d = 1 + d % (next - first).num_days() as u32;
            let (frac_text, frac_us) = match &frac {
                None => (String::new(), 0),
                Some(digits) => {
                    let s: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
                    let us = format!("{s:0<6}").parse::<i64>().unwrap();
                    (format!(".{s}"), us)
                }
            };
            let sign = if neg { '-' } else { '+' };
            let (off_text, off_secs) = match form {
                0 => (String::new(), 0),
                1 => ("Z".into(), 0),
                2 => ("z".into(), 0),
                3 => (format!("{sign}{oh:02}:{om:02}"), oh * 3600 + om * 60),
                4 => (format!("{sign}{oh:02}{om:02}"), oh * 3600 + om * 60),
                _ => (format!("{sign}{oh:02}"), oh * 3600),
            };
            let off_secs = if neg { -off_secs } else { off_secs };
            let text =
                format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac_text}{off_text}");
            let minute = chrono::NaiveDate::from_ymd_opt(y, mo, d)
                .unwrap()
                .and_hms_opt(h, mi, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros();
            let us = minute + s as i64 * 1_000_000 + frac_us - off_secs * 1_000_000;
            (text, us)
        })
}

/// A valid event: its CSV text per column (contract order) and the row the reader must return.
#[derive(Debug, Clone)]
struct Event {
    fields: [String; 9],
    row: Row,
}

fn event() -> impl Strategy<Value = Event> {
    (
        (
            text(50),
            select(&[EventType::View, EventType::Purchase][..]),
        ),
        (text(50), text(200), text(100)),
        price(),
        timestamp(),
        (text(100), select(&DeviceType::ALL[..])),
    )
        .prop_map(
            |((user_id, et), (product_id, name, category), (p, cents), (ts, us), (session, dt))| {
                Event {
                    fields: [
                        user_id.clone(),
                        et.as_str().into(),
                        product_id.clone(),
                        name.clone(),
                        category.clone(),
                        p,
                        ts,
                        session.clone(),
                        dt.as_str().into(),
                    ],
                    row: Row {
                        user_id,
                        event_type: et,
                        product_id,
                        product_name: name,
                        product_category: category,
                        price_cents: cents,
                        event_timestamp_us: us,
                        session_id: session,
                        device_type: dt,
                    },
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Writing CSV
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Layout {
    nl: &'static str,
    bom: bool,
    final_nl: bool,
    /// Blank lines before each record (cycled), and after the last one (with a final newline).
    blanks: Vec<u8>,
    /// Quote a field even when it does not need it (cycled over the fields of the file).
    quote: Vec<bool>,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        select(&["\n", "\r\n"][..]),
        any::<bool>(),
        any::<bool>(),
        vec(prop_oneof![6 => Just(0u8), 1 => 1u8..3], 1..8),
        vec(any::<bool>(), 1..16),
    )
        .prop_map(|(nl, bom, final_nl, blanks, quote)| Layout {
            nl,
            bom,
            final_nl,
            blanks,
            quote,
        })
}

/// Where the writer put a record: its first byte, line, and the offset past its terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    line: u64,
    end: u64,
}

/// Writes an RFC 4180 file: the header, then the records (quoted where they must be, and where
/// `layout.quote` says), with the layout's line ends, blank lines and final line break.
fn write_csv(header: &[String], records: &[Vec<String>], layout: &Layout) -> (Vec<u8>, Vec<Span>) {
    let mut out = Vec::new();
    if layout.bom {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    out.extend_from_slice(header.join(",").as_bytes());
    out.extend_from_slice(layout.nl.as_bytes());
    let mut q = layout.quote.iter().cycle();
    let mut spans = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        for _ in 0..layout.blanks[i % layout.blanks.len()] {
            out.extend_from_slice(layout.nl.as_bytes());
        }
        let start = out.len() as u64;
        let line = 1 + out.iter().filter(|&&b| b == b'\n').count() as u64;
        let fields: Vec<String> = rec
            .iter()
            .map(|f| {
                let must = f.contains([',', '"', '\r', '\n'])
                    // A record of one empty field would be a blank line.
                    || (rec.len() == 1 && f.is_empty());
                if must || *q.next().unwrap() {
                    format!("\"{}\"", f.replace('"', "\"\""))
                } else {
                    f.clone()
                }
            })
            .collect();
        out.extend_from_slice(fields.join(",").as_bytes());
        if i + 1 < records.len() || layout.final_nl {
            out.extend_from_slice(layout.nl.as_bytes());
        }
        spans.push(Span {
            start,
            line,
            end: out.len() as u64,
        });
    }
    if layout.final_nl {
        for _ in 0..layout.blanks[records.len() % layout.blanks.len()] {
            out.extend_from_slice(layout.nl.as_bytes());
        }
    }
    (out, spans)
}

/// The csv crate's plain reading of a file: each record with its start (csv reports where the
/// previous record ended: blank lines and the LF of a CRLF come before the record itself) and
/// line. The first record is the header.
fn csv_records(data: &[u8]) -> Vec<(u64, u64, csv::ByteRecord)> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut out = Vec::new();
    let mut rec = csv::ByteRecord::new();
    while r.read_byte_record(&mut rec).unwrap() {
        let p = rec.position().unwrap();
        let (mut start, mut line) = (p.byte(), p.line());
        while let Some(b @ (b'\r' | b'\n')) = data.get(start as usize) {
            line += (*b == b'\n') as u64;
            start += 1;
        }
        out.push((start, line, rec.clone()));
    }
    out
}

fn read_file(dir: &TempDir, data: &[u8]) -> (Vec<Rec>, HeaderMap) {
    let p = dir.path().join("p.csv");
    std::fs::write(&p, data).unwrap();
    let mut r = open(&p);
    let map = r.header().clone();
    (drain(&mut r).0, map)
}

fn field<'a>(rec: &'a csv::ByteRecord, map: &HeaderMap, c: Column) -> &'a [u8] {
    &rec[map.index(c)]
}

// ---------------------------------------------------------------------------------------------
// (a) the reader agrees with the csv crate
// ---------------------------------------------------------------------------------------------

/// A record of (a): a valid event (in header order), nine arbitrary fields (mostly rejected by
/// validation), or any number of them (rejected for their count).
fn any_field() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            3 => select(&[',', '"', '\r', '\n', ' ', 'é', '\u{feff}'][..]),
            2 => select(&['a', '0', '.', '-', ':'][..]),
        ],
        0..6,
    )
    .prop_map(|v| v.into_iter().collect())
}

#[derive(Debug, Clone)]
enum AnyRecord {
    Valid(Box<Event>),
    Fields(Vec<String>),
}

fn any_record() -> impl Strategy<Value = AnyRecord> {
    prop_oneof![
        3 => event().prop_map(|e| AnyRecord::Valid(Box::new(e))),
        1 => vec(any_field(), 9..=9).prop_map(AnyRecord::Fields),
        1 => vec(any_field(), 1..=12).prop_map(AnyRecord::Fields),
    ]
}

/// Column `c`'s position in a header order.
fn pos(order: &[&str], c: Column) -> usize {
    order.iter().position(|n| *n == c.name()).unwrap()
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn the_reader_agrees_with_the_csv_crate(
        order in Just(COLUMNS.to_vec()).prop_shuffle(),
        records in vec(any_record(), 0..20),
        layout in layout(),
    ) {
        let header: Vec<String> = order.iter().map(|s| s.to_string()).collect();
        let texts: Vec<Vec<String>> = records
            .iter()
            .map(|r| match r {
                AnyRecord::Valid(e) => {
                    let mut f = vec![String::new(); 9];
                    for c in Column::ALL {
                        f[pos(&order, c)] = e.fields[c as usize].clone();
                    }
                    f
                }
                AnyRecord::Fields(f) => f.clone(),
            })
            .collect();
        let (data, spans) = write_csv(&header, &texts, &layout);
        let dir = TempDir::new().unwrap();
        let (mine, map) = read_file(&dir, &data);
        let theirs = csv_records(&data);

        // The generator wrote what the csv crate reads (RFC 4180).
        prop_assert_eq!(theirs.len(), texts.len() + 1);
        for ((_, _, rec), want) in theirs[1..].iter().zip(&texts) {
            let got: Vec<&[u8]> = rec.iter().collect();
            let want: Vec<&[u8]> = want.iter().map(|s| s.as_bytes()).collect();
            prop_assert_eq!(got, want);
        }

        prop_assert_eq!(mine.len(), texts.len());
        for (i, (m, (start, line, rec))) in mine.iter().zip(&theirs[1..]).enumerate() {
            let span = spans[i];
            prop_assert_eq!((m.start, m.line), (*start, *line), "record {} vs the csv crate", i);
            prop_assert_eq!((m.start, m.line, m.end), (span.start, span.line, span.end));
            let last = i + 1 == texts.len();
            prop_assert_eq!(m.terminated, !last || layout.final_nl);
            let text = &data[span.start as usize..span.end as usize];
            let text = std::str::from_utf8(text).unwrap().trim_end_matches(['\r', '\n']);
            match (&m.got, rec.len()) {
                (Got::Valid(row), 9) => {
                    for (c, v) in [
                        (Column::UserId, &row.user_id),
                        (Column::ProductId, &row.product_id),
                        (Column::ProductName, &row.product_name),
                        (Column::ProductCategory, &row.product_category),
                        (Column::SessionId, &row.session_id),
                    ] {
                        prop_assert_eq!(v.as_bytes(), field(rec, &map, c));
                    }
                    prop_assert_eq!(row.event_type.as_str().as_bytes(), field(rec, &map, Column::EventType));
                    prop_assert_eq!(row.device_type.as_str().as_bytes(), field(rec, &map, Column::DeviceType));
                    prop_assert_eq!(Ok(Price(row.price_cents)), parse_price(field(rec, &map, Column::Price)));
                    prop_assert_eq!(Ok(row.event_timestamp_us), parse_timestamp(field(rec, &map, Column::EventTimestamp)));
                    if let AnyRecord::Valid(e) = &records[i] {
                        prop_assert_eq!(row, &e.row);
                    }
                }
                (Got::Rejected { column, message, raw }, n) => {
                    if n != 9 {
                        prop_assert_eq!(*column, None);
                        let want = format!("expected 9 fields as in the header, found {n}");
                        prop_assert!(message.starts_with(&want), "{}", message);
                    } else {
                        let e = validate(rec, &map).expect_err("the csv crate's fields are invalid too");
                        prop_assert_eq!((*column, message), (e.column, &e.message));
                    }
                    prop_assert!(!matches!(records[i], AnyRecord::Valid(_)), "a valid event refused: {}", message);
                    if text.len() <= ecommerce_events::RAW_TEXT_CAP {
                        prop_assert_eq!(raw, text);
                    }
                }
                (got, n) => prop_assert!(false, "reader {:?}, csv crate {} fields", got, n),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) valid events written as CSV read back as themselves
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn valid_events_read_back_as_written(
        events in vec(event(), 0..20),
        order in Just(COLUMNS.to_vec()).prop_shuffle(),
        extras in vec((0..12usize, any_field()), 0..3),
        layout in layout(),
    ) {
        // The header: the contract's columns in any order, extra columns anywhere.
        let mut header: Vec<String> = order.iter().map(|s| s.to_string()).collect();
        let mut extra_at = Vec::new();
        for (k, (at, _)) in extras.iter().enumerate() {
            let at = at % (header.len() + 1);
            header.insert(at, format!("extra_{k}"));
            extra_at.push(at);
        }
        let texts: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let mut f: Vec<String> =
                    order.iter().map(|n| e.fields[COLUMNS.iter().position(|c| c == n).unwrap()].clone()).collect();
                for (k, at) in extra_at.iter().enumerate() {
                    f.insert(*at, extras[k].1.clone());
                }
                f
            })
            .collect();
        let (data, spans) = write_csv(&header, &texts, &layout);
        let dir = TempDir::new().unwrap();
        let (mine, map) = read_file(&dir, &data);
        prop_assert_eq!(map.extra_columns().len(), extras.len());
        prop_assert_eq!(mine.len(), events.len());
        let mut copy = CopyEncoder::new();
        let mut want = Vec::new();
        for ((m, e), span) in mine.iter().zip(&events).zip(&spans) {
            prop_assert_eq!((m.start, m.line, m.end), (span.start, span.line, span.end));
            prop_assert_eq!(&m.got, &Got::Valid(e.row.clone()));
            copy.push(&valid_row(&e.row), 7, m.line);
            want.push(tuple(&e.row, 7, m.line));
        }
        // And what the reader returned goes through COPY unchanged.
        prop_assert_eq!(decode_events(copy.finish()).unwrap(), want);
    }
}

// ---------------------------------------------------------------------------------------------
// (c) binary COPY: encode, decode, same values
// ---------------------------------------------------------------------------------------------

fn valid_row(r: &Row) -> ValidRow<'_> {
    ValidRow {
        user_id: &r.user_id,
        event_type: r.event_type,
        product_id: &r.product_id,
        product_name: &r.product_name,
        product_category: &r.product_category,
        price: Price(r.price_cents),
        event_timestamp_us: r.event_timestamp_us,
        session_id: &r.session_id,
        device_type: r.device_type,
    }
}

fn tuple(r: &Row, file_id: i32, line: u64) -> EventTuple {
    EventTuple {
        user_id: r.user_id.clone(),
        event_type: r.event_type.as_str().into(),
        product_id: r.product_id.clone(),
        product_name: r.product_name.clone(),
        product_category: r.product_category.clone(),
        price_cents: r.price_cents,
        event_timestamp_us: r.event_timestamp_us,
        session_id: r.session_id.clone(),
        device_type: r.device_type.as_str().into(),
        source_file_id: file_id,
        source_line: line as i64,
    }
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn copy_streams_decode_to_the_rows_encoded(
        rows in vec((event(), 0..=i64::MAX as u64), 0..12),
        file_id in any::<i32>(),
        later_id in proptest::option::of(any::<i32>()),
    ) {
        let mut enc = CopyEncoder::new();
        for (e, line) in &rows {
            enc.push(&valid_row(&e.row), file_id, *line);
        }
        if let Some(id) = later_id {
            enc.set_source_file_id(id);
        }
        let id = later_id.unwrap_or(file_id);
        let want: Vec<EventTuple> = rows.iter().map(|(e, line)| tuple(&e.row, id, *line)).collect();
        prop_assert_eq!(enc.len(), rows.len());
        prop_assert_eq!(decode_events(enc.finish()).unwrap(), want.clone());
        let mut one = Vec::new();
        for (i, t) in want.iter().enumerate() {
            enc.single(i, &mut one);
            prop_assert_eq!(decode_events(&one).unwrap(), vec![t.clone()]);
        }
        // Reused after clear: a fresh stream.
        enc.clear();
        prop_assert_eq!(decode_events(enc.finish()).unwrap(), Vec::<EventTuple>::new());
    }
}

/// The decoder itself, on values worked out by hand (so a decoder bug cannot hide an encoder
/// bug): numeric digits, the timestamp epoch, the stream frame.
#[test]
fn the_test_decoder_reads_known_values() {
    use pgcopy_decode::{decode, numeric_cents};
    // 19.99: ndigits 2, weight 0, sign 0, dscale 2, digits [19, 9900].
    assert_eq!(
        numeric_cents(&[0, 2, 0, 0, 0, 0, 0, 2, 0, 19, 0x26, 0xAC]),
        Ok(1999)
    );
    // 123456.70: ndigits 3, weight 1, digits [12, 3456, 7000].
    assert_eq!(
        numeric_cents(&[0, 3, 0, 1, 0, 0, 0, 2, 0, 12, 0x0D, 0x80, 0x1B, 0x58]),
        Ok(12_345_670)
    );
    // 0.05 the way PostgreSQL itself sends it: ndigits 1, weight -1, digits [500].
    assert_eq!(
        numeric_cents(&[0, 1, 0xFF, 0xFF, 0, 0, 0, 2, 0x01, 0xF4]),
        Ok(5)
    );
    assert!(
        numeric_cents(&[0, 0, 0, 0, 0x40, 0, 0, 2]).is_err(),
        "negative"
    );
    assert!(
        numeric_cents(&[0, 1, 0, 0, 0, 0, 0, 2, 0x27, 0x10]).is_err(),
        "digit 10000"
    );
    // A stream with one tuple (a NULL and a 1-byte field), then the trailer.
    let mut s = b"PGCOPY\n\xff\r\n\0".to_vec();
    s.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    s.extend_from_slice(&[0, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, b'x', 0xFF, 0xFF]);
    assert_eq!(decode(&s), Ok(vec![vec![None, Some(b"x".to_vec())]]));
    s.push(0);
    assert!(decode(&s).is_err(), "a byte after the trailer");
    // 2000-01-01T00:00:00Z is 0 in PostgreSQL and 946684800 s after the Unix epoch.
    assert_eq!(pgcopy_decode::PG_EPOCH_UNIX_US, 946_684_800_000_000);
    assert_eq!(
        pgcopy_decode::PG_EPOCH_UNIX_US,
        parse_timestamp(b"2000-01-01T00:00:00Z").unwrap()
    );
}
