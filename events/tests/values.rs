//! Field values: each kind of bad value rejects its row only, non-UTF-8 bytes, text limits in
//! characters, prices in cents, timestamps with and without offsets.

mod common;

use common::*;
use ecommerce_events::{DeviceType, EventType};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// One bad row each, between good rows: (column, CSV text, expected column, expected message).
#[test]
fn each_kind_of_bad_value_rejects_its_row_only() {
    const PRICE: &str =
        "expected a decimal number 0 <= price < 100000000 with at most 2 fraction digits (like 19.99)";
    const TS: &str = "expected an ISO 8601 date and time like 2024-05-01T12:30:00Z (optional fraction up to microseconds, optional offset like +02:00)";
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, String, String)> = vec![
        // Empty fields, one per column.
        ("user_id", "".into(), "must not be empty".into()),
        (
            "event_type",
            "".into(),
            "expected 'view' or 'purchase', found \"\"".into(),
        ),
        ("product_id", "".into(), "must not be empty".into()),
        ("product_name", "\"\"".into(), "must not be empty".into()),
        ("product_category", "".into(), "must not be empty".into()),
        (
            "price",
            "".into(),
            "must not be empty; expected a decimal number like 19.99, found \"\"".into(),
        ),
        ("event_timestamp", "".into(), format!("{TS}, found \"\"")),
        ("session_id", "".into(), "must not be empty".into()),
        (
            "device_type",
            "".into(),
            "expected 'mobile', 'desktop' or 'tablet', found \"\"".into(),
        ),
        // Enumerations.
        (
            "event_type",
            "click".into(),
            "expected 'view' or 'purchase', found \"click\"".into(),
        ),
        (
            "device_type",
            "phone".into(),
            "expected 'mobile', 'desktop' or 'tablet', found \"phone\"".into(),
        ),
        // Prices.
        ("price", "-1".into(), format!("{PRICE}, found \"-1\"")),
        ("price", "1.234".into(), format!("{PRICE}, found \"1.234\"")),
        ("price", "$5".into(), format!("{PRICE}, found \"$5\"")),
        ("price", "5€".into(), format!("{PRICE}, found \"5€\"")),
        ("price", "\"1,000\"".into(), format!("{PRICE}, found \"1,000\"")),
        (
            "price",
            "100000000".into(),
            format!("{PRICE}, found \"100000000\""),
        ),
        ("price", "abc".into(), format!("{PRICE}, found \"abc\"")),
        // Timestamps.
        (
            "event_timestamp",
            "01/05/2024 12:30:00".into(),
            format!("{TS}, found \"01/05/2024 12:30:00\""),
        ),
        (
            "event_timestamp",
            "2024-02-30T12:00:00Z".into(),
            "the timestamp's date does not exist (month or day out of range), found \"2024-02-30T12:00:00Z\"".into(),
        ),
        (
            "event_timestamp",
            "2024-05-01T12:30:00.1234567Z".into(),
            "expected at most 6 fraction digits (microseconds) in the timestamp, found \"2024-05-01T12:30:00.1234567Z\"".into(),
        ),
        (
            "event_timestamp",
            "2024-05-01T12:30:00+2:00".into(),
            format!("{TS}, found \"2024-05-01T12:30:00+2:00\""),
        ),
        (
            "event_timestamp",
            "2024-05-01T12:30:00+24:00".into(),
            "the timestamp's offset is out of range, found \"2024-05-01T12:30:00+24:00\"".into(),
        ),
        // Text over the limit.
        (
            "user_id",
            long(51),
            "expected at most 50 characters, found 51".into(),
        ),
        (
            "product_id",
            long(51),
            "expected at most 50 characters, found 51".into(),
        ),
        (
            "product_name",
            long(201),
            "expected at most 200 characters, found 201".into(),
        ),
        (
            "product_category",
            long(101),
            "expected at most 100 characters, found 101".into(),
        ),
        (
            "session_id",
            long(101),
            "expected at most 100 characters, found 101".into(),
        ),
        // Characters, not bytes: 51 two-byte characters are too many.
        (
            "user_id",
            "é".repeat(51),
            "expected at most 50 characters, found 51".into(),
        ),
        // NUL byte.
        ("session_id", "se\0ss".into(), "contains a NUL byte".into()),
    ];
    let dir = TempDir::new().unwrap();
    let mut data = format!("{HEADER}\n{}\n", good_line());
    let mut lines = Vec::new();
    for (column, text, _) in &cases {
        let l = line_with(column, text);
        data.push_str(&l);
        data.push('\n');
        lines.push(l);
    }
    data.push_str(&good_line());
    data.push('\n');
    let p = write(&dir, "bad.csv", &data);
    let recs = read_all(&p);
    assert_eq!(recs.len(), cases.len() + 2);
    assert_eq!(recs[0].row(), &good());
    assert_eq!(recs[0].line, 2);
    for (i, (column, _, message)) in cases.iter().enumerate() {
        let rec = &recs[i + 1];
        assert_eq!(rec.line, i as u64 + 3);
        assert!(rec.terminated);
        let raw = lines[i].replace('\0', "\\0");
        assert_eq!(
            rec.got,
            Got::Rejected {
                column: Some(column),
                message: message.clone(),
                raw,
            },
            "case {i}: {column}"
        );
    }
    let last = recs.last().unwrap();
    assert_eq!(last.row(), &good());
    assert_eq!(last.line, cases.len() as u64 + 3);
}

#[test]
fn non_utf8_bytes_in_a_field() {
    let dir = TempDir::new().unwrap();
    let mut data = format!("{HEADER}\n").into_bytes();
    let bad = b"user_1,view,prod_0042,Caf\xe9 cr\xe8me,Electronics,19.99,2024-05-01T12:30:00Z,sess_1,mobile"
        .to_vec();
    data.extend_from_slice(&bad);
    data.push(b'\n');
    data.extend_from_slice(good_line().as_bytes());
    data.push(b'\n');
    let p = write(&dir, "u.csv", &data);
    let recs = read_all(&p);
    let (column, message, raw) = recs[0].rejected();
    assert_eq!(column, Some("product_name"));
    assert_eq!(message, "is not valid UTF-8 (invalid byte at position 3)");
    assert_eq!(raw, String::from_utf8_lossy(&bad));
    assert_eq!(recs[1].row(), &good());
    assert_eq!(recs[1].line, 3);
}

#[test]
fn text_exactly_at_the_limit_counts_characters_not_bytes() {
    let dir = TempDir::new().unwrap();
    let user = "é".repeat(50); // 100 bytes
    let product = "🙂".repeat(50); // 200 bytes
    let name = "€, \"".repeat(50); // 200 characters, with commas and quotes
    let category = "ü".repeat(100);
    let session = "日".repeat(100);
    let mut f = fields();
    f[col("user_id")] = user.clone();
    f[col("product_id")] = product.clone();
    f[col("product_name")] = format!("\"{}\"", name.replace('"', "\"\""));
    f[col("product_category")] = category.clone();
    f[col("session_id")] = session.clone();
    let ascii = [
        ("user_id", "u".repeat(50)),
        ("product_id", "p".repeat(50)),
        ("product_name", "n".repeat(200)),
        ("product_category", "c".repeat(100)),
        ("session_id", "s".repeat(100)),
    ];
    let mut data = format!("{HEADER}\n{}\n", f.join(","));
    for (c, v) in &ascii {
        data.push_str(&line_with(c, v));
        data.push('\n');
    }
    let p = write(&dir, "l.csv", data);
    let recs = read_all(&p);
    assert_eq!(
        recs[0].row(),
        &Row {
            user_id: user,
            product_id: product,
            product_name: name,
            product_category: category,
            session_id: session,
            ..good()
        }
    );
    let r = |i: usize| recs[i].row().clone();
    assert_eq!(r(1).user_id, ascii[0].1);
    assert_eq!(r(2).product_id, ascii[1].1);
    assert_eq!(r(3).product_name, ascii[2].1);
    assert_eq!(r(4).product_category, ascii[3].1);
    assert_eq!(r(5).session_id, ascii[4].1);
}

#[test]
fn prices_in_cents_and_event_types() {
    let dir = TempDir::new().unwrap();
    let cases = [
        ("19.99", 1999),
        ("5", 500),
        ("5.0", 500),
        ("0.5", 50),
        ("0", 0),
        ("99999999.99", 9_999_999_999),
        ("\"7.05\"", 705),
    ];
    let mut data = format!("{HEADER}\n");
    for (p, _) in &cases {
        let mut f = fields();
        f[col("price")] = p.to_string();
        f[col("event_type")] = "purchase".into();
        f[col("device_type")] = "desktop".into();
        data.push_str(&f.join(","));
        data.push('\n');
    }
    let p = write(&dir, "p.csv", data);
    let recs = read_all(&p);
    for (rec, (text, cents)) in recs.iter().zip(cases) {
        assert_eq!(
            rec.row(),
            &Row {
                price_cents: cents,
                event_type: EventType::Purchase,
                device_type: DeviceType::Desktop,
                ..good()
            },
            "{text}"
        );
    }
}

#[test]
fn timestamps_with_and_without_offsets_are_the_same_instant() {
    let dir = TempDir::new().unwrap();
    let cases: [(&str, i64); 16] = [
        ("2024-05-01T12:30:00Z", T0),
        ("2024-05-01T12:30:00z", T0),
        ("2024-05-01T14:30:00+02:00", T0),
        ("2024-05-01T07:00:00-0530", T0),
        ("2024-05-01T18:00:00+05:30", T0),
        ("2024-05-01T12:30:00", T0),
        ("2024-05-01 12:30:00", T0),
        ("2024-05-01 14:30:00+02:00", T0),
        ("2024-05-01T12:30:00.1Z", T0 + 100_000),
        ("2024-05-01T12:30:00.12Z", T0 + 120_000),
        ("2024-05-01T12:30:00.123", T0 + 123_000),
        ("2024-05-01T12:30:00.1234+00:00", T0 + 123_400),
        ("2024-05-01T12:30:00.12345Z", T0 + 123_450),
        ("2024-05-01T14:30:00.123456+02:00", T0 + 123_456),
        ("2024-05-01T07:00:00.000001-0530", T0 + 1),
        ("2024-05-01T12:30:00.000000Z", T0),
    ];
    let mut data = format!("{HEADER}\n");
    for (ts, _) in &cases {
        data.push_str(&line_with("event_timestamp", ts));
        data.push('\n');
    }
    let p = write(&dir, "t.csv", data);
    let recs = read_all(&p);
    assert_eq!(recs.len(), cases.len());
    for (rec, (ts, us)) in recs.iter().zip(cases) {
        assert_eq!(rec.row().event_timestamp_us, us, "{ts}");
    }
}
