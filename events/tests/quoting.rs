//! CSV quoting: commas, doubled quotes and line breaks inside quotes, and quotes left open at
//! the end of a file.

mod common;

use common::*;
use ecommerce_events::DeviceType;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Quoting
// ---------------------------------------------------------------------------------------------

#[test]
fn quoted_commas_doubled_quotes_and_line_breaks() {
    let dir = TempDir::new().unwrap();
    let r1 = line_with("product_name", r#""Widget, large ""XL""""#);
    let r2 = line_with("product_name", "\"Line one\nLine two, \"\"quoted\"\"\"");
    let r3 = line_with("product_category", "\"Home, Garden\"");
    let r4 = line_with("device_type", "\"tablet\"");
    let (data, spans) = build(&[
        (HEADER.as_bytes(), "\n"),
        (r1.as_bytes(), "\n"),
        (r2.as_bytes(), "\n"),
        (r3.as_bytes(), "\n"),
        (r4.as_bytes(), "\n"),
    ]);
    let p = write(&dir, "q.csv", &data);
    let recs = read_all(&p);
    let name = |n: &str| Row {
        product_name: n.into(),
        ..good()
    };
    assert_eq!(
        recs,
        vec![
            valid(2, spans[1], true, name(r#"Widget, large "XL""#)),
            valid(3, spans[2], true, name("Line one\nLine two, \"quoted\"")),
            // The embedded newline counts: the next record starts on line 5.
            valid(
                5,
                spans[3],
                true,
                Row {
                    product_category: "Home, Garden".into(),
                    ..good()
                }
            ),
            valid(
                6,
                spans[4],
                true,
                Row {
                    device_type: DeviceType::Tablet,
                    ..good()
                }
            ),
        ]
    );
}

#[test]
fn crlf_inside_quotes_is_data_and_counts_as_a_line() {
    let dir = TempDir::new().unwrap();
    let r1 = line_with("product_name", "\"a\r\nb\r\n\"");
    let r2 = good_line();
    let (data, spans) = build(&[
        (HEADER.as_bytes(), "\r\n"),
        (r1.as_bytes(), "\r\n"),
        (r2.as_bytes(), "\r\n"),
    ]);
    let p = write(&dir, "q.csv", &data);
    assert_eq!(
        read_all(&p),
        vec![
            valid(
                2,
                spans[1],
                true,
                Row {
                    product_name: "a\r\nb\r\n".into(),
                    ..good()
                }
            ),
            valid(5, spans[2], true, good()),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Unterminated quotes
// ---------------------------------------------------------------------------------------------

#[test]
fn unterminated_quote_at_end_of_file_is_rejected_and_not_terminated() {
    let dir = TempDir::new().unwrap();
    let open_rec = "user_2,view,prod_1,\"Half written\nsecond line,Electronics";
    for tail in ["", "\n", "\r\n"] {
        let data = format!("{HEADER}\n{}\n{open_rec}{tail}", good_line());
        let p = write(&dir, "u.csv", &data);
        let recs = within(10, move || read_all(&p));
        assert_eq!(recs.len(), 2, "{tail:?}");
        assert_eq!(recs[0].row(), &good());
        let rec = &recs[1];
        assert_eq!(rec.line, 3);
        assert_eq!(rec.end, data.len() as u64);
        // The record only ended because the file did: it is not complete yet, whatever the last
        // byte is (a producer writing in place may still be writing it).
        assert!(!rec.terminated, "{tail:?}");
        let (column, message, raw) = rec.rejected();
        assert_eq!(column, None);
        assert_eq!(
            message,
            "expected 9 fields as in the header, found 4 (unterminated quote or truncated line at end of file?)"
        );
        assert_eq!(raw, open_rec);
    }
    // A huge file after an opening quote still ends, with one rejected record.
    let mut data = format!("{HEADER}\n\"").into_bytes();
    data.extend(std::iter::repeat_n(b"abc,def\n".iter().copied(), 200_000).flatten());
    let p = write(&dir, "big.csv", &data);
    let recs = within(60, move || read_all(&p));
    assert_eq!(recs.len(), 1);
    assert!(!recs[0].terminated);
    assert_eq!(recs[0].rejected().0, None);
}

#[test]
fn closed_quotes_at_end_of_file_are_terminated() {
    let dir = TempDir::new().unwrap();
    for last in [
        line_with("device_type", "\"mobile\""),
        line_with("device_type", "\"mob\"\"ile\""),
        line_with("product_name", "\"two\nlines\""),
    ] {
        let data = format!("{HEADER}\n{last}\n");
        let p = write(&dir, "c.csv", &data);
        let recs = read_all(&p);
        assert_eq!(recs.len(), 1);
        assert!(recs[0].terminated, "{last}");
        assert_eq!(recs[0].end, data.len() as u64);
        // Without the final newline it is not terminated.
        let p = write(&dir, "c2.csv", format!("{HEADER}\n{last}"));
        assert!(!read_all(&p)[0].terminated, "{last}");
    }
}
