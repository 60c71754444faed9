//! Ingesting files: the reading thread (`ecommerce_events::pipeline`) parses, validates and
//! encodes the rows; this side inserts each batch with COPY and commits each chunk together
//! with its rejects and the ledger row that records the byte offset reached.

use super::copy::copy_into_user_events;
use super::ledger::{self, Entry, Identity, Status, Update};
use super::sql;
use super::txn::{subtransaction, transaction, DbError};
use crate::settings::Settings;
use ecommerce_events::pipeline::{ChunkEnd, Job, Piece, Pipeline, Rows, Ticket};
use ecommerce_events::{Candidate, OpenError, RawSource, Resume};
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
    fn len(&self) -> usize {
        self.line.len()
    }
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

/// Inserts the rows with one COPY; if the database refuses it for a row's values (a constraint
/// or trigger), each row is retried alone and only the refused rows become rejects.
fn flush_rows(rows: &mut Rows, rejects: &mut Rejects, raw: &RawSource) -> i64 {
    let n = rows.len();
    if n == 0 {
        return 0;
    }
    match subtransaction(|| copy_into_user_events(rows.copy.finish())) {
        Ok(_) => n as i64,
        Err(e) if e.is_row_level() => {
            let mut ok = 0;
            let mut one = Vec::new();
            for i in 0..n {
                rows.copy.single(i, &mut one);
                match subtransaction(|| copy_into_user_events(&one)) {
                    Ok(_) => ok += 1,
                    Err(e) if e.is_row_level() => {
                        let (start, end) = rows.spans[i];
                        rejects.push(
                            rows.lines[i],
                            None,
                            format!("refused by the database: {e}"),
                            Some(raw.text(start, end)),
                        )
                    }
                    Err(e) => e.raise(),
                }
            }
            ok
        }
        Err(e) => e.raise(),
    }
}

struct ChunkResult {
    update_entry: Entry,
    rows: i64,
    rejected: i64,
    /// Nothing more to read for now (end of file, or a held line).
    finished_reading: bool,
}

enum ChunkStep {
    Paused,
    Stale,
    Committed(ChunkResult),
}

/// What the reading thread said when it opened a file.
struct Opened {
    extra: Vec<String>,
    raw: RawSource,
}

fn job(
    st: &Settings,
    cand: &Candidate,
    before: Option<&Entry>,
    young: bool,
    one_chunk: bool,
) -> Job {
    let resume = before.map(|e| e.resume).filter(|r| r.byte > 0);
    Job {
        path: st.input_dir.join(&cand.name),
        resume,
        // What was committed must still be there, byte for byte, before anything is appended
        // to it: a file replaced under the same name is never merged into the first one.
        expect_prefix: resume.and(before.and_then(|e| e.prefix_hash)),
        young,
        chunk_bytes: st.chunk_bytes,
        batch_rows: st.batch_rows,
        one_chunk,
        max_record_bytes: st.max_record_bytes,
    }
}

const THREAD_GONE: &str = "the file-reading thread stopped";

/// The first piece of a job: the file opened, or why not.
fn first_piece(pipe: &mut Pipeline, t: &mut Ticket) -> Result<Opened, Option<OpenError>> {
    match pipe.next(t) {
        Ok(Some(Piece::Opened { extra, raw })) => Ok(Opened { extra, raw }),
        Ok(Some(Piece::OpenFailed(e))) => Err(Some(e)),
        _ => Err(None),
    }
}

/// A file that could not be opened: wait (transient, or too young to judge), or record it in
/// its own transaction as failed (no usable header, an empty file included: the contract
/// requires the header) or changed (what was committed of it is not there any more).
fn open_failed(cand: &Candidate, before: Option<&Entry>, young: bool, e: OpenError) -> FileOutcome {
    let e = match e {
        OpenError::Io(e) => {
            return FileOutcome::Wait(Some(format!("cannot read {:?}: {e}", cand.name)))
        }
        OpenError::Changed(_) => e,
        _ if young => return FileOutcome::Wait(None),
        e => e,
    };
    let (status, resume) = match e {
        // Its committed rows stay, and the ledger keeps saying how far they go.
        OpenError::Changed(_) => (
            Status::Changed,
            before.map(|b| b.resume).unwrap_or_default(),
        ),
        _ => (Status::Failed, Resume::default()),
    };
    let mut u = Update::status_of(cand, status, resume, Some(e.to_string()));
    if let Some(b) = before.filter(|_| status == Status::Changed) {
        // The row stays about the file that was ingested.
        u.size = b.size;
        u.mtime_ns = b.mtime_ns;
        u.identity = b.identity;
    }
    match transaction(|| Spi::connect_mut(|c| ledger::write(c, &u)).unwrap_or_else(|e| raise(e))) {
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
    }
}

/// Ingests `cand` from where the ledger says it stopped (or the start), chunk by chunk, one
/// transaction per chunk; the reading thread reads the next chunk meanwhile.
pub fn ingest_file(
    st: &Settings,
    pipe: &mut Pipeline,
    cand: &Candidate,
    before: Option<&Entry>,
    young: bool,
) -> FileOutcome {
    let Ok(mut t) = pipe.submit(job(st, cand, before, young, false)) else {
        return FileOutcome::Wait(Some(THREAD_GONE.into()));
    };
    let opened = match first_piece(pipe, &mut t) {
        Ok(o) => o,
        Err(Some(e)) => return open_failed(cand, before, young, e),
        Err(None) => return FileOutcome::Wait(Some(THREAD_GONE.into())),
    };
    let mut entry = before.cloned();
    let (mut rows, mut rejected) = (0i64, 0i64);
    loop {
        let chunk_no = entry.as_ref().map_or(0, |e| e.chunks);
        let step = transaction(|| {
            Spi::connect_mut(|client| {
                if preamble(client, st) {
                    return ChunkStep::Paused;
                }
                match chunk_body(
                    client,
                    st,
                    cand,
                    pipe,
                    &mut t,
                    &opened,
                    young,
                    chunk_no,
                    entry.as_ref(),
                ) {
                    Some(c) => ChunkStep::Committed(c),
                    None => ChunkStep::Stale,
                }
            })
        });
        match step {
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
            Ok(ChunkStep::Paused) => {
                pipe.cancel(&mut t);
                // Chunks committed before the pause are progress: the ledger copy must know.
                return match entry {
                    Some(entry) if Some(&entry) != before => FileOutcome::Progress {
                        entry,
                        rows,
                        rejected,
                    },
                    _ => FileOutcome::Paused,
                };
            }
            Ok(ChunkStep::Stale) => {
                pipe.cancel(&mut t);
                return FileOutcome::Stale;
            }
            Err(error) => {
                pipe.cancel(&mut t);
                return FileOutcome::DbFailed {
                    error,
                    rows,
                    rejected,
                    entry,
                };
            }
        }
    }
}

/// A file to ingest: what the folder says about it, what the ledger says, and whether it is
/// young (modified less than `min_file_age` ago).
pub struct Member<'a> {
    pub cand: &'a Candidate,
    pub before: Option<Entry>,
    pub young: bool,
}

/// Most files in one group transaction. Each file's COPY runs in a subtransaction that gets its
/// own transaction id; PostgreSQL keeps up to 64 of those per backend in shared memory before
/// other sessions' snapshots have to look them up in pg_subtrans.
pub const GROUP_MAX_FILES: usize = 32;

/// How a group's file came out of the group transaction.
enum MemberStep {
    /// Could not be opened inside the group: handled on its own afterwards.
    NotOpened,
    Stale,
    Committed(ChunkResult),
}

/// Ingests the first chunk of several files in ONE transaction, then finishes on its own any
/// file that needs more chunks. Every file's rows, rejects, chunk row and ledger row still
/// commit together (exactly once per file, as with one file per transaction); a backlog of
/// small files just pays one commit, one WAL flush, one lock and one paused check per group
/// instead of per file. If the group's transaction fails, each of its files is ingested again
/// on its own, so the file at fault is isolated and the others are not held back.
/// Returns one outcome per member, in order.
pub fn ingest_group(
    st: &Settings,
    pipe: &mut Pipeline,
    members: &[Member<'_>],
) -> Vec<FileOutcome> {
    if let [m] = members {
        return vec![ingest_file(st, pipe, m.cand, m.before.as_ref(), m.young)];
    }
    // Every file's first chunk is queued at once: the thread reads the next files while the
    // database inserts the current one.
    let mut tickets = Vec::with_capacity(members.len());
    for m in members {
        match pipe.submit(job(st, m.cand, m.before.as_ref(), m.young, true)) {
            Ok(t) => tickets.push(t),
            Err(_) => {
                return members
                    .iter()
                    .map(|_| FileOutcome::Wait(Some(THREAD_GONE.into())))
                    .collect()
            }
        }
    }
    let result = transaction(|| {
        Spi::connect_mut(|client| {
            if preamble(client, st) {
                return None;
            }
            let mut steps = Vec::with_capacity(members.len());
            for (m, t) in members.iter().zip(tickets.iter_mut()) {
                let Ok(opened) = first_piece(pipe, t) else {
                    steps.push(MemberStep::NotOpened);
                    continue;
                };
                let chunk_no = m.before.as_ref().map_or(0, |e| e.chunks);
                steps.push(
                    match chunk_body(
                        client,
                        st,
                        m.cand,
                        pipe,
                        t,
                        &opened,
                        m.young,
                        chunk_no,
                        m.before.as_ref(),
                    ) {
                        Some(c) => MemberStep::Committed(c),
                        None => {
                            pipe.cancel(t);
                            MemberStep::Stale
                        }
                    },
                );
            }
            Some(steps)
        })
    });
    // Whatever was not read (a pause, a rollback) is dropped.
    for t in tickets.iter_mut() {
        pipe.cancel(t);
    }
    let mut alone =
        |m: &Member<'_>, before: Option<&Entry>| ingest_file(st, pipe, m.cand, before, m.young);
    match result {
        Ok(None) => members.iter().map(|_| FileOutcome::Paused).collect(),
        Ok(Some(steps)) => members
            .iter()
            .zip(steps)
            .map(|(m, step)| match step {
                MemberStep::NotOpened => alone(m, m.before.as_ref()),
                MemberStep::Stale => FileOutcome::Stale,
                MemberStep::Committed(c) if c.finished_reading => FileOutcome::Progress {
                    entry: c.update_entry,
                    rows: c.rows,
                    rejected: c.rejected,
                },
                MemberStep::Committed(c) => {
                    let entry = c.update_entry.clone();
                    alone(m, Some(&entry)).after(c)
                }
            })
            .collect(),
        // Waiting for a lock is not any file's fault: trying each file alone would only wait
        // again, once per file.
        Err(e) if e.sqlstate == "55P03" => members
            .iter()
            .map(|m| FileOutcome::DbFailed {
                error: e.clone(),
                rows: 0,
                rejected: 0,
                entry: m.before.clone(),
            })
            .collect(),
        Err(e) => {
            debug1!(
                "ecommerce_ingest: a group of {} files was rolled back ({e}); ingesting them one by one",
                members.len()
            );
            members
                .iter()
                .map(|m| alone(m, m.before.as_ref()))
                .collect()
        }
    }
}

impl FileOutcome {
    /// This outcome of a file's later chunks, preceded by the committed chunk `first`.
    fn after(self, first: ChunkResult) -> FileOutcome {
        match self {
            FileOutcome::Progress {
                entry,
                rows,
                rejected,
            } => FileOutcome::Progress {
                entry,
                rows: rows + first.rows,
                rejected: rejected + first.rejected,
            },
            FileOutcome::DbFailed {
                error,
                rows,
                rejected,
                entry,
            } => FileOutcome::DbFailed {
                error,
                rows: rows + first.rows,
                rejected: rejected + first.rejected,
                entry: entry.or(Some(first.update_entry)),
            },
            // Nothing more was written: what counts is the committed chunk; the next trigger
            // sees the pause, the stale ledger or the unreadable file again.
            FileOutcome::Paused | FileOutcome::Stale | FileOutcome::Wait(_) => {
                FileOutcome::Progress {
                    entry: first.update_entry,
                    rows: first.rows,
                    rejected: first.rejected,
                }
            }
        }
    }
}

/// The start of every ingesting transaction: how long it may wait for a lock, the lock that
/// orders it with DROP EXTENSION, and the paused flag (true: write nothing).
fn preamble(client: &mut SpiClient<'_>, st: &Settings) -> bool {
    // A lock held by another session (LOCK TABLE, a long ALTER TABLE) must not keep the worker
    // blind: after lock_timeout the chunk rolls back (SQLSTATE 55P03), the worker looks at the
    // folder again (files_pending, lag) and retries at once (see `handle`).
    client
        .update(
            sql::SET_LOCK_TIMEOUT,
            None,
            &[format!("{}ms", st.lock_timeout.as_millis()).into()],
        )
        .unwrap_or_else(|e| raise(e));
    client
        .update(
            sql::CHUNK_LOCK,
            None,
            &[crate::shared::DROP_LOCK_KEY.into()],
        )
        .unwrap_or_else(|e| raise(e));
    client
        .select(sql::PAUSED, None, &[])
        .and_then(|t| t.first().get_one::<bool>())
        .unwrap_or_else(|e| raise(e))
        .unwrap_or(false)
}

/// One chunk of one file, in the current transaction: checks the ledger row, inserts the
/// thread's batches of rows and rejects up to the chunk's end, and writes the chunk and ledger
/// rows. `None`: the ledger row is not what the worker's copy says (nothing was written).
#[allow(clippy::too_many_arguments)]
fn chunk_body(
    client: &mut SpiClient<'_>,
    st: &Settings,
    cand: &Candidate,
    pipe: &mut Pipeline,
    t: &mut Ticket,
    opened: &Opened,
    young: bool,
    chunk_no: i32,
    before: Option<&Entry>,
) -> Option<ChunkResult> {
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
        return None;
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
    let mut rejects = Rejects::default();
    let (mut rows, mut n_rejected) = (0i64, 0i64);
    let end: ChunkEnd = loop {
        match pipe.next(t) {
            Ok(Some(Piece::Batch {
                rows: mut batch,
                rejects: refused,
            })) => {
                batch.copy.set_source_file_id(file_id);
                rows += flush_rows(&mut batch, &mut rejects, &opened.raw);
                for r in refused {
                    rejects.push(r.line, r.column, r.reason, Some(r.raw));
                }
                if rejects.len() >= st.batch_rows {
                    n_rejected += rejects.len() as i64;
                    rejects.flush(client, file).unwrap_or_else(|e| raise(e));
                }
            }
            Ok(Some(Piece::ChunkEnd(end))) => break end,
            Ok(Some(Piece::ReadFailed(msg))) => raise(msg),
            _ => raise(THREAD_GONE),
        }
    };
    n_rejected += rejects.len() as i64;
    rejects.flush(client, file).unwrap_or_else(|e| raise(e));

    let finished = end.at_eof && !end.held && !young;
    let resume = end.resume;
    let status = if finished {
        Status::Done
    } else if end.last() {
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
                    (end.start.byte as i64).into(),
                    (resume.byte as i64).into(),
                    (end.start.line as i64).into(),
                    (end.last_line as i64).into(),
                    rows.into(),
                    n_rejected.into(),
                ],
            )
            .unwrap_or_else(|e| raise(e));
    }
    // Column names come from the file: shown capped (64 characters each, 20 names, 768 bytes).
    let (extra, more) = ecommerce_events::shown::name_list(&opened.extra, 64, 20, 768);
    let u = Update {
        name: file,
        status,
        size: cand.size.max(resume.byte),
        mtime_ns: cand.mtime_ns,
        hash: if finished {
            end.hash.map(ledger::hash_hex)
        } else {
            None
        },
        resume,
        rows_ok: rows,
        rows_rejected: n_rejected,
        new_chunks: wrote as i32,
        extra_columns: (!extra.is_empty()).then(|| extra.clone()),
        error: (!extra.is_empty()).then(|| {
            let more = if more > 0 {
                format!(" … and {more} more")
            } else {
                String::new()
            };
            format!("unknown columns ignored: {}{more}", extra.join(", "))
        }),
        identity: Some(Identity::of(cand)),
        prefix_hash: Some(end.prefix_hash),
    };
    ledger::write(client, &u).unwrap_or_else(|e| raise(e));
    Some(ChunkResult {
        update_entry: Entry::after(&u, before),
        rows,
        rejected: n_rejected,
        finished_reading: end.last(),
    })
}
