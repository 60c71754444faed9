//! Resuming a file from a committed position, checked against the hash of the committed
//! bytes; the content hash.

mod common;

use common::*;
use ecommerce_events::reader::hash_file;
use ecommerce_events::{Changed, EventReader, OpenError, Resume};
use std::path::Path;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Resume and content hash
// ---------------------------------------------------------------------------------------------

fn resume_file(nl: &str, bom: bool, last_term: &str) -> Vec<u8> {
    let rows = [
        line_with("user_id", "user_1"),
        line_with(
            "product_name",
            &format!("\"multi{nl}line, \"\"quoted\"\"\""),
        ),
        line_with("price", "1.234"),
        String::new(),                            // a blank line
        line_with("user_id", "\u{feff}user_bom"), // a field that starts with U+FEFF
        "too,few".to_string(),
        line_with("user_id", "user_7"),
    ];
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    out.extend_from_slice(HEADER.as_bytes());
    out.extend_from_slice(nl.as_bytes());
    for (i, r) in rows.iter().enumerate() {
        out.extend_from_slice(r.as_bytes());
        out.extend_from_slice(if i + 1 == rows.len() { last_term } else { nl }.as_bytes());
    }
    out
}

#[test]
fn resume_from_any_position_gives_exactly_the_rest() {
    let dir = TempDir::new().unwrap();
    for nl in ["\n", "\r\n"] {
        for bom in [false, true] {
            for last_term in [nl, ""] {
                let data = resume_file(nl, bom, last_term);
                let p = write(&dir, "r.csv", &data);
                let (full, full_hash) = drain(&mut open(&p));
                assert_eq!(full_hash, hash_file(&p).unwrap());
                assert_eq!(full.len(), 6);
                assert_eq!(
                    full.iter().map(|r| r.line).collect::<Vec<_>>(),
                    vec![2, 3, 5, 7, 8, 9]
                );
                assert_eq!(full[3].row().user_id, "\u{feff}user_bom");
                assert_eq!(full[5].terminated, !last_term.is_empty());
                for k in 0..=full.len() {
                    let mut a = open(&p);
                    for rec in &full[..k] {
                        assert_eq!(&next(&mut a).unwrap(), rec);
                    }
                    assert_eq!(a.content_hash(), None, "no hash before the end");
                    let pos = a.position();
                    if k > 0 {
                        assert_eq!(pos.byte, full[k - 1].end);
                    }
                    if k < full.len() && full[k].start == pos.byte {
                        assert_eq!(pos.line, full[k].line);
                    }
                    drop(a);
                    let mut b = EventReader::open(&p, Some(pos)).unwrap();
                    assert_eq!(b.position(), pos);
                    let (rest, hash) = drain(&mut b);
                    assert_eq!(rest, full[k..], "nl={nl:?} bom={bom} k={k}");
                    assert_eq!(hash, full_hash, "nl={nl:?} bom={bom} k={k}");
                    // Resuming at a record's own start and line (a held, unterminated record).
                    if k < full.len() {
                        let at = Resume {
                            byte: full[k].start,
                            line: full[k].line,
                        };
                        let (rest, hash) = drain(&mut EventReader::open(&p, Some(at)).unwrap());
                        assert_eq!(rest, full[k..], "nl={nl:?} bom={bom} k={k} (start)");
                        assert_eq!(hash, full_hash);
                    }
                }
                // A resume point at or before the header means "from the first record".
                for early in [Resume::default(), Resume { byte: 3, line: 1 }] {
                    let (rest, hash) = drain(&mut EventReader::open(&p, Some(early)).unwrap());
                    assert_eq!(rest, full);
                    assert_eq!(hash, full_hash);
                }
            }
        }
    }
}

fn xxh3(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::default();
    h.write(bytes);
    h.finish()
}

#[test]
fn resume_checked_against_the_hash_of_the_committed_bytes() {
    let dir = TempDir::new().unwrap();
    for nl in ["\n", "\r\n"] {
        let data = resume_file(nl, true, nl);
        let p = write(&dir, "r.csv", &data);
        let (full, full_hash) = drain(&mut open(&p));
        for k in 1..=full.len() {
            let mut a = open(&p);
            for _ in 0..k {
                next(&mut a).unwrap();
            }
            let at = a.position();
            // The hash a commit up to here records.
            assert_eq!(
                a.prefix_hash(at.byte).unwrap(),
                xxh3(&data[..at.byte as usize])
            );
            drop(a);
            let good = xxh3(&data[..at.byte as usize]);
            let mut r = EventReader::open_checked(&p, Some(at), Some(good)).unwrap();
            let (rest, hash) = drain(&mut r);
            assert_eq!(rest, full[k..], "nl={nl:?} k={k}");
            assert_eq!(hash, full_hash);
            match EventReader::open_checked(&p, Some(at), Some(good ^ 1)) {
                Err(OpenError::Changed(Changed::PrefixDiffers {
                    committed,
                    expected,
                    found,
                })) => assert_eq!((committed, expected, found), (at.byte, good ^ 1, good)),
                other => panic!("k={k}: {:?}", other.map(|_| "opened")),
            }
        }
    }
    // Without a resume point (or at byte 0) there is nothing to check.
    let p = write(&dir, "s.csv", resume_file("\n", false, "\n"));
    assert!(EventReader::open_checked(&p, None, Some(1)).is_ok());
    assert!(EventReader::open_checked(&p, Some(Resume::default()), Some(1)).is_ok());
}

#[test]
fn a_committed_file_replaced_by_an_unreadable_one_is_reported_as_changed() {
    // The prefix is checked before the header: an emptied or binary file that was half read is
    // "changed", not "empty" (done) or "not text" (failed for another reason).
    let dir = TempDir::new().unwrap();
    let data = resume_file("\n", false, "\n");
    let p = write(&dir, "r.csv", &data);
    let at = Resume {
        byte: data.len() as u64 - 10,
        line: 5,
    };
    let good = xxh3(&data[..at.byte as usize]);
    std::fs::write(&p, vec![0u8; data.len()]).unwrap();
    assert!(matches!(
        EventReader::open_checked(&p, Some(at), Some(good)),
        Err(OpenError::Changed(Changed::PrefixDiffers { .. }))
    ));
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(
        EventReader::open_checked(&p, Some(at), Some(good)),
        Err(OpenError::Changed(Changed::Shorter { size: 0, .. }))
    ));
}

#[test]
fn resume_after_the_file_grew() {
    // A producer writing in place: the last line is incomplete, then completed.
    let dir = TempDir::new().unwrap();
    let r1 = line_with("user_id", "user_1");
    let r2 = line_with("user_id", "user_2");
    let p = write(&dir, "g.csv", format!("{HEADER}\n{r1}\n{}", &r2[..20]));
    let mut a = open(&p);
    let first = next(&mut a).unwrap();
    assert!(first.terminated);
    let partial = next(&mut a).unwrap();
    assert!(!partial.terminated);
    // Hold the partial record: resume at its start and line.
    let held = Resume {
        byte: partial.start,
        line: partial.line,
    };
    drop(a);
    std::fs::write(&p, format!("{HEADER}\n{r1}\n{r2}\n{r1}\n")).unwrap();
    let mut b = EventReader::open(&p, Some(held)).unwrap();
    let (rest, hash) = drain(&mut b);
    assert_eq!(rest.len(), 2);
    assert_eq!(
        (rest[0].line, rest[0].row().user_id.as_str()),
        (3, "user_2")
    );
    assert_eq!(
        (rest[1].line, rest[1].row().user_id.as_str()),
        (4, "user_1")
    );
    assert!(rest.iter().all(|r| r.terminated));
    assert_eq!(hash, hash_file(&p).unwrap());
}

#[test]
fn content_hash_tracks_content() {
    let dir = TempDir::new().unwrap();
    let a = format!("{HEADER}\n{}\n", good_line());
    let b = format!("{HEADER}\n{}\n", line_with("price", "19.98"));
    let pa = write(&dir, "a.csv", &a);
    let pa2 = write(&dir, "a copy.csv", &a);
    let pb = write(&dir, "b.csv", &b);
    let pc = write(&dir, "c.csv", format!("{a}\n")); // one more byte
    let h = |p: &Path| drain(&mut open(p)).1;
    assert_eq!(h(&pa), h(&pa2));
    assert_eq!(h(&pa), hash_file(&pa).unwrap());
    assert_ne!(h(&pa), h(&pb));
    assert_ne!(h(&pa), h(&pc));
    assert_ne!(h(&pb), h(&pc));
}
