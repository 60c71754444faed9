//! Line endings (LF, CRLF, mixed, none at the end), blank lines, and exact line numbers and
//! byte offsets, also across the parser's buffer boundaries.

mod common;

use common::*;
use ecommerce_events::reader::hash_file;
use ecommerce_events::{EventReader, Resume};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Line endings
// ---------------------------------------------------------------------------------------------

/// Header plus three good rows with the given terminators; checks lines, offsets, flags and
/// the resume position after each record.
fn check_endings(terms: [&str; 4], expect_last_terminated: bool) {
    let dir = TempDir::new().unwrap();
    let rows: Vec<String> = (1..=3)
        .map(|i| line_with("user_id", &format!("user_{i}")))
        .collect();
    let (data, spans) = build(&[
        (HEADER.as_bytes(), terms[0]),
        (rows[0].as_bytes(), terms[1]),
        (rows[1].as_bytes(), terms[2]),
        (rows[2].as_bytes(), terms[3]),
    ]);
    let p = write(&dir, "e.csv", &data);
    let mut r = open(&p);
    assert_eq!(
        r.position(),
        Resume {
            byte: spans[0].1,
            line: 2
        },
        "after the header ({terms:?})"
    );
    for i in 0..3 {
        let rec = next(&mut r).unwrap();
        let last = i == 2;
        assert_eq!(
            rec,
            valid(
                i as u64 + 2,
                spans[i + 1],
                !last || expect_last_terminated,
                Row {
                    user_id: format!("user_{}", i + 1),
                    ..good()
                }
            ),
            "{terms:?}"
        );
        let next_line = if last && !expect_last_terminated {
            i as u64 + 2
        } else {
            i as u64 + 3
        };
        assert_eq!(
            r.position(),
            Resume {
                byte: spans[i + 1].1,
                line: next_line
            },
            "{terms:?}"
        );
    }
    assert!(next(&mut r).is_none());
    assert_eq!(r.position().byte, data.len() as u64);
}

#[test]
fn lf_line_endings() {
    check_endings(["\n", "\n", "\n", "\n"], true);
}

#[test]
fn crlf_line_endings() {
    check_endings(["\r\n", "\r\n", "\r\n", "\r\n"], true);
}

#[test]
fn mixed_line_endings() {
    check_endings(["\r\n", "\n", "\r\n", "\n"], true);
    check_endings(["\n", "\r\n", "\n", "\r\n"], true);
}

#[test]
fn no_trailing_newline_only_the_last_record_is_unterminated() {
    check_endings(["\n", "\n", "\n", ""], false);
    check_endings(["\r\n", "\r\n", "\r\n", ""], false);
}

#[test]
fn blank_lines_are_skipped_and_counted() {
    for nl in ["\n", "\r\n"] {
        let dir = TempDir::new().unwrap();
        let bad = line_with("price", "abc");
        let (data, spans) = build(&[
            (HEADER.as_bytes(), nl),
            (b"", nl),
            (good_line().as_bytes(), nl),
            (b"", nl),
            (b"", nl),
            (bad.as_bytes(), nl),
            (b"", nl),
        ]);
        let p = write(&dir, "b.csv", &data);
        let recs = read_all(&p);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], valid(3, spans[2], true, good()));
        assert_eq!(
            (recs[1].line, recs[1].start, recs[1].end),
            (6, spans[5].0, spans[5].1)
        );
        // The raw text is the record's own line, without the blank lines around it.
        assert_eq!(recs[1].rejected().2, bad);
    }
}

#[test]
fn large_file_crosses_buffer_boundaries() {
    // Records spanning the parser's 256 KiB chunks, in CRLF: exact lines and offsets throughout,
    // and resuming anywhere gives the same result.
    let dir = TempDir::new().unwrap();
    let mut pieces: Vec<String> = Vec::new();
    let mut data = format!("\u{feff}{HEADER}\r\n").into_bytes();
    let mut expect = Vec::new();
    let mut line = 2;
    for i in 0..12_000u64 {
        let l = if i % 7 == 3 {
            line_with("product_name", &format!("\"name {i}\r\nsecond\""))
        } else {
            line_with("user_id", &format!("user_{i}"))
        };
        let start = data.len() as u64;
        data.extend_from_slice(l.as_bytes());
        data.extend_from_slice(b"\r\n");
        expect.push((line, start, data.len() as u64));
        line += if i % 7 == 3 { 2 } else { 1 };
        pieces.push(l);
    }
    let p = write(&dir, "big.csv", &data);
    let (full, hash) = drain(&mut open(&p));
    assert_eq!(hash, hash_file(&p).unwrap());
    assert_eq!(
        full.iter()
            .map(|r| (r.line, r.start, r.end))
            .collect::<Vec<_>>(),
        expect
    );
    assert!(full
        .iter()
        .all(|r| matches!(r.got, Got::Valid(_)) && r.terminated));
    for k in [1, 999, 5000, 11_999] {
        let mut a = open(&p);
        for _ in 0..k {
            next(&mut a).unwrap();
        }
        let pos = a.position();
        let (rest, h) = drain(&mut EventReader::open(&p, Some(pos)).unwrap());
        assert_eq!(rest, full[k..]);
        assert_eq!(h, hash);
    }
}
