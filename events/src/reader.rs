//! Streaming reader of one event file: header-mapped, validated records with their exact
//! line numbers and byte offsets, resumable from a committed offset, and a content hash.

use crate::header::{HeaderError, HeaderMap};
use crate::validate::{validate, RowError, ValidRow};
use csv::ByteRecord;
use std::fmt;
use std::fs::File;
use std::hash::Hasher;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use twox_hash::XxHash3_64;

/// Where to continue reading: the byte offset of a record start and its line number (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resume {
    pub byte: u64,
    pub line: u64,
}

/// Longest header line accepted.
pub const HEADER_MAX: u64 = 64 * 1024;

/// Default cap on the raw text kept for a rejected row.
pub const RAW_TEXT_CAP: usize = 1024;

#[derive(Debug)]
pub enum OpenError {
    /// Could not open or read: often transient (permissions, file removed). Retry later.
    Io(io::Error),
    /// Not a regular file (directory, FIFO, socket, device) or a symlink: never read.
    NotRegular(&'static str),
    /// The header is unusable: the file fails as a whole.
    Header(HeaderError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "cannot read the file: {e}"),
            OpenError::NotRegular(kind) => write!(f, "not a regular file ({kind}); never read"),
            OpenError::Header(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// What one record turned out to be.
#[derive(Debug)]
pub enum Outcome<'a> {
    Valid(ValidRow<'a>),
    Rejected { error: RowError, raw: String },
}

#[derive(Debug)]
pub struct Record<'a> {
    /// Line of the file where the record starts (the header is line 1).
    pub line: u64,
    /// Byte offset of the record's first byte.
    pub start: u64,
    /// Byte offset just past the record (and its line terminator, if any).
    pub end: u64,
    /// False only for a last record with no line terminator.
    pub terminated: bool,
    pub outcome: Outcome<'a>,
}

/// Hashes every byte of the file handed to the CSV parser, and keeps a copy of the last chunk
/// so the reader can look at the bytes around a record without a system call.
struct HashingRead {
    inner: File,
    hasher: XxHash3_64,
    /// Feed the parser one newline (not part of the file, not hashed) before the file's bytes:
    /// the parser strips a UTF-8 byte-order mark at the very start of its input, which must only
    /// happen before the header, never before a record we resume at.
    lead: bool,
    /// File offset of the next byte `inner` returns.
    pos: u64,
    window: Vec<u8>,
    window_start: u64,
}

impl Read for HashingRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.lead && !buf.is_empty() {
            self.lead = false;
            buf[0] = b'\n';
            return Ok(1);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.write(&buf[..n]);
            self.window.clear();
            self.window.extend_from_slice(&buf[..n]);
            self.window_start = self.pos;
            self.pos += n as u64;
        }
        Ok(n)
    }
}

/// Opens a path for reading without following a symlink and without blocking on a FIFO,
/// and checks it is a regular file.
pub fn open_regular(path: &Path) -> Result<File, OpenError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                OpenError::NotRegular("symbolic link")
            } else {
                OpenError::Io(e)
            }
        })?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        return Err(OpenError::NotRegular(file_kind(&ft)));
    }
    Ok(file)
}

pub(crate) fn file_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "regular file"
    }
}

pub struct EventReader {
    rdr: csv::Reader<HashingRead>,
    raw_file: File,
    map: HeaderMap,
    rec: ByteRecord,
    base_byte: u64,
    base_line: u64,
    size: u64,
    eof: bool,
    raw_cap: usize,
    last: Resume,
}

fn builder() -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false)
        .flexible(true)
        .buffer_capacity(256 * 1024);
    b
}

fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

impl EventReader {
    /// Opens `path` (never following a symlink), reads its header, and positions the reader at
    /// `resume` (or just after the header). The content hash covers the whole file either way.
    pub fn open(path: &Path, resume: Option<Resume>) -> Result<Self, OpenError> {
        let file = open_regular(path)?;
        Self::from_file(file, resume)
    }

    pub fn from_file(file: File, resume: Option<Resume>) -> Result<Self, OpenError> {
        let size = file.metadata()?.len();
        let raw_file = file.try_clone()?;
        let mut hasher = XxHash3_64::default();
        // The header always comes from the start of the file.
        // Read at most HEADER_MAX bytes for it, so a binary file cannot make us buffer it whole.
        let mut head = builder().from_reader((&file).take(HEADER_MAX));
        let mut rec = ByteRecord::new();
        if !head.read_byte_record(&mut rec).map_err(csv_io)? {
            return Err(OpenError::Header(HeaderError::Empty));
        }
        if head.position().byte() >= HEADER_MAX {
            return Err(OpenError::Header(HeaderError::NotText(format!(
                "no header line within the first {} KiB",
                HEADER_MAX / 1024
            ))));
        }
        let map = HeaderMap::from_record(&rec).map_err(OpenError::Header)?;
        let mut after_header = Resume {
            byte: head.position().byte(),
            line: head.position().line(),
        };
        drop(head);
        // The parser ends a record at a CR and leaves the LF of a CRLF for the next read.
        if after_header.byte > 0
            && byte_at(&file, after_header.byte - 1) == Some(b'\r')
            && byte_at(&file, after_header.byte) == Some(b'\n')
        {
            after_header.byte += 1;
            after_header.line += 1;
        }
        let start = match resume {
            Some(r) if r.byte > after_header.byte => r,
            _ => after_header,
        };
        // Hash the bytes before the start; the parser hashes the rest as it reads it.
        let mut inner = file;
        inner.seek(SeekFrom::Start(0))?;
        let mut prefix = (&inner).take(start.byte);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = prefix.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.write(&buf[..n]);
        }
        inner.seek(SeekFrom::Start(start.byte))?;
        let rdr = builder().from_reader(HashingRead {
            inner,
            hasher,
            lead: true,
            pos: start.byte,
            window: Vec::new(),
            window_start: start.byte,
        });
        Ok(EventReader {
            rdr,
            raw_file,
            map,
            rec,
            base_byte: start.byte,
            base_line: start.line,
            size,
            eof: false,
            raw_cap: RAW_TEXT_CAP,
            last: start,
        })
    }

    /// Caps the raw text kept for a rejected row (bytes).
    pub fn with_raw_cap(mut self, cap: usize) -> Self {
        self.raw_cap = cap;
        self
    }

    pub fn header(&self) -> &HeaderMap {
        &self.map
    }

    /// File size when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Position just past the last record returned: where a later run resumes.
    pub fn position(&self) -> Resume {
        self.last
    }

    /// True once the parser reached the end of the file.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// XXH3-64 of every byte of the file, once the end was reached.
    pub fn content_hash(&self) -> Option<u64> {
        self.eof.then(|| self.rdr.get_ref().hasher.finish())
    }

    /// The exact bytes of a record without its line terminator, capped, as text (invalid UTF-8
    /// replaced, NUL shown as \0, `…` appended when cut).
    pub fn raw_text(&self, start: u64, end: u64) -> String {
        raw_text(&self.raw_file, start, end, self.raw_cap, |off| {
            self.byte_at(off)
        })
    }

    /// A handle that gives the raw text of this file's records after the reader is gone.
    pub fn raw_source(&self) -> io::Result<RawSource> {
        Ok(RawSource {
            file: self.raw_file.try_clone()?,
            cap: self.raw_cap,
        })
    }

    /// The byte at file offset `off`, from the parser's last chunk if it is there.
    fn byte_at(&self, off: u64) -> Option<u8> {
        let src = self.rdr.get_ref();
        if let Some(&b) = off
            .checked_sub(src.window_start)
            .and_then(|i| src.window.get(usize::try_from(i).ok()?))
        {
            return Some(b);
        }
        byte_at(&self.raw_file, off)
    }

    /// True if the record `[start, end)` ends inside a quoted field: the parser stopped only
    /// because the file ended, so the record is not complete (the same rules as the parser:
    /// a quote opens a field only at its start, `""` inside quotes is a quote).
    fn ends_in_open_quote(&self, start: u64, end: u64) -> bool {
        #[derive(Clone, Copy, PartialEq)]
        enum S {
            FieldStart,
            Unquoted,
            Quoted,
            QuoteInQuoted,
        }
        let mut s = S::FieldStart;
        let mut buf = vec![0u8; 64 * 1024];
        let mut off = start;
        while off < end {
            let want = ((end - off) as usize).min(buf.len());
            let n = match self.raw_file.read_at(&mut buf[..want], off) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                s = match (s, b) {
                    (S::FieldStart, b'"') => S::Quoted,
                    (S::Quoted, b'"') => S::QuoteInQuoted,
                    (S::Quoted, _) => S::Quoted,
                    (S::QuoteInQuoted, b'"') => S::Quoted,
                    (_, b',') => S::FieldStart,
                    _ => S::Unquoted,
                };
            }
            off += n as u64;
        }
        s == S::Quoted
    }

    /// File offset and line of a parser position. The parser's input is one lead newline
    /// followed by the file from `base_byte` (line `base_line`).
    fn locate(&self, p: &csv::Position) -> (u64, u64) {
        if p.byte() == 0 {
            (self.base_byte, self.base_line)
        } else {
            (self.base_byte + p.byte() - 1, self.base_line + p.line() - 2)
        }
    }

    /// The next record, validated. `None` at the end of the file.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        if self.eof {
            return Ok(None);
        }
        if !self.rdr.read_byte_record(&mut self.rec).map_err(csv_io)? {
            self.eof = true;
            return Ok(None);
        }
        let pos = self
            .rec
            .position()
            .expect("csv records carry positions")
            .clone();
        // The record's position is where the parser started reading: skip the blank lines and
        // the LF of a previous CRLF that it skipped before the record.
        let (mut start, mut line) = self.locate(&pos);
        while let Some(b @ (b'\r' | b'\n')) = self.byte_at(start) {
            line += (b == b'\n') as u64;
            start += 1;
        }
        let (mut end, mut end_line) = self.locate(self.rdr.position());
        // A record ending in CR: its CRLF's LF is part of its line terminator.
        if end > start && self.byte_at(end - 1) == Some(b'\r') && self.byte_at(end) == Some(b'\n') {
            end += 1;
            end_line += 1;
        }
        self.last = Resume {
            byte: end,
            line: end_line,
        };
        let terminated = end < self.size
            || (end > 0
                && matches!(self.byte_at(end - 1), Some(b'\n' | b'\r'))
                && !self.ends_in_open_quote(start, end));
        let outcome = if self.rec.len() != self.map.width() {
            let error = RowError {
                column: None,
                message: format!(
                    "expected {} fields as in the header, found {}{}",
                    self.map.width(),
                    self.rec.len(),
                    if self.rec.len() < self.map.width() && !terminated {
                        " (unterminated quote or truncated line at end of file?)"
                    } else {
                        ""
                    }
                ),
            };
            Outcome::Rejected {
                error,
                raw: self.raw_text(start, end),
            }
        } else {
            match validate(&self.rec, &self.map) {
                Ok(row) => {
                    // Re-borrow: `validate` borrowed `self.rec` immutably.
                    return Ok(Some(Record {
                        line,
                        start,
                        end,
                        terminated,
                        outcome: Outcome::Valid(row),
                    }));
                }
                Err(error) => Outcome::Rejected {
                    error,
                    raw: self.raw_text(start, end),
                },
            }
        };
        Ok(Some(Record {
            line,
            start,
            end,
            terminated,
            outcome,
        }))
    }
}

/// The byte at offset `off` of `file`, if it has one.
/// The raw text of a file's records, read again by offset: for rows the database refuses after
/// the reader has moved on (or was dropped).
pub struct RawSource {
    file: File,
    cap: usize,
}

impl RawSource {
    /// Same as [`EventReader::raw_text`].
    pub fn text(&self, start: u64, end: u64) -> String {
        raw_text(&self.file, start, end, self.cap, |off| {
            byte_at(&self.file, off)
        })
    }
}

fn raw_text(
    file: &File,
    start: u64,
    end: u64,
    cap: usize,
    byte_at: impl Fn(u64) -> Option<u8>,
) -> String {
    let mut stop = end;
    while stop > start && matches!(byte_at(stop - 1), Some(b'\n' | b'\r')) {
        stop -= 1;
    }
    let full = (stop - start) as usize;
    let len = full.min(cap);
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], start + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.truncate(got);
    let cut = got < full;
    if cut {
        // Do not split a character at the cap.
        if let Err(e) = std::str::from_utf8(&buf) {
            if e.error_len().is_none() {
                buf.truncate(e.valid_up_to());
            }
        }
    }
    let s = String::from_utf8_lossy(&buf).replace('\0', "\\0");
    if cut {
        format!("{s}…")
    } else {
        s
    }
}

fn byte_at(file: &File, off: u64) -> Option<u8> {
    let mut b = [0u8; 1];
    matches!(file.read_at(&mut b, off), Ok(1)).then_some(b[0])
}

/// XXH3-64 of a whole file (the same hash `EventReader::content_hash` gives), never following
/// a symlink.
pub fn hash_file(path: &Path) -> Result<u64, OpenError> {
    let mut file = open_regular(path)?;
    let mut hasher = XxHash3_64::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.write(&buf[..n]);
    }
}
