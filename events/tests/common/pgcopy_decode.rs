//! A small, test-only decoder of PostgreSQL's binary COPY format, written from the format's
//! documentation (COPY, "Binary Format") and independent of `ecommerce_events::pgcopy`: what
//! the encoder produces must decode back to the values it was given. Used by
//! `events/tests/properties.rs` and by the fuzz targets (`fuzz/src/lib.rs` includes this file).
//!
//! Stream: the 11-byte signature `PGCOPY\n\xff\r\n\0`, an int32 flags field (bit 16: OIDs
//! included; bits 0-15 reserved, must be 0), an int32 header-extension length and that many
//! bytes; then tuples, each an int16 field count and, per field, an int32 length (-1: NULL)
//! and that many bytes; then the trailer, an int16 -1. All integers big-endian.

#![allow(dead_code)]

/// The signature every binary COPY stream starts with.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's timestamp epoch).
pub const PG_EPOCH_UNIX_US: i64 = 946_684_800 * 1_000_000;

/// One tuple: its fields, `None` for NULL.
pub type Tuple = Vec<Option<Vec<u8>>>;

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("{what}: needs {n} bytes at offset {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn i16(&mut self, what: &str) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn i32(&mut self, what: &str) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4, what)?.try_into().unwrap()))
    }
}

/// Every tuple of a whole stream (header to trailer, nothing after it).
pub fn decode(stream: &[u8]) -> Result<Vec<Tuple>, String> {
    let mut c = Cursor {
        bytes: stream,
        at: 0,
    };
    if c.take(SIGNATURE.len(), "signature")? != SIGNATURE {
        return Err("bad signature".into());
    }
    let flags = c.i32("flags")?;
    if flags != 0 {
        return Err(format!("flags {flags:#x}: expected 0 (no OIDs)"));
    }
    let ext = c.i32("header extension length")?;
    if ext < 0 {
        return Err(format!("negative header extension length {ext}"));
    }
    c.take(ext as usize, "header extension")?;
    let mut tuples = Vec::new();
    loop {
        let n = c.i16("field count")?;
        if n == -1 {
            break;
        }
        if n < 0 {
            return Err(format!("negative field count {n}"));
        }
        let mut t = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let len = c.i32("field length")?;
            t.push(match len {
                -1 => None,
                l if l < 0 => return Err(format!("field length {l}")),
                l => Some(c.take(l as usize, "field")?.to_vec()),
            });
        }
        tuples.push(t);
    }
    if c.at != stream.len() {
        return Err(format!("{} bytes after the trailer", stream.len() - c.at));
    }
    Ok(tuples)
}

/// A `user_events` tuple as the worker's COPY sends it (`pgcopy::copy_columns` order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTuple {
    pub user_id: String,
    pub event_type: String,
    pub product_id: String,
    pub product_name: String,
    pub product_category: String,
    /// `numeric`, in hundredths.
    pub price_cents: i64,
    /// `timestamptz`, microseconds since the Unix epoch.
    pub event_timestamp_us: i64,
    pub session_id: String,
    pub device_type: String,
    pub source_file_id: i32,
    pub source_line: i64,
}

fn field(t: &Tuple, i: usize) -> Result<&[u8], String> {
    t.get(i)
        .ok_or_else(|| format!("no field {i}"))?
        .as_deref()
        .ok_or_else(|| format!("field {i} is NULL"))
}

fn text(t: &Tuple, i: usize) -> Result<String, String> {
    String::from_utf8(field(t, i)?.to_vec()).map_err(|e| format!("field {i}: {e}"))
}

fn int(t: &Tuple, i: usize, width: usize) -> Result<i64, String> {
    let b = field(t, i)?;
    if b.len() != width {
        return Err(format!("field {i}: {} bytes, expected {width}", b.len()));
    }
    Ok(match width {
        4 => i32::from_be_bytes(b.try_into().unwrap()) as i64,
        8 => i64::from_be_bytes(b.try_into().unwrap()),
        _ => unreachable!(),
    })
}

/// `numeric` in binary (ndigits, weight, sign, dscale, then base-10000 digits) as hundredths:
/// refuses NaN, negative values, a display scale other than 2 and digits out of range.
pub fn numeric_cents(b: &[u8]) -> Result<i64, String> {
    let mut c = Cursor { bytes: b, at: 0 };
    let ndigits = c.i16("ndigits")?;
    let weight = c.i16("weight")?;
    let sign = c.i16("sign")? as u16;
    let dscale = c.i16("dscale")?;
    if sign != 0 {
        return Err(format!("sign {sign:#x}: expected positive"));
    }
    if dscale != 2 {
        return Err(format!("dscale {dscale}, expected 2"));
    }
    if !(0..=8).contains(&ndigits) || !(-2..=4).contains(&weight) {
        return Err(format!("ndigits {ndigits}, weight {weight}: out of range"));
    }
    // value = sum(d[i] * 10000^(weight - i)); in hundredths: times 100.
    // Scaled by 10000^2 so that weights down to -2 stay integral.
    let mut scaled: i128 = 0;
    for i in 0..ndigits {
        let d = c.i16("digit")?;
        if !(0..10_000).contains(&d) {
            return Err(format!("digit {d} out of range"));
        }
        let exp = weight as i32 - i as i32 + 2;
        if exp < 0 {
            if d != 0 {
                return Err("a digit below the display scale".into());
            }
            continue;
        }
        scaled += d as i128 * 10_000i128.pow(exp as u32);
    }
    if c.at != b.len() {
        return Err("bytes after the digits".into());
    }
    // hundredths = scaled * 100 / 10000^2
    let times_100 = scaled * 100;
    if times_100 % 100_000_000 != 0 {
        return Err("more than 2 fraction digits".into());
    }
    i64::try_from(times_100 / 100_000_000).map_err(|e| e.to_string())
}

/// The `user_events` tuples of a stream the worker's encoder produced.
pub fn decode_events(stream: &[u8]) -> Result<Vec<EventTuple>, String> {
    decode(stream)?
        .iter()
        .map(|t| {
            if t.len() != 11 {
                return Err(format!("{} fields, expected 11", t.len()));
            }
            Ok(EventTuple {
                user_id: text(t, 0)?,
                event_type: text(t, 1)?,
                product_id: text(t, 2)?,
                product_name: text(t, 3)?,
                product_category: text(t, 4)?,
                price_cents: numeric_cents(field(t, 5)?)?,
                event_timestamp_us: int(t, 6, 8)?
                    .checked_add(PG_EPOCH_UNIX_US)
                    .ok_or("timestamp out of range")?,
                session_id: text(t, 7)?,
                device_type: text(t, 8)?,
                source_file_id: int(t, 9, 4)? as i32,
                source_line: int(t, 10, 8)?,
            })
        })
        .collect()
}
