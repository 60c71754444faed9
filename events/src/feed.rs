//! The bytes the CSV parser reads, with a limit per record so one endless line cannot make the
//! parser buffer it whole, and the scans that find where an overlong record ends.
//!
//! The parser (`csv::Reader`) grows its record buffer without bound while a record lasts: a
//! 300 MB line with no line break takes about five times that in memory. So the feed refuses to
//! hand out bytes past `record start + max_record_bytes` (with [`RecordTooLong`]), and the
//! reader then skips the record by positional reads and restarts the parser after it.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes per positional read when scanning.
const PIECE: usize = 64 * 1024;

/// The parser's buffer: the most bytes handed out ahead of what it consumed.
pub(crate) const PARSER_BUFFER: usize = 256 * 1024;

/// A record took more than its limit: not an I/O error, the reader handles it.
#[derive(Debug)]
pub(crate) struct RecordTooLong;

impl fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("record longer than the limit")
    }
}

impl std::error::Error for RecordTooLong {}

pub(crate) fn is_too_long(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<RecordTooLong>())
}

/// The most commas a record may hold, for a record limit of `max_record_bytes`: the parser keeps
/// 8 bytes per field besides the text, so a line of commas would take eight times the limit.
/// Never below what a header can have (a header is at most 64 KiB), so rows as wide as any
/// header always fit.
pub(crate) fn max_commas(max_record_bytes: u64) -> u64 {
    (max_record_bytes / 8).max(crate::reader::HEADER_MAX)
}

/// The file from an offset, by positional reads, for the CSV parser; keeps a copy of the last
/// piece handed out so the reader can look at the bytes around a record without a system call.
pub(crate) struct Feed {
    file: Arc<File>,
    /// Feed the parser one newline (not part of the file) before the file's bytes: the parser
    /// strips a UTF-8 byte-order mark at the very start of its input, which must only happen
    /// before the header, never before a record we resume at.
    lead: bool,
    /// File offset of the next byte to hand out.
    pos: u64,
    /// No byte at or after this offset is handed out, except at the end of the file.
    limit: u64,
    /// Commas the current record may still bring in newly handed-out bytes.
    commas_left: u64,
    window: Vec<u8>,
    window_start: u64,
}

impl Feed {
    pub(crate) fn new(file: Arc<File>, pos: u64) -> Feed {
        Feed {
            file,
            lead: true,
            pos,
            limit: u64::MAX,
            commas_left: u64::MAX,
            window: Vec::new(),
            window_start: pos,
        }
    }

    /// File offset of the next byte to hand out (at the end of the file: its size, as read).
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Limits the record the parser starts at file offset `from`: no bytes are handed out past
    /// `max_bytes` plus one (the first byte of its line terminator), or past one parser buffer
    /// if that is more (reads stay full-size with a small cap; the reader checks each record
    /// against the cap anyway), and no more than about `max_commas` commas. Bytes the parser
    /// already buffered are not counted; that slack is bounded by its buffer. The comma count
    /// includes commas of later records in the last piece handed out: a record is only refused
    /// once the count exceeds `max_commas` by more than a buffer, so it really holds more than
    /// `max_commas` commas.
    pub(crate) fn begin_record(&mut self, from: u64, max_bytes: u64, max_commas: u64) {
        let room = max_bytes.saturating_add(1).max(PARSER_BUFFER as u64);
        self.limit = from.saturating_add(room);
        self.commas_left = max_commas.saturating_add(PARSER_BUFFER as u64);
    }

    /// The byte at file offset `off`, if the last piece handed out holds it.
    pub(crate) fn cached(&self, off: u64) -> Option<u8> {
        off.checked_sub(self.window_start)
            .and_then(|i| self.window.get(usize::try_from(i).ok()?))
            .copied()
    }
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.lead {
            self.lead = false;
            buf[0] = b'\n';
            return Ok(1);
        }
        let room = self.limit.saturating_sub(self.pos);
        if room == 0 {
            // At the limit: the end of the file is fine (the record ends there), anything more
            // is refused.
            let mut one = [0u8; 1];
            return match read_at(&self.file, &mut one, self.pos)? {
                0 => Ok(0),
                _ => Err(io::Error::other(RecordTooLong)),
            };
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let mut n = read_at(&self.file, &mut buf[..want], self.pos)?;
        let commas = count_commas(&buf[..n]);
        if commas > self.commas_left {
            // Hand out the bytes before the first comma over the budget, and stop there.
            let mut left = self.commas_left;
            let cut = buf[..n]
                .iter()
                .position(|&b| {
                    if b != b',' {
                        return false;
                    }
                    if left == 0 {
                        return true;
                    }
                    left -= 1;
                    false
                })
                .expect("more commas than the budget");
            n = cut;
            self.limit = self.pos + cut as u64;
            self.commas_left = 0;
            if n == 0 {
                return Err(io::Error::other(RecordTooLong));
            }
        } else {
            self.commas_left -= commas;
        }
        if n > 0 {
            self.window.clear();
            self.window.extend_from_slice(&buf[..n]);
            self.window_start = self.pos;
            self.pos += n as u64;
        }
        Ok(n)
    }
}

/// Commas in `bytes`. Counted per 255 bytes in a byte-wide sum, which the compiler turns into
/// vector instructions: every byte the parser reads goes through here, and a plain
/// `filter().count()` made reading a file about 15% slower.
fn count_commas(bytes: &[u8]) -> u64 {
    bytes
        .chunks(255)
        .map(|c| c.iter().fold(0u8, |n, &b| n + u8::from(b == b',')) as u64)
        .sum()
}

/// `read_at`, retried when interrupted.
pub(crate) fn read_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, off) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Skips line breaks (blank lines, the LF of a CRLF) from `at`: the offset of the next other
/// byte, or of the end of the file, and how many LFs were skipped.
pub(crate) fn skip_line_breaks(file: &File, at: u64) -> io::Result<(u64, u64)> {
    let mut buf = vec![0u8; PIECE];
    let mut off = at;
    let mut lfs = 0;
    loop {
        let n = read_at(file, &mut buf, off)?;
        if n == 0 {
            return Ok((off, lfs));
        }
        for &b in &buf[..n] {
            match b {
                b'\n' => lfs += 1,
                b'\r' => {}
                _ => return Ok((off, lfs)),
            }
            off += 1;
        }
    }
}

/// Which limit a record broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Broke {
    Bytes,
    Commas,
}

/// Where an overlong record is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overlong {
    pub broke: Broke,
    /// Just past the first LF at or after the point where the limit was broken; the end of the
    /// file if there is none.
    pub end: u64,
    /// LFs in `[start, end)`.
    pub lfs: u64,
    /// An LF ends it (not the end of the file).
    pub terminated: bool,
}

/// True if the record text `[start, stop)` (its line terminator excluded) breaks a limit: more
/// than `max_bytes` bytes, or more than `max_commas` commas (quoted or not). Reads the text
/// again only when it is longer than `max_commas` bytes.
pub(crate) fn breaks_limits(
    file: &File,
    start: u64,
    stop: u64,
    max_bytes: u64,
    max_commas: u64,
) -> io::Result<bool> {
    let len = stop.saturating_sub(start);
    if len > max_bytes {
        return Ok(true);
    }
    if len <= max_commas {
        return Ok(false);
    }
    let mut buf = vec![0u8; PIECE];
    let (mut off, mut commas) = (start, 0u64);
    while off < stop {
        let want = (stop - off).min(PIECE as u64) as usize;
        let n = read_at(file, &mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        commas += count_commas(&buf[..n]);
        off += n as u64;
    }
    Ok(commas > max_commas)
}

/// Scans an overlong record from its first byte `start`: finds the point where it breaks a
/// limit (its byte `start + max_bytes`, or its comma number `max_commas + 1`, whichever comes
/// first), then the first LF at or after that point. The same answer whichever way the record
/// was found too long, so the rest of the file is read the same way every time. Reads in 64 KiB
/// pieces: memory stays bounded whatever the line length.
pub(crate) fn scan_overlong(
    file: &File,
    start: u64,
    max_bytes: u64,
    max_commas: u64,
) -> io::Result<Overlong> {
    let mut buf = vec![0u8; PIECE];
    let mut off = start;
    let mut lfs = 0;
    let mut commas = 0u64;
    let mut broke: Option<Broke> = None;
    loop {
        let n = read_at(file, &mut buf, off)?;
        if n == 0 {
            return Ok(Overlong {
                // A record that ends with the file before the limit was broken cannot be
                // overlong; only a caller's mistake gets here without `broke`.
                broke: broke.unwrap_or(Broke::Bytes),
                end: off,
                lfs,
                terminated: false,
            });
        }
        let mut piece = &buf[..n];
        let mut piece_off = off;
        if broke.is_none() {
            // Byte by byte up to the breaking point, counting commas and line breaks.
            let before_cap = usize::try_from((start.saturating_add(max_bytes)).saturating_sub(off))
                .unwrap_or(usize::MAX)
                .min(n);
            for (i, &b) in piece[..before_cap].iter().enumerate() {
                if b == b',' {
                    commas += 1;
                    if commas > max_commas {
                        broke = Some(Broke::Commas);
                        piece = &piece[i..];
                        piece_off += i as u64;
                        break;
                    }
                }
                if b == b'\n' {
                    lfs += 1;
                }
            }
            if broke.is_none() {
                piece = &piece[before_cap..];
                piece_off += before_cap as u64;
                if start.saturating_add(max_bytes) <= piece_off {
                    broke = Some(Broke::Bytes);
                }
            }
        }
        if let Some(b) = broke {
            if let Some(i) = piece.iter().position(|&c| c == b'\n') {
                return Ok(Overlong {
                    broke: b,
                    end: piece_off + i as u64 + 1,
                    lfs: lfs + 1,
                    terminated: true,
                });
            }
        }
        off += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        (dir, File::open(&p).unwrap())
    }

    fn shared(f: &File) -> Arc<File> {
        Arc::new(f.try_clone().unwrap())
    }

    fn read_all(feed: &mut Feed) -> (Vec<u8>, Option<io::Error>) {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            match feed.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn the_feed_leads_with_a_newline_then_the_file_from_its_offset() {
        let (_d, f) = file_with(b"0123456789");
        let mut feed = Feed::new(shared(&f), 4);
        let (got, err) = read_all(&mut feed);
        assert_eq!(got, b"\n456789");
        assert!(err.is_none());
        assert_eq!(feed.pos(), 10);
        assert_eq!(feed.cached(9), Some(b'9'));
        assert_eq!(feed.cached(2), None);
    }

    #[test]
    fn the_feed_refuses_bytes_past_the_limit_but_not_the_end_of_the_file() {
        let len = 2 * PARSER_BUFFER;
        let data: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let (_d, f) = file_with(&data);
        // A record from 2 with a cap of 300000 bytes: offsets 2..=300002 may be handed out
        // (the bytes and a terminator).
        let mut feed = Feed::new(shared(&f), 2);
        feed.begin_record(2, 300_000, 100);
        let (got, err) = read_all(&mut feed);
        assert_eq!(got.len(), 1 + 300_001);
        assert_eq!(&got[1..], &data[2..300_003]);
        assert!(is_too_long(&err.expect("refused")));
        // Exactly up to the end of the file: no refusal.
        let mut feed = Feed::new(shared(&f), 2);
        feed.begin_record(2, len as u64 - 3, 100);
        let (got, err) = read_all(&mut feed);
        assert_eq!(&got[1..], &data[2..]);
        assert!(err.is_none(), "{err:?}");
        // A small cap still lets a parser buffer through: the reader checks the record itself.
        let mut feed = Feed::new(shared(&f), 10);
        feed.begin_record(10, 5, 100);
        let (got, err) = read_all(&mut feed);
        assert_eq!(got.len(), 1 + PARSER_BUFFER);
        assert!(is_too_long(&err.expect("refused")));
    }

    #[test]
    fn the_feed_refuses_a_record_with_too_many_commas() {
        let commas = vec![b','; PARSER_BUFFER + 50];
        let (_d, f) = file_with(&commas);
        let mut feed = Feed::new(shared(&f), 0);
        feed.begin_record(0, u64::MAX - 10, 10);
        let (got, err) = read_all(&mut feed);
        // The budget is the limit plus the parser's buffer.
        assert_eq!(got.len(), 1 + PARSER_BUFFER + 10);
        assert!(is_too_long(&err.expect("refused")));
        // Fewer commas than that: all handed out.
        let mut feed = Feed::new(shared(&f), 0);
        feed.begin_record(0, u64::MAX, 50);
        let (got, err) = read_all(&mut feed);
        assert_eq!(got.len(), 1 + PARSER_BUFFER + 50);
        assert!(err.is_none());
    }

    #[test]
    fn commas_are_counted_across_the_255_byte_groups() {
        assert_eq!(count_commas(b""), 0);
        assert_eq!(count_commas(b"a,b,,c\n"), 3);
        for n in [254, 255, 256, 510, 511, 100_000] {
            let mut v = vec![b','; n];
            v.push(b'x');
            assert_eq!(count_commas(&v), n as u64, "{n}");
            v[0] = b'y';
            assert_eq!(count_commas(&v), n as u64 - 1, "{n}");
        }
    }

    #[test]
    fn skipping_line_breaks_counts_lfs() {
        let (_d, f) = file_with(b"a\r\n\n\r\nb\n\n");
        assert_eq!(skip_line_breaks(&f, 0).unwrap(), (0, 0));
        assert_eq!(skip_line_breaks(&f, 1).unwrap(), (6, 3));
        assert_eq!(skip_line_breaks(&f, 7).unwrap(), (9, 2));
        assert_eq!(skip_line_breaks(&f, 9).unwrap(), (9, 0));
    }

    #[test]
    fn limits_of_record_text() {
        let text = b"ab,cd,ef\n";
        let (_d, f) = file_with(text);
        assert!(!breaks_limits(&f, 0, 8, 8, 2).unwrap());
        assert!(breaks_limits(&f, 0, 8, 7, 2).unwrap(), "9 bytes");
        assert!(breaks_limits(&f, 0, 8, 8, 1).unwrap(), "2 commas");
        assert!(!breaks_limits(&f, 3, 8, 5, 1).unwrap());
    }

    #[test]
    fn an_overlong_record_ends_at_the_first_lf_after_the_breaking_point() {
        // Line breaks before the breaking point are counted but do not end the record (they may
        // be inside a quoted field).
        let data = b"0123\n56789\nabc\ndef";
        let (_d, f) = file_with(data);
        let o = scan_overlong(&f, 0, 3, 100).unwrap();
        assert_eq!(
            (o.broke, o.end, o.lfs, o.terminated),
            (Broke::Bytes, 5, 1, true)
        );
        // The breaking byte itself may be the LF.
        let o = scan_overlong(&f, 0, 4, 100).unwrap();
        assert_eq!((o.end, o.lfs), (5, 1));
        let o = scan_overlong(&f, 0, 5, 100).unwrap();
        assert_eq!((o.end, o.lfs), (11, 2));
        // No LF after the breaking point: to the end of the file, not terminated.
        let o = scan_overlong(&f, 12, 1, 100).unwrap();
        assert_eq!((o.end, o.lfs, o.terminated), (15, 1, true));
        let o = scan_overlong(&f, 15, 1, 100).unwrap();
        assert_eq!((o.end, o.lfs, o.terminated), (18, 0, false));
    }

    #[test]
    fn an_overlong_record_by_commas_ends_at_the_lf_after_the_extra_comma() {
        let data = b"a,b\nc,d,e\nf\n";
        let (_d, f) = file_with(data);
        // The second comma (offset 5) breaks a limit of 1; the LF after it ends at 10.
        let o = scan_overlong(&f, 0, 100, 1).unwrap();
        assert_eq!((o.broke, o.end, o.lfs), (Broke::Commas, 10, 2));
    }

    #[test]
    fn scanning_crosses_pieces() {
        let mut data = vec![b'x'; 3 * PIECE + 10];
        data[PIECE + 3] = b'\n'; // before the breaking point
        data.extend_from_slice(b"\nrest\n");
        let (_d, f) = file_with(&data);
        let o = scan_overlong(&f, 0, 2 * PIECE as u64, 1_000_000).unwrap();
        assert_eq!(o.end, 3 * PIECE as u64 + 11);
        assert_eq!(o.lfs, 2);
        let (_d2, f2) = file_with(&vec![b','; 2 * PIECE]);
        let o = scan_overlong(&f2, 0, u64::MAX, PIECE as u64 + 5).unwrap();
        assert_eq!(
            (o.broke, o.end, o.terminated),
            (Broke::Commas, 2 * PIECE as u64, false)
        );
    }
}
