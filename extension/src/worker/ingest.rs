//! Ingesting files: the reading thread (`ecommerce_events::pipeline`) parses, validates and
//! encodes the rows; this side runs one transaction per chunk of a file (chunk.rs), or one
//! transaction for the first chunk of a group of small files, and says how each file's turn
//! ended.

use super::chunk::{
    chunk_body, preamble, take_verdict, Body, ChunkResult, Opened, Verdict, THREAD_GONE,
};
use super::txn::{transaction, DbError};
use crate::settings::{Settings, Source};
use ecommerce_events::ledger::{Entry, FileStatus};
use ecommerce_events::pipeline::{GenericJob, Job, Piece, Pipeline, Ticket};
use ecommerce_events::{Candidate, OpenError};
use pgrx::prelude::*;

/// SQLSTATE of a lock not obtained within lock_timeout: not any file's fault.
pub const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How one file's turn ended.
#[derive(Debug)]
pub enum FileOutcome {
    /// Some chunks committed; `entry` is the ledger state after the last commit.
    Progress {
        entry: Entry,
        rows: i64,
        rejected: i64,
    },
    /// Judged without ingesting a row: fails as a whole (no usable header, empty) or changed
    /// since rows of it were committed. Nothing was written yet: the ledger records it.
    Refused { status: FileStatus, message: String },
    /// Paused before the next chunk: nothing more was written.
    Paused,
    /// Not ready yet (too young to judge, or a transient read error): try again later.
    Wait(Option<String>),
    /// The ledger in the database does not match the worker's copy (changed from outside,
    /// e.g. a restore): nothing was written; reload the ledger and look again.
    Stale,
    /// Another session holds the file's ledger row (another worker's transaction, or anyone's
    /// lock on it): nothing was written; the file waits, the others go on.
    Busy,
    /// A chunk failed in the database and was rolled back; committed chunks stay.
    DbFailed {
        error: DbError,
        rows: i64,
        rejected: i64,
        entry: Option<Entry>,
    },
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
        generic: match &st.source {
            Source::Events => None,
            Source::Pipeline(def) => Some(std::sync::Arc::new(GenericJob {
                options: def.options.clone(),
                columns: def.columns.clone(),
                // A non-superuser's files are read only from inside the allowed roots, checked
                // on each file once open (its folder may have been swapped since the check of
                // the trigger's start).
                roots: (!def.owner_is_superuser).then(crate::settings::allowed_roots),
            })),
        },
    }
}

/// The first piece of a job: the file opened, or why not.
fn first_piece(pipe: &mut Pipeline, t: &mut Ticket) -> Result<Opened, Option<OpenError>> {
    match pipe.next(t) {
        Ok(Some(Piece::Opened { extra, raw })) => Ok(Opened { extra, raw }),
        Ok(Some(Piece::OpenFailed(e))) => Err(Some(e)),
        _ => Err(None),
    }
}

/// A file that could not be opened: wait (transient, or too young to judge), or refused: as a
/// whole (no usable header, an empty file included: the contract requires the header) or as
/// changed (what was committed of it is not there any more).
fn open_failed(cand: &Candidate, young: bool, e: OpenError) -> FileOutcome {
    match e {
        OpenError::Io(e) => FileOutcome::Wait(Some(format!("cannot read {:?}: {e}", cand.name))),
        OpenError::Changed(_) => FileOutcome::Refused {
            status: FileStatus::Changed,
            message: e.to_string(),
        },
        _ if young => FileOutcome::Wait(None),
        e => FileOutcome::Refused {
            status: FileStatus::Failed,
            message: e.to_string(),
        },
    }
}

/// How one chunk transaction ended.
enum ChunkStep {
    Paused,
    Body(Body),
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
    // A pipeline whose on_error can fail a whole file reads it in one transaction, and only
    // once it is min_file_age old: a part committed early could not be taken back.
    if young && whole_file_only(st) {
        return FileOutcome::Wait(None);
    }
    let Ok(mut t) = pipe.submit(job(st, cand, before, young, false)) else {
        return FileOutcome::Wait(Some(THREAD_GONE.into()));
    };
    let mut opened = match first_piece(pipe, &mut t) {
        Ok(o) => o,
        Err(Some(e)) => return open_failed(cand, young, e),
        Err(None) => return FileOutcome::Wait(Some(THREAD_GONE.into())),
    };
    let mut entry = before.cloned();
    let (mut rows, mut rejected) = (0i64, 0i64);
    loop {
        let chunk_no = entry.as_ref().map_or(0, |e| e.chunks);
        let step = transaction(|| {
            Spi::connect_mut(|client| {
                if preamble(client)? {
                    return Ok(ChunkStep::Paused);
                }
                let c = chunk_body(
                    client,
                    st,
                    cand,
                    pipe,
                    &mut t,
                    &mut opened,
                    young,
                    chunk_no,
                    entry.as_ref(),
                )?;
                Ok(ChunkStep::Body(c))
            })
            .unwrap_or_else(|e: super::chunk::ChunkError| e.raise())
        });
        match step {
            Ok(ChunkStep::Body(Body::Committed(c))) => {
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
                return progress_or(entry, before, rows, rejected, FileOutcome::Paused);
            }
            Ok(ChunkStep::Body(Body::Stale)) => {
                pipe.cancel(&mut t);
                return FileOutcome::Stale;
            }
            Ok(ChunkStep::Body(Body::Busy)) => {
                pipe.cancel(&mut t);
                return progress_or(entry, before, rows, rejected, FileOutcome::Busy);
            }
            Err(error) => {
                pipe.cancel(&mut t);
                // The file's own verdict (its on_error, or its transform's error): failed, with
                // the reason; what earlier chunks committed stays (ingest_files says so).
                let verdict = match take_verdict() {
                    Some(Verdict::Refused(why)) => Some(why),
                    Some(Verdict::Transform(e)) if !is_transient(&e) => Some(match &st.source {
                        Source::Pipeline(def) if def.transform.is_some() => {
                            format!("the pipeline's transform failed: {e}")
                        }
                        _ => format!("inserting the file's rows into the target failed: {e}"),
                    }),
                    _ => None,
                };
                if let (Some(message), true) = (verdict, rows + rejected == 0) {
                    return FileOutcome::Refused {
                        status: FileStatus::Failed,
                        message,
                    };
                }
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

/// A file's turn that stopped before its end (paused, or its row held elsewhere): the chunks
/// committed before are progress (the ledger copy must know), otherwise `otherwise`.
fn progress_or(
    entry: Option<Entry>,
    before: Option<&Entry>,
    rows: i64,
    rejected: i64,
    otherwise: FileOutcome,
) -> FileOutcome {
    match entry {
        Some(entry) if Some(&entry) != before => FileOutcome::Progress {
            entry,
            rows,
            rejected,
        },
        _ => otherwise,
    }
}

/// A pipeline whose `on_error` can fail a file as a whole.
fn whole_file_only(st: &Settings) -> bool {
    match &st.source {
        Source::Pipeline(def) => {
            ingest_core::policy::whole_file_in_one_transaction(&def.options.policy)
        }
        Source::Events => false,
    }
}

/// Errors that say nothing about the file: a deadlock, a serialization failure, a lock not
/// obtained in time, a cancelled statement. Retried, never a verdict.
fn is_transient(e: &DbError) -> bool {
    matches!(
        e.sqlstate.as_str(),
        "40001" | "40P01" | LOCK_NOT_AVAILABLE | "57014"
    )
}

/// How a group's file came out of the group transaction.
enum MemberStep {
    /// Could not be opened inside the group: handled on its own afterwards.
    NotOpened,
    Body(Body),
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
            if preamble(client)? {
                return Ok(None);
            }
            let mut steps = Vec::with_capacity(members.len());
            for (m, t) in members.iter().zip(tickets.iter_mut()) {
                let Ok(mut opened) = first_piece(pipe, t) else {
                    steps.push(MemberStep::NotOpened);
                    continue;
                };
                let chunk_no = m.before.as_ref().map_or(0, |e| e.chunks);
                let c = chunk_body(
                    client,
                    st,
                    m.cand,
                    pipe,
                    t,
                    &mut opened,
                    m.young,
                    chunk_no,
                    m.before.as_ref(),
                )?;
                if !matches!(c, Body::Committed(_)) {
                    pipe.cancel(t);
                }
                steps.push(MemberStep::Body(c));
            }
            Ok(Some(steps))
        })
        .unwrap_or_else(|e: super::chunk::ChunkError| e.raise())
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
                MemberStep::Body(Body::Stale) => FileOutcome::Stale,
                MemberStep::Body(Body::Busy) => FileOutcome::Busy,
                MemberStep::Body(Body::Committed(c)) if c.finished_reading => {
                    FileOutcome::Progress {
                        entry: c.update_entry,
                        rows: c.rows,
                        rejected: c.rejected,
                    }
                }
                MemberStep::Body(Body::Committed(c)) => {
                    let entry = c.update_entry.clone();
                    alone(m, Some(&entry)).after(c)
                }
            })
            .collect(),
        // Waiting for a lock is not any file's fault: trying each file alone would only wait
        // again, once per file.
        Err(e) if e.sqlstate == LOCK_NOT_AVAILABLE => members
            .iter()
            .map(|m| FileOutcome::DbFailed {
                error: e.clone(),
                rows: 0,
                rejected: 0,
                entry: m.before.clone(),
            })
            .collect(),
        Err(e) => {
            // A file's verdict in a group is given again when that file is ingested alone.
            take_verdict();
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
            // sees the pause, the stale ledger, the unreadable or changed file again.
            FileOutcome::Paused
            | FileOutcome::Stale
            | FileOutcome::Busy
            | FileOutcome::Wait(_)
            | FileOutcome::Refused { .. } => FileOutcome::Progress {
                entry: first.update_entry,
                rows: first.rows,
                rejected: first.rejected,
            },
        }
    }
}
