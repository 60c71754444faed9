//! Compressed input files: which compression a file name says, and a decompressed stream over
//! an open file whose errors say the archive is corrupt or truncated (never a silent early end).

use std::fs::File;
use std::hash::Hasher as _;
use std::io::{self, Read};
use std::path::Path;
use twox_hash::XxHash3_64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// By the file name's suffix: `.gz` is gzip, `.zst` zstd (case-insensitive), else none.
    pub fn of_name(file_name: &str) -> Compression {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".gz") {
            Compression::Gzip
        } else if lower.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// "none", "gzip" or "zstd".
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// The decompressed bytes of `file` (read from its current offset). Gzip files may hold several
/// members (as `cat a.gz b.gz` makes): all are read. A read error from a corrupt or truncated
/// archive has kind `InvalidData` and says so ("truncated or corrupt gzip data: …").
pub fn decompress(file: File, compression: Compression) -> io::Result<Box<dyn Read + Send>> {
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(Labelled {
            inner: flate2::read::MultiGzDecoder::new(file),
            what: "gzip",
        }),
        Compression::Zstd => Box::new(Labelled {
            inner: zstd::stream::read::Decoder::new(file)?,
            what: "zstd",
        }),
    })
}

/// XXH3-64 of the decompressed content of the file at `path`, opened as the readers open
/// files (never through a symlink): the content hash a reader records once it reached the end.
pub fn content_hash(path: &Path, compression: Compression) -> io::Result<u64> {
    let mut r = decompress(crate::fsopen::open_regular(path)?, compression)?;
    let mut h = XxHash3_64::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => h.write(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Gives the decompressor's errors a text a person can act on.
struct Labelled<R> {
    inner: R,
    what: &'static str,
}

impl<R: Read> Read for Labelled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let detail = e.to_string();
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "truncated or corrupt {} data: {}; the archive cannot be read \
                             past this point",
                            self.what,
                            crate::shown::excerpt(&detail, 200)
                        ),
                    ));
                }
                ok => return ok,
            }
        }
    }
}
