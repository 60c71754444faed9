//! What the fuzz targets share: how an input is split into settings and file bytes, a scratch
//! file to read from, owned copies of records, and the checks every pass over a file makes.
//! See docs/fuzzing.md.
//!
//! An input is [`PREFIX`] setting bytes followed by the file:
//!
//! | byte | meaning |
//! | --- | --- |
//! | 0 | flags: bit 0 put the contract's header line before the file; bit 1 `young` (pipeline: hold an unterminated last line); bit 2 one-chunk jobs resumed by prefix hash (pipeline); bit 3 a large record cap |
//! | 1, 2 | record cap (`max_record_bytes`), u16 little-endian: 1 + v % 1024, or with flag bit 3 (v + 1) * 256 |
//! | 3 | raw-text cap of rejects (`with_raw_cap`), 0..=255 |
//! | 4 | knob: where `resume` splits (records before the split), the pipeline's chunk size (1 + 8k bytes) |
//! | 5 | aux: which byte `resume` changes to check the prefix hash; the pipeline's batch size (1 + a % 8 rows) |

use ecommerce_events::pgcopy::CopyEncoder;
use ecommerce_events::reader::{EventReader, Outcome, Record};
use ecommerce_events::{validate, Column, HeaderMap, ValidRow};
use std::borrow::Cow;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

#[path = "../../events/tests/common/pgcopy_decode.rs"]
pub mod pgcopy_decode;

/// What the `ingest_core` targets (`rows`, `options`) share.
pub mod ingest;

use pgcopy_decode::{decode_events, EventTuple};

/// Setting bytes before the file.
pub const PREFIX: usize = 6;

/// The contract's header line, in contract order.
pub const HEADER: &[u8] = b"user_id,event_type,product_id,product_name,product_category,price,event_timestamp,session_id,device_type\n";

pub struct Input<'a> {
    pub flags: u8,
    pub max_record: u64,
    pub raw_cap: usize,
    pub knob: u8,
    pub aux: u8,
    pub file: Cow<'a, [u8]>,
}

impl<'a> Input<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        if data.len() < PREFIX {
            return None;
        }
        let flags = data[0];
        let v = u16::from_le_bytes([data[1], data[2]]) as u64;
        let max_record = if flags & 8 != 0 {
            (v + 1) * 256
        } else {
            1 + v % 1024
        };
        let body = &data[PREFIX..];
        let file = if flags & 1 != 0 {
            let mut f = HEADER.to_vec();
            f.extend_from_slice(body);
            Cow::Owned(f)
        } else {
            Cow::Borrowed(body)
        };
        Some(Input {
            flags,
            max_record,
            raw_cap: data[3] as usize,
            knob: data[4],
            aux: data[5],
            file,
        })
    }

    pub fn young(&self) -> bool {
        self.flags & 2 != 0
    }

    pub fn one_chunk(&self) -> bool {
        self.flags & 4 != 0
    }
}

/// A file this process rewrites for each input: in `$FUZZ_SCRATCH_DIR`, else `/dev/shm` (no
/// disk writes), else the temporary folder. One per target and process (`-fork`/`-jobs` runs
/// several processes).
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(target: &str) -> Scratch {
        let dir = std::env::var_os("FUZZ_SCRATCH_DIR")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|d| d.is_dir()))
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        Scratch(dir.join(format!(
            "ecommerce-fuzz-{target}-{}.csv",
            std::process::id()
        )))
    }

    pub fn write(&self, bytes: &[u8]) {
        std::fs::write(&self.0, bytes).expect("writing the scratch file");
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

pub fn xxh3(bytes: &[u8]) -> u64 {
    let mut h = twox_hash::XxHash3_64::default();
    h.write(bytes);
    h.finish()
}

/// LF bytes in `bytes`: the line of offset `o` is `1 + lfs(&file[..o])`.
pub fn lfs(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

pub fn line_at(file: &[u8], off: u64) -> u64 {
    1 + lfs(&file[..off as usize])
}

/// [`line_at`] for growing offsets, counting only the new bytes (a pass stays linear).
struct Lines {
    at: u64,
    line: u64,
}

impl Lines {
    fn at(&mut self, file: &[u8], off: u64) -> u64 {
        assert!(off >= self.at, "offsets go back: {} then {off}", self.at);
        self.line += lfs(&file[self.at as usize..off as usize]);
        self.at = off;
        self.line
    }
}

fn is_break(b: &u8) -> bool {
    *b == b'\r' || *b == b'\n'
}

/// An owned copy of a valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub user_id: String,
    pub event_type: &'static str,
    pub product_id: String,
    pub product_name: String,
    pub product_category: String,
    pub price_cents: i64,
    pub event_timestamp_us: i64,
    pub session_id: String,
    pub device_type: &'static str,
}

impl Row {
    pub fn of(v: &ValidRow<'_>) -> Row {
        Row {
            user_id: v.user_id.into(),
            event_type: v.event_type.as_str(),
            product_id: v.product_id.into(),
            product_name: v.product_name.into(),
            product_category: v.product_category.into(),
            price_cents: v.price.cents(),
            event_timestamp_us: v.event_timestamp_us,
            session_id: v.session_id.into(),
            device_type: v.device_type.as_str(),
        }
    }

    /// The tuple the COPY encoder must produce for this row.
    pub fn tuple(&self, source_file_id: i32, source_line: u64) -> EventTuple {
        EventTuple {
            user_id: self.user_id.clone(),
            event_type: self.event_type.into(),
            product_id: self.product_id.clone(),
            product_name: self.product_name.clone(),
            product_category: self.product_category.clone(),
            price_cents: self.price_cents,
            event_timestamp_us: self.event_timestamp_us,
            session_id: self.session_id.clone(),
            device_type: self.device_type.into(),
            source_file_id,
            source_line: source_line as i64,
        }
    }
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
    pub fn of(r: &Record<'_>) -> Rec {
        Rec {
            line: r.line,
            start: r.start,
            end: r.end,
            terminated: r.terminated,
            got: match &r.outcome {
                Outcome::Valid(v) => Got::Valid(Row::of(v)),
                Outcome::Rejected { error, raw } => Got::Rejected {
                    column: error.column,
                    message: error.message.clone(),
                    raw: raw.clone(),
                },
            },
        }
    }

    /// Rejected because it broke the record cap (bytes or commas).
    pub fn overlong(&self) -> bool {
        matches!(&self.got, Got::Rejected { column: None, message, .. }
            if message.starts_with("the record is longer than")
                || message.starts_with("the record has more than"))
    }
}

/// The most commas a record may hold with a record cap of `cap` (the reader's rule, documented
/// at `EventReader::with_max_record_bytes`).
pub fn max_commas(cap: u64) -> u64 {
    (cap / 8).max(65_536)
}

/// Where the text of the record `[start, end)` stops: before its line terminator.
fn content_stop(file: &[u8], start: u64, end: u64) -> u64 {
    let mut stop = end;
    while stop > start && is_break(&file[stop as usize - 1]) {
        stop -= 1;
    }
    stop
}

/// The settings a pass was made with.
#[derive(Clone, Copy)]
pub struct Caps {
    pub max_record: u64,
    pub raw_cap: usize,
}

/// A whole pass over a file with every check on each record. `reader` was just opened (at the
/// header or a resume point). Returns the records; panics on any broken invariant.
pub fn read_checked(reader: &mut EventReader, file: &[u8], caps: Caps) -> Vec<Rec> {
    let size = file.len() as u64;
    assert_eq!(reader.size(), size);
    let first = reader.position();
    assert!(first.byte <= size, "start {first:?} past the end {size}");
    let mut lines = Lines { at: 0, line: 1 };
    assert_eq!(first.line, lines.at(file, first.byte), "start line");
    let mut out: Vec<Rec> = Vec::new();
    let mut at = first.byte;
    let mut line = first.line;
    while let Some(r) = reader
        .next_record()
        .expect("reading never fails on a regular file")
    {
        let rec = Rec::of(&r);
        drop(r);
        assert!(
            at <= rec.start && rec.start < rec.end && rec.end <= size,
            "offsets: after {at}, {rec:?}, size {size}"
        );
        assert_eq!(rec.line, lines.at(file, rec.start), "line of {rec:?}");
        check_record(file, caps, at, line, &rec);
        let pos = reader.position();
        assert_eq!(pos.byte, rec.end, "position after {rec:?}");
        assert_eq!(
            pos.line,
            lines.at(file, pos.byte),
            "position line after {rec:?}"
        );
        if let Some(prev) = out.last() {
            assert!(
                prev.terminated,
                "a record after an unterminated one: {prev:?}"
            );
        }
        at = rec.end;
        line = rec.line;
        out.push(rec);
    }
    assert!(reader.at_eof());
    assert!(reader.next_record().unwrap().is_none(), "stays at the end");
    // Only line breaks after the last record.
    assert!(
        file[at as usize..].iter().all(is_break),
        "bytes after the last record (from {at}) were never read"
    );
    assert_eq!(reader.content_hash(), Some(xxh3(file)), "content hash");
    let end = reader.position();
    assert_eq!(
        reader.prefix_hash(end.byte).unwrap(),
        xxh3(&file[..end.byte as usize]),
        "prefix hash at the end position {end:?}"
    );
    check_encoding(&out);
    out
}

/// The checks of one record, read after offset `after` (the previous record's end) whose line
/// was `prev_line`.
fn check_record(file: &[u8], caps: Caps, after: u64, prev_line: u64, rec: &Rec) {
    let size = file.len() as u64;
    assert!(
        after <= rec.start && rec.start < rec.end && rec.end <= size,
        "offsets: after {after}, {rec:?}, size {size}"
    );
    assert!(
        file[after as usize..rec.start as usize]
            .iter()
            .all(is_break),
        "only line breaks between records: {after}..{}",
        rec.start
    );
    assert!(
        !is_break(&file[rec.start as usize]),
        "starts at a line break: {rec:?}"
    );
    assert!(
        rec.line >= prev_line,
        "line went back: {prev_line} then {rec:?}"
    );
    if rec.end < size {
        assert!(rec.terminated, "unterminated before the end: {rec:?}");
    }
    if !rec.terminated {
        assert_eq!(rec.end, size, "unterminated, not at the end: {rec:?}");
    }
    let stop = content_stop(file, rec.start, rec.end);
    let text = &file[rec.start as usize..stop as usize];
    if rec.overlong() {
        // Really over a limit: the record as the csv crate reads it from its start (after one
        // newline, as the reader feeds it, so a leading U+FEFF is kept) is longer than the cap
        // or has more commas than allowed.
        let (len, commas) = csv_record_at(file, rec.start, caps.max_record);
        assert!(
            len > caps.max_record || commas > max_commas(caps.max_record),
            "rejected as overlong but {len} bytes, {commas} commas with cap {}: {rec:?}",
            caps.max_record
        );
    } else {
        assert!(
            text.len() as u64 <= caps.max_record,
            "a record of {} bytes passed the cap {}: {rec:?}",
            text.len(),
            caps.max_record
        );
        let commas = text.iter().filter(|&&b| b == b',').count() as u64;
        assert!(commas <= max_commas(caps.max_record));
    }
    match &rec.got {
        Got::Valid(row) => {
            for (c, v) in [
                (Column::UserId, &row.user_id),
                (Column::ProductId, &row.product_id),
                (Column::ProductName, &row.product_name),
                (Column::ProductCategory, &row.product_category),
                (Column::SessionId, &row.session_id),
            ] {
                assert!(!v.is_empty() && !v.contains('\0'), "{c:?} {v:?}");
                assert!(
                    v.chars().count() <= c.max_chars().unwrap(),
                    "{c:?} too long"
                );
            }
            assert!((0..10_000_000_000).contains(&row.price_cents));
        }
        Got::Rejected { raw, .. } => check_raw(text, raw, caps.raw_cap),
    }
}

/// The raw text of a reject: the record's bytes without the terminator, at most `cap` of them,
/// lossy UTF-8 with NUL shown as `\0`, `…` appended when cut.
fn check_raw(text: &[u8], raw: &str, cap: usize) {
    let shown = |b: &[u8]| String::from_utf8_lossy(b).replace('\0', "\\0");
    if text.len() <= cap {
        assert_eq!(raw, shown(text), "raw text of a short record");
    } else {
        let cut = raw.strip_suffix('…').expect("a cut raw text ends with …");
        assert!(
            shown(&text[..cap]).starts_with(cut),
            "raw text {raw:?} is not the start of the record"
        );
        assert!(
            cut.len() <= 3 * cap,
            "raw text {} bytes, cap {cap}",
            raw.len()
        );
    }
}

/// Length (terminator excluded) and commas of the record the csv crate reads at `start`, as far
/// as `cap + 2` bytes: enough to tell whether it is longer than `cap` (and linear over a file).
fn csv_record_at(file: &[u8], start: u64, cap: u64) -> (u64, u64) {
    use std::io::Read;
    let size = file.len() as u64;
    let window_end = start.saturating_add(cap).saturating_add(2).min(size);
    let window = &file[start as usize..window_end as usize];
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader((&b"\n"[..]).chain(window));
    let mut rec = csv::ByteRecord::new();
    assert!(r.read_byte_record(&mut rec).unwrap(), "a record at {start}");
    let end = start + r.position().byte() - 1;
    let stop = if end == window_end && window_end < size {
        // Not ended within the window (or ended by its last byte after cap + 1 bytes): the line
        // breaks at its end may be inside quotes, do not take them for a terminator.
        window_end - 1
    } else {
        content_stop(file, start, end)
    };
    let commas = file[start as usize..stop as usize]
        .iter()
        .filter(|&&b| b == b',')
        .count() as u64;
    (stop - start, commas)
}

/// Every valid row, encoded for COPY in one stream, decodes back to its values.
pub fn check_encoding(recs: &[Rec]) {
    let mut rows = Vec::new();
    for r in recs {
        if let Got::Valid(row) = &r.got {
            rows.push((row, r.line));
        }
    }
    let mut enc = CopyEncoder::new();
    let mut expect = Vec::new();
    for (i, (row, line)) in rows.iter().enumerate() {
        // Encode from a ValidRow borrowing the owned copy, as the reader hands them out.
        let v = ValidRow {
            user_id: &row.user_id,
            event_type: ecommerce_events::EventType::parse(row.event_type.as_bytes()).unwrap(),
            product_id: &row.product_id,
            product_name: &row.product_name,
            product_category: &row.product_category,
            price: ecommerce_events::Price(row.price_cents),
            event_timestamp_us: row.event_timestamp_us,
            session_id: &row.session_id,
            device_type: ecommerce_events::DeviceType::parse(row.device_type.as_bytes()).unwrap(),
        };
        enc.push(&v, i as i32, *line);
        expect.push(row.tuple(-5, *line));
    }
    enc.set_source_file_id(-5);
    let got = decode_events(enc.finish()).expect("the COPY stream decodes");
    assert_eq!(got, expect, "COPY round trip");
    let mut one = Vec::new();
    for (i, t) in expect.iter().enumerate() {
        enc.single(i, &mut one);
        assert_eq!(
            decode_events(&one).unwrap(),
            vec![t.clone()],
            "single tuple {i}"
        );
    }
}

/// The same file read by the csv crate in one plain pass (no cap): each record's normalized
/// start (csv reports the end of the previous record: blank lines and the LF of a CRLF come
/// first), its line, its end (the LF of a CRLF included) and its fields. The first is the header.
pub struct Oracle {
    pub records: Vec<(u64, u64, u64, csv::ByteRecord)>,
}

pub fn oracle(file: &[u8]) -> Oracle {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(file);
    let mut records = Vec::new();
    let mut rec = csv::ByteRecord::new();
    while r
        .read_byte_record(&mut rec)
        .expect("byte records never fail")
    {
        let p = rec.position().unwrap();
        let (mut start, mut line) = (p.byte(), p.line());
        while (start as usize) < file.len() && is_break(&file[start as usize]) {
            line += (file[start as usize] == b'\n') as u64;
            start += 1;
        }
        let mut end = r.position().byte();
        if end > 0 && file[end as usize - 1] == b'\r' && file.get(end as usize) == Some(&b'\n') {
            end += 1;
        }
        records.push((start, line, end, rec.clone()));
    }
    Oracle { records }
}

/// The reader's records (`recs`, from the header on, none overlong) are the csv crate's: same
/// starts, lines and ends, and each outcome is what validation makes of the csv crate's fields.
pub fn compare_with_oracle(file: &[u8], map: &HeaderMap, header_end: u64, recs: &[Rec]) {
    let o = oracle(file);
    let (_, _, h_end, header) = o.records.first().expect("a header record");
    assert_eq!(*h_end, header_end, "end of the header");
    assert_eq!(header.len(), map.width());
    let rest = &o.records[1..];
    assert_eq!(recs.len(), rest.len(), "record count");
    for (mine, (start, line, end, fields)) in recs.iter().zip(rest) {
        assert_eq!(
            (mine.start, mine.line, mine.end),
            (*start, *line, *end),
            "position of {mine:?} vs csv {fields:?}"
        );
        let want = if fields.len() != map.width() {
            None
        } else {
            Some(validate(fields, map).map(|v| Row::of(&v)))
        };
        match (&mine.got, want) {
            (Got::Valid(row), Some(Ok(w))) => assert_eq!(row, &w),
            (
                Got::Rejected {
                    column, message, ..
                },
                Some(Err(e)),
            ) => {
                assert_eq!((*column, message), (e.column, &e.message))
            }
            (
                Got::Rejected {
                    column: None,
                    message,
                    ..
                },
                None,
            ) => assert!(
                message.starts_with(&format!(
                    "expected {} fields as in the header, found {}",
                    map.width(),
                    fields.len()
                )),
                "{message}"
            ),
            (got, want) => panic!("reader {got:?}, csv + validate {want:?}"),
        }
    }
}
