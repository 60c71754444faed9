//! One chunk of one file inside a transaction: the preamble every ingesting transaction starts
//! with, the rows inserted with COPY (row-level refusals become rejects), the rejects, the chunk
//! row and the ledger row. Errors come back as [`ChunkError`] and are raised once, at the
//! transaction's boundary, with their SQLSTATE kept.

use super::copy::{copy_from, copy_into_user_events, last_failure, Into};
use super::ledger;
use super::sql;
use super::txn::{subtransaction, DbError};
use crate::pipeline::PipelineDef;
use crate::settings::{Settings, Source};
use ecommerce_events::ledger::{Check, Entry, FileStatus, Identity, Update};
use ecommerce_events::pipeline::{ChunkEnd, Piece, Pipeline, Rows, TextRows, Ticket};
use ecommerce_events::{Candidate, RawSource};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::fmt;

pub const THREAD_GONE: &str = "the file-reading thread stopped";

/// Why a chunk transaction cannot commit.
#[derive(Debug)]
pub enum ChunkError {
    Spi(pgrx::spi::Error),
    /// An ERROR caught in a subtransaction (COPY) that is not the row's fault.
    Db(DbError),
    /// The file could not be read further.
    Read(String),
    /// The pipeline's owner may not insert into its target (any more).
    Denied(String),
    /// The file fails as a whole under its pipeline's `on_error` (why).
    Refused(String),
    /// The pipeline's transform (or the statement that moves staged rows) raised this.
    Transform(DbError),
    ThreadGone,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::Spi(e) => e.fmt(f),
            ChunkError::Db(e) => e.fmt(f),
            ChunkError::Read(m) | ChunkError::Denied(m) | ChunkError::Refused(m) => f.write_str(m),
            ChunkError::Transform(e) => write!(f, "the pipeline's transform failed: {e}"),
            ChunkError::ThreadGone => f.write_str(THREAD_GONE),
        }
    }
}

impl From<pgrx::spi::Error> for ChunkError {
    fn from(e: pgrx::spi::Error) -> Self {
        ChunkError::Spi(e)
    }
}

impl ChunkError {
    /// Raises the error as a PostgreSQL ERROR (the transaction aborts); a database error keeps
    /// its SQLSTATE (e.g. 55P03 for a lock not obtained in time).
    pub fn raise(self) -> ! {
        match self {
            ChunkError::Db(e) => e.raise(),
            ChunkError::Refused(why) => {
                VERDICT.with(|v| v.replace(Some(Verdict::Refused(why.clone()))));
                error!("{why}")
            }
            ChunkError::Transform(e) => {
                VERDICT.with(|v| v.replace(Some(Verdict::Transform(e.clone()))));
                e.raise()
            }
            ChunkError::Denied(m) => {
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    m,
                    "ecommerce_ingest",
                )
                .report(PgLogLevel::ERROR);
                unreachable!("ERROR does not return")
            }
            other => error!("{other}"),
        }
    }
}

/// Why a chunk's transaction was rolled back, when it is the file's own verdict rather than a
/// failure to retry: set by [`ChunkError::raise`], taken by the caller of the transaction.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The file fails as a whole (`on_error`).
    Refused(String),
    /// The transform raised this.
    Transform(DbError),
}

thread_local! {
    static VERDICT: std::cell::RefCell<Option<Verdict>> = const { std::cell::RefCell::new(None) };
}

/// The verdict of the last rolled-back chunk transaction, if it was one (cleared).
pub fn take_verdict() -> Option<Verdict> {
    VERDICT.with(|v| v.take())
}

/// Rejected rows waiting to be inserted, column by column (one INSERT … SELECT FROM unnest).
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
    fn flush(&mut self, client: &mut SpiClient<'_>, file: &str) -> Result<(), ChunkError> {
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
                super::me::pipeline().into(),
            ],
        )?;
        Ok(())
    }
}

/// Inserts the rows with one COPY; if the database refuses it for a row's values (a constraint
/// or trigger), each row is retried alone and only the refused rows become rejects.
fn flush_rows(
    rows: &mut Rows,
    rejects: &mut Rejects,
    raw: Option<&RawSource>,
) -> Result<i64, ChunkError> {
    let n = rows.len();
    if n == 0 {
        return Ok(0);
    }
    match subtransaction(|| copy_into_user_events(rows.copy.finish())) {
        Ok(_) => Ok(n as i64),
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
                            raw.map(|r| r.text(start, end)),
                        )
                    }
                    Err(e) => return Err(ChunkError::Db(e)),
                }
            }
            Ok(ok)
        }
        Err(e) => Err(ChunkError::Db(e)),
    }
}

/// Inserts a pipeline's rows `from..to` with one COPY (text format, as the pipeline's owner). If
/// the database refuses a row (a value its type does not accept, a constraint, a trigger), the
/// row at fault is found — where COPY says it stopped when that is reliable (a conversion,
/// NOT NULL, CHECK or unique violation: checked row by row), by halves otherwise (a foreign key
/// checked at the statement's end) — and becomes a reject with PostgreSQL's message and the
/// column; every other row is inserted. Each attempt is a subtransaction.
fn insert_text(
    def: &PipelineDef,
    into_oid: pg_sys::Oid,
    b: &TextRows,
    mut from: usize,
    to: usize,
    rejects: &mut Rejects,
) -> Result<i64, ChunkError> {
    let into = Into::Table {
        oid: into_oid,
        owner: def.insert_role(),
        columns: &b.columns,
    };
    let mut ok = 0i64;
    while from < to {
        let e = match subtransaction(|| copy_from(&into, b.slice(from, to))) {
            Ok(_) => return Ok(ok + (to - from) as i64),
            Err(e) if e.is_row_level() => e,
            Err(e) => return Err(ChunkError::Db(e)),
        };
        let at = last_failure();
        if to - from == 1 {
            let column = at.and_then(|(_, c)| c);
            rejects.push(
                b.lines[from],
                column.as_deref(),
                format!("refused by the database: {e}"),
                Some(b.raws[from].clone()),
            );
            return Ok(ok);
        }
        let reliable = e.sqlstate.starts_with("22")
            || matches!(e.sqlstate.as_str(), "23502" | "23505" | "23514");
        let hint = at
            .filter(|_| reliable)
            .map(|(line, _)| line as usize)
            .filter(|&line| line >= 1 && from + line - 1 < to)
            .map(|line| from + line - 1);
        match hint {
            Some(i) => {
                ok += insert_text(def, into_oid, b, from, i, rejects)?;
                ok += insert_text(def, into_oid, b, i, i + 1, rejects)?;
                from = i + 1;
            }
            None => {
                let mid = from + (to - from) / 2;
                ok += insert_text(def, into_oid, b, from, mid, rejects)?;
                from = mid;
            }
        }
    }
    Ok(ok)
}

/// A chunk committed: the file's ledger entry after it, and what it counted.
pub struct ChunkResult {
    pub update_entry: Entry,
    pub rows: i64,
    pub rejected: i64,
    /// Nothing more to read for now (end of file, or a held line).
    pub finished_reading: bool,
}

/// What the reading thread said when it opened a file.
pub struct Opened {
    pub extra: Vec<String>,
    /// An events file's raw text, read again for a row the database refuses.
    pub raw: Option<RawSource>,
}

/// The start of every ingesting transaction: the lock that orders it with DROP EXTENSION, and
/// the paused flag (true: write nothing).
pub fn preamble(client: &mut SpiClient<'_>) -> Result<bool, ChunkError> {
    // (A lock held by another session gives up after lock_timeout: see entry.rs.)
    client.update(sql::FIRST_LOCK, None, &[])?;
    Ok(client
        .select(sql::PAUSED, None, &[super::me::pipeline().into()])?
        .first()
        .get_one::<bool>()?
        .unwrap_or(false))
}

/// What one chunk's body came to.
pub enum Body {
    Committed(ChunkResult),
    /// The ledger row is not what the worker's copy says: nothing was written.
    Stale,
    /// Another session holds the file's ledger row: nothing was written; the file waits.
    Busy,
}

/// One chunk of one file, in the current transaction: checks the ledger row, inserts the
/// thread's batches of rows and rejects up to the chunk's end, and writes the chunk and ledger
/// rows. Nothing is written when the file's ledger row is not what the worker's copy says
/// (`Body::Stale`) or another session holds it (`Body::Busy`).
#[allow(clippy::too_many_arguments)]
pub fn chunk_body(
    client: &mut SpiClient<'_>,
    st: &Settings,
    cand: &Candidate,
    pipe: &mut Pipeline,
    t: &mut Ticket,
    opened: &mut Opened,
    young: bool,
    chunk_no: i32,
    before: Option<&Entry>,
) -> Result<Body, ChunkError> {
    let file = cand.name.as_str();
    // The file claimed through its ledger row (locked, or created: its id goes into every row
    // of user_events): the row must say exactly what the worker's copy says, or another session
    // (another of the pipeline's workers included) changed it, and resuming from our offset
    // could ingest rows twice.
    let file_id = match ledger::claim(client, file, cand.size, before, Check::Offset)? {
        ledger::Claim::Mine(id) => id,
        ledger::Claim::Stale => return Ok(Body::Stale),
        ledger::Claim::Busy => return Ok(Body::Busy),
    };
    let mut rejects = Rejects::default();
    let (mut rows, mut n_rejected) = (0i64, 0i64);
    let mut damaged: Option<String> = None;
    let def = match &st.source {
        Source::Pipeline(def) => Some(def.as_ref()),
        Source::Events => None,
    };
    // Rows through the staging table (transform, dedup_key, RLS, a view): its oid once created
    // in this transaction, and the columns the file's batches gave.
    let staged = def.is_some_and(PipelineDef::staged);
    let mut staging: Option<pg_sys::Oid> = None;
    let mut staged_columns: Vec<String> = Vec::new();
    // Without a transform, each staged row's line and text, in staging order: a row the
    // target refuses when the staged rows go in becomes a reject of its own.
    let keep_staged = staged && def.is_some_and(|d| d.transform.is_none());
    let mut staged_rows: Vec<(u64, String)> = Vec::new();
    let policy = def.map(|d| &d.options.policy);
    let end: ChunkEnd = loop {
        match pipe.next(t) {
            Ok(Some(Piece::Batch {
                rows: mut batch,
                rejects: refused,
            })) => {
                batch.copy.set_source_file_id(file_id);
                rows += flush_rows(&mut batch, &mut rejects, opened.raw.as_ref())?;
                for r in refused {
                    rejects.push(r.line, r.column.as_deref(), r.reason, Some(r.raw));
                }
                if rejects.len() >= st.batch_rows {
                    n_rejected += rejects.len() as i64;
                    rejects.flush(client, file)?;
                }
            }
            Ok(Some(Piece::TextBatch {
                rows: batch,
                rejects: refused,
            })) => {
                let Source::Pipeline(def) = &st.source else {
                    return Err(ChunkError::Read(
                        "a pipeline's rows for the events table".into(),
                    ));
                };
                // Inserting as the owner: a privilege revoked (or row-level security enabled)
                // since the trigger began stops the chunk here (COPY's own checks are not run).
                crate::pipeline::owner_may_insert(def).map_err(ChunkError::Denied)?;
                let into = if staged {
                    for c in batch.columns.iter() {
                        if !staged_columns.contains(c) {
                            staged_columns.push(c.clone());
                        }
                    }
                    match staging {
                        Some(oid) => oid,
                        None => {
                            let oid = super::staging::begin(def).map_err(ChunkError::Db)?;
                            staging = Some(oid);
                            oid
                        }
                    }
                } else {
                    def.target
                };
                let before = rejects.len();
                rows += insert_text(def, into, &batch, 0, batch.len(), &mut rejects)?;
                if keep_staged {
                    let left_out: std::collections::HashSet<i64> =
                        rejects.line[before..].iter().copied().collect();
                    let TextRows { lines, raws, .. } = batch;
                    staged_rows.extend(
                        lines
                            .into_iter()
                            .zip(raws)
                            .filter(|(l, _)| !left_out.contains(&(*l as i64))),
                    );
                }
                for r in refused {
                    rejects.push(r.line, r.column.as_deref(), r.reason, Some(r.raw));
                }
                if let Some(why) = policy.and_then(|p| {
                    ingest_core::policy::file_fails(
                        p,
                        rows as u64,
                        (n_rejected + rejects.len() as i64) as u64,
                        false,
                    )
                }) {
                    return Err(ChunkError::Refused(why));
                }
                if rejects.len() >= st.batch_rows {
                    n_rejected += rejects.len() as i64;
                    rejects.flush(client, file)?;
                }
            }
            Ok(Some(Piece::Extra(extra))) => opened.extra = extra,
            Ok(Some(Piece::ChunkEnd(end))) => break end,
            // What was read before the damage commits with this chunk; the file fails.
            Ok(Some(Piece::Damaged { end, message })) => {
                damaged = Some(message);
                break end;
            }
            Ok(Some(Piece::ReadFailed(msg))) => return Err(ChunkError::Read(msg)),
            _ => return Err(ChunkError::ThreadGone),
        }
    };
    // Staged rows go into the target through the planner: the owner's transform, or an INSERT
    // whose refused rows become rejects.
    let mut duplicates = 0i64;
    if let (Some(def), Some(_)) = (def, staging) {
        let applied = match &def.transform {
            Some(t) => {
                super::staging::apply_transform(def, t, rows).map_err(ChunkError::Transform)?
            }
            None => {
                // Once the file's verdict is known (on_error), the search for refused rows stops.
                let max_refused = policy.and_then(|p| {
                    ingest_core::policy::refusals_allowed(
                        p,
                        (n_rejected + rejects.len() as i64) as u64,
                    )
                });
                let r = super::staging::apply_rows(def, &staged_columns, rows, max_refused)
                    .map_err(ChunkError::Db)?;
                for x in r.refused {
                    let (line, raw) = staged_rows
                        .get_mut(x.position - 1)
                        .map(std::mem::take)
                        .unwrap_or_default();
                    rejects.push(
                        line,
                        None,
                        format!("refused by the database: {}", x.error),
                        Some(raw),
                    );
                }
                r.applied
            }
        };
        rows = applied.rows;
        duplicates = applied.duplicates;
    }
    // Session advisory locks the target's triggers took (on the COPY path too) must not
    // outlive the chunk in the worker's session.
    super::staging::release_advisory_locks().map_err(ChunkError::Db)?;
    n_rejected += rejects.len() as i64;
    rejects.flush(client, file)?;
    // The file's verdict under its on_error, now that this chunk was read.
    let whole = end.at_eof && !end.held;
    if let Some(why) = policy.and_then(|p| {
        ingest_core::policy::file_fails(p, (rows + duplicates) as u64, n_rejected as u64, whole)
    }) {
        return Err(ChunkError::Refused(why));
    }

    let finished = end.at_eof && !end.held && !young;
    let resume = end.resume;
    let status = if damaged.is_some() {
        FileStatus::Failed
    } else if finished {
        FileStatus::Done
    } else if end.last() {
        FileStatus::Growing
    } else {
        FileStatus::Ingesting
    };
    let wrote = rows + n_rejected + duplicates > 0;
    if wrote {
        client.update(
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
                super::me::pipeline().into(),
            ],
        )?;
    }
    // Column names come from the file: shown capped (64 characters each, 20 names, 768 bytes).
    let (extra, more) = ecommerce_events::shown::name_list(&opened.extra, 64, 20, 768);
    let u = Update {
        name: file,
        status,
        // A compressed file's offsets count decompressed bytes: its size is the one on disk.
        size: if st.compressed(file) {
            cand.size
        } else {
            cand.size.max(resume.byte)
        },
        mtime_ns: cand.mtime_ns,
        hash: if finished {
            end.hash.map(ecommerce_events::ledger::hash_hex)
        } else {
            None
        },
        resume,
        rows_ok: rows,
        rows_rejected: n_rejected,
        rows_duplicate: duplicates,
        new_chunks: wrote as i32,
        extra_columns: (!extra.is_empty()).then(|| extra.clone()),
        error: match &damaged {
            Some(m) => Some(format!(
                "{m}; its rows before line {} were ingested, the rest was not",
                resume.line
            )),
            None => (!extra.is_empty()).then(|| {
                let more = if more > 0 {
                    format!(" … and {more} more")
                } else {
                    String::new()
                };
                format!("unknown columns ignored: {}{more}", extra.join(", "))
            }),
        },
        identity: Some(Identity::of(cand)),
        prefix_hash: Some(end.prefix_hash),
    };
    ledger::write(client, &u)?;
    Ok(Body::Committed(ChunkResult {
        update_entry: ledger::after(&u, before),
        rows,
        rejected: n_rejected,
        finished_reading: end.last() || damaged.is_some(),
    }))
}
