//! `ingest_core`'s RowReader on arbitrary bytes as a CSV, TSV or NDJSON file, plain, gzip- or
//! zstd-compressed here, or raw bytes named `.gz`/`.zst` (garbage to the decoder), with the
//! options (delimiter, quote, escape, header, null string, Latin-1, compression) and a small
//! record cap drawn from the input (fuzz/src/ingest.rs), read into a fixed list of table
//! columns. Opening never panics and a refused file's message is short. Every record: offsets
//! strictly increase and stay within the decompressed bytes, only blank lines lie between
//! records; line numbers never decrease and are exact (1 + LFs before the record); the position
//! and prefix hash after it are its end and the XXH3-64 of the bytes before; raw text is the
//! record's; no record over the cap gets through; a valid row's COPY text line is UTF-8 without
//! NUL, ends with its one unescaped newline and decodes (`textcopy::decode_line`) to one value
//! per column (and, without quoting, to the fields split at the delimiter). A read error only
//! comes from an archive that does not decode; the end gives the content hash. The read buffer
//! stays within the record cap plus one read. Resuming at each record boundary seen (at most 65
//! of them) with the prefix hash there gives exactly the remaining records and the same end;
//! a wrong prefix hash is refused.
#![no_main]

use ecommerce_events_fuzz::ingest::{
    check_message, target_columns, Out, OwnedRecord, RowsInput, ScratchDir,
};
use ecommerce_events_fuzz::{lfs, xxh3};
use ingest_core::rows::{OpenError, Resume, RowReader, RAW_CAP};
use ingest_core::source::READ_SIZE;
use ingest_core::textcopy::{decode_line, latin1_to_utf8};
use ingest_core::{ColumnMapping, Format, PipelineOptions, TargetColumn};
use libfuzzer_sys::fuzz_target;
use std::hash::Hasher;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

static SCRATCH: OnceLock<ScratchDir> = OnceLock::new();

/// Resume points tried per input at most (evenly spread, the last one always).
const MAX_RESUMES: usize = 64;

/// What a file is read against.
struct Ctx<'a> {
    path: &'a Path,
    opts: &'a PipelineOptions,
    target: &'a [TargetColumn],
    cap: u64,
    /// The decompressed bytes the reader should see, and whether all of the stream decodes.
    plain: &'a [u8],
    decodes: bool,
}

/// One pass: where it started, the boundaries (position and prefix hash before each record and
/// after the last), the records, and how it ended (`Err`: the error's kind).
struct Pass {
    boundaries: Vec<(Resume, u64)>,
    records: Vec<OwnedRecord>,
    end: Result<(), io::ErrorKind>,
}

/// [`lfs`] and XXH3-64 of a growing prefix of the bytes, fed only the new bytes.
struct Prefix<'a> {
    plain: &'a [u8],
    at: u64,
    line: u64,
    hasher: twox_hash::XxHash3_64,
}

impl<'a> Prefix<'a> {
    fn new(plain: &'a [u8]) -> Self {
        Prefix {
            plain,
            at: 0,
            line: 1,
            hasher: Default::default(),
        }
    }

    /// Line of offset `off` (≥ the last one asked).
    fn line(&mut self, off: u64) -> u64 {
        assert!(off >= self.at, "offsets go back: {} then {off}", self.at);
        assert!(
            off <= self.plain.len() as u64,
            "offset {off} past the {} bytes the decoder gives",
            self.plain.len()
        );
        let new = &self.plain[self.at as usize..off as usize];
        self.line += lfs(new);
        self.hasher.write(new);
        self.at = off;
        self.line
    }

    /// XXH3-64 of the bytes before the last offset asked.
    fn hash(&self) -> u64 {
        self.hasher.finish()
    }
}

fn blank_csv_line(l: &[u8]) -> bool {
    l == b"\n" || l == b"\r\n"
}

fn blank_ndjson_line(l: &[u8]) -> bool {
    l.last() == Some(&b'\n') && l.iter().all(u8::is_ascii_whitespace)
}

fn open(ctx: &Ctx, at: Option<(Resume, u64)>) -> Result<RowReader, OpenError> {
    RowReader::open(
        ctx.path,
        ctx.opts,
        ctx.target,
        at.map(|a| a.0),
        at.map(|a| a.1),
        ctx.cap,
    )
}

/// Reads every record of `r` (just opened) with every check.
fn read_checked(ctx: &Ctx, r: &mut RowReader) -> Pass {
    let plain = ctx.plain;
    let ndjson = matches!(ctx.opts.format, Format::Ndjson);
    let mut prefix = Prefix::new(plain);
    let first = r.position();
    assert_eq!(first.line, prefix.line(first.byte), "line at {first:?}");
    let h = r.prefix_hash();
    assert_eq!(h, prefix.hash(), "prefix hash at the start {first:?}");
    let mut boundaries = vec![(first, h)];
    let mut records: Vec<OwnedRecord> = Vec::new();
    let max_buf = ctx.cap as usize + 2 + READ_SIZE;
    let end = loop {
        let rec = match r.next_record() {
            Ok(Some(rec)) => OwnedRecord::of(&rec),
            Ok(None) => {
                assert!(ctx.decodes, "a clean end of a stream that does not decode");
                let pos = r.position();
                assert_eq!(pos.byte, plain.len() as u64, "the end is not at the end");
                let (last, _) = *boundaries.last().unwrap();
                let tail = &plain[last.byte as usize..];
                assert!(
                    tail.split_inclusive(|&b| b == b'\n').all(|l| if ndjson {
                        l.iter().all(u8::is_ascii_whitespace)
                    } else {
                        blank_csv_line(l) || l == b"\r"
                    }),
                    "more than blank lines after the last record: {tail:?}"
                );
                assert_eq!(pos.line, prefix.line(pos.byte));
                assert_eq!(r.content_hash(), Some(xxh3(plain)), "content hash");
                assert!(r.at_eof());
                assert!(r.next_record().unwrap().is_none(), "stays at the end");
                break Ok(());
            }
            Err(e) => {
                assert!(!ctx.decodes, "read error on a stream that decodes: {e}");
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
                check_message("read error", &e.to_string());
                break Err(e.kind());
            }
        };
        let (prev, _) = *boundaries.last().unwrap();
        assert!(
            prev.byte <= rec.start && rec.start < rec.end,
            "offsets: after {prev:?}, {rec:?}"
        );
        assert!(
            rec.end <= plain.len() as u64,
            "{rec:?} past the {} bytes the decoder gives",
            plain.len()
        );
        // Only blank lines (the format's idea of one) between records.
        let gap = &plain[prev.byte as usize..rec.start as usize];
        assert!(
            gap.split_inclusive(|&b| b == b'\n').all(|l| if ndjson {
                blank_ndjson_line(l)
            } else {
                blank_csv_line(l)
            }),
            "more than blank lines between records: {gap:?} before {rec:?}"
        );
        assert!(
            rec.line >= prev.line,
            "line went back: {prev:?} then {rec:?}"
        );
        assert_eq!(rec.line, prefix.line(rec.start), "line of {rec:?}");
        check_record(ctx, r, &rec);
        let pos = r.position();
        assert_eq!(pos.byte, rec.end, "position after {rec:?}");
        assert_eq!(
            pos.line,
            prefix.line(rec.end),
            "position line after {rec:?}"
        );
        let h = r.prefix_hash();
        assert_eq!(h, prefix.hash(), "prefix hash after {rec:?}");
        boundaries.push((pos, h));
        assert!(
            r.buffer_len() <= max_buf,
            "read buffer {} bytes, cap {}",
            r.buffer_len(),
            ctx.cap
        );
        if let Some(p) = records.last() {
            assert!(p.terminated, "a record after an unterminated one: {p:?}");
        }
        records.push(rec);
    };
    Pass {
        boundaries,
        records,
        end,
    }
}

/// The checks of one record (its offsets checked already).
fn check_record(ctx: &Ctx, r: &RowReader, rec: &OwnedRecord) {
    let bytes = &ctx.plain[rec.start as usize..rec.end as usize];
    // Terminated: by a newline (outside quotes). Unterminated: the file ends first (maybe
    // inside quotes, after a quoted newline).
    let content = if rec.terminated {
        bytes
            .strip_suffix(b"\n")
            .expect("terminated, not by a newline")
    } else {
        assert_eq!(
            rec.end,
            ctx.plain.len() as u64,
            "unterminated before the end"
        );
        bytes
    };
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    if rec.overlong() {
        assert!(
            content.len() as u64 > ctx.cap,
            "rejected as overlong but {} bytes, cap {}: {rec:?}",
            content.len(),
            ctx.cap
        );
        let n = content.len().min(RAW_CAP);
        assert_eq!(rec.raw, content[..n], "raw text of an overlong record");
    } else {
        assert!(
            content.len() as u64 <= ctx.cap,
            "a record of {} bytes passed the cap {}: {rec:?}",
            content.len(),
            ctx.cap
        );
        assert_eq!(rec.raw, content, "raw text of {rec:?}");
    }
    match &rec.out {
        Out::Rejected { column, reason } => {
            check_message("reason", reason);
            if let Some(c) = column {
                assert!(ctx.target.iter().any(|t| &t.name == c), "column {c:?}");
            }
        }
        Out::Valid { columns, text } => {
            check_text(ctx, r, rec, content, columns, text);
        }
    }
}

/// A valid row's COPY text line.
fn check_text(
    ctx: &Ctx,
    r: &RowReader,
    rec: &OwnedRecord,
    content: &[u8],
    columns: &[String],
    text: &[u8],
) {
    assert!(!columns.is_empty());
    let body = text
        .strip_suffix(b"\n")
        .unwrap_or_else(|| panic!("no newline at the end of {text:?}: {rec:?}"));
    assert!(
        !body.contains(&b'\n') && !body.contains(&b'\r'),
        "a line break inside the line {text:?}"
    );
    let backslashes = body.iter().rev().take_while(|&&b| b == b'\\').count();
    assert!(
        backslashes % 2 == 0,
        "the final newline is escaped: {text:?}"
    );
    assert!(!text.contains(&0), "NUL in {text:?}");
    assert!(std::str::from_utf8(text).is_ok(), "not UTF-8: {text:?}");
    assert!(
        text.len() <= 8 * content.len() + 64,
        "{} bytes of text for {} bytes",
        text.len(),
        content.len()
    );
    let values = decode_line(text);
    assert_eq!(
        values.len(),
        columns.len(),
        "{text:?} decodes to {values:?}, columns {columns:?}"
    );
    for c in columns {
        let t = ctx.target.iter().find(|t| &t.name == c);
        assert!(t.is_some_and(|t| t.insertable), "column {c:?}");
    }
    match &ctx.opts.format {
        Format::Ndjson => {
            // Distinct columns in table order (the row's own column list).
            let idx: Vec<usize> = columns
                .iter()
                .map(|c| ctx.target.iter().position(|t| &t.name == c).unwrap())
                .collect();
            assert!(idx.windows(2).all(|w| w[0] < w[1]), "columns {columns:?}");
        }
        Format::Csv(c) => {
            assert_eq!(columns, r.copy_columns());
            let resolved = r.resolved().unwrap();
            if c.quote.is_none() {
                // No quoting: the fields are the bytes between delimiters.
                let fields: Vec<&[u8]> = content.split(|&b| b == c.delimiter).collect();
                assert_eq!(fields.len(), resolved.expected_fields, "{rec:?}");
                for (j, &f) in resolved.source_fields.iter().enumerate() {
                    let want = if fields[f] == c.null.as_bytes() {
                        None
                    } else if c.encoding == ingest_core::Encoding::Latin1 {
                        let mut v = Vec::new();
                        latin1_to_utf8(&mut v, fields[f]);
                        Some(v)
                    } else {
                        Some(fields[f].to_vec())
                    };
                    assert_eq!(values[j], want, "column {} of {rec:?}", columns[j]);
                }
            }
            if !c.header && matches!(ctx.opts.mapping, ColumnMapping::Positional(None)) {
                let insertable = ctx.target.iter().filter(|t| t.insertable).count();
                assert_eq!(columns.len(), insertable);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = RowsInput::parse(data) else {
        return;
    };
    let json = input.options_json();
    let opts = ingest_core::parse_options(input.format, &json)
        .unwrap_or_else(|e| panic!("options {json} for {}: {e}", input.format));
    let target = target_columns();
    let stored = input.stored();
    let scratch = SCRATCH.get_or_init(|| ScratchDir::new("rows"));
    let path = scratch.write(&input.file_name(), &stored);
    let (plain, decodes) = input.expected(&stored);
    let ctx = Ctx {
        path: &path,
        opts: &opts,
        target: &target,
        cap: input.max_record,
        plain: &plain,
        decodes,
    };
    let mut r = match open(&ctx, None) {
        Ok(r) => r,
        Err(e) => {
            check_message("open error", &e.to_string());
            match &e {
                OpenError::Io(io) => {
                    assert!(!decodes, "open failed on a stream that decodes: {io}");
                    assert_eq!(io.kind(), io::ErrorKind::InvalidData, "{io}");
                }
                OpenError::Empty => {
                    let header = matches!(&opts.format, Format::Csv(c) if c.header);
                    assert!(
                        plain.is_empty()
                            || header
                                && plain
                                    .split_inclusive(|&b| b == b'\n')
                                    .all(|l| l == b"\n" || l == b"\r\n" || l == b"\r"),
                        "refused as empty: {plain:?}"
                    );
                }
                OpenError::Changed(m) => panic!("changed, though not resumed: {m}"),
                OpenError::Header(_) | OpenError::Mapping(_) => {}
            }
            return;
        }
    };
    assert_eq!(
        r.compression(),
        opts.compression.for_file(&input.file_name())
    );
    let full = read_checked(&ctx, &mut r);
    drop(r);

    // Resuming at the boundaries seen.
    let n = full.boundaries.len();
    let picks: Vec<usize> = if n <= MAX_RESUMES {
        (0..n).collect()
    } else {
        let mut v: Vec<usize> = (0..MAX_RESUMES).map(|k| k * n / MAX_RESUMES).collect();
        v.push(n - 1);
        v
    };
    for i in picks {
        let at = full.boundaries[i];
        let mut r = open(&ctx, Some(at))
            .unwrap_or_else(|e| panic!("resuming at {at:?} (boundary {i}): {e}"));
        let rest = read_checked(&ctx, &mut r);
        assert_eq!(rest.boundaries[0], at, "resumed at boundary {i}");
        assert_eq!(rest.records, full.records[i..], "resumed at {at:?}");
        assert_eq!(rest.boundaries[..], full.boundaries[i..]);
        assert_eq!(rest.end, full.end, "resumed at {at:?}: the end");
    }
    // A wrong prefix hash past the header: refused.
    let (first, _) = full.boundaries[0];
    if let Some(&(at, h)) = full.boundaries.last().filter(|b| b.0.byte > first.byte) {
        match open(&ctx, Some((at, h ^ 1))) {
            Err(OpenError::Changed(m)) => check_message("changed", &m),
            Err(e) => panic!("a wrong prefix hash at {at:?}: {e}"),
            Ok(_) => panic!("resumed at {at:?} with a wrong prefix hash"),
        }
    }
});
