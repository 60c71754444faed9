//! The file ledger: an in-memory copy of `ingest_ledger` (so a scan costs no SQL per known file)
//! and the statements that write it, always inside the transaction that commits the rows.

use super::sql;
use ecommerce_events::{Candidate, Resume};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ingesting,
    Growing,
    Done,
    Failed,
    Changed,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ingesting => "ingesting",
            Status::Growing => "growing",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Changed => "changed",
            Status::Error => "error",
        }
    }
    fn parse(s: &str) -> Status {
        match s {
            "ingesting" => Status::Ingesting,
            "growing" => Status::Growing,
            "done" => Status::Done,
            "failed" => Status::Failed,
            "changed" => Status::Changed,
            _ => Status::Error,
        }
    }
}

/// Which file a ledger row is about, beyond its name: a file replaced under the same name (by
/// rename, `rsync -t`, `cp -p`) has another inode or ctime even when size and mtime are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub inode: u64,
    /// Status-change time, microseconds since the Unix epoch (the ledger's precision).
    pub ctime_us: i64,
}

impl Identity {
    pub fn of(c: &Candidate) -> Identity {
        Identity {
            dev: c.dev,
            inode: c.inode,
            ctime_us: c.ctime_ns.div_euclid(1000),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub status: Status,
    pub size: u64,
    pub mtime_ns: i64,
    pub resume: Resume,
    pub chunks: i32,
    pub hash: Option<String>,
    /// `None` for rows written by version 0.1.0, which did not record it.
    pub identity: Option<Identity>,
    /// XXH3-64 of the bytes before `resume.byte`, checked before resuming.
    pub prefix_hash: Option<u64>,
    /// When the ledger first recorded the file (PostgreSQL timestamp).
    pub discovered_at: pg_sys::TimestampTz,
}

#[derive(Default)]
pub struct Ledger {
    pub files: HashMap<String, Entry>,
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Unix nanoseconds to a PostgreSQL timestamptz (microseconds since 2000-01-01).
pub fn pg_time(unix_ns: i64) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(unix_ns.div_euclid(1000) - PG_EPOCH_US)
        .unwrap_or_else(|_| TimestampWithTimeZone::try_from(0).unwrap())
}

pub fn hash_hex(h: u64) -> String {
    format!("{h:016x}")
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

impl Ledger {
    /// Loads the whole ledger (once per start or extension re-creation).
    pub fn load(client: &SpiClient<'_>) -> Result<Ledger, pgrx::spi::Error> {
        let mut files = HashMap::new();
        let rows = client.select(sql::LEDGER_LOAD, None, &[])?;
        for row in rows {
            let name: String = row.get(1)?.unwrap_or_default();
            let dev = row.get::<i64>(9)?;
            let inode = row.get::<i64>(10)?;
            let ctime_ns = row.get::<i64>(11)?;
            let identity = match (dev, inode, ctime_ns) {
                (Some(dev), Some(inode), Some(ctime_ns)) => Some(Identity {
                    dev: dev as u64,
                    inode: inode as u64,
                    ctime_us: ctime_ns.div_euclid(1000),
                }),
                _ => None,
            };
            files.insert(
                name,
                Entry {
                    status: Status::parse(&row.get::<String>(2)?.unwrap_or_default()),
                    size: row.get::<i64>(3)?.unwrap_or(0) as u64,
                    mtime_ns: row.get::<i64>(4)?.unwrap_or(0),
                    resume: Resume {
                        byte: row.get::<i64>(5)?.unwrap_or(0) as u64,
                        line: row.get::<i64>(6)?.unwrap_or(1) as u64,
                    },
                    chunks: row.get::<i32>(7)?.unwrap_or(0),
                    hash: row.get::<String>(8)?,
                    identity,
                    prefix_hash: row.get::<String>(12)?.as_deref().and_then(parse_hex),
                    discovered_at: row.get::<i64>(13)?.unwrap_or(0) - PG_EPOCH_US,
                },
            );
        }
        Ok(Ledger { files })
    }
}

/// What one committed step adds to a file's ledger row.
pub struct Update<'a> {
    pub name: &'a str,
    pub status: Status,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: Option<String>,
    pub resume: Resume,
    pub rows_ok: i64,
    pub rows_rejected: i64,
    pub new_chunks: i32,
    pub extra_columns: Option<Vec<String>>,
    pub error: Option<String>,
    /// The file this row is about (`None`: keep what the row says).
    pub identity: Option<Identity>,
    /// Hash of the bytes before `resume.byte` (`None`: keep what the row says).
    pub prefix_hash: Option<u64>,
}

impl<'a> Update<'a> {
    /// A change of a file's status and message that commits no rows.
    pub fn status_only(
        name: &'a str,
        status: Status,
        size: u64,
        mtime_ns: i64,
        resume: Resume,
        error: Option<String>,
    ) -> Self {
        Update {
            name,
            status,
            size,
            mtime_ns,
            hash: None,
            resume,
            rows_ok: 0,
            rows_rejected: 0,
            new_chunks: 0,
            extra_columns: None,
            error,
            identity: None,
            prefix_hash: None,
        }
    }

    /// The same, about the file `cand` (records its identity).
    pub fn status_of(
        cand: &'a Candidate,
        status: Status,
        resume: Resume,
        error: Option<String>,
    ) -> Self {
        Update {
            identity: Some(Identity::of(cand)),
            ..Update::status_only(&cand.name, status, cand.size, cand.mtime_ns, resume, error)
        }
    }
}

/// Writes (insert or update) a file's ledger row inside the current transaction.
pub fn write(client: &mut SpiClient<'_>, u: &Update<'_>) -> Result<(), pgrx::spi::Error> {
    let finished = matches!(u.status, Status::Done | Status::Failed);
    client.update(
        sql::LEDGER_UPSERT,
        None,
        &[
            u.name.into(),
            u.status.as_str().into(),
            (u.size as i64).into(),
            pg_time(u.mtime_ns).into(),
            u.hash.clone().into(),
            (u.resume.byte as i64).into(),
            (u.resume.line as i64).into(),
            u.rows_ok.into(),
            u.rows_rejected.into(),
            u.new_chunks.into(),
            u.extra_columns.clone().into(),
            u.error.clone().into(),
            finished.into(),
            u.identity.map(|i| i.dev as i64).into(),
            u.identity.map(|i| i.inode as i64).into(),
            u.identity
                .map(|i| pg_time(i.ctime_us.saturating_mul(1000)))
                .into(),
            u.prefix_hash.map(hash_hex).into(),
        ],
    )?;
    Ok(())
}

impl Entry {
    pub fn after(u: &Update<'_>, before: Option<&Entry>) -> Entry {
        Entry {
            status: u.status,
            size: u.size,
            mtime_ns: u.mtime_ns,
            resume: u.resume,
            chunks: before.map_or(0, |b| b.chunks) + u.new_chunks,
            hash: u
                .hash
                .clone()
                .or_else(|| before.and_then(|b| b.hash.clone())),
            identity: u.identity.or_else(|| before.and_then(|b| b.identity)),
            prefix_hash: u.prefix_hash.or_else(|| before.and_then(|b| b.prefix_hash)),
            discovered_at: before.map_or_else(
                // SAFETY: reads the clock; no PostgreSQL state is touched.
                || unsafe { pg_sys::GetCurrentTimestamp() },
                |b| b.discovered_at,
            ),
        }
    }
}
