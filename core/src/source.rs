//! A buffered byte source over a (decompressed) stream, with absolute offsets in that stream,
//! that hashes (XXH3-64, as the events pipeline's `PrefixHasher`) every byte consumed, lazily
//! and in large pieces: the hash of the bytes before any record boundary at or after the last
//! mark costs no second read, and the content hash is known at the end.

use std::hash::Hasher;
use std::io::{self, Read};
use twox_hash::XxHash3_64;

/// Bytes asked of the stream per read (and the buffer's starting size).
pub const READ_SIZE: usize = 256 * 1024;

pub struct Source {
    inner: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]`.
    base: u64,
    /// Index in `buf` of the next unconsumed byte, and of the end of the data.
    pos: usize,
    end: usize,
    hasher: XxHash3_64,
    /// Absolute offset up to which bytes were hashed (`base <= hashed_to <= offset()`).
    hashed_to: u64,
    /// Earliest offset whose prefix hash may still be asked (`hashed_to`..=`offset()`).
    mark: u64,
    /// A prefix hash kept when hashing went past it: `(offset, hash)`.
    saved: Option<(u64, u64)>,
    eof: bool,
}

impl Source {
    pub fn new(inner: Box<dyn Read + Send>) -> Source {
        Source {
            inner,
            buf: vec![0; READ_SIZE],
            base: 0,
            pos: 0,
            end: 0,
            hasher: XxHash3_64::default(),
            hashed_to: 0,
            mark: 0,
            saved: None,
            eof: false,
        }
    }

    /// The buffered bytes not consumed yet.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Absolute offset of the next unconsumed byte.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// True once the stream returned its end (the buffered data may still be unconsumed).
    pub fn stream_ended(&self) -> bool {
        self.eof
    }

    /// True when the stream ended and every byte was consumed.
    pub fn at_end(&self) -> bool {
        self.eof && self.pos == self.end
    }

    /// Consumes `n` buffered bytes (at most `data().len()`).
    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.pos);
        self.pos += n.min(self.end - self.pos);
    }

    /// Marks the current offset: prefix hashes are asked only at or after it from now on.
    pub fn mark_here(&mut self) {
        self.mark = self.offset();
    }

    /// Marks `offset` (at or after the previous mark, at most `offset()`).
    pub fn mark_at(&mut self, offset: u64) {
        self.mark = offset.clamp(self.mark, self.offset());
    }

    /// Hashes up to the mark and keeps that hash, so the bytes before the mark can go.
    pub fn pin_mark(&mut self) {
        if self.hashed_to <= self.mark {
            let h = self.hash_to(self.mark);
            self.saved = Some((self.mark, h));
        }
    }

    /// Feeds `[hashed_to, to)` (buffered, `to <= offset()`) to the hasher; returns the hash.
    fn hash_to(&mut self, to: u64) -> u64 {
        if to > self.hashed_to {
            let from = (self.hashed_to - self.base) as usize;
            let upto = (to - self.base) as usize;
            self.hasher.write(&self.buf[from..upto]);
            self.hashed_to = to;
        }
        self.hasher.finish()
    }

    /// XXH3-64 of the stream's bytes `[0, offset)`, for `offset` from the mark (or a pinned
    /// offset) to `offset()`. Offsets asked only grow; `None` for one that can no longer be
    /// given.
    pub fn prefix_hash_at(&mut self, offset: u64) -> Option<u64> {
        if let Some((at, h)) = self.saved {
            if at == offset {
                return Some(h);
            }
        }
        if offset < self.hashed_to || offset > self.offset() {
            return None;
        }
        Some(self.hash_to(offset))
    }

    /// XXH3-64 of every byte consumed so far.
    pub fn prefix_hash(&mut self) -> u64 {
        let at = self.offset();
        self.prefix_hash_at(at)
            .unwrap_or_else(|| self.hasher.finish())
    }

    /// Reads more of the stream into the buffer, first dropping the consumed bytes before the
    /// mark (hashed on the way); the buffer grows up to `max_buf` bytes when full. Returns the
    /// number of bytes added: 0 at the end of the stream (or when the buffer is at `max_buf`).
    pub fn fill(&mut self, max_buf: usize) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let keep_from = self.mark.min(self.offset()).max(self.hashed_to);
        self.hash_to(keep_from);
        let drop = (keep_from - self.base) as usize;
        if drop > 0 {
            self.buf.copy_within(drop..self.end, 0);
            self.base += drop as u64;
            self.pos -= drop;
            self.end -= drop;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).min(max_buf.max(READ_SIZE));
            if grown <= self.buf.len() {
                return Ok(0);
            }
            self.buf.resize(grown, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// At the end of the stream with everything consumed: the hash of all bytes (the mark's
    /// hash is pinned first, so it can still be asked).
    pub fn content_hash(&mut self) -> Option<u64> {
        if !self.at_end() {
            return None;
        }
        self.pin_mark();
        let end = self.offset();
        Some(self.hash_to(end))
    }

    /// The buffer's size (for tests of bounded memory).
    pub fn buffer_len(&self) -> usize {
        self.buf.len()
    }
}

impl Source {
    /// The first `len` of the last `total` bytes consumed (still buffered until the next
    /// [`Source::fill`]).
    pub fn recent(&self, total: usize, len: usize) -> &[u8] {
        let from = self.pos - total.min(self.pos);
        &self.buf[from..from + len.min(total)]
    }
}
