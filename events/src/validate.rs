//! Validation of one record against the contract. Borrowing, allocation-free on the happy path.

use crate::header::HeaderMap;
use crate::schema::{Column, DeviceType, EventType, Price, PRICE_LIMIT_UNITS};
use csv::ByteRecord;
use std::fmt;

/// A record that passed every rule. Text fields borrow from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidRow<'a> {
    pub user_id: &'a str,
    pub event_type: EventType,
    pub product_id: &'a str,
    pub product_name: &'a str,
    pub product_category: &'a str,
    pub price: Price,
    /// Microseconds since the Unix epoch, UTC.
    pub event_timestamp_us: i64,
    pub session_id: &'a str,
    pub device_type: DeviceType,
}

/// Why a record was refused: which column (if one) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub column: Option<&'static str>,
    pub message: String,
}

impl RowError {
    fn col(c: Column, message: String) -> Self {
        RowError {
            column: Some(c.name()),
            message,
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "column {c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Shows a bad value in an error message: at most 40 characters, lossy UTF-8, quoted.
fn shown(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    format!("{out:?}")
}

fn text<'a>(rec: &'a ByteRecord, map: &HeaderMap, c: Column) -> Result<&'a str, RowError> {
    let raw = rec.get(map.index(c)).unwrap_or_default();
    if raw.is_empty() {
        return Err(RowError::col(c, "must not be empty".into()));
    }
    let s = std::str::from_utf8(raw).map_err(|e| {
        RowError::col(
            c,
            format!(
                "is not valid UTF-8 (invalid byte at position {})",
                e.valid_up_to()
            ),
        )
    })?;
    if s.contains('\0') {
        return Err(RowError::col(c, "contains a NUL byte".into()));
    }
    // A string of at most `max` bytes has at most `max` characters: count only longer ones.
    if let Some(max) = c.max_chars().filter(|&m| s.len() > m) {
        let n = s.chars().count();
        if n > max {
            return Err(RowError::col(
                c,
                format!("expected at most {max} characters, found {n}"),
            ));
        }
    }
    Ok(s)
}

/// Validates one record whose field count was already checked against the header.
pub fn validate<'a>(rec: &'a ByteRecord, map: &HeaderMap) -> Result<ValidRow<'a>, RowError> {
    let field = |c: Column| rec.get(map.index(c)).unwrap_or_default();

    let et = field(Column::EventType);
    let event_type = EventType::parse(et).ok_or_else(|| {
        RowError::col(
            Column::EventType,
            format!("expected 'view' or 'purchase', found {}", shown(et)),
        )
    })?;
    let dt = field(Column::DeviceType);
    let device_type = DeviceType::parse(dt).ok_or_else(|| {
        RowError::col(
            Column::DeviceType,
            format!(
                "expected 'mobile', 'desktop' or 'tablet', found {}",
                shown(dt)
            ),
        )
    })?;
    let p = field(Column::Price);
    let price = parse_price(p)
        .map_err(|why| RowError::col(Column::Price, format!("{why}, found {}", shown(p))))?;
    let ts = field(Column::EventTimestamp);
    let event_timestamp_us = parse_timestamp(ts).map_err(|why| {
        RowError::col(
            Column::EventTimestamp,
            format!("{why}, found {}", shown(ts)),
        )
    })?;

    Ok(ValidRow {
        user_id: text(rec, map, Column::UserId)?,
        event_type,
        product_id: text(rec, map, Column::ProductId)?,
        product_name: text(rec, map, Column::ProductName)?,
        product_category: text(rec, map, Column::ProductCategory)?,
        price,
        event_timestamp_us,
        session_id: text(rec, map, Column::SessionId)?,
        device_type,
    })
}

/// `5`, `5.0`, `19.99`: digits, optionally a dot and one or two digits; below 100000000.
pub fn parse_price(s: &[u8]) -> Result<Price, &'static str> {
    const WANT: &str =
        "expected a decimal number 0 <= price < 100000000 with at most 2 fraction digits (like 19.99)";
    if s.is_empty() {
        return Err("must not be empty; expected a decimal number like 19.99");
    }
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if int.is_empty() || !int.iter().all(u8::is_ascii_digit) {
        return Err(WANT);
    }
    let mut cents: i64 = 0;
    for &b in int {
        cents = cents.saturating_mul(10).saturating_add((b - b'0') as i64);
        if cents >= PRICE_LIMIT_UNITS {
            return Err(WANT);
        }
    }
    cents *= 100;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 2 || !f.iter().all(u8::is_ascii_digit) {
            return Err(WANT);
        }
        let mut v = ((f[0] - b'0') as i64) * 10;
        if f.len() == 2 {
            v += (f[1] - b'0') as i64;
        }
        cents += v;
    }
    Ok(Price(cents))
}

fn digits(s: &[u8], n: usize) -> Option<u32> {
    if s.len() < n || !s[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s[..n].iter().fold(0, |a, &b| a * 10 + (b - b'0') as u32))
}

/// RFC 3339 / ISO 8601: `YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}][Z|±HH:MM|±HHMM]`; no offset means UTC.
/// Second 60 (a leap second) is the first second of the next minute, as in PostgreSQL.
/// Returns microseconds since the Unix epoch.
pub fn parse_timestamp(s: &[u8]) -> Result<i64, &'static str> {
    const WANT: &str =
        "expected an ISO 8601 date and time like 2024-05-01T12:30:00Z (optional fraction up to microseconds, optional offset like +02:00)";
    let bad = || WANT;
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || s[13] != b':' || s[16] != b':' {
        return Err(bad());
    }
    if s[10] != b'T' && s[10] != b't' && s[10] != b' ' {
        return Err(bad());
    }
    let y = digits(s, 4).ok_or_else(bad)? as i32;
    let mo = digits(&s[5..], 2).ok_or_else(bad)?;
    let d = digits(&s[8..], 2).ok_or_else(bad)?;
    let h = digits(&s[11..], 2).ok_or_else(bad)?;
    let mi = digits(&s[14..], 2).ok_or_else(bad)?;
    let se = digits(&s[17..], 2).ok_or_else(bad)?;
    let mut rest = &s[19..];
    let mut micros: i64 = 0;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return Err("expected at most 6 fraction digits (microseconds) in the timestamp");
        }
        let frac = digits(&rest[1..], n).ok_or_else(bad)? as i64;
        micros = frac * 10i64.pow((6 - n) as u32);
        rest = &rest[1 + n..];
    }
    let offset_secs: i64 = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (oh, om) = match tail.len() {
                5 if tail[2] == b':' => (digits(tail, 2), digits(&tail[3..], 2)),
                4 => (digits(tail, 2), digits(&tail[2..], 2)),
                2 => (digits(tail, 2), Some(0)),
                _ => (None, None),
            };
            let (oh, om) = (oh.ok_or_else(bad)?, om.ok_or_else(bad)?);
            if oh > 23 || om > 59 {
                return Err("the timestamp's offset is out of range");
            }
            let v = (oh * 3600 + om * 60) as i64;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    let date = chrono::NaiveDate::from_ymd_opt(y, mo, d)
        .ok_or("the timestamp's date does not exist (month or day out of range)")?;
    // Second 60 is a leap second (RFC 3339 allows it). PostgreSQL accepts second 60 at any
    // minute, with or without a fraction, and counts it as 60 seconds after the minute began
    // (23:59:60.5 is 00:00:00.5 of the next day): its timestamp input only refuses seconds above
    // 60 (datetime.c, DecodeDateTime: `tm_sec > SECS_PER_MINUTE`) and then adds the seconds up
    // (tm2timestamp). We do the same, so the row means what PostgreSQL would make of the text.
    if h > 23 || mi > 59 || se > 60 {
        return Err("the timestamp's time of day is out of range");
    }
    let days = date
        .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
        .num_days();
    let secs = days * 86_400 + (h * 3600 + mi * 60 + se) as i64 - offset_secs;
    Ok(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices() {
        assert_eq!(parse_price(b"19.99"), Ok(Price(1999)));
        assert_eq!(parse_price(b"5"), Ok(Price(500)));
        assert_eq!(parse_price(b"5.0"), Ok(Price(500)));
        assert_eq!(parse_price(b"0"), Ok(Price(0)));
        assert_eq!(parse_price(b"99999999.99"), Ok(Price(9_999_999_999)));
        for bad in [
            &b"100000000"[..],
            b"-1",
            b"+1",
            b"1.234",
            b"1.",
            b".5",
            b"$5",
            b"1,000",
            b"1e3",
            b" 5",
            b"abc",
            b"",
        ] {
            assert!(
                parse_price(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn timestamps() {
        let z = parse_timestamp(b"2024-05-01T12:30:00Z").unwrap();
        assert_eq!(z, 1_714_566_600_000_000);
        assert_eq!(parse_timestamp(b"2024-05-01 12:30:00").unwrap(), z);
        assert_eq!(parse_timestamp(b"2024-05-01T14:30:00+02:00").unwrap(), z);
        assert_eq!(parse_timestamp(b"2024-05-01T14:30:00+0200").unwrap(), z);
        assert_eq!(parse_timestamp(b"2024-05-01T10:30:00-02:00").unwrap(), z);
        assert_eq!(
            parse_timestamp(b"2024-05-01T12:30:00.5Z").unwrap(),
            z + 500_000
        );
        assert_eq!(
            parse_timestamp(b"2024-05-01T12:30:00.000123").unwrap(),
            z + 123
        );
        assert_eq!(
            parse_timestamp(b"1969-12-31T23:59:59Z").unwrap(),
            -1_000_000
        );
        for bad in [
            &b"2024-05-01"[..],
            b"2024-05-01T12:30:61Z",
            b"2024-05-01T12:60:00Z",
            b"2024-13-01T00:00:00",
            b"2024-02-30T00:00:00",
            b"2024-05-01T24:00:00",
            b"2024-05-01T12:30:00.1234567Z",
            b"2024-05-01T12:30:00+25:00",
            b"2024-05-01T12:30:00 UTC",
            b"01/05/2024 12:30",
            b"yesterday",
        ] {
            assert!(
                parse_timestamp(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Microseconds since the epoch of a date and time, computed independently with chrono.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micros: i64) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, s)
            .unwrap()
            .and_utc()
            .timestamp_micros()
            + micros
    }

    #[test]
    fn a_leap_second_is_the_first_second_of_the_next_minute() {
        // The last leap second so far: 2016-12-31T23:59:60Z.
        assert_eq!(
            parse_timestamp(b"2016-12-31T23:59:60Z"),
            Ok(at(2017, 1, 1, 0, 0, 0, 0))
        );
        // With a fraction it rolls forward the same way.
        assert_eq!(
            parse_timestamp(b"2016-12-31T23:59:60.5Z"),
            Ok(at(2017, 1, 1, 0, 0, 0, 500_000))
        );
        assert_eq!(
            parse_timestamp(b"2016-12-31T23:59:60.999999Z"),
            Ok(at(2017, 1, 1, 0, 0, 0, 999_999))
        );
        // At any minute, as PostgreSQL: 12:30:60 is 12:31:00.
        assert_eq!(
            parse_timestamp(b"2024-05-01T12:30:60"),
            Ok(at(2024, 5, 1, 12, 31, 0, 0))
        );
        // With an offset: 2017-01-01T00:59:60+01:00 is the same instant as 23:59:60Z.
        assert_eq!(
            parse_timestamp(b"2017-01-01T00:59:60+01:00"),
            Ok(at(2017, 1, 1, 0, 0, 0, 0))
        );
        // The end of a month and of a leap year roll over too.
        assert_eq!(
            parse_timestamp(b"2016-02-29T23:59:60Z"),
            Ok(at(2016, 3, 1, 0, 0, 0, 0))
        );
    }

    #[test]
    fn second_61_is_still_refused_with_the_same_message() {
        for bad in [
            &b"2016-12-31T23:59:61Z"[..],
            b"2016-12-31T23:59:99",
            b"2016-12-31T23:60:60Z",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                Err("the timestamp's time of day is out of range"),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_timestamp(b"2016-12-31T24:00:00Z"),
            Err("the timestamp's time of day is out of range")
        );
    }
}
