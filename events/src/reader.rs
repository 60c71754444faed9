//! Streaming reader of one event file: header-mapped, validated records with their exact
//! line numbers and byte offsets, resumable from a committed offset (checked against the hash
//! of the committed bytes), with a cap on the length of a record, and a content hash.

use crate::feed::{self, Broke, Feed};
use crate::hash::{Changed, PrefixHasher};
use crate::header::{HeaderError, HeaderMap, NotText};
use crate::shown::excerpt;
use crate::validate::{validate, RowError, ValidRow};
use csv::ByteRecord;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

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

/// Default cap on the length of one record (`ecommerce_ingest.max_record_size`): a longer one is
/// rejected and skipped, so one endless line cannot take the memory of the reading thread.
pub const MAX_RECORD_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;

/// Most characters of an I/O error's text shown in a message.
const IO_TEXT_MAX: usize = 300;

#[derive(Debug)]
pub enum OpenError {
    /// Could not open or read: often transient (permissions, file removed). Retry later.
    Io(io::Error),
    /// Not a regular file (directory, FIFO, socket, device) or a symlink: never read.
    NotRegular(&'static str),
    /// The header is unusable: the file fails as a whole.
    Header(HeaderError),
    /// Resuming: the file is no longer the one whose first bytes were committed.
    Changed(Changed),
    /// A pipeline's file cannot be read as its pipeline says (no usable header, columns that do
    /// not fit the table, a corrupt archive): it fails as a whole.
    Refused(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(
                f,
                "cannot read the file: {}",
                excerpt(&e.to_string(), IO_TEXT_MAX)
            ),
            OpenError::NotRegular(kind) => write!(f, "not a regular file ({kind}); never read"),
            OpenError::Header(e) => e.fmt(f),
            OpenError::Changed(c) => c.fmt(f),
            OpenError::Refused(s) => f.write_str(s),
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

/// What kind of file this is, for a message ("FIFO", "directory", ...).
pub(crate) use ingest_core::fsopen::file_kind;

pub struct EventReader {
    rdr: csv::Reader<Feed>,
    /// For positional reads: raw text, line breaks, overlong records; shared with the parser's
    /// feed, so restarting the parser costs no system call.
    raw_file: Arc<File>,
    /// Hashes the file's bytes from 0, as far as asked: committed prefixes and the whole file.
    hasher: PrefixHasher,
    map: HeaderMap,
    rec: ByteRecord,
    /// File offset and line where the parser's input (after its lead newline) starts.
    base_byte: u64,
    base_line: u64,
    size: u64,
    eof: bool,
    raw_cap: usize,
    max_record: u64,
    max_commas: u64,
    last: Resume,
    /// XXH3-64 of the whole file, once the end was reached.
    whole_hash: Option<u64>,
    /// XXH3-64 of the bytes before `last`, kept when the end was reached: the whole-file hash
    /// went past it (over trailing blank lines) and hashes only go forward.
    hash_at_last: Option<(u64, u64)>,
}

fn builder() -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false)
        .flexible(true)
        .buffer_capacity(feed::PARSER_BUFFER);
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
    /// `resume` (or just after the header). Does not check that the bytes before `resume` are
    /// the committed ones: see [`EventReader::open_checked`].
    pub fn open(path: &Path, resume: Option<Resume>) -> Result<Self, OpenError> {
        Self::open_checked(path, resume, None)
    }

    /// Like [`EventReader::open`], and when resuming (`resume` past byte 0) makes sure the file
    /// is still the one whose first `resume.byte` bytes were committed: it fails with
    /// [`OpenError::Changed`] if the file is now shorter than that, or (with `expect_prefix`,
    /// the XXH3-64 of those bytes recorded with the commit) if they hash differently. These
    /// checks come before the header's, so a committed file replaced by an empty or unreadable
    /// one is reported as changed.
    pub fn open_checked(
        path: &Path,
        resume: Option<Resume>,
        expect_prefix: Option<u64>,
    ) -> Result<Self, OpenError> {
        let file = open_regular(path)?;
        Self::from_file_checked(file, resume, expect_prefix)
    }

    pub fn from_file(file: File, resume: Option<Resume>) -> Result<Self, OpenError> {
        Self::from_file_checked(file, resume, None)
    }

    /// [`EventReader::open_checked`] on an open file.
    pub fn from_file_checked(
        file: File,
        resume: Option<Resume>,
        expect_prefix: Option<u64>,
    ) -> Result<Self, OpenError> {
        let size = file.metadata()?.len();
        let mut hasher = PrefixHasher::new(file.try_clone()?);
        if let Some(committed) = resume.map(|r| r.byte).filter(|&b| b > 0) {
            // Shorter than the committed offset is a changed file whether or not a hash was
            // recorded: resuming past its end would report it complete without reading it.
            if size < committed {
                return Err(OpenError::Changed(Changed::Shorter { committed, size }));
            }
            if let Some(expected) = expect_prefix {
                let (reached, found) = hasher.advance_up_to(committed)?;
                if reached < committed {
                    let size = reached; // truncated since the size was taken
                    return Err(OpenError::Changed(Changed::Shorter { committed, size }));
                }
                if found != expected {
                    return Err(OpenError::Changed(Changed::PrefixDiffers {
                        committed,
                        expected,
                        found,
                    }));
                }
            }
        }
        // The header always comes from the start of the file.
        // Read at most HEADER_MAX bytes for it, so a binary file cannot make us buffer it whole.
        (&file).seek(SeekFrom::Start(0))?;
        let mut head = builder().from_reader((&file).take(HEADER_MAX));
        let mut rec = ByteRecord::new();
        if !head.read_byte_record(&mut rec).map_err(csv_io)? {
            return Err(OpenError::Header(HeaderError::Empty));
        }
        if head.position().byte() >= HEADER_MAX {
            return Err(OpenError::Header(HeaderError::NotText(
                NotText::NoHeaderLine {
                    within_bytes: HEADER_MAX,
                },
            )));
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
        let raw_file = Arc::new(file);
        let rdr = builder().from_reader(Feed::new(raw_file.clone(), start.byte));
        Ok(EventReader {
            rdr,
            raw_file,
            hasher,
            map,
            rec,
            base_byte: start.byte,
            base_line: start.line,
            size,
            eof: false,
            raw_cap: RAW_TEXT_CAP,
            max_record: MAX_RECORD_BYTES_DEFAULT,
            max_commas: feed::max_commas(MAX_RECORD_BYTES_DEFAULT),
            last: start,
            whole_hash: None,
            hash_at_last: None,
        })
    }

    /// Caps the raw text kept for a rejected row (bytes).
    pub fn with_raw_cap(mut self, cap: usize) -> Self {
        self.raw_cap = cap;
        self
    }

    /// Caps the length of a record, line terminator excluded (bytes; default
    /// [`MAX_RECORD_BYTES_DEFAULT`]). A longer record is rejected and skipped up to the first
    /// line break at or after the point it went over the cap; so is one with more than
    /// `cap / 8` commas (at least 65536), which would take as much memory again in field
    /// bookkeeping. Memory stays about the cap plus the parser's buffers whatever the input.
    pub fn with_max_record_bytes(mut self, cap: u64) -> Self {
        self.max_record = cap;
        self.max_commas = feed::max_commas(cap);
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
        self.whole_hash
    }

    /// XXH3-64 of the file's bytes `[0, offset)`, to record with a commit up to `offset`.
    /// Offsets only grow from one call to the next (the reader's position, a held record's
    /// start); the bytes are read again, by positional reads (see [`PrefixHasher`]).
    pub fn prefix_hash(&mut self, offset: u64) -> io::Result<u64> {
        match self.hash_at_last {
            Some((at, hash)) if at == offset => Ok(hash),
            _ => self.hasher.advance_to(offset),
        }
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
        self.rdr
            .get_ref()
            .cached(off)
            .or_else(|| byte_at(&self.raw_file, off))
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

    /// Starts a new parser at record start `at` (the same way as at a resume offset).
    fn restart(&mut self, at: Resume) {
        self.rdr = builder().from_reader(Feed::new(self.raw_file.clone(), at.byte));
        self.base_byte = at.byte;
        self.base_line = at.line;
    }

    /// The parser reached the end of the file: hash it whole.
    fn reached_eof(&mut self) -> io::Result<()> {
        self.eof = true;
        // Where the file ended for the parser. Bytes appended since are not part of this read.
        let eof_at = self.rdr.get_ref().pos();
        let last = self.last.byte;
        if last < eof_at && last >= self.hasher.hashed_to() {
            let (reached, hash) = self.hasher.advance_up_to(last)?;
            if reached == last {
                self.hash_at_last = Some((last, hash));
            }
        }
        // Up to the end only: a file shorter than a resume offset (never opened that way, but
        // truncated since) is hashed as it is, as before.
        let (_, hash) = self
            .hasher
            .advance_up_to(eof_at.max(self.hasher.hashed_to()))?;
        self.whole_hash = Some(hash);
        Ok(())
    }

    /// A record that broke the length cap, from its first byte `start` (line `line`): rejected,
    /// skipped by positional reads up to the first LF at or after the point it went over the
    /// cap, and the parser restarted after it. Its text is never buffered whole.
    fn overlong(&mut self, start: u64, line: u64) -> io::Result<Record<'static>> {
        let o = feed::scan_overlong(&self.raw_file, start, self.max_record, self.max_commas)?;
        let next = Resume {
            byte: o.end,
            line: line + o.lfs,
        };
        self.restart(next);
        // Give back the memory the parser took for the long record.
        self.rec = ByteRecord::new();
        self.last = next;
        let what = match o.broke {
            Broke::Bytes => format!(
                "the record is longer than {} bytes (ecommerce_ingest.max_record_size)",
                self.max_record
            ),
            Broke::Commas => format!(
                "the record has more than {} commas (ecommerce_ingest.max_record_size / 8, at \
                 least 65536)",
                self.max_commas
            ),
        };
        let skipped = if o.terminated {
            "skipped up to the next line break"
        } else {
            "skipped to the end of the file (no line break follows)"
        };
        Ok(Record {
            line,
            start,
            end: o.end,
            terminated: o.terminated,
            outcome: Outcome::Rejected {
                error: RowError {
                    column: None,
                    message: format!("{what}: {skipped}"),
                },
                raw: self.raw_text(start, o.end),
            },
        })
    }

    /// The next record, validated. `None` at the end of the file.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        if self.eof {
            return Ok(None);
        }
        loop {
            let (from, from_line) = self.locate(self.rdr.position());
            self.rdr
                .get_mut()
                .begin_record(from, self.max_record, self.max_commas);
            match self.rdr.read_byte_record(&mut self.rec) {
                Ok(true) => break,
                Ok(false) => {
                    self.reached_eof()?;
                    return Ok(None);
                }
                Err(e) => {
                    let e = csv_io(e);
                    if !feed::is_too_long(&e) {
                        return Err(e);
                    }
                    // The limit counted from the end of the previous record: line breaks
                    // before this one may have taken part of it. Count from its first byte.
                    let (start, lfs) = feed::skip_line_breaks(&self.raw_file, from)?;
                    if start > from {
                        self.restart(Resume {
                            byte: start,
                            line: from_line + lfs,
                        });
                        continue;
                    }
                    return self.overlong(start, from_line).map(Some);
                }
            }
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
        // The feed's limit let it through (it fit in bytes already buffered, or ended with the
        // file just past the cap): the same rule applies, the same way.
        if end - start > self.max_record.min(self.max_commas) {
            let stop = content_stop(start, end, |off| self.byte_at(off));
            if feed::breaks_limits(
                &self.raw_file,
                start,
                stop,
                self.max_record,
                self.max_commas,
            )? {
                return self.overlong(start, line).map(Some);
            }
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
    let stop = content_stop(start, end, byte_at);
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

/// Where the text of the record `[start, end)` stops: before its line terminator.
fn content_stop(start: u64, end: u64, byte_at: impl Fn(u64) -> Option<u8>) -> u64 {
    let mut stop = end;
    while stop > start && matches!(byte_at(stop - 1), Some(b'\n' | b'\r')) {
        stop -= 1;
    }
    stop
}

/// The byte at offset `off` of `file`, if it has one.
fn byte_at(file: &File, off: u64) -> Option<u8> {
    let mut b = [0u8; 1];
    matches!(file.read_at(&mut b, off), Ok(1)).then_some(b[0])
}

/// XXH3-64 of a whole file (the same hash `EventReader::content_hash` gives), never following
/// a symlink.
pub fn hash_file(path: &Path) -> Result<u64, OpenError> {
    let file = open_regular(path)?;
    let (_, hash) = PrefixHasher::new(file).advance_up_to(u64::MAX)?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_texts_are_capped() {
        let long = OpenError::Io(io::Error::other(format!("{}\nzzz", "y".repeat(10_000))));
        let s = long.to_string();
        assert!(s.starts_with("cannot read the file: yyy"), "{s}");
        assert_eq!(
            s.chars().count(),
            "cannot read the file: ".len() + IO_TEXT_MAX
        );
        assert!(s.ends_with('…') && !s.contains('z'));
        let short = OpenError::Io(io::Error::from_raw_os_error(libc::EACCES)).to_string();
        assert_eq!(
            short,
            "cannot read the file: Permission denied (os error 13)"
        );
    }

    #[test]
    fn changed_files_say_so_through_open_error() {
        let e = OpenError::Changed(Changed::Shorter {
            committed: 10,
            size: 3,
        });
        assert!(e.to_string().starts_with(
            "the file changed since rows up to byte 10 were committed: it is now only 3 bytes"
        ));
    }
}
