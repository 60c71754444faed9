//! Ingesting one file: parse, validate, insert in batches, and commit each chunk together with
//! its rejects and the ledger row that records the byte offset reached.

use super::copy::copy_into_user_events;
use super::ledger::{self, Entry, Status, Update};
use super::sql;
use super::txn::{subtransaction, transaction, DbError};
use crate::settings::Settings;
use ecommerce_events::pgcopy::CopyEncoder;
use ecommerce_events::{Candidate, EventReader, OpenError, Outcome, Resume};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

/// How one file's turn ended.
#[derive(Debug)]
pub enum FileOutcome {
    /// Some chunks committed; `entry` is the ledger state after the last commit.
    Progress {
        entry: Entry,
        rows: i64,
        rejected: i64,
    },
    /// Paused before the next chunk: nothing more was written.
    Paused,
    /// Not ready yet (too young to judge, or a transient read error): try again later.
    Wait(Option<String>),
    /// The ledger in the database does not match the worker's copy (changed from outside,
    /// e.g. a restore): nothing was written; reload the ledger and look again.
    Stale,
    /// A chunk failed in the database and was rolled back; committed chunks stay.
    DbFailed {
        error: DbError,
        rows: i64,
        rejected: i64,
        entry: Option<Entry>,
    },
}

#[derive(Default)]
struct Rejects {
    line: Vec<i64>,
    column: Vec<Option<String>>,
    reason: Vec<String>,
    raw: Vec<Option<String>>,
}

impl Rejects {
    fn push(&mut self, line: u64, column: Option<&str>, reason: String, raw: Option<String>) {
        self.line.push(line as i64);
        self.column.push(column.map(str::to_owned));
        self.reason.push(reason);
        self.raw.push(raw);
    }
    fn flush(&mut self, client: &mut SpiClient<'_>, file: &str) -> Result<(), pgrx::spi::Error> {
        if self.line.is_empty() {
            return Ok(());
        }
        client.update(
            sql::INSERT_REJECTS,
            None,
            &[
                file.into(),
                std::mem::take(&mut self.line).into(),
                std::mem::take(&mut self.column).into(),
                std::mem::take(&mut self.reason).into(),
                std::mem::take(&mut self.raw).into(),
            ],
        )?;
        Ok(())
    }
}

fn raise(e: impl std::fmt::Display) -> ! {
    error!("{e}")
}

/// Valid rows waiting for the next COPY: the binary stream and each row's line number.
#[derive(Default)]
struct Batch {
    copy: CopyEncoder,
    lines: Vec<u64>,
    /// Byte range of each row in the file, for the raw text of a row the database refuses.
    spans: Vec<(u64, u64)>,
    one: Vec<u8>,
}

impl Batch {
    fn len(&self) -> usize {
        self.lines.len()
    }
}

/// Inserts the batch with one COPY; if the database refuses it for a row's values (a
/// constraint or trigger), each row is retried alone and only the refused rows become rejects.
fn flush_rows(batch: &mut Batch, rejects: &mut Rejects, reader: &EventReader) -> i64 {
    let n = batch.len();
    if n == 0 {
        return 0;
    }
    let inserted = match subtransaction(|| copy_into_user_events(batch.copy.finish())) {
        Ok(_) => n as i64,
        Err(e) if e.is_row_level() => {
            let mut ok = 0;
            for i in 0..n {
                batch.copy.single(i, &mut batch.one);
                match subtransaction(|| copy_into_user_events(&batch.one)) {
                    Ok(_) => ok += 1,
                    Err(e) if e.is_row_level() => {
                        let (start, end) = batch.spans[i];
                        rejects.push(
                            batch.lines[i],
                            None,
                            format!("refused by the database: {e}"),
                            Some(reader.raw_text(start, end)),
                        )
                    }
                    Err(e) => e.raise(),
                }
            }
            ok
        }
        Err(e) => e.raise(),
    };
    batch.copy.clear();
    batch.lines.clear();
    batch.spans.clear();
    inserted
}

struct ChunkResult {
    update_entry: Entry,
    rows: i64,
    rejected: i64,
    finished_reading: bool,
}

enum ChunkStep {
    Paused,
    Stale,
    Committed(ChunkResult),
}

/// Ingests `cand` from where the ledger says it stopped (or the start), chunk by chunk.
pub fn ingest_file(
    st: &Settings,
    cand: &Candidate,
    before: Option<&Entry>,
    young: bool,
) -> FileOutcome {
    let path = st.input_dir.join(&cand.name);
    let resume = before.map(|e| e.resume).filter(|r| r.byte > 0);
    let reader = match EventReader::open(&path, resume) {
        Ok(r) => r,
        Err(OpenError::Io(e)) => {
            return FileOutcome::Wait(Some(format!("cannot read {:?}: {e}", cand.name)))
        }
        Err(_) if young => return FileOutcome::Wait(None),
        Err(e) => {
            let empty = matches!(e, OpenError::Header(ecommerce_events::HeaderError::Empty));
            let status = if empty { Status::Done } else { Status::Failed };
            let u = Update::status_only(
                &cand.name,
                status,
                cand.size,
                cand.mtime_ns,
                Resume::default(),
                Some(e.to_string()),
            );
            return match transaction(|| {
                Spi::connect_mut(|c| ledger::write(c, &u)).unwrap_or_else(|e| raise(e))
            }) {
                Ok(()) => FileOutcome::Progress {
                    entry: Entry::after(&u, before),
                    rows: 0,
                    rejected: 0,
                },
                Err(error) => FileOutcome::DbFailed {
                    error,
                    rows: 0,
                    rejected: 0,
                    entry: None,
                },
            };
        }
    };
    let mut reader = reader;
    let extra: Vec<String> = reader.header().extra_columns().to_vec();
    let mut entry = before.cloned();
    let (mut rows, mut rejected) = (0i64, 0i64);
    let mut batch = Batch {
        copy: CopyEncoder::new(),
        ..Default::default()
    };
    loop {
        let chunk_no = entry.as_ref().map_or(0, |e| e.chunks);
        let step = transaction(|| {
            Spi::connect_mut(|client| {
                chunk(
                    client,
                    st,
                    cand,
                    &mut reader,
                    &mut batch,
                    young,
                    chunk_no,
                    &extra,
                    entry.as_ref(),
                )
            })
        });
        match step {
            Ok(ChunkStep::Paused) => return FileOutcome::Paused,
            Ok(ChunkStep::Stale) => return FileOutcome::Stale,
            Ok(ChunkStep::Committed(c)) => {
                rows += c.rows;
                rejected += c.rejected;
                let done = c.finished_reading;
                entry = Some(c.update_entry);
                if done {
                    return FileOutcome::Progress {
                        entry: entry.unwrap(),
                        rows,
                        rejected,
                    };
                }
            }
            Err(error) => {
                return FileOutcome::DbFailed {
                    error,
                    rows,
                    rejected,
                    entry,
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn chunk(
    client: &mut SpiClient<'_>,
    st: &Settings,
    cand: &Candidate,
    reader: &mut EventReader,
    batch: &mut Batch,
    young: bool,
    chunk_no: i32,
    extra: &[String],
    before: Option<&Entry>,
) -> ChunkStep {
    client
        .update(
            sql::CHUNK_LOCK,
            None,
            &[crate::shared::DROP_LOCK_KEY.into()],
        )
        .unwrap_or_else(|e| raise(e));
    let paused = client
        .select(sql::PAUSED, None, &[])
        .and_then(|t| t.first().get_one::<bool>())
        .unwrap_or_else(|e| raise(e))
        .unwrap_or(false);
    if paused {
        return ChunkStep::Paused;
    }
    let file = cand.name.as_str();
    // The ledger row, locked: it must say exactly what the worker's copy says, or another
    // session changed it and resuming from our offset could ingest rows twice.
    let row = client
        .update(sql::LEDGER_ROW_FOR_UPDATE, None, &[file.into()])
        .unwrap_or_else(|e| raise(e));
    let in_db = if row.is_empty() {
        None
    } else {
        let r = row.first();
        let id = r
            .get::<i32>(1)
            .unwrap_or_else(|e| raise(e))
            .unwrap_or_default();
        let offset = r
            .get::<i64>(2)
            .unwrap_or_else(|e| raise(e))
            .unwrap_or_default();
        Some((id, offset))
    };
    if in_db.map(|r| r.1) != before.map(|e| e.resume.byte as i64) {
        return ChunkStep::Stale;
    }
    let file_id = match in_db {
        Some((id, _)) => id,
        None => client
            .update(
                sql::LEDGER_NEW,
                None,
                &[file.into(), (cand.size as i64).into()],
            )
            .and_then(|t| t.first().get_one::<i32>())
            .unwrap_or_else(|e| raise(e))
            .unwrap_or_else(|| raise("no file_id returned")),
    };
    let start = reader.position();
    let mut rejects = Rejects::default();
    let (mut rows, mut n_rejected) = (0i64, 0i64);
    let mut held: Option<Resume> = None;
    let mut last_line = start.line;
    loop {
        let rec = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => raise(format!("reading {file:?}: {e}")),
        };
        if !rec.terminated && young {
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
            Outcome::Valid(row) => {
                batch.copy.push(&row, file_id, rec.line);
                batch.lines.push(rec.line);
                batch.spans.push((rec.start, end));
                if batch.len() >= st.batch_rows {
                    rows += flush_rows(batch, &mut rejects, reader);
                }
            }
            Outcome::Rejected { error, raw } => {
                rejects.push(rec.line, error.column, error.message, Some(raw));
                if rejects.line.len() >= st.batch_rows {
                    n_rejected += rejects.line.len() as i64;
                    rejects.flush(client, file).unwrap_or_else(|e| raise(e));
                }
            }
        }
        if end - start.byte >= st.chunk_bytes {
            break;
        }
    }
    rows += flush_rows(batch, &mut rejects, reader);
    n_rejected += rejects.line.len() as i64;
    rejects.flush(client, file).unwrap_or_else(|e| raise(e));

    let reached_eof = reader.at_eof() || held.is_some();
    let finished = reader.at_eof() && held.is_none() && !young;
    let resume = held.unwrap_or_else(|| reader.position());
    let status = if finished {
        Status::Done
    } else if reached_eof {
        Status::Growing
    } else {
        Status::Ingesting
    };
    let wrote = rows + n_rejected > 0;
    if wrote {
        client
            .update(
                sql::INSERT_CHUNK,
                None,
                &[
                    file.into(),
                    chunk_no.into(),
                    (start.byte as i64).into(),
                    (resume.byte as i64).into(),
                    (start.line as i64).into(),
                    (last_line as i64).into(),
                    rows.into(),
                    n_rejected.into(),
                ],
            )
            .unwrap_or_else(|e| raise(e));
    }
    let u = Update {
        name: file,
        status,
        size: cand.size.max(resume.byte),
        mtime_ns: cand.mtime_ns,
        hash: if finished {
            reader.content_hash().map(ledger::hash_hex)
        } else {
            None
        },
        resume,
        rows_ok: rows,
        rows_rejected: n_rejected,
        new_chunks: wrote as i32,
        extra_columns: (!extra.is_empty()).then(|| extra.to_vec()),
        error: (!extra.is_empty())
            .then(|| format!("unknown columns ignored: {}", extra.join(", "))),
    };
    ledger::write(client, &u).unwrap_or_else(|e| raise(e));
    ChunkStep::Committed(ChunkResult {
        update_entry: Entry::after(&u, before),
        rows,
        rejected: n_rejected,
        finished_reading: reached_eof,
    })
}
