//! PostgreSQL's binary COPY format for validated events: the worker hands these bytes to the
//! server's own COPY FROM machinery, which then skips CSV parsing and text-to-type conversion
//! (timestamps and prices were already parsed here). Pure Rust, no PostgreSQL needed.
//!
//! Columns, in order (see [`copy_columns`]): the nine contract columns, then `source_file_id`
//! (int4, the file's id in the ledger) and `source_line` (int8).

use crate::schema::COLUMNS;
use crate::validate::ValidRow;

/// The provenance columns after the contract's: the file's ledger id and the line.
pub const PROVENANCE_COLUMNS: [&str; 2] = ["source_file_id", "source_line"];

/// The `user_events` columns a COPY stream fills, in stream order: the contract's
/// [`COLUMNS`] (one definition of the schema), then [`PROVENANCE_COLUMNS`].
pub fn copy_columns() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().chain(PROVENANCE_COLUMNS.iter()).copied()
}

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Builds one binary COPY stream: header, tuples, trailer. Remembers where each tuple starts
/// so a single tuple can be re-sent on its own.
#[derive(Default)]
pub struct CopyEncoder {
    buf: Vec<u8>,
    starts: Vec<usize>,
    /// The trailer was appended by [`CopyEncoder::finish`].
    sealed: bool,
}

fn header(buf: &mut Vec<u8>) {
    buf.extend_from_slice(SIGNATURE);
    buf.extend_from_slice(&0i32.to_be_bytes()); // flags
    buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
}

const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

fn text(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as i32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// `numeric` in binary: base-10000 digits, weight, sign, display scale 2.
/// `cents` is 0 <= cents < 10^10 (the contract's price range).
fn numeric_cents(buf: &mut Vec<u8>, cents: i64) {
    let int = cents / 100;
    let frac = (cents % 100) as i16 * 100;
    let mut digits: [i16; 3] = [0; 3];
    let (n, weight) = if int >= 10_000 {
        digits = [(int / 10_000) as i16, (int % 10_000) as i16, frac];
        (3, 1i16)
    } else {
        digits[0] = int as i16;
        digits[1] = frac;
        (2, 0i16)
    };
    buf.extend_from_slice(&(8 + 2 * n as i32).to_be_bytes());
    buf.extend_from_slice(&(n as i16).to_be_bytes()); // ndigits
    buf.extend_from_slice(&weight.to_be_bytes());
    buf.extend_from_slice(&0i16.to_be_bytes()); // sign: positive
    buf.extend_from_slice(&2i16.to_be_bytes()); // dscale
    for d in &digits[..n] {
        buf.extend_from_slice(&d.to_be_bytes());
    }
}

fn int4(buf: &mut Vec<u8>, v: i32) {
    buf.extend_from_slice(&4i32.to_be_bytes());
    buf.extend_from_slice(&v.to_be_bytes());
}

fn int8(buf: &mut Vec<u8>, v: i64) {
    buf.extend_from_slice(&8i32.to_be_bytes());
    buf.extend_from_slice(&v.to_be_bytes());
}

impl CopyEncoder {
    pub fn new() -> Self {
        CopyEncoder::with_capacity(0, 0)
    }

    /// An empty stream with room for `tuples` tuples in `bytes` bytes.
    pub fn with_capacity(tuples: usize, bytes: usize) -> Self {
        let mut e = CopyEncoder {
            buf: Vec::with_capacity(bytes),
            starts: Vec::with_capacity(tuples),
            sealed: false,
        };
        e.clear();
        e
    }

    /// Bytes of the stream so far.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Starts a new stream (keeps the allocation).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.starts.clear();
        self.sealed = false;
        header(&mut self.buf);
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Appends one tuple. Panics after [`CopyEncoder::finish`] (call `clear` first).
    pub fn push(&mut self, row: &ValidRow<'_>, source_file_id: i32, source_line: u64) {
        assert!(!self.sealed, "push after finish");
        let b = &mut self.buf;
        self.starts.push(b.len());
        b.extend_from_slice(&((COLUMNS.len() + PROVENANCE_COLUMNS.len()) as i16).to_be_bytes());
        text(b, row.user_id);
        text(b, row.event_type.as_str());
        text(b, row.product_id);
        text(b, row.product_name);
        text(b, row.product_category);
        numeric_cents(b, row.price.cents());
        int8(b, row.event_timestamp_us - PG_EPOCH_OFFSET_US);
        text(b, row.session_id);
        text(b, row.device_type.as_str());
        int4(b, source_file_id);
        int8(b, source_line as i64);
    }

    /// The whole stream, trailer included.
    pub fn finish(&mut self) -> &[u8] {
        if !self.sealed {
            self.buf.extend_from_slice(&TRAILER);
            self.sealed = true;
        }
        &self.buf
    }

    /// Sets `source_file_id` of every tuple pushed so far (rows can be encoded before the
    /// file's ledger id is known: the id is the second-to-last field, at a fixed distance from
    /// each tuple's end).
    pub fn set_source_file_id(&mut self, id: i32) {
        // Each tuple ends with source_file_id (length 4, value 4) and source_line (length 4,
        // value 8): the id's value starts 16 bytes before the end.
        let tuples_end = self.buf.len() - if self.sealed { TRAILER.len() } else { 0 };
        for i in 0..self.starts.len() {
            let end = self.starts.get(i + 1).copied().unwrap_or(tuples_end);
            self.buf[end - 16..end - 12].copy_from_slice(&id.to_be_bytes());
        }
    }

    /// Writes into `out` a complete stream holding only tuple `i`.
    pub fn single(&self, i: usize, out: &mut Vec<u8>) {
        let tuples_end = self.buf.len() - if self.sealed { TRAILER.len() } else { 0 };
        let start = self.starts[i];
        let end = self.starts.get(i + 1).copied().unwrap_or(tuples_end);
        out.clear();
        header(out);
        out.extend_from_slice(&self.buf[start..end]);
        out.extend_from_slice(&TRAILER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DeviceType, EventType, Price};

    fn row(cents: i64) -> ValidRow<'static> {
        ValidRow {
            user_id: "u1",
            event_type: EventType::View,
            product_id: "p",
            product_name: "n, \"q\"",
            product_category: "Books",
            price: Price(cents),
            event_timestamp_us: PG_EPOCH_OFFSET_US + 1,
            session_id: "s",
            device_type: DeviceType::Tablet,
        }
    }

    fn numeric_bytes(cents: i64) -> Vec<u8> {
        let mut b = Vec::new();
        numeric_cents(&mut b, cents);
        b
    }

    #[test]
    fn numeric_encoding() {
        // 19.99: two digits [19, 9900], weight 0, dscale 2.
        assert_eq!(
            numeric_bytes(1999),
            [0, 0, 0, 12, 0, 2, 0, 0, 0, 0, 0, 2, 0, 19, 0x26, 0xAC]
        );
        // 123456.70: [12, 3456, 7000], weight 1.
        assert_eq!(
            numeric_bytes(12_345_670),
            [0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 2, 0, 12, 0x0D, 0x80, 0x1B, 0x58]
        );
        assert_eq!(numeric_bytes(0)[4..6], [0, 2]);
    }

    #[test]
    fn stream_layout_and_single_tuples() {
        let mut e = CopyEncoder::new();
        e.push(&row(100), 7, 2);
        e.push(&row(250), 7, 3);
        assert_eq!(e.len(), 2);
        let whole = e.finish().to_vec();
        assert!(whole.starts_with(SIGNATURE));
        assert!(whole.ends_with(&TRAILER));
        assert_eq!(&whole[19..21], &11i16.to_be_bytes());
        let mut one = Vec::new();
        e.single(1, &mut one);
        let mut manual = CopyEncoder::new();
        manual.push(&row(250), 7, 3);
        assert_eq!(one, manual.finish());
        // Header (19 bytes) + two equally long tuples + trailer (2 bytes).
        e.single(0, &mut one);
        let tuple = one.len() - 19 - 2;
        assert_eq!(whole.len(), 19 + 2 * tuple + 2);
    }
    #[test]
    fn source_file_id_is_set_afterwards() {
        let mut later = CopyEncoder::new();
        later.push(&row(100), 0, 2);
        later.push(&row(12_345_670), 0, 3);
        later.set_source_file_id(41);
        let mut direct = CopyEncoder::new();
        direct.push(&row(100), 41, 2);
        direct.push(&row(12_345_670), 41, 3);
        assert_eq!(later.finish(), direct.finish());
        // After finish (sealed) too, and a second time.
        later.set_source_file_id(-7);
        let mut again = CopyEncoder::new();
        again.push(&row(100), -7, 2);
        again.push(&row(12_345_670), -7, 3);
        assert_eq!(later.finish(), again.finish());
    }
}
