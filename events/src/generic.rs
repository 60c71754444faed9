//! The reading thread's work for a pipeline's file (any format, into any table): opens it with
//! `ingest_core`'s reader, and hands over its rows as COPY text batches (one column list per
//! batch), its rejects, and a [`ChunkEnd`] per chunk — the same pieces, in the same order, as
//! for an events file, so the worker's transactions treat both alike.

use crate::pipeline::{ChunkEnd, GenericJob, Job, Piece, Reject, TextRows};
use crate::reader::{OpenError, Resume};
use crate::shown::excerpt;
use ingest_core::rows::{OpenError as RowOpenError, RowOutcome, RowReader};
use std::sync::Arc;

/// Most characters of a row's raw text kept for a row the database refuses.
const RAW_KEEP: usize = 2048;

fn open_error(e: RowOpenError) -> OpenError {
    use std::io::ErrorKind;
    match e {
        // Not a regular file, or a corrupt archive: retrying would not help.
        RowOpenError::Io(e)
            if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::InvalidInput) =>
        {
            OpenError::Refused(RowOpenError::Io(e).to_string())
        }
        RowOpenError::Io(e) => OpenError::Io(e),
        RowOpenError::Changed(s) => OpenError::Changed(crate::Changed::Other(s)),
        other => OpenError::Refused(other.to_string()),
    }
}

/// Reads `job`'s file chunk by chunk; `send` returns false once the job is cancelled.
pub fn run(job: &Job, g: &GenericJob, send: &mut dyn FnMut(Piece) -> bool) {
    let resume = job.resume.map(|r| ingest_core::rows::Resume {
        byte: r.byte,
        line: r.line,
    });
    let mut reader = match RowReader::open_within(
        &job.path,
        g.roots.as_deref(),
        &g.options,
        &g.columns,
        resume,
        job.expect_prefix,
        job.max_record_bytes,
    ) {
        Ok(r) => r,
        Err(e) => {
            send(Piece::OpenFailed(open_error(e)));
            return;
        }
    };
    let extra = reader.extra_columns().to_vec();
    let mut extra_sent = extra.len();
    if !send(Piece::Opened { extra, raw: None }) {
        return;
    }
    loop {
        let (end, damage) = match chunk(&mut reader, job, send) {
            Some(c) => c,
            None => return,
        };
        // An NDJSON file's unknown keys are only known as its lines are read.
        let extra = reader.extra_columns();
        if extra.len() > extra_sent {
            extra_sent = extra.len();
            if !send(Piece::Extra(extra.to_vec())) {
                return;
            }
        }
        if let Some(e) = damage {
            let message = excerpt(
                &format!(
                    "cannot be read past byte {} (line {}) of its content: {e}",
                    end.resume.byte, end.resume.line
                ),
                crate::pipeline::READ_FAILED_MAX,
            );
            send(Piece::Damaged { end, message });
            return;
        }
        if !send(Piece::ChunkEnd(end)) || end.last() || job.one_chunk {
            return;
        }
    }
}

fn here(r: &RowReader) -> Resume {
    let p = r.position();
    Resume {
        byte: p.byte,
        line: p.line,
    }
}

/// One chunk: batches of rows (a batch ends at `batch_rows`, or where the column list
/// changes), then where it ended, and the read error that ended it early if one did (`None`:
/// cancelled). A read error in a young file (a compressed file still being written looks
/// truncated) holds the rest for later instead.
fn chunk(
    reader: &mut RowReader,
    job: &Job,
    send: &mut dyn FnMut(Piece) -> bool,
) -> Option<(ChunkEnd, Option<std::io::Error>)> {
    let start = here(reader);
    let mut rows: Option<TextRows> = None;
    let mut rejects: Vec<Reject> = Vec::new();
    let mut held: Option<Resume> = None;
    let mut last_line = start.line;
    let batch_rows = job.batch_rows.max(1);
    let mut damage = None;
    loop {
        let rec = match reader.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(e) => {
                if job.young {
                    held = Some(here(reader));
                } else {
                    damage = Some(e);
                }
                break;
            }
        };
        if !rec.terminated && job.young {
            // The producer may still be writing this line: not data yet.
            held = Some(Resume {
                byte: rec.start,
                line: rec.line,
            });
            break;
        }
        last_line = rec.line;
        let end = rec.end;
        match rec.outcome {
            RowOutcome::Valid { columns, text } => {
                let same = rows
                    .as_ref()
                    .is_some_and(|r| Arc::ptr_eq(&r.columns, columns));
                if !same {
                    if let Some(full) = rows.take() {
                        if !send(Piece::TextBatch {
                            rows: full,
                            rejects: std::mem::take(&mut rejects),
                        }) {
                            return None;
                        }
                    }
                    rows = Some(TextRows::new(columns.clone()));
                }
                let r = rows.as_mut().expect("set above");
                r.data.extend_from_slice(text);
                r.ends.push(r.data.len());
                r.lines.push(rec.line);
                r.raws
                    .push(excerpt(&String::from_utf8_lossy(rec.raw), RAW_KEEP));
            }
            RowOutcome::Rejected { column, reason } => rejects.push(Reject {
                line: rec.line,
                column,
                reason,
                raw: excerpt(&String::from_utf8_lossy(rec.raw), RAW_KEEP),
            }),
        }
        let n = rows.as_ref().map_or(0, TextRows::len);
        if n >= batch_rows || rejects.len() >= batch_rows {
            let full = rows
                .take()
                .unwrap_or_else(|| TextRows::new(Arc::from(Vec::new())));
            if !send(Piece::TextBatch {
                rows: full,
                rejects: std::mem::take(&mut rejects),
            }) {
                return None;
            }
        }
        if end - start.byte >= job.chunk_bytes {
            break;
        }
    }
    let rows = rows.unwrap_or_else(|| TextRows::new(Arc::from(Vec::new())));
    if (!rows.is_empty() || !rejects.is_empty()) && !send(Piece::TextBatch { rows, rejects }) {
        return None;
    }
    let at_eof = reader.at_eof();
    let resume = held.unwrap_or_else(|| here(reader));
    let prefix_hash = match held {
        Some(h) => reader
            .prefix_hash_at(h.byte)
            .unwrap_or_else(|| reader.prefix_hash()),
        None => reader.prefix_hash(),
    };
    let end = ChunkEnd {
        start,
        resume,
        last_line,
        held: held.is_some(),
        at_eof: at_eof && damage.is_none(),
        prefix_hash,
        hash: reader.content_hash().filter(|_| damage.is_none()),
    };
    Some((end, damage))
}

#[cfg(test)]
mod tests {
    use crate::pipeline::{ChunkEnd, GenericJob, Job, Piece, Pipeline, TextRows};
    use ingest_core::mapping::{ColumnKind, TargetColumn};
    use ingest_core::options::parse_options;
    use std::io::Write;
    use std::sync::Arc;

    fn col(name: &str, required: bool) -> TargetColumn {
        TargetColumn {
            name: name.into(),
            kind: ColumnKind::Other,
            required,
            insertable: true,
        }
    }

    fn job(path: std::path::PathBuf, format: &str, chunk_bytes: u64) -> Job {
        Job {
            path,
            resume: None,
            expect_prefix: None,
            max_record_bytes: 1 << 20,
            young: false,
            chunk_bytes,
            batch_rows: 100,
            one_chunk: false,
            generic: Some(Arc::new(GenericJob {
                options: parse_options(format, "{}").unwrap(),
                columns: vec![col("id", true), col("name", false), col("meta", false)],
                roots: None,
            })),
        }
    }

    type Drained = (
        Vec<TextRows>,
        Vec<(u64, String)>,
        Vec<ChunkEnd>,
        Option<String>,
    );

    /// Every batch and chunk end of one job, and the damage that ended it, if any.
    fn drain(p: &mut Pipeline, j: Job) -> Drained {
        let mut t = p.submit(j).unwrap();
        let (mut batches, mut rejects, mut ends, mut damage) = (vec![], vec![], vec![], None);
        while let Some(piece) = p.next(&mut t).unwrap() {
            match piece {
                Piece::Opened { raw, .. } => assert!(raw.is_none()),
                Piece::TextBatch { rows, rejects: r } => {
                    batches.push(rows);
                    rejects.extend(r.into_iter().map(|r| (r.line, r.reason)));
                }
                Piece::ChunkEnd(e) => ends.push(e),
                Piece::Damaged { end, message } => {
                    ends.push(end);
                    damage = Some(message);
                }
                Piece::Extra(_) => {}
                Piece::Batch { .. } => panic!("events batch for a pipeline's file"),
                Piece::OpenFailed(e) => panic!("open failed: {e}"),
                Piece::ReadFailed(e) => panic!("read failed: {e}"),
            }
        }
        (batches, rejects, ends, damage)
    }

    #[test]
    fn a_gzipped_csv_comes_in_chunks_of_text_rows_that_resume_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv.gz");
        let mut gz = flate2_writer(&path);
        writeln!(gz, "id,name,other").unwrap();
        for i in 0..500 {
            if i % 100 == 7 {
                writeln!(gz, "{i},\"too\",many,fields").unwrap();
            } else {
                writeln!(gz, "{i},\"name {i}\nsecond line\",x").unwrap();
            }
        }
        gz.finish().unwrap();
        let mut p = Pipeline::start(4).unwrap();
        let (batches, rejects, ends, damage) = drain(&mut p, job(path.clone(), "csv", 4000));
        assert!(damage.is_none());
        let rows: usize = batches.iter().map(TextRows::len).sum();
        assert_eq!(rows, 495);
        assert_eq!(rejects.len(), 5);
        // Line numbers count every physical line: row i starts at line 2 + 2i.
        assert_eq!(rejects[0].0, 2 + 2 * 7);
        assert!(batches
            .iter()
            .all(|b| *b.columns == ["id".to_string(), "name".to_string()]));
        assert_eq!(batches[0].slice(0, 1), b"0\tname 0\\nsecond line\n");
        assert!(ends.len() > 2, "{} chunks", ends.len());
        for w in ends.windows(2) {
            assert_eq!(w[0].resume, w[1].start);
        }
        assert!(ends.last().unwrap().at_eof);
        // Resuming after the second chunk gives exactly the rows after it.
        let mut j = job(path, "csv", u64::MAX);
        j.resume = Some(ends[1].resume);
        j.expect_prefix = Some(ends[1].prefix_hash);
        let (rest, _, _, _) = drain(&mut p, j);
        let before: usize = rows - rest.iter().map(TextRows::len).sum::<usize>();
        let first_line_after = rest[0].lines[0];
        assert_eq!(first_line_after, ends[1].resume.line);
        assert!(before > 0);
    }

    #[test]
    fn ndjson_rows_are_batched_by_their_column_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ndjson");
        std::fs::write(
            &path,
            "{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"name\": \"b\"}\n{\"id\": 3}\nnot json\n{\"id\": 4, \"meta\": {\"k\": [1]}}\n",
        )
        .unwrap();
        let mut p = Pipeline::start(4).unwrap();
        let (batches, rejects, _, _) = drain(&mut p, job(path, "ndjson", u64::MAX));
        let shapes: Vec<(Vec<String>, usize)> = batches
            .iter()
            .map(|b| (b.columns.to_vec(), b.len()))
            .collect();
        assert_eq!(
            shapes,
            vec![
                (vec!["id".into(), "name".into()], 2),
                (vec!["id".into()], 1),
                (vec!["id".into(), "meta".into()], 1),
            ]
        );
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].0, 4);
        // A json column gets the value's text as written.
        assert_eq!(batches[2].slice(0, 1), b"4\t{\"k\": [1]}\n");
    }

    #[test]
    fn a_truncated_gzip_ends_with_the_rows_before_the_damage_unless_it_is_young() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full.csv.gz");
        let mut gz = flate2_writer(&full);
        writeln!(gz, "id,name").unwrap();
        for i in 0..8_000 {
            writeln!(gz, "{i},name {i}").unwrap();
        }
        gz.finish().unwrap();
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.path().join("cut.csv.gz");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let mut p = Pipeline::start(4).unwrap();
        let (batches, _, ends, damage) = drain(&mut p, job(cut.clone(), "csv", 1 << 20));
        let rows: usize = batches.iter().map(TextRows::len).sum();
        let damage = damage.expect("the damage is reported");
        assert!(damage.contains("truncated or corrupt gzip"), "{damage}");
        let last = ends.last().unwrap();
        assert!(!last.at_eof && last.hash.is_none());
        // Every row read is whole, and the resume point is right after the last one.
        assert!(rows > 0 && rows < 8_000, "{rows}");
        assert_eq!(last.resume.line, rows as u64 + 2);
        // Young: the same file is waited for instead (it may still be being written).
        let mut j = job(cut, "csv", 1 << 20);
        j.young = true;
        let (young_batches, _, young_ends, young_damage) = drain(&mut p, j);
        assert!(young_damage.is_none());
        assert!(young_ends.last().unwrap().held);
        assert_eq!(young_batches.iter().map(TextRows::len).sum::<usize>(), rows);
    }

    fn flate2_writer(path: &std::path::Path) -> flate2::write::GzEncoder<std::fs::File> {
        flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        )
    }
}
