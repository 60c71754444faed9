//! Resuming at every record boundary gives the rows of a straight read; a changed file is
//! refused; the prefix hash is the events pipeline's (XXH3-64 of the bytes).

mod common;
use common::*;
use ingest_core::rows::RowReader;
use ingest_core::*;
use std::hash::Hasher;
use twox_hash::XxHash3_64;

/// XXH3-64 as events' `PrefixHasher` computes it: a default streaming hasher fed the bytes.
fn events_hash(bytes: &[u8]) -> u64 {
    let mut h = XxHash3_64::default();
    h.write(bytes);
    h.finish()
}

fn check_resume_everywhere(
    name: &str,
    stored: &[u8],
    plain: &[u8],
    format: &str,
    target: &[TargetColumn],
) {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), name, stored);
    let opts = parse_options(format, "{}").unwrap();
    let mut r = open(&p, &opts, target).unwrap();
    let mut boundaries = vec![(r.position(), r.prefix_hash())];
    assert_eq!(
        boundaries[0].1,
        events_hash(&plain[..r.position().byte as usize])
    );
    let mut all = Vec::new();
    loop {
        let rec = drain_one(&mut r);
        let Some(rec) = rec else { break };
        all.push(rec);
        let pos = r.position();
        let h = r.prefix_hash();
        assert_eq!(
            h,
            events_hash(&plain[..pos.byte as usize]),
            "at {}",
            pos.byte
        );
        boundaries.push((pos, h));
    }
    assert_eq!(r.content_hash(), Some(events_hash(plain)));
    assert!(all.len() >= 3);
    for (i, (pos, hash)) in boundaries.iter().enumerate() {
        let mut r = RowReader::open(
            &p,
            &opts,
            target,
            Some(*pos),
            Some(*hash),
            MAX_RECORD_BYTES_DEFAULT,
        )
        .unwrap();
        let rest = drain(&mut r).unwrap();
        assert_eq!(rest, all[i..].to_vec(), "resumed at {:?}", pos);
        assert_eq!(r.content_hash(), Some(events_hash(plain)));
        // The wrong hash: refused.
        let e = RowReader::open(&p, &opts, target, Some(*pos), Some(hash ^ 1), 1 << 20);
        if pos.byte > boundaries[0].0.byte {
            assert!(matches!(e, Err(OpenError::Changed(_))), "{:?}", pos);
        }
    }
}

fn drain_one(r: &mut RowReader) -> Option<Row> {
    let rec = r.next_record().unwrap()?;
    let outcome = match rec.outcome {
        RowOutcome::Valid { columns, text } => Ok((
            columns.to_vec(),
            ingest_core::textcopy::decode_line(text)
                .into_iter()
                .map(|v| v.map(|b| String::from_utf8(b).unwrap()))
                .collect(),
        )),
        RowOutcome::Rejected { reason, .. } => Err(reason),
    };
    Some(Row {
        line: rec.line,
        start: rec.start,
        end: rec.end,
        terminated: rec.terminated,
        raw: rec.raw.to_vec(),
        outcome,
    })
}

const CSV: &[u8] = b"a,b\n1,\"two\nlines\"\n\n2,x\nbad\n3,\"y\"\"z\"\r\n4,last";

#[test]
fn resume_plain_csv_at_every_boundary() {
    check_resume_everywhere("f.csv", CSV, CSV, "csv", &cols(&["a", "b"]));
}

#[test]
fn resume_gzip_csv_at_every_boundary() {
    check_resume_everywhere("f.csv.gz", &gz(CSV), CSV, "csv", &cols(&["a", "b"]));
}

#[test]
fn resume_zstd_ndjson_at_every_boundary() {
    let text = b"{\"a\":1}\n\n{\"a\":2,\"b\":\"x\"}\nnot json\n{\"b\":\"y\"}\n";
    check_resume_everywhere(
        "f.ndjson.zst",
        &zst(text),
        text,
        "ndjson",
        &cols(&["a", "b"]),
    );
}

#[test]
fn changed_or_shorter_files_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"a,b\n1,2\n3,4\n");
    let opts = parse_options("csv", "{}").unwrap();
    let t = cols(&["a", "b"]);
    let mut r = open(&p, &opts, &t).unwrap();
    r.next_record().unwrap();
    let (pos, hash) = (r.position(), r.prefix_hash());
    assert_eq!(pos, Resume { byte: 8, line: 3 });
    // Same length, other bytes.
    std::fs::write(&p, b"a,b\n9,2\n3,4\n").unwrap();
    let e = RowReader::open(&p, &opts, &t, Some(pos), Some(hash), 1 << 20)
        .err()
        .unwrap();
    let m = e.to_string();
    assert!(matches!(e, OpenError::Changed(_)));
    assert!(m.contains("no longer hash"), "{m}");
    // Shorter.
    std::fs::write(&p, b"a,b\n1,").unwrap();
    let e = RowReader::open(&p, &opts, &t, Some(pos), Some(hash), 1 << 20)
        .err()
        .unwrap();
    assert!(e.to_string().contains("only 6 bytes"), "{e}");
    // Empty now.
    std::fs::write(&p, b"").unwrap();
    let e = RowReader::open(&p, &opts, &t, Some(pos), Some(hash), 1 << 20)
        .err()
        .unwrap();
    assert!(matches!(e, OpenError::Changed(_)), "{e}");
    // Resume offset inside the header.
    std::fs::write(&p, b"a,b\n1,2\n").unwrap();
    let e = RowReader::open(
        &p,
        &opts,
        &t,
        Some(Resume { byte: 2, line: 1 }),
        None,
        1 << 20,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("inside the header"), "{e}");
    // Appended to: resumes with the new rows.
    std::fs::write(&p, b"a,b\n1,2\n3,4\n5,6\n").unwrap();
    let mut r = RowReader::open(&p, &opts, &t, Some(pos), Some(hash), 1 << 20).unwrap();
    let rows = drain(&mut r).unwrap();
    assert_eq!(
        values(&rows),
        vec![s(&[Some("3"), Some("4")]), s(&[Some("5"), Some("6")])]
    );
    assert_eq!(rows[0].line, 3);
}

#[test]
fn hash_before_a_held_record() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", CSV);
    let opts = parse_options("csv", "{}").unwrap();
    let mut r = open(&p, &opts, &cols(&["a", "b"])).unwrap();
    r.next_record().unwrap();
    let start = r.next_record().unwrap().unwrap().start;
    assert_eq!(
        r.prefix_hash_at(start),
        Some(events_hash(&CSV[..start as usize]))
    );
    let end = r.position().byte;
    assert_eq!(
        r.prefix_hash_at(end),
        Some(events_hash(&CSV[..end as usize]))
    );
    assert_eq!(r.prefix_hash_at(start), None);
}
