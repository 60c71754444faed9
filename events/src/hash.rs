//! XXH3-64 of a file's first bytes, computed incrementally with positional reads: the hash of a
//! committed prefix (to recognise the same file when resuming) and of the whole file.

use std::fmt;
use std::fs::File;
use std::hash::Hasher;
use std::io;
use std::os::unix::fs::FileExt;
use twox_hash::XxHash3_64;

/// Bytes hashed per positional read: bounded memory whatever the file size.
const PIECE: usize = 64 * 1024;

/// XXH3-64 of the bytes `[0, offset)` of a file, for growing offsets.
///
/// It reads the bytes itself with positional reads instead of riding on the CSV parser's reads,
/// so the parser can be stopped and restarted anywhere (a resume offset, after an overlong
/// record) without the hash missing or repeating bytes. The bytes are read a second time, from
/// the page cache: about one extra memory pass over the file, accepted because it runs on the
/// reading thread, never on the database thread.
pub struct PrefixHasher {
    file: File,
    hasher: XxHash3_64,
    hashed_to: u64,
    buf: Vec<u8>,
}

impl PrefixHasher {
    /// Hashes `file` from its first byte (whatever its current file offset: reads are
    /// positional).
    pub fn new(file: File) -> Self {
        PrefixHasher {
            file,
            hasher: XxHash3_64::default(),
            hashed_to: 0,
            buf: Vec::new(),
        }
    }

    /// How far the bytes were hashed.
    pub fn hashed_to(&self) -> u64 {
        self.hashed_to
    }

    /// XXH3-64 of the bytes `[0, offset)`: feeds `[hashed_to, offset)` and keeps going from
    /// there. Fails with `UnexpectedEof` if the file ends before `offset`, and with
    /// `InvalidInput` if `offset` is below what was already hashed (offsets only grow).
    pub fn advance_to(&mut self, offset: u64) -> io::Result<u64> {
        let (reached, hash) = self.advance_up_to(offset)?;
        if reached < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ends at byte {reached}, before byte {offset}"),
            ));
        }
        Ok(hash)
    }

    /// Like [`PrefixHasher::advance_to`], but stops early at the end of the file: returns the
    /// offset reached and the hash of `[0, reached)`.
    pub fn advance_up_to(&mut self, offset: u64) -> io::Result<(u64, u64)> {
        if offset < self.hashed_to {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot hash the first {offset} bytes: {} bytes were already hashed",
                    self.hashed_to
                ),
            ));
        }
        if self.hashed_to < offset && self.buf.is_empty() {
            self.buf = vec![0u8; PIECE];
        }
        while self.hashed_to < offset {
            let want = (offset - self.hashed_to).min(PIECE as u64) as usize;
            let n = match self.file.read_at(&mut self.buf[..want], self.hashed_to) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.hasher.write(&self.buf[..n]);
            self.hashed_to += n as u64;
        }
        // `finish` does not consume the streaming state (XXH3 finalises a copy of it), so the
        // same hasher goes on from here for a longer prefix.
        Ok((self.hashed_to, self.hasher.finish()))
    }
}

/// Why a file is not the one whose first bytes were committed: resuming it would append another
/// file's rows to the committed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// The file is now shorter than the committed offset.
    Shorter { committed: u64, size: u64 },
    /// The committed bytes no longer hash to the hash recorded with them.
    PrefixDiffers {
        committed: u64,
        expected: u64,
        found: u64,
    },
    /// A pipeline's file (see `ingest_core::rows`): its reader's own words.
    Other(String),
}

impl fmt::Display for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Changed::Other(ref s) => f.write_str(s),
            Changed::Shorter { committed, size } => write!(
                f,
                "the file changed since rows up to byte {committed} were committed: it is now \
                 only {size} bytes long; it is not resumed"
            ),
            Changed::PrefixDiffers {
                committed,
                expected,
                found,
            } => write!(
                f,
                "the file changed since rows up to byte {committed} were committed: the first \
                 {committed} bytes no longer hash to {expected:016x} (now {found:016x}); it is \
                 not resumed"
            ),
        }
    }
}

impl std::error::Error for Changed {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    fn xxh3(bytes: &[u8]) -> u64 {
        let mut h = XxHash3_64::default();
        h.write(bytes);
        h.finish()
    }

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        let f = File::open(&p).unwrap();
        (dir, f)
    }

    /// Bytes that cross several 64 KiB pieces and are not periodic.
    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7919 % 251) as u8).collect()
    }

    #[test]
    fn every_prefix_hashes_like_the_bytes_themselves() {
        let bytes = data(3 * PIECE + 123);
        let (_d, f) = file_with(&bytes);
        let mut h = PrefixHasher::new(f);
        assert_eq!(h.advance_to(0).unwrap(), xxh3(b""));
        for off in [
            1,
            100,
            PIECE - 1,
            PIECE,
            PIECE + 1,
            2 * PIECE + 5,
            bytes.len(),
        ] {
            assert_eq!(
                h.advance_to(off as u64).unwrap(),
                xxh3(&bytes[..off]),
                "{off}"
            );
            assert_eq!(h.hashed_to(), off as u64);
        }
        // The same offset again is fine (nothing more to read).
        assert_eq!(
            h.advance_to(bytes.len() as u64).unwrap(),
            xxh3(&bytes),
            "repeat"
        );
    }

    #[test]
    fn offsets_only_grow() {
        let (_d, f) = file_with(&data(1000));
        let mut h = PrefixHasher::new(f);
        h.advance_to(500).unwrap();
        let e = h.advance_to(499).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains("500 bytes were already hashed"),
            "{e}"
        );
    }

    #[test]
    fn past_the_end_fails_or_stops_at_the_end() {
        let bytes = data(1000);
        let (_d, f) = file_with(&bytes);
        let mut h = PrefixHasher::new(f.try_clone().unwrap());
        let e = h.advance_to(1001).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            e.to_string(),
            "the file ends at byte 1000, before byte 1001"
        );
        let mut h = PrefixHasher::new(f);
        assert_eq!(h.advance_up_to(u64::MAX).unwrap(), (1000, xxh3(&bytes)));
    }

    #[test]
    fn reads_are_positional_whatever_the_file_offset() {
        use std::io::{Seek, SeekFrom};
        let bytes = data(5000);
        let (_d, mut f) = file_with(&bytes);
        f.seek(SeekFrom::Start(4000)).unwrap();
        let mut h = PrefixHasher::new(f);
        assert_eq!(h.advance_to(5000).unwrap(), xxh3(&bytes));
    }

    #[test]
    fn changed_messages_name_the_offset_and_both_hashes() {
        let d = Changed::PrefixDiffers {
            committed: 123_456,
            expected: 0x0123_abcd_0000_0001,
            found: 0x89ab,
        };
        assert_eq!(
            d.to_string(),
            "the file changed since rows up to byte 123456 were committed: the first 123456 \
             bytes no longer hash to 0123abcd00000001 (now 00000000000089ab); it is not resumed"
        );
        let s = Changed::Shorter {
            committed: 500,
            size: 20,
        };
        assert_eq!(
            s.to_string(),
            "the file changed since rows up to byte 500 were committed: it is now only 20 bytes \
             long; it is not resumed"
        );
    }
}
