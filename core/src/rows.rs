//! Reading one input file as rows for `COPY … (FORMAT text)`: CSV/TSV or NDJSON records with
//! their exact first line and byte range in the decompressed stream, resumable from a committed
//! offset (checked against the hash of the committed bytes), with a cap on a record's length,
//! each row either encoded as one COPY text line or rejected with a reason.

use crate::compression::{self, Compression};
use crate::csv::{self as csvsm, Dialect, FieldSpan, ScanState, Scanner};
use crate::fsopen::{open_regular, open_regular_within};
use crate::mapping::{self, MappingError, NdjsonColumns, Resolved, TargetColumn};
use crate::options::{ColumnMapping, Encoding, Format, PipelineOptions};
use crate::shown::{bytes_excerpt, excerpt, quoted_list};
use crate::source::{Source, READ_SIZE};
use crate::textcopy;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Where to continue reading: the decompressed offset of the next record and its line
/// (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resume {
    pub byte: u64,
    pub line: u64,
}

/// Bytes of an overlong record kept as its raw text.
pub const RAW_CAP: usize = 4096;

/// Most fields of a header.
pub const HEADER_FIELDS_MAX: usize = 10_000;

/// Default cap on a record's length (bytes, line terminator excluded).
pub const MAX_RECORD_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;

/// Most distinct unmapped NDJSON keys remembered for [`RowReader::extra_columns`].
const EXTRA_KEYS_MAX: usize = 100;
/// Most NDJSON keys whose lookup is cached, and most key sets whose column list is cached.
const KEY_CACHE_MAX: usize = 4096;
const KEY_SETS_MAX: usize = 256;

#[derive(Debug)]
pub enum OpenError {
    /// Could not open or read (often transient; permissions, a file removed), or not a regular
    /// file (kind `InvalidInput`, "not a regular file (FIFO); never read"), or a corrupt
    /// archive (kind `InvalidData`).
    Io(io::Error),
    /// The file has no bytes (or, with a header expected, only blank lines).
    Empty,
    /// The header is unusable: the file fails as a whole.
    Header(String),
    /// The file's columns do not fit the table.
    Mapping(MappingError),
    /// The bytes before the resume offset are not the committed ones: never append another
    /// file's rows to the committed ones.
    Changed(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "cannot read the file: {}", excerpt(&e.to_string(), 300)),
            OpenError::Empty => f.write_str("the file is empty"),
            OpenError::Header(s) => write!(f, "unusable header: {s}"),
            OpenError::Mapping(e) => e.fmt(f),
            OpenError::Changed(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

impl From<MappingError> for OpenError {
    fn from(e: MappingError) -> Self {
        OpenError::Mapping(e)
    }
}

#[derive(Debug)]
pub enum RowOutcome<'a> {
    /// `text` is one COPY text line (with its `\n`) for the columns `columns`.
    Valid {
        columns: &'a Arc<[String]>,
        text: &'a [u8],
    },
    Rejected {
        column: Option<String>,
        reason: String,
    },
}

#[derive(Debug)]
pub struct Record<'a> {
    /// Line where the record starts (every physical line counts, the header's too).
    pub line: u64,
    /// Decompressed offset of the record's first byte, and just past its line terminator.
    pub start: u64,
    pub end: u64,
    /// False for a last record that no newline ends.
    pub terminated: bool,
    /// The record's bytes without the line terminator; for a record over the length cap, only
    /// its first [`RAW_CAP`] bytes.
    pub raw: &'a [u8],
    pub outcome: RowOutcome<'a>,
}

/// A found record (not consumed) or a skipped overlong one (consumed).
enum Frame {
    Eof,
    Rec {
        content: usize,
        total: usize,
        terminated: bool,
        open_quote: bool,
        lfs: u64,
    },
    Overlong {
        total: u64,
        lfs: u64,
        terminated: bool,
    },
}

struct CsvPart {
    dialect: Dialect,
    null: Vec<u8>,
    resolved: Resolved,
    /// Where the expected field count comes from, for messages.
    fields_origin: &'static str,
    spans: Vec<FieldSpan>,
    decoded: Vec<u8>,
}

struct NdPart {
    cols: NdjsonColumns,
    target: Vec<TargetColumn>,
    scratch: Vec<u8>,
    key_cache: HashMap<Box<str>, Option<Option<usize>>>,
    last_set: Vec<usize>,
    sets: HashMap<Vec<usize>, Arc<[String]>>,
    extra: Vec<String>,
}

enum Part {
    Csv(CsvPart),
    Ndjson(NdPart),
}

pub struct RowReader {
    src: Source,
    scanner: Scanner,
    part: Part,
    latin1: bool,
    /// Line of the next unread byte.
    line: u64,
    text: Vec<u8>,
    raw_keep: Vec<u8>,
    columns: Arc<[String]>,
    max_record: u64,
    max_buf: usize,
    compression: Compression,
    eof: bool,
    content: Option<u64>,
}

fn frame(
    src: &mut Source,
    scanner: &Scanner,
    max_record: u64,
    max_buf: usize,
    raw_keep: &mut Vec<u8>,
) -> io::Result<Frame> {
    let mut st = ScanState::default();
    loop {
        let data = src.data();
        let found = scanner.find_end(data, &mut st);
        let (content, total, terminated) = match found {
            Some(i) => (i, i + 1, true),
            None if src.stream_ended() => {
                if data.is_empty() {
                    return Ok(Frame::Eof);
                }
                (data.len(), data.len(), false)
            }
            None => {
                if data.len() as u64 > max_record.saturating_add(2) {
                    return skip_overlong(src, scanner, st, max_buf, raw_keep);
                }
                if src.fill(max_buf)? == 0 && !src.stream_ended() {
                    // The buffer cannot grow: treat the record as overlong.
                    return skip_overlong(src, scanner, st, max_buf, raw_keep);
                }
                continue;
            }
        };
        let content = if content > 0 && data[content - 1] == b'\r' {
            content - 1
        } else {
            content
        };
        let lfs = st.quoted_newlines + terminated as u64;
        if content as u64 > max_record {
            raw_keep.clear();
            raw_keep.extend_from_slice(&data[..content.min(RAW_CAP)]);
            src.consume(total);
            return Ok(Frame::Overlong {
                total: total as u64,
                lfs,
                terminated,
            });
        }
        return Ok(Frame::Rec {
            content,
            total,
            terminated,
            open_quote: st.in_quote,
            lfs,
        });
    }
}

/// Skips a record past the cap up to its end, keeping its first bytes, in bounded memory.
/// The bytes kept are the record's first [`RAW_CAP`] bytes without its terminator (a CR before
/// the newline, or at the end of the file, is not kept), however the stream's reads fall.
fn skip_overlong(
    src: &mut Source,
    scanner: &Scanner,
    mut st: ScanState,
    max_buf: usize,
    raw_keep: &mut Vec<u8>,
) -> io::Result<Frame> {
    raw_keep.clear();
    src.pin_mark();
    let mut total = 0u64;
    // The record's last byte before its newline (or the end of the file).
    let mut last = 0u8;
    loop {
        let data = src.data();
        let found = scanner.find_end(data, &mut st);
        let upto = found.unwrap_or(data.len());
        // One byte more than kept: the last one may be a CR that is the terminator's.
        let room = (RAW_CAP + 1).saturating_sub(raw_keep.len());
        raw_keep.extend_from_slice(&data[..upto.min(room)]);
        if upto > 0 {
            last = data[upto - 1];
        }
        if let Some(i) = found {
            src.consume(i + 1);
            total += i as u64 + 1;
            keep_content(raw_keep, total - 1, last);
            return Ok(Frame::Overlong {
                total,
                lfs: st.quoted_newlines + 1,
                terminated: true,
            });
        }
        let n = data.len();
        src.consume(n);
        total += n as u64;
        st.scanned = 0;
        src.mark_here();
        if src.stream_ended() {
            keep_content(raw_keep, total, last);
            return Ok(Frame::Overlong {
                total,
                lfs: st.quoted_newlines,
                terminated: false,
            });
        }
        src.fill(max_buf)?;
    }
}

/// Cuts the first bytes of a record of `len` bytes before its newline whose last byte is
/// `last` to the record's content (no CR of the terminator), at most [`RAW_CAP`] bytes.
fn keep_content(raw_keep: &mut Vec<u8>, len: u64, last: u8) {
    let content = len - (last == b'\r') as u64;
    raw_keep.truncate(usize::try_from(content).unwrap_or(usize::MAX).min(RAW_CAP));
}

fn is_blank(rec: &[u8], ndjson: bool) -> bool {
    if ndjson {
        rec.iter().all(|b| b.is_ascii_whitespace())
    } else {
        rec.is_empty()
    }
}

/// Why `bytes` are not UTF-8 (the first bad byte, where, an excerpt), `None` if they are.
fn utf8_problem(bytes: &[u8]) -> Option<String> {
    let e = std::str::from_utf8(bytes).err()?;
    let at = e.valid_up_to();
    Some(format!(
        "invalid UTF-8 byte 0x{:02X} at byte {} in {:?}; if the file is Latin-1, set \
         \"encoding\": \"LATIN1\"",
        bytes[at],
        at + 1,
        bytes_excerpt(bytes, 60)
    ))
}

impl RowReader {
    /// Opens `path` (never following a symlink; only a regular file), decompresses it (by
    /// `opts.compression`), reads the header (CSV/TSV with a header), resolves the columns and
    /// positions the reader at `resume` (or at the first record). When resuming, the bytes
    /// before `resume.byte` are read again (hashed, not parsed): if the file is now shorter,
    /// or (with `expect_prefix`) they hash differently, it fails with
    /// [`OpenError::Changed`]. The line of the next record is counted from the file itself
    /// (`resume.line` is not needed). `max_record_bytes`: longest record accepted (line
    /// terminator excluded); a longer one is rejected and skipped.
    pub fn open(
        path: &Path,
        opts: &PipelineOptions,
        target: &[TargetColumn],
        resume: Option<Resume>,
        expect_prefix: Option<u64>,
        max_record_bytes: u64,
    ) -> Result<RowReader, OpenError> {
        Self::open_within(
            path,
            None,
            opts,
            target,
            resume,
            expect_prefix,
            max_record_bytes,
        )
    }

    /// As [`RowReader::open`]; with `roots`, the file must really be inside one of them once
    /// open (see [`open_regular_within`]), else an `Io` error of kind `PermissionDenied`.
    pub fn open_within(
        path: &Path,
        roots: Option<&[std::path::PathBuf]>,
        opts: &PipelineOptions,
        target: &[TargetColumn],
        resume: Option<Resume>,
        expect_prefix: Option<u64>,
        max_record_bytes: u64,
    ) -> Result<RowReader, OpenError> {
        let file = match roots {
            Some(roots) => open_regular_within(path, roots)?,
            None => open_regular(path)?,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let compression = opts.compression.for_file(&name);
        let stream = compression::decompress(file, compression)?;
        let resuming = resume.map_or(0, |r| r.byte);
        match Self::start(
            Source::new(stream),
            compression,
            opts,
            target,
            max_record_bytes,
        ) {
            Ok(mut r) => {
                if resuming > 0 {
                    r.skip_to(resuming, expect_prefix)?;
                }
                Ok(r)
            }
            Err(OpenError::Empty) if resuming > 0 => Err(OpenError::Changed(format!(
                "the file changed since rows up to byte {resuming} were committed: it is now \
                 empty; it is not resumed"
            ))),
            Err(OpenError::Header(h)) if resuming > 0 => Err(OpenError::Changed(format!(
                "the file changed since rows up to byte {resuming} were committed: its header \
                 is now unusable ({h}); it is not resumed"
            ))),
            Err(e) => Err(e),
        }
    }

    fn start(
        src: Source,
        compression: Compression,
        opts: &PipelineOptions,
        target: &[TargetColumn],
        max_record: u64,
    ) -> Result<RowReader, OpenError> {
        let max_record = max_record.max(1);
        let max_buf = usize::try_from(max_record)
            .unwrap_or(usize::MAX)
            .saturating_add(2 + READ_SIZE)
            .max(READ_SIZE);
        let (scanner, part) = match &opts.format {
            Format::Csv(c) => {
                let d = Dialect::of(c);
                (
                    Scanner::csv(&d),
                    Part::Csv(CsvPart {
                        dialect: d,
                        null: c.null.as_bytes().to_vec(),
                        resolved: Resolved {
                            copy_columns: Vec::new(),
                            source_fields: Vec::new(),
                            extra: Vec::new(),
                            expected_fields: 0,
                        },
                        fields_origin: "",
                        spans: Vec::new(),
                        decoded: Vec::new(),
                    }),
                )
            }
            Format::Ndjson => (
                Scanner::Lines,
                Part::Ndjson(NdPart {
                    cols: mapping::ndjson_columns(target, &opts.mapping)?,
                    target: target.to_vec(),
                    scratch: Vec::new(),
                    key_cache: HashMap::new(),
                    last_set: Vec::new(),
                    sets: HashMap::new(),
                    extra: Vec::new(),
                }),
            ),
        };
        let mut r = RowReader {
            src,
            scanner,
            part,
            latin1: opts.encoding() == Encoding::Latin1,
            line: 1,
            text: Vec::with_capacity(64 * 1024),
            raw_keep: Vec::new(),
            columns: Arc::from(Vec::new()),
            max_record,
            max_buf,
            compression,
            eof: false,
            content: None,
        };
        if r.src.data().is_empty() {
            r.src.fill(max_buf)?;
        }
        if r.src.data().is_empty() && r.src.stream_ended() {
            return Err(OpenError::Empty);
        }
        if let Format::Csv(c) = &opts.format {
            let header = if c.header {
                Some(r.read_header()?)
            } else {
                None
            };
            let resolved = mapping::resolve(header.as_deref(), &opts.mapping, target)?;
            r.columns = Arc::from(resolved.copy_columns.clone());
            if let Part::Csv(p) = &mut r.part {
                p.fields_origin = if c.header {
                    "as in the header"
                } else if matches!(opts.mapping, ColumnMapping::Positional(Some(_))) {
                    "as in the \"columns\" option"
                } else {
                    "as the table's insertable columns"
                };
                p.resolved = resolved;
            }
        }
        Ok(r)
    }

    /// Reads the header record (blank lines before it skipped).
    fn read_header(&mut self) -> Result<Vec<String>, OpenError> {
        let Part::Csv(p) = &mut self.part else {
            return Err(OpenError::Header("not a CSV file".into()));
        };
        loop {
            self.src.mark_here();
            match frame(
                &mut self.src,
                &self.scanner,
                self.max_record,
                self.max_buf,
                &mut self.raw_keep,
            )? {
                Frame::Eof => return Err(OpenError::Empty),
                Frame::Overlong { .. } => {
                    return Err(OpenError::Header(format!(
                        "the header line is longer than the maximum record size of {} bytes \
                         (is this a CSV file?)",
                        self.max_record
                    )))
                }
                Frame::Rec {
                    content,
                    total,
                    open_quote,
                    lfs,
                    ..
                } => {
                    let rec = &self.src.data()[..content];
                    if is_blank(rec, false) {
                        self.src.consume(total);
                        self.line += lfs;
                        continue;
                    }
                    if open_quote {
                        return Err(OpenError::Header(
                            "the file ends inside a quoted header field (unterminated quote)"
                                .into(),
                        ));
                    }
                    let n = csvsm::split(
                        &p.dialect,
                        rec,
                        &mut p.spans,
                        &mut p.decoded,
                        HEADER_FIELDS_MAX,
                    )
                    .map_err(|u| {
                        OpenError::Header(format!(
                            "header field {} has an unterminated quote",
                            u.field + 1
                        ))
                    })?;
                    if n > HEADER_FIELDS_MAX {
                        return Err(OpenError::Header(format!(
                            "the header has {n} fields, more than the {HEADER_FIELDS_MAX} \
                             accepted"
                        )));
                    }
                    let mut names = Vec::with_capacity(n);
                    for (i, s) in p.spans.iter().enumerate() {
                        let b = s.bytes(rec, &p.decoded);
                        if self.latin1 {
                            names.push(textcopy::latin1_to_string(b));
                        } else {
                            match std::str::from_utf8(b) {
                                Ok(t) => names.push(t.to_string()),
                                Err(_) => {
                                    return Err(OpenError::Header(format!(
                                        "header field {} is not valid UTF-8: {}",
                                        i + 1,
                                        utf8_problem(b).unwrap_or_default()
                                    )))
                                }
                            }
                        }
                    }
                    self.src.consume(total);
                    self.line += lfs;
                    self.src.mark_here();
                    return Ok(names);
                }
            }
        }
    }

    /// Hashes the bytes up to `byte` without parsing them and checks them.
    fn skip_to(&mut self, byte: u64, expect_prefix: Option<u64>) -> Result<(), OpenError> {
        let changed = |what: String| {
            OpenError::Changed(format!(
                "the file changed since rows up to byte {byte} were committed: {what}; it is \
                 not resumed"
            ))
        };
        if byte < self.src.offset() {
            return Err(changed(format!(
                "that offset is inside the header, which ends at byte {}",
                self.src.offset()
            )));
        }
        let mut lfs = 0u64;
        while self.src.offset() < byte {
            let data = self.src.data();
            if data.is_empty() {
                if self.src.stream_ended() {
                    return Err(changed(format!(
                        "it is now only {} bytes long (decompressed)",
                        self.src.offset()
                    )));
                }
                self.src.mark_here();
                self.src.fill(self.max_buf)?;
                continue;
            }
            let n = (data.len() as u64).min(byte - self.src.offset()) as usize;
            lfs += data[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            self.src.consume(n);
        }
        self.src.mark_here();
        if let Some(expected) = expect_prefix {
            let found = self.src.prefix_hash();
            if found != expected {
                return Err(changed(format!(
                    "the first {byte} bytes no longer hash to {expected:016x} (now {found:016x})"
                )));
            }
        }
        self.line += lfs;
        Ok(())
    }

    /// The next record, `None` at the end of the file. An `Err` is a read error (a corrupt or
    /// truncated archive among them): the reader is done.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        if self.eof {
            return Ok(None);
        }
        self.src.mark_here();
        let ndjson = matches!(self.part, Part::Ndjson(_));
        loop {
            let start = self.src.offset();
            let line = self.line;
            match frame(
                &mut self.src,
                &self.scanner,
                self.max_record,
                self.max_buf,
                &mut self.raw_keep,
            )? {
                Frame::Eof => {
                    self.eof = true;
                    self.content = self.src.content_hash();
                    return Ok(None);
                }
                Frame::Overlong {
                    total,
                    lfs,
                    terminated,
                } => {
                    self.line += lfs;
                    return Ok(Some(Record {
                        line,
                        start,
                        end: start + total,
                        terminated,
                        raw: &self.raw_keep,
                        outcome: RowOutcome::Rejected {
                            column: None,
                            reason: format!(
                                "the record is {total} bytes long, more than the maximum record \
                                 size of {} bytes; it was skipped (raise \
                                 ecommerce_ingest.max_record_size if it is real data)",
                                self.max_record
                            ),
                        },
                    }));
                }
                Frame::Rec {
                    content,
                    total,
                    terminated,
                    open_quote,
                    lfs,
                } => {
                    if is_blank(&self.src.data()[..content], ndjson) {
                        self.src.consume(total);
                        self.line += lfs;
                        self.src.mark_here();
                        continue;
                    }
                    self.src.mark_at(start);
                    let rejected = self.process(content, terminated, open_quote, line);
                    self.src.consume(total);
                    self.line += lfs;
                    let raw = self.src.recent(total, content);
                    let outcome = match rejected {
                        None => RowOutcome::Valid {
                            columns: &self.columns,
                            text: &self.text,
                        },
                        Some((column, reason)) => RowOutcome::Rejected { column, reason },
                    };
                    return Ok(Some(Record {
                        line,
                        start,
                        end: start + total as u64,
                        terminated,
                        raw,
                        outcome,
                    }));
                }
            }
        }
    }

    /// Encodes the record `data()[..content]` into `self.text`; `Some((column, reason))` if
    /// it is rejected.
    fn process(
        &mut self,
        content: usize,
        terminated: bool,
        open_quote: bool,
        line: u64,
    ) -> Option<(Option<String>, String)> {
        let rec = &self.src.data()[..content];
        self.text.clear();
        match &mut self.part {
            Part::Csv(p) => {
                if open_quote {
                    return Some((
                        None,
                        format!(
                            "unterminated quoted field: the file ends inside a quoted field of \
                             the record that starts on line {line}"
                        ),
                    ));
                }
                encode_csv(p, rec, self.latin1, terminated, &mut self.text)
            }
            Part::Ndjson(p) => {
                encode_ndjson(p, rec, self.latin1, &mut self.text, &mut self.columns).err()
            }
        }
    }

    /// Where the next record starts: what to commit after the records returned so far.
    pub fn position(&self) -> Resume {
        Resume {
            byte: self.src.offset(),
            line: self.line,
        }
    }

    /// True once the end of the file was reached.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// XXH3-64 of the decompressed bytes before [`RowReader::position`] (to record with a
    /// commit there). Hashing is lazy: this hashes the bytes not hashed yet, once.
    pub fn prefix_hash(&mut self) -> u64 {
        self.src.prefix_hash()
    }

    /// XXH3-64 of the bytes before `offset`, for `offset` from the start of the last record
    /// returned to [`RowReader::position`] (so a batch can be committed just before a record
    /// that starts the next one); offsets asked only grow. `None` for an offset out of reach.
    pub fn prefix_hash_at(&mut self, offset: u64) -> Option<u64> {
        self.src.prefix_hash_at(offset)
    }

    /// XXH3-64 of the whole decompressed content, once the end was reached.
    pub fn content_hash(&self) -> Option<u64> {
        self.content
    }

    /// File columns ignored: for CSV/TSV from the header (or skipped positions); for NDJSON the
    /// first distinct keys seen that map to no column (at most 100).
    pub fn extra_columns(&self) -> &[String] {
        match &self.part {
            Part::Csv(p) => &p.resolved.extra,
            Part::Ndjson(p) => &p.extra,
        }
    }

    /// The COPY column list of a CSV/TSV file (empty for NDJSON: see each row's columns).
    pub fn copy_columns(&self) -> &[String] {
        match &self.part {
            Part::Csv(p) => &p.resolved.copy_columns,
            Part::Ndjson(_) => &[],
        }
    }

    /// The resolved mapping of a CSV/TSV file.
    pub fn resolved(&self) -> Option<&Resolved> {
        match &self.part {
            Part::Csv(p) => Some(&p.resolved),
            Part::Ndjson(_) => None,
        }
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Size of the read buffer now (bounded by the record cap plus one read).
    pub fn buffer_len(&self) -> usize {
        self.src.buffer_len()
    }
}

fn encode_csv(
    p: &mut CsvPart,
    rec: &[u8],
    latin1: bool,
    terminated: bool,
    text: &mut Vec<u8>,
) -> Option<(Option<String>, String)> {
    let expected = p.resolved.expected_fields;
    let n = match csvsm::split(&p.dialect, rec, &mut p.spans, &mut p.decoded, expected + 1) {
        Ok(n) => n,
        Err(u) => {
            return Some((
                None,
                format!("field {} has an unterminated quote", u.field + 1),
            ))
        }
    };
    if n != expected {
        return Some((
            None,
            format!(
                "expected {expected} field{} {}, found {n}{}",
                if expected == 1 { "" } else { "s" },
                p.fields_origin,
                if n < expected && !terminated {
                    " (truncated last line?)"
                } else {
                    ""
                }
            ),
        ));
    }
    let cols = &p.resolved.copy_columns;
    let fields = &p.resolved.source_fields;
    if !latin1 && std::str::from_utf8(rec).is_err() {
        for (j, &f) in fields.iter().enumerate() {
            if let Some(problem) = utf8_problem(p.spans[f].bytes(rec, &p.decoded)) {
                return Some((
                    Some(cols[j].clone()),
                    format!("column \"{}\" (field {}): {problem}", cols[j], f + 1),
                ));
            }
        }
    }
    if rec.contains(&0) {
        for (j, &f) in fields.iter().enumerate() {
            if p.spans[f].bytes(rec, &p.decoded).contains(&0) {
                return Some((
                    Some(cols[j].clone()),
                    format!(
                        "column \"{}\" (field {}) contains a NUL byte (0x00), which PostgreSQL \
                         text cannot store",
                        cols[j],
                        f + 1
                    ),
                ));
            }
        }
    }
    for (j, &f) in fields.iter().enumerate() {
        if j > 0 {
            text.push(b'\t');
        }
        let s = p.spans[f];
        let b = s.bytes(rec, &p.decoded);
        if !s.decoded && b == p.null.as_slice() {
            text.extend_from_slice(textcopy::NULL);
        } else if latin1 {
            textcopy::escape_latin1_into(text, b);
        } else {
            textcopy::escape_into(text, b);
        }
    }
    text.push(b'\n');
    None
}

/// What a JSON value is, from its text.
fn json_kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

fn encode_ndjson(
    p: &mut NdPart,
    rec: &[u8],
    latin1: bool,
    text: &mut Vec<u8>,
    columns: &mut Arc<[String]>,
) -> Result<(), (Option<String>, String)> {
    let bytes = if latin1 {
        p.scratch.clear();
        textcopy::latin1_to_utf8(&mut p.scratch, rec);
        &p.scratch[..]
    } else {
        rec
    };
    // Values are kept as their text (see textcopy::encode_raw_json), keys in sorted order.
    let value: &RawValue =
        serde_json::from_slice(bytes).map_err(|e| (None, format!("not valid JSON: {e}")))?;
    if !value.get().starts_with('{') {
        return Err((
            None,
            format!(
                "expected a JSON object {{\"column\": value, …}} per line, found {}",
                json_kind(value)
            ),
        ));
    }
    let map: BTreeMap<String, &RawValue> =
        serde_json::from_str(value.get()).map_err(|e| (None, format!("not valid JSON: {e}")))?;
    let mut pairs: Vec<(usize, &str, &RawValue)> = Vec::with_capacity(map.len());
    for (k, v) in &map {
        let hit = match p.key_cache.get(k.as_str()) {
            Some(h) => *h,
            None => {
                let h = p.cols.lookup(k);
                if p.key_cache.len() < KEY_CACHE_MAX {
                    p.key_cache.insert(k.as_str().into(), h);
                }
                if h.is_none() && p.extra.len() < EXTRA_KEYS_MAX && !p.extra.contains(k) {
                    p.extra.push(k.clone());
                }
                h
            }
        };
        if let Some(Some(t)) = hit {
            pairs.push((t, k, v));
        }
    }
    pairs.sort_by_key(|x| x.0);
    for w in pairs.windows(2) {
        if w[0].0 == w[1].0 {
            let col = &p.target[w[0].0].name;
            return Err((
                Some(col.clone()),
                format!(
                    "keys \"{}\" and \"{}\" both go to column \"{col}\"",
                    excerpt(w[0].1, 64),
                    excerpt(w[1].1, 64)
                ),
            ));
        }
    }
    if pairs.is_empty() {
        let keys: Vec<&String> = map.keys().collect();
        return Err((
            None,
            format!(
                "no key of the object matches a table column (keys: {})",
                quoted_list(keys)
            ),
        ));
    }
    let missing: Vec<&str> = p
        .cols
        .required
        .iter()
        .filter(|&&t| {
            pairs
                .binary_search_by_key(&t, |x| x.0)
                .map_or(true, |i| pairs[i].2.get() == "null")
        })
        .map(|&t| p.target[t].name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err((
            Some(missing[0].to_string()),
            format!(
                "required column{} {} (NOT NULL without default) {} missing or null",
                if missing.len() > 1 { "s" } else { "" },
                quoted_list(&missing),
                if missing.len() > 1 { "are" } else { "is" }
            ),
        ));
    }
    for (i, (t, _, v)) in pairs.iter().enumerate() {
        if i > 0 {
            text.push(b'\t');
        }
        let col = &p.target[*t];
        if let Err(e) = textcopy::encode_raw_json(text, v, col.kind) {
            return Err((
                Some(col.name.clone()),
                format!("column \"{}\": {}", col.name, e.0),
            ));
        }
    }
    text.push(b'\n');
    let same = p.last_set.len() == pairs.len()
        && p.last_set.iter().zip(&pairs).all(|(a, b)| *a == b.0)
        && !columns.is_empty();
    if !same {
        p.last_set.clear();
        p.last_set.extend(pairs.iter().map(|x| x.0));
        let arc = match p.sets.get(&p.last_set) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<[String]> = pairs.iter().map(|x| p.target[x.0].name.clone()).collect();
                if p.sets.len() >= KEY_SETS_MAX {
                    p.sets.clear();
                }
                p.sets.insert(p.last_set.clone(), a.clone());
                a
            }
        };
        *columns = arc;
    }
    Ok(())
}
