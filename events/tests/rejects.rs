//! Rejected rows: wrong field counts, rejection row by row, and the exact (capped) raw text
//! of a rejected row.

mod common;

use common::*;
use tempfile::TempDir;

#[test]
fn wrong_field_count() {
    let dir = TempDir::new().unwrap();
    let few = "user_1,view,prod_0042";
    let many = format!("{},extra", good_line());
    let p = write(
        &dir,
        "w.csv",
        format!("{HEADER}\n{few}\n{many}\n{}\n", good_line()),
    );
    let recs = read_all(&p);
    assert_eq!(
        recs[0].rejected(),
        (None, "expected 9 fields as in the header, found 3", few)
    );
    assert_eq!(
        recs[1].rejected(),
        (
            None,
            "expected 9 fields as in the header, found 10",
            many.as_str()
        )
    );
    assert_eq!((recs[2].line, recs[2].row()), (4, &good()));
}

#[test]
fn rejection_is_per_row() {
    let dir = TempDir::new().unwrap();
    let rows = [
        line_with("user_id", "user_a"),
        line_with("event_type", "click"),
        line_with("user_id", "user_b"),
        "only,three,fields".to_string(),
        line_with("user_id", "user_c"),
        line_with("price", "1.999"),
    ];
    let mut pieces: Vec<(&[u8], &str)> = vec![(HEADER.as_bytes(), "\n")];
    pieces.extend(rows.iter().map(|r| (r.as_bytes(), "\n")));
    let (data, spans) = build(&pieces);
    let p = write(&dir, "r.csv", &data);
    let recs = read_all(&p);
    assert_eq!(recs.len(), 6);
    for (i, u) in [(0, "user_a"), (2, "user_b"), (4, "user_c")] {
        assert_eq!(
            recs[i],
            valid(
                i as u64 + 2,
                spans[i + 1],
                true,
                Row {
                    user_id: u.into(),
                    ..good()
                }
            )
        );
    }
    for (i, column) in [(1, Some("event_type")), (3, None), (5, Some("price"))] {
        assert_eq!(recs[i].line, i as u64 + 2);
        assert_eq!((recs[i].start, recs[i].end), spans[i + 1]);
        let (c, _, raw) = recs[i].rejected();
        assert_eq!(c, column);
        assert_eq!(raw, rows[i]);
    }
}

// ---------------------------------------------------------------------------------------------
// Raw text of rejected rows
// ---------------------------------------------------------------------------------------------

#[test]
fn raw_text_is_the_exact_line_capped() {
    let dir = TempDir::new().unwrap();
    let bad = line_with("event_type", "click"); // 68 bytes
    let nul = line_with("session_id", "a\0b");
    let multi = line_with("user_id", "ééééé"); // é at bytes 0..10
    let multi_bad = format!("{multi},x");
    let data = format!("{HEADER}\r\n{bad}\r\n{nul}\r\n{multi_bad}\r\n\"open, quote\r\n");
    let p = write(&dir, "raw.csv", &data);

    let recs = read_all(&p);
    assert_eq!(recs[0].rejected().2, bad);
    assert_eq!(
        recs[1].rejected().2,
        format!("{}a\\0b,mobile", &nul[..nul.len() - 10])
    );
    assert_eq!(recs[2].rejected().2, multi_bad);
    // An unterminated quote runs to the end of the file: its raw text has no final line break.
    assert_eq!(recs[3].rejected().2, "\"open, quote");

    // Capped: the first `cap` bytes and an ellipsis.
    let mut r = open(&p).with_raw_cap(10);
    let (recs, _) = drain(&mut r);
    assert_eq!(recs[0].rejected().2, format!("{}…", &bad[..10]));
    // Exactly at the cap (the line terminator does not count): no ellipsis.
    let mut r = open(&p).with_raw_cap(bad.len());
    assert_eq!(next(&mut r).unwrap().rejected().2, bad);
    let mut r = open(&p).with_raw_cap(bad.len() - 1);
    assert_eq!(
        next(&mut r).unwrap().rejected().2,
        format!("{}…", &bad[..bad.len() - 1])
    );
    // The cap never splits a character.
    let mut r = open(&p).with_raw_cap(5);
    let (recs, _) = drain(&mut r);
    assert_eq!(recs[2].rejected().2, "éé…");
}
