//! The file ledger's one home: the in-memory copy of `ingest_ledger` (so a scan costs no SQL per
//! known file; only this worker's share of the files) and every statement on it. A chunk's
//! ledger row is written inside the chunk's own transaction (`write`); everything else
//! (status-only changes, touches, forgetting) in a transaction of its own here. The copy
//! changes only after a commit.
//!
//! Every transaction that writes a file's row first claims the file ([`claim`]: its row locked,
//! or inserted) and compares the row with its copy: while a pipeline's number of workers
//! changes, two workers may both think a file theirs, and the one that finds the row not as its
//! copy says writes nothing and reloads its copy.

use super::sql;
use super::txn::{transaction, DbError};
use ecommerce_events::ledger::{
    agrees, hash_hex, parse_hex, pg_micros, Check, Entry, FileStatus, Identity, InDb, Update,
    PG_EPOCH_US,
};
use ecommerce_events::{Candidate, Resume};
use ingest_core::Share;
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
    /// A write found the database's row other than the copy says: reload before the next
    /// trigger.
    pub stale: bool,
}

/// What claiming a file through its ledger row came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The file is this transaction's to write: its row (locked, or just inserted) has this id.
    Mine(i32),
    /// The row is not what the worker's copy says (another session wrote it): write nothing,
    /// reload the copy.
    Stale,
    /// Another session holds the row (a transaction of another worker, or anyone's): this file
    /// waits, the others go on.
    Busy,
}

/// Claims file `name` for the current transaction through its ledger row, and says whether the
/// row is what the worker's copy says (`check`). An existing row is locked without waiting
/// (`FOR UPDATE SKIP LOCKED`: a row another session holds makes the file [`Claim::Busy`], not
/// the trigger); a file with no row gets one (`INSERT … ON CONFLICT DO NOTHING`: if another
/// worker inserted it meanwhile, this waits for that transaction, at most `lock_timeout`, and
/// inserts nothing). Only sessions that may write the ledger can hold either lock: no other
/// role can stall a file.
pub fn claim(
    client: &mut SpiClient<'_>,
    name: &str,
    size: u64,
    copy: Option<&Entry>,
    check: Check,
) -> Result<Claim, pgrx::spi::Error> {
    let pipeline = super::me::pipeline();
    let row = client.update(
        sql::LEDGER_ROW_FOR_UPDATE,
        None,
        &[name.into(), pipeline.into()],
    )?;
    if !row.is_empty() {
        let r = row.first();
        let file_id = r.get::<i32>(1)?.unwrap_or_default();
        let in_db = InDb {
            offset: r.get::<i64>(2)?.unwrap_or_default() as u64,
            status: FileStatus::parse(&r.get::<String>(3)?.unwrap_or_default()),
        };
        return Ok(if agrees(Some(in_db), copy, check) {
            Claim::Mine(file_id)
        } else {
            Claim::Stale
        });
    }
    // No row, or one that another session holds.
    let held = client
        .update(
            sql::LEDGER_ROW_EXISTS,
            None,
            &[name.into(), pipeline.into()],
        )?
        .first()
        .get_one::<bool>()?
        .unwrap_or(false);
    if held {
        return Ok(Claim::Busy);
    }
    if !agrees(None, copy, check) {
        return Ok(Claim::Stale);
    }
    let new = client.update(
        sql::LEDGER_NEW,
        None,
        &[name.into(), (size as i64).into(), pipeline.into()],
    )?;
    if new.is_empty() {
        return Ok(Claim::Stale);
    }
    Ok(new
        .first()
        .get_one::<i32>()?
        .map_or(Claim::Stale, Claim::Mine))
}

impl Ledger {
    /// Loads this worker's share of the ledger (once per start, extension re-creation,
    /// ingest_retry() or change of the pipeline's number of workers).
    pub fn load(client: &SpiClient<'_>, share: Share) -> Result<Ledger, pgrx::spi::Error> {
        let mut files = HashMap::new();
        for row in client.select(sql::LEDGER_LOAD, None, &[super::me::pipeline().into()])? {
            let name: String = row.get(1)?.unwrap_or_default();
            if !share.owns(&name) {
                continue;
            }
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
                left_at: row.get::<i64>(14)?.map(|t| t - PG_EPOCH_US),
            };
            files.insert(name, entry);
        }
        Ok(Ledger {
            files,
            stale: false,
        })
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

    /// Writes a change that commits no rows (a status and its message) in its own transaction,
    /// unless the file's row is not what the copy says (then the copy is marked stale) or
    /// another session holds it (then nothing happens: the next trigger tries again); the copy
    /// follows once it is committed.
    pub fn write_status(&mut self, u: &Update<'_>) -> Result<(), DbError> {
        let copy = self.files.get(u.name).cloned();
        let written = transaction(|| {
            Spi::connect_mut(|c| {
                match claim(c, u.name, u.size, copy.as_ref(), Check::OffsetAndStatus)? {
                    Claim::Mine(_) => write(c, u).map(|()| Some(true)),
                    Claim::Stale => Ok(Some(false)),
                    // Written by the next attempt, once the row is free.
                    Claim::Busy => Ok(None),
                }
            })
            .unwrap_or_else(|e| error!("{e}"))
        })?;
        match written {
            Some(true) => {}
            Some(false) => {
                self.stale = true;
                return Ok(());
            }
            None => return Ok(()),
        }
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

    /// Records that files left the input folder (those not already recorded, or still being
    /// ingested, are left alone); the copy follows.
    pub fn mark_left(&mut self, names: &[String]) -> Result<(), DbError> {
        if names.is_empty() {
            return Ok(());
        }
        let marked = transaction(|| {
            Spi::connect_mut(|c| {
                let mut marked = Vec::new();
                for r in c.update(
                    sql::LEDGER_LEFT,
                    None,
                    &[super::me::pipeline().into(), names.to_vec().into()],
                )? {
                    let name = r.get::<String>(1)?.unwrap_or_default();
                    let at = r.get::<i64>(2)?.unwrap_or(PG_EPOCH_US) - PG_EPOCH_US;
                    marked.push((name, at));
                }
                Ok::<_, pgrx::spi::Error>(marked)
            })
            .unwrap_or_else(|e| error!("{e}"))
        })?;
        for (name, at) in marked {
            if let Some(e) = self.files.get_mut(&name) {
                e.left_at = Some(at);
            }
        }
        Ok(())
    }

    /// Files whose record says they left are in the folder again: they have not left.
    pub fn mark_back(&mut self, names: &[String]) -> Result<(), DbError> {
        if names.is_empty() {
            return Ok(());
        }
        transaction(|| {
            Spi::run_with_args(
                sql::LEDGER_BACK,
                &[super::me::pipeline().into(), names.to_vec().into()],
            )
            .unwrap_or_else(|e| error!("{e}"))
        })?;
        for n in names {
            if let Some(e) = self.files.get_mut(n) {
                e.left_at = None;
            }
        }
        Ok(())
    }

    /// The names of the copy's files that a full listing (`present`) says left the folder.
    pub fn left_since(&self, present: &std::collections::HashSet<&str>) -> Vec<String> {
        self.files
            .iter()
            .filter(|(n, e)| {
                ecommerce_events::plan::left_the_folder(e, present.contains(n.as_str()))
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Up to `max` files whose record may be deleted now (`ecommerce_ingest.ledger_retention`).
    pub fn prunable(&self, keep: std::time::Duration, max: usize) -> Vec<String> {
        let now = now();
        self.files
            .iter()
            .filter(|(_, e)| ecommerce_events::plan::ledger_prunable(e, now, Some(keep)))
            .take(max)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Deletes the records (and chunks) of `names` that left the folder more than `keep` ago,
    /// in one transaction that tells the counters to keep what they brought; returns how many.
    pub fn forget(
        &mut self,
        names: &[String],
        keep: std::time::Duration,
    ) -> Result<usize, DbError> {
        let gone = transaction(|| {
            crate::guc::set(
                "ecommerce_ingest.forgetting",
                "on",
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucAction::GUC_ACTION_LOCAL,
            );
            Spi::connect_mut(|c| {
                let mut gone = Vec::new();
                for r in c.update(
                    sql::LEDGER_FORGET,
                    None,
                    &[
                        super::me::pipeline().into(),
                        names.to_vec().into(),
                        keep.as_secs_f64().into(),
                    ],
                )? {
                    gone.push(r.get::<String>(1)?.unwrap_or_default());
                }
                Ok::<_, pgrx::spi::Error>(gone)
            })
            .unwrap_or_else(|e| error!("{e}"))
        })?;
        for n in &gone {
            self.files.remove(n);
        }
        Ok(gone.len())
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
