//! Records longer than the cap (`EventReader::with_max_record_bytes`): each is rejected with its
//! exact line and offsets, skipped up to the first line break at or after the point it went
//! over the cap, and every later record keeps its exact line and offsets.

use ecommerce_events::pipeline::{Job, Piece, Pipeline};
use ecommerce_events::reader::hash_file;
use ecommerce_events::{EventReader, Outcome, Record, Resume, MAX_RECORD_BYTES_DEFAULT};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

const HEADER: &str = "user_id,event_type,product_id,product_name,product_category,price,event_timestamp,session_id,device_type";

/// What a record turned out to be, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    line: u64,
    start: u64,
    end: u64,
    terminated: bool,
    /// `None` for a valid row; the message and raw text of a rejected one.
    rejected: Option<(String, String)>,
}

fn own(r: Record<'_>) -> Rec {
    Rec {
        line: r.line,
        start: r.start,
        end: r.end,
        terminated: r.terminated,
        rejected: match r.outcome {
            Outcome::Valid(_) => None,
            Outcome::Rejected { error, raw } => {
                assert_eq!(error.column, None);
                Some((error.message, raw))
            }
        },
    }
}

fn write(dir: &TempDir, data: &[u8]) -> PathBuf {
    let p = dir.path().join("f.csv");
    std::fs::write(&p, data).unwrap();
    p
}

/// Every record with the cap `cap`, and the position after each; checks the content hash.
fn read(p: &Path, cap: u64) -> Vec<(Rec, Resume)> {
    let mut r = EventReader::open(p, None)
        .unwrap()
        .with_max_record_bytes(cap);
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        let rec = own(rec);
        out.push((rec, r.position()));
    }
    assert!(r.at_eof());
    assert_eq!(r.content_hash(), Some(hash_file(p).unwrap()));
    out
}

fn good(i: usize) -> String {
    format!("user_{i},view,prod_1,Phone,Electronics,19.99,2024-05-01T12:30:00Z,sess_1,mobile")
}

fn too_long(cap: u64) -> String {
    format!(
        "the record is longer than {cap} bytes (ecommerce_ingest.max_record_size): skipped up to \
         the next line break"
    )
}

fn raw_of(text: &str) -> String {
    if text.len() > 1024 {
        format!("{}…", &text[..1024])
    } else {
        text.to_string()
    }
}

/// Builds a file from `(text, terminator)` lines after the header; returns the bytes and each
/// line's (start, end).
fn build(nl: &str, lines: &[(String, &str)]) -> (Vec<u8>, Vec<(u64, u64)>) {
    let mut out = format!("{HEADER}{nl}").into_bytes();
    let mut spans = Vec::new();
    for (text, term) in lines {
        let s = out.len() as u64;
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(term.as_bytes());
        spans.push((s, out.len() as u64));
    }
    (out, spans)
}

fn valid(line: u64, span: (u64, u64)) -> Rec {
    Rec {
        line,
        start: span.0,
        end: span.1,
        terminated: true,
        rejected: None,
    }
}

fn rejected(line: u64, span: (u64, u64), terminated: bool, message: String, raw: &str) -> Rec {
    Rec {
        line,
        start: span.0,
        end: span.1,
        terminated,
        rejected: Some((message, raw_of(raw))),
    }
}

/// Long lines of these lengths: shorter than the parser's 256 KiB buffer (found too long once
/// parsed) and longer (refused while being read); the result must be the same.
const LONG: [usize; 4] = [101, 3000, 300_000, 1_100_000];
const CAP: u64 = 100;

#[test]
fn a_long_line_in_the_middle() {
    for nl in ["\n", "\r\n"] {
        for n in LONG {
            let dir = TempDir::new().unwrap();
            let long = "x".repeat(n);
            let (data, spans) = build(nl, &[(good(1), nl), (long.clone(), nl), (good(3), nl)]);
            let p = write(&dir, &data);
            let got = read(&p, CAP);
            let recs: Vec<Rec> = got.iter().map(|(r, _)| r.clone()).collect();
            assert_eq!(
                recs,
                vec![
                    valid(2, spans[0]),
                    rejected(3, spans[1], true, too_long(CAP), &long),
                    valid(4, spans[2]),
                ],
                "{nl:?} {n}"
            );
            // Where a later run resumes after the rejected line: just past it, on line 4.
            assert_eq!(
                got[1].1,
                Resume {
                    byte: spans[1].1,
                    line: 4
                }
            );
            assert_eq!(got[2].1.byte, data.len() as u64);
        }
    }
}

#[test]
fn a_long_line_right_after_the_header() {
    for n in LONG {
        let dir = TempDir::new().unwrap();
        let long = format!("{},view", "y".repeat(n));
        let (data, spans) = build("\n", &[(long.clone(), "\n"), (good(2), "\n")]);
        let p = write(&dir, &data);
        let recs: Vec<Rec> = read(&p, CAP).into_iter().map(|(r, _)| r).collect();
        assert_eq!(
            recs,
            vec![
                rejected(2, spans[0], true, too_long(CAP), &long),
                valid(3, spans[1])
            ],
            "{n}"
        );
    }
}

#[test]
fn a_long_last_line_with_and_without_a_line_break() {
    for n in LONG {
        for term in ["\n", "\r\n", ""] {
            let dir = TempDir::new().unwrap();
            let long = "z".repeat(n);
            let (data, spans) = build("\n", &[(good(1), "\n"), (long.clone(), term)]);
            let p = write(&dir, &data);
            let got = read(&p, CAP);
            let message = if term.is_empty() {
                format!(
                    "the record is longer than {CAP} bytes (ecommerce_ingest.max_record_size): \
                     skipped to the end of the file (no line break follows)"
                )
            } else {
                too_long(CAP)
            };
            assert_eq!(got.len(), 2);
            assert_eq!(
                got[1].0,
                rejected(2 + 1, spans[1], !term.is_empty(), message, &long),
                "{n} {term:?}"
            );
            let line_after = if term.is_empty() { 3 } else { 4 };
            assert_eq!(
                got[1].1,
                Resume {
                    byte: data.len() as u64,
                    line: line_after
                }
            );
        }
    }
}

#[test]
fn blank_lines_before_a_long_line_are_skipped_and_counted() {
    for nl in ["\n", "\r\n"] {
        for n in LONG {
            let dir = TempDir::new().unwrap();
            let long = "w".repeat(n);
            let (data, spans) = build(
                nl,
                &[
                    (String::new(), nl),
                    (String::new(), nl),
                    (long.clone(), nl),
                    (good(5), nl),
                ],
            );
            let p = write(&dir, &data);
            let recs: Vec<Rec> = read(&p, CAP).into_iter().map(|(r, _)| r).collect();
            assert_eq!(
                recs,
                vec![
                    rejected(4, spans[2], true, too_long(CAP), &long),
                    valid(5, spans[3])
                ],
                "{nl:?} {n}"
            );
        }
    }
}

#[test]
fn two_long_lines_in_a_row() {
    for n in LONG {
        let dir = TempDir::new().unwrap();
        let a = "a".repeat(n);
        let b = format!("{}\"", "b".repeat(n + 7));
        let (data, spans) = build(
            "\r\n",
            &[(a.clone(), "\r\n"), (b.clone(), "\r\n"), (good(4), "\r\n")],
        );
        let p = write(&dir, &data);
        let recs: Vec<Rec> = read(&p, CAP).into_iter().map(|(r, _)| r).collect();
        assert_eq!(
            recs,
            vec![
                rejected(2, spans[0], true, too_long(CAP), &a),
                rejected(3, spans[1], true, too_long(CAP), &b),
                valid(4, spans[2]),
            ],
            "{n}"
        );
    }
}

#[test]
fn a_long_line_inside_a_quoted_field_with_line_breaks() {
    // The record opens a quoted field over several lines; it goes over the cap inside the long
    // one. It is cut at the line break after that point: the rest of the quoted field is read
    // as a record of its own (the quote is then a plain character), refused for its field
    // count, and the lines after are exact.
    for n in LONG {
        let dir = TempDir::new().unwrap();
        let opening = "user_1,view,prod_1,\"Line one".to_string();
        let middle = "q".repeat(n);
        let closing =
            "line three\",Electronics,19.99,2024-05-01T12:30:00Z,sess_1,mobile".to_string();
        let (data, spans) = build(
            "\n",
            &[
                (opening.clone(), "\n"),
                (middle.clone(), "\n"),
                (closing.clone(), "\n"),
                (good(5), "\n"),
            ],
        );
        let p = write(&dir, &data);
        let recs: Vec<Rec> = read(&p, CAP).into_iter().map(|(r, _)| r).collect();
        let long_record = format!("{opening}\n{middle}");
        assert_eq!(
            recs,
            vec![
                rejected(
                    2,
                    (spans[0].0, spans[1].1),
                    true,
                    too_long(CAP),
                    &long_record
                ),
                rejected(
                    4,
                    spans[2],
                    true,
                    "expected 9 fields as in the header, found 6".into(),
                    &closing
                ),
                valid(5, spans[3]),
            ],
            "{n}"
        );
    }
}

#[test]
fn a_quoted_record_goes_over_the_cap_before_its_first_line_break() {
    // The point the cap is passed comes before any line break: the record ends at the first
    // one, inside its quoted field.
    let dir = TempDir::new().unwrap();
    let first = format!("user_1,view,prod_1,\"{}", "n".repeat(150));
    let (data, spans) = build(
        "\n",
        &[
            (first.clone(), "\n"),
            ("more\",E,1.00,2024-05-01T12:30:00Z,s,mobile".into(), "\n"),
            (good(4), "\n"),
        ],
    );
    let p = write(&dir, &data);
    let recs: Vec<Rec> = read(&p, CAP).into_iter().map(|(r, _)| r).collect();
    assert_eq!(recs[0], rejected(2, spans[0], true, too_long(CAP), &first));
    assert_eq!((recs[1].line, recs[1].start), (3, spans[1].0));
    assert_eq!(recs[2], valid(4, spans[2]));
}

/// A valid row of exactly `len` bytes: the header has an extra column `note` whose value pads
/// it.
fn padded_row(len: usize) -> String {
    let base = format!("{},", good(1));
    assert!(len > base.len());
    format!("{base}{}", "p".repeat(len - base.len()))
}

#[test]
fn a_record_exactly_at_the_cap_is_read_and_one_byte_more_is_not() {
    // Caps around the parser's buffer size, so records of these lengths are read both out of
    // the buffer and by refusing bytes past the cap; blank lines before each record take part
    // of the budget counted from the previous record.
    for cap in [500u64, 300_000] {
        for nl in ["\n", "\r\n"] {
            let dir = TempDir::new().unwrap();
            let head = format!("{HEADER},note{nl}");
            let at = padded_row(cap as usize);
            let over = padded_row(cap as usize + 1);
            let mut data = head.into_bytes();
            let mut spans = Vec::new();
            for (text, blank) in [(&at, false), (&over, true), (&at, true), (&at, false)] {
                if blank {
                    data.extend_from_slice(nl.as_bytes());
                }
                let s = data.len() as u64;
                data.extend_from_slice(text.as_bytes());
                data.extend_from_slice(nl.as_bytes());
                spans.push((s, data.len() as u64));
            }
            let p = write(&dir, &data);
            let recs: Vec<Rec> = read(&p, cap).into_iter().map(|(r, _)| r).collect();
            assert_eq!(
                recs,
                vec![
                    valid(2, spans[0]),
                    rejected(4, spans[1], true, too_long(cap), &over),
                    valid(6, spans[2]),
                    valid(7, spans[3]),
                ],
                "cap {cap} {nl:?}"
            );
            // The same file with a cap one byte lower refuses the others too.
            let recs: Vec<Rec> = read(&p, cap - 1).into_iter().map(|(r, _)| r).collect();
            assert!(
                recs.iter().all(|r| r.rejected.is_some()),
                "cap {cap} {nl:?}"
            );
            assert_eq!(recs.len(), 4);
        }
    }
}

#[test]
fn an_unterminated_last_record_at_the_cap_plus_one() {
    // The parser sees the end of the file right after the byte that passes the cap.
    let dir = TempDir::new().unwrap();
    let head = format!("{HEADER},note\n");
    let at = padded_row(500);
    let over = padded_row(501);
    for (text, ok) in [(&at, true), (&over, false)] {
        let mut data = head.clone().into_bytes();
        data.extend_from_slice(text.as_bytes());
        let p = write(&dir, &data);
        let recs: Vec<Rec> = read(&p, 500).into_iter().map(|(r, _)| r).collect();
        assert_eq!(recs.len(), 1);
        assert!(!recs[0].terminated);
        assert_eq!(recs[0].rejected.is_none(), ok, "{}", text.len());
        assert_eq!(recs[0].end, data.len() as u64);
    }
}

#[test]
fn a_line_of_commas_is_cut_by_its_comma_count() {
    // The cap is high enough in bytes; the commas are too many (65536 at least, since a header
    // may have as many columns). 65535 commas is a row of 65536 fields, merely the wrong width.
    let many = |n: usize| format!("u{}", ",".repeat(n));
    for n in [65_537usize, 400_000] {
        let dir = TempDir::new().unwrap();
        let commas = many(n);
        let ok = many(65_535);
        let (data, spans) = build(
            "\n",
            &[(commas.clone(), "\n"), (ok.clone(), "\n"), (good(4), "\n")],
        );
        let p = write(&dir, &data);
        let recs: Vec<Rec> = read(&p, 524_288).into_iter().map(|(r, _)| r).collect();
        assert_eq!(
            recs,
            vec![
                rejected(
                    2,
                    spans[0],
                    true,
                    "the record has more than 65536 commas (ecommerce_ingest.max_record_size / 8, \
                     at least 65536): skipped up to the next line break"
                        .into(),
                    &commas
                ),
                rejected(
                    3,
                    spans[1],
                    true,
                    "expected 9 fields as in the header, found 65536".into(),
                    &ok
                ),
                valid(4, spans[2]),
            ],
            "{n}"
        );
    }
}

#[test]
fn resuming_after_or_at_a_long_line() {
    let dir = TempDir::new().unwrap();
    let long = "r".repeat(400_000);
    let (data, spans) = build(
        "\n",
        &[(good(1), "\n"), (long.clone(), "\n"), (good(3), "\n")],
    );
    let p = write(&dir, &data);
    let full: Vec<Rec> = read(&p, CAP).into_iter().map(|(r, _)| r).collect();
    for (at, from) in [
        (
            Resume {
                byte: spans[1].1,
                line: 4,
            },
            2,
        ),
        (
            Resume {
                byte: spans[1].0,
                line: 3,
            },
            1,
        ),
    ] {
        let mut r = EventReader::open(&p, Some(at))
            .unwrap()
            .with_max_record_bytes(CAP);
        let mut rest = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            rest.push(own(rec));
        }
        assert_eq!(rest, full[from..], "{at:?}");
        assert_eq!(r.content_hash(), Some(hash_file(&p).unwrap()));
    }
}

#[test]
fn the_default_cap_is_16_mib() {
    assert_eq!(MAX_RECORD_BYTES_DEFAULT, 16 * 1024 * 1024);
    let dir = TempDir::new().unwrap();
    let long = "d".repeat(MAX_RECORD_BYTES_DEFAULT as usize + 1);
    let (data, spans) = build("\n", &[(long.clone(), "\n"), (good(3), "\n")]);
    let p = write(&dir, &data);
    let mut r = EventReader::open(&p, None).unwrap();
    let first = own(r.next_record().unwrap().unwrap());
    assert_eq!(
        first,
        rejected(2, spans[0], true, too_long(MAX_RECORD_BYTES_DEFAULT), &long)
    );
    assert!(first.rejected.unwrap().0.contains("16777216 bytes"));
    assert_eq!(own(r.next_record().unwrap().unwrap()), valid(3, spans[1]));
}

fn run_job(p: &Path, young: bool) -> (Vec<(u64, String)>, ecommerce_events::pipeline::ChunkEnd) {
    let mut pipe = Pipeline::start(2).unwrap();
    let mut t = pipe
        .submit(Job {
            path: p.to_path_buf(),
            resume: None,
            expect_prefix: None,
            max_record_bytes: CAP,
            young,
            chunk_bytes: u64::MAX,
            batch_rows: 1000,
            one_chunk: false,
            generic: None,
        })
        .unwrap();
    let mut rejects = Vec::new();
    let mut end = None;
    while let Some(piece) = pipe.next(&mut t).unwrap() {
        match piece {
            Piece::Batch { rejects: r, .. } => {
                rejects.extend(r.into_iter().map(|r| (r.line, r.reason)))
            }
            Piece::ChunkEnd(e) => end = Some(e),
            Piece::Opened { .. } => {}
            Piece::OpenFailed(e) => panic!("{e}"),
            Piece::ReadFailed(e) => panic!("{e}"),
            Piece::TextBatch { .. } | Piece::Damaged { .. } | Piece::Extra(_) => {
                panic!("an events job gave a pipeline's piece")
            }
        }
    }
    (rejects, end.expect("a chunk end"))
}

#[test]
fn a_young_file_holds_an_unterminated_long_last_line() {
    let dir = TempDir::new().unwrap();
    let long = "h".repeat(300_000);
    let (data, spans) = build("\n", &[(good(1), "\n"), (long, "")]);
    let p = write(&dir, &data);
    // Still being written: the long line is not data yet.
    let (rejects, end) = run_job(&p, true);
    assert!(rejects.is_empty());
    assert!(end.held);
    assert_eq!(
        end.resume,
        Resume {
            byte: spans[1].0,
            line: 3
        }
    );
    // Old enough: rejected, and the file is read to its end.
    let (rejects, end) = run_job(&p, false);
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].0, 3);
    assert!(rejects[0].1.contains("skipped to the end of the file"));
    assert!(end.at_eof && !end.held);
    assert_eq!(end.resume.byte, data.len() as u64);
    assert_eq!(end.hash, Some(end.prefix_hash));
}
