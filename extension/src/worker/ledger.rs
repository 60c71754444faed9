//! The file ledger's one home: the in-memory copy of `ingest_ledger` (so a scan costs no SQL per
//! known file) and every statement on it. A chunk's ledger row is written inside the chunk's
//! own transaction (`write`); everything else (status-only changes, touches, forgetting) in a
//! transaction of its own here. The copy changes only after a commit.

use super::sql;
use super::txn::{transaction, DbError};
use ecommerce_events::ledger::{
    hash_hex, parse_hex, pg_micros, Entry, FileStatus, Identity, Update, PG_EPOCH_US,
};
use ecommerce_events::{Candidate, Resume};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::collections::HashMap;

/// Unix nanoseconds to a PostgreSQL timestamptz.
pub fn pg_time(unix_ns: i64) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(pg_micros(unix_ns))
        .unwrap_or_else(|_| TimestampWithTimeZone::try_from(0).unwrap())
}

fn now() -> pg_sys::TimestampTz {
    // SAFETY: reads the clock; no PostgreSQL state is touched.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// The worker's copy of the ledger.
#[derive(Default)]
pub struct Ledger {
    files: HashMap<String, Entry>,
}

impl Ledger {
    /// Loads the whole ledger (once per start, extension re-creation or ingest_retry()).
    pub fn load(client: &SpiClient<'_>) -> Result<Ledger, pgrx::spi::Error> {
        let mut files = HashMap::new();
        for row in client.select(sql::LEDGER_LOAD, None, &[super::me::pipeline().into()])? {
            let name: String = row.get(1)?.unwrap_or_default();
            let identity = match (row.get::<i64>(9)?, row.get::<i64>(10)?, row.get::<i64>(11)?) {
                (Some(dev), Some(inode), Some(ctime_ns)) => Some(Identity {
                    dev: dev as u64,
                    inode: inode as u64,
                    ctime_us: ctime_ns.div_euclid(1000),
                }),
                _ => None,
            };
            let entry = Entry {
                status: FileStatus::parse(&row.get::<String>(2)?.unwrap_or_default()),
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
                discovered_at: row.get::<i64>(13)?.unwrap_or(PG_EPOCH_US) - PG_EPOCH_US,
            };
            files.insert(name, entry);
        }
        Ok(Ledger { files })
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.files.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Takes in what a committed chunk transaction wrote (see [`write`]).
    pub fn committed(&mut self, name: &str, e: Entry) {
        self.files.insert(name.to_string(), e);
    }

    /// Writes a change that commits no rows (a status and its message) in its own transaction;
    /// the copy follows once it is committed.
    pub fn write_status(&mut self, u: &Update<'_>) -> Result<(), DbError> {
        transaction(|| Spi::connect_mut(|c| write(c, u)).unwrap_or_else(|e| error!("{e}")))?;
        let before = self.files.get(u.name);
        let e = Entry::after(u, before, now());
        self.files.insert(u.name.to_string(), e);
        Ok(())
    }

    /// A done file seen again with the same bytes (touched, copied back): only its size, mtime
    /// and identity change; what was committed stays as it was.
    pub fn touch(&mut self, cand: &Candidate) -> Result<(), DbError> {
        transaction(|| {
            Spi::run_with_args(
                sql::LEDGER_TOUCH,
                &[
                    cand.name.as_str().into(),
                    (cand.size as i64).into(),
                    pg_time(cand.mtime_ns).into(),
                    (cand.dev as i64).into(),
                    (cand.inode as i64).into(),
                    pg_time(cand.ctime_ns).into(),
                    super::me::pipeline().into(),
                ],
            )
            .unwrap_or_else(|e| error!("{e}"))
        })?;
        if let Some(e) = self.files.get_mut(&cand.name) {
            e.size = cand.size;
            e.mtime_ns = cand.mtime_ns;
            e.identity = Some(Identity::of(cand));
        }
        Ok(())
    }

    /// A file that was never read (only a transient error was recorded) and is gone: forget it.
    pub fn forget_unread(&mut self, name: &str) -> Result<(), DbError> {
        transaction(|| {
            Spi::run_with_args(
                sql::LEDGER_FORGET_UNREAD,
                &[name.into(), super::me::pipeline().into()],
            )
            .unwrap_or_else(|e| error!("{e}"))
        })?;
        self.files.remove(name);
        Ok(())
    }
}

/// Writes (insert or update) a file's ledger row inside the current transaction: the chunk's
/// own, so that the row commits with the rows it counts.
pub fn write(client: &mut SpiClient<'_>, u: &Update<'_>) -> Result<(), pgrx::spi::Error> {
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
            u.status.is_final().into(),
            u.identity.map(|i| i.dev as i64).into(),
            u.identity.map(|i| i.inode as i64).into(),
            u.identity
                .map(|i| pg_time(i.ctime_us.saturating_mul(1000)))
                .into(),
            u.prefix_hash.map(hash_hex).into(),
            super::me::pipeline().into(),
            u.rows_duplicate.into(),
        ],
    )?;
    Ok(())
}

/// The ledger entry a chunk transaction's update gives, once committed.
pub fn after(u: &Update<'_>, before: Option<&Entry>) -> Entry {
    Entry::after(u, before, now())
}
