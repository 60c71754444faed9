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

/// Counts and hashes every byte handed to the CSV parser.
struct HashingRead {
    inner: File,
    hasher: XxHash3_64,
}

impl Read for HashingRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.write(&buf[..n]);
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
        let mut head = builder().from_reader((&file).take(u64::MAX));
        let mut rec = ByteRecord::new();
        if !head.read_byte_record(&mut rec).map_err(csv_io)? {
            return Err(OpenError::Header(HeaderError::Empty));
        }
        let map = HeaderMap::from_record(&rec).map_err(OpenError::Header)?;
        let after_header = Resume {
            byte: head.position().byte(),
            line: head.position().line(),
        };
        drop(head);
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
        let rdr = builder().from_reader(HashingRead { inner, hasher });
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

    /// The exact bytes of a record, capped, as text (invalid UTF-8 replaced, NUL shown as \0).
    pub fn raw_text(&self, start: u64, end: u64) -> String {
        let len = (end.saturating_sub(start) as usize).min(self.raw_cap);
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.raw_file.read_at(&mut buf[got..], start + got as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        buf.truncate(got);
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let s = String::from_utf8_lossy(&buf).replace('\0', "\\0");
        if (end - start) as usize > self.raw_cap {
            format!("{s}…")
        } else {
            s
        }
    }

    fn last_byte_is_newline(&self, end: u64) -> bool {
        let mut b = [0u8; 1];
        end > 0
            && matches!(self.raw_file.read_at(&mut b, end - 1), Ok(1))
            && matches!(b[0], b'\n' | b'\r')
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
        let pos = self.rec.position().expect("csv records carry positions");
        let start = self.base_byte + pos.byte();
        let line = self.base_line + pos.line() - 1;
        let after = self.rdr.position();
        let end = self.base_byte + after.byte();
        self.last = Resume {
            byte: end,
            line: self.base_line + after.line() - 1,
        };
        let terminated = end < self.size || self.last_byte_is_newline(end);
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
