//! The reading thread (`pipeline::Pipeline`) over a file, in small chunks (size, batch size,
//! `young` and one-chunk jobs drawn from the input): every record of a single pass appears
//! exactly once across batches and chunks, in order, with its line, byte range and reason;
//! chunks follow each other without gaps; each chunk end carries the XXH3-64 of the bytes before
//! its resume point and the last one the whole file's; every chunk but the last makes progress;
//! a young file's unterminated last line is held back; batches decode back from binary COPY.
//! With one-chunk jobs each chunk is a new job resumed from the previous chunk end and checked
//! against its prefix hash, as the worker does.
#![no_main]

use ecommerce_events::pipeline::{ChunkEnd, Job, Piece, Pipeline};
use ecommerce_events::EventReader;
use ecommerce_events_fuzz::pgcopy_decode::decode_events;
use ecommerce_events_fuzz::{read_checked, xxh3, Caps, Got, Input, Scratch};
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

static SCRATCH: OnceLock<Scratch> = OnceLock::new();
/// One reading thread for the whole run, as the worker keeps one.
static PIPELINE: OnceLock<Mutex<Pipeline>> = OnceLock::new();

/// What came out for one record: line, byte range (valid rows only), reason (rejects only).
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Row {
        line: u64,
        span: (u64, u64),
    },
    Reject {
        line: u64,
        reason: String,
        raw: String,
    },
}

fn key(o: &Out) -> (u64, bool) {
    match o {
        Out::Row { line, .. } => (*line, false),
        Out::Reject { line, .. } => (*line, true),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let file = &input.file[..];
    let scratch = SCRATCH.get_or_init(|| Scratch::new("pipeline"));
    scratch.write(file);
    let caps = Caps {
        max_record: input.max_record,
        raw_cap: 1024, // the pipeline keeps the reader's default raw-text cap
    };
    let single = match EventReader::open(scratch.path(), None) {
        Ok(r) => {
            let mut r = r.with_max_record_bytes(caps.max_record);
            Some(read_checked(&mut r, file, caps))
        }
        Err(_) => None,
    };
    let mut p = PIPELINE
        .get_or_init(|| Mutex::new(Pipeline::start(2).expect("thread")))
        .lock()
        .unwrap();
    let job = Job {
        path: scratch.path().to_path_buf(),
        resume: None,
        expect_prefix: None,
        max_record_bytes: caps.max_record,
        young: input.young(),
        // Small chunks, but at most about 64 of them: each one-chunk job hashes the file's
        // prefix again, so a big file in tiny chunks would be quadratic.
        chunk_bytes: (1 + 8 * input.knob as u64).max(file.len() as u64 / 64),
        batch_rows: 1 + (input.aux % 8) as usize,
        one_chunk: input.one_chunk(),
        generic: None,
    };
    let mut outs: Vec<Out> = Vec::new();
    let mut ends: Vec<ChunkEnd> = Vec::new();
    let mut next_job = Some(job.clone());
    while let Some(j) = next_job.take() {
        let mut t = p.submit(j).unwrap();
        let mut opened = false;
        while let Some(piece) = p.next(&mut t).unwrap() {
            match piece {
                Piece::Opened { .. } => opened = true,
                Piece::OpenFailed(e) => {
                    assert!(single.is_none() && ends.is_empty(), "open failed: {e}");
                    return;
                }
                Piece::ReadFailed(e) => panic!("read failed: {e}"),
                Piece::TextBatch { .. } | Piece::Damaged { .. } | Piece::Extra(_) => {
                    panic!("an events job gave a pipeline's piece")
                }
                Piece::Batch { mut rows, rejects } => {
                    assert!(opened);
                    assert!(rows.len() <= job.batch_rows && rejects.len() <= job.batch_rows);
                    assert_eq!(rows.copy.len(), rows.len());
                    rows.copy.set_source_file_id(3);
                    let tuples = decode_events(rows.copy.finish()).expect("batch decodes");
                    assert_eq!(tuples.len(), rows.len());
                    // Rows and rejects of one batch, back in file order.
                    let mut batch: Vec<Out> = rows
                        .lines
                        .iter()
                        .zip(&rows.spans)
                        .zip(&tuples)
                        .map(|((&line, &span), t)| {
                            assert_eq!((t.source_file_id, t.source_line), (3, line as i64));
                            Out::Row { line, span }
                        })
                        .chain(rejects.into_iter().map(|r| Out::Reject {
                            line: r.line,
                            reason: r.reason,
                            raw: r.raw,
                        }))
                        .collect();
                    batch.sort_by_key(key);
                    outs.extend(batch);
                }
                Piece::ChunkEnd(e) => {
                    assert!(opened);
                    if let Some(prev) = ends.last() {
                        assert_eq!(e.start, prev.resume, "chunks follow each other");
                    }
                    assert!(e.resume.byte <= file.len() as u64);
                    assert_eq!(e.prefix_hash, xxh3(&file[..e.resume.byte as usize]));
                    match e.hash {
                        Some(h) => assert!(e.at_eof && h == xxh3(file)),
                        None => assert!(!e.at_eof),
                    }
                    if !e.last() {
                        assert!(
                            e.resume.byte > e.start.byte,
                            "a chunk that reads nothing: {e:?}"
                        );
                    }
                    ends.push(e);
                }
            }
        }
        let last = *ends.last().expect("a chunk end");
        if input.one_chunk() && !last.last() {
            let mut j = job.clone();
            j.resume = Some(last.resume);
            j.expect_prefix = Some(last.prefix_hash);
            next_job = Some(j);
        }
    }
    drop(p);
    let single = single.expect("the pipeline opened a file the reader refuses");
    let last = ends.last().unwrap();
    // A young file's unterminated last record is held, everything else comes out once.
    let held = input.young() && single.last().is_some_and(|r| !r.terminated);
    assert_eq!(last.held, held);
    let expected: Vec<Out> = single[..single.len() - held as usize]
        .iter()
        .map(|r| match &r.got {
            Got::Valid(_) => Out::Row {
                line: r.line,
                span: (r.start, r.end),
            },
            Got::Rejected { message, raw, .. } => Out::Reject {
                line: r.line,
                reason: message.clone(),
                raw: raw.clone(),
            },
        })
        .collect();
    // A batch holds rows and rejects apart; both sides are put in the same order: by line, and
    // on one line (lone CR terminators) rows before rejects, each in file order (stable sort).
    let mut expected = expected;
    expected.sort_by_key(key);
    outs.sort_by_key(key);
    assert_eq!(
        outs.len(),
        expected.len(),
        "records out: {outs:?}\nexpected {expected:?}"
    );
    assert_eq!(outs, expected);
    if held {
        let h = single.last().unwrap();
        assert_eq!((last.resume.byte, last.resume.line), (h.start, h.line));
    }
});
