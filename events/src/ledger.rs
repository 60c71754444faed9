//! A file's record in the ledger as plain data — its status, how far it was ingested, which file
//! it is about — and what one committed step changes in it. The SQL that reads and writes it
//! lives in the extension (`worker/ledger.rs`); the rules that use it in [`crate::plan`].

use crate::reader::Resume;
use crate::select::Candidate;

/// A file's status in the ledger (`ingest_files.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// Some chunks committed, more to come.
    Ingesting,
    /// Still young: its complete lines are in, more may be appended.
    Growing,
    Done,
    /// Refused as a whole (header, not text, empty), or removed before it was fully read.
    Failed,
    /// Its content changed after rows were committed: reported, not ingested.
    Changed,
    /// A transient problem before anything was read (unreadable): retried.
    Error,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Ingesting => "ingesting",
            FileStatus::Growing => "growing",
            FileStatus::Done => "done",
            FileStatus::Failed => "failed",
            FileStatus::Changed => "changed",
            FileStatus::Error => "error",
        }
    }

    /// The status named `s` (the table's CHECK constraint allows no other; anything else reads
    /// as `Error`, which is retried).
    pub fn parse(s: &str) -> FileStatus {
        match s {
            "ingesting" => FileStatus::Ingesting,
            "growing" => FileStatus::Growing,
            "done" => FileStatus::Done,
            "failed" => FileStatus::Failed,
            "changed" => FileStatus::Changed,
            _ => FileStatus::Error,
        }
    }

    /// Finished: the ledger row gets its `finished_at`.
    pub fn is_final(self) -> bool {
        matches!(self, FileStatus::Done | FileStatus::Failed)
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

/// A file's ledger row, as the worker keeps it in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub status: FileStatus,
    pub size: u64,
    pub mtime_ns: i64,
    /// Where the next chunk starts (committed offset and line).
    pub resume: Resume,
    pub chunks: i32,
    /// XXH3-64 of the whole file, in hex, once it was read to the end.
    pub hash: Option<String>,
    /// `None` for rows written by version 0.1.0, which did not record it.
    pub identity: Option<Identity>,
    /// XXH3-64 of the bytes before `resume.byte`, checked before resuming.
    pub prefix_hash: Option<u64>,
    /// When the ledger first recorded the file (PostgreSQL timestamp: µs since 2000-01-01).
    pub discovered_at: i64,
    /// When the file was seen to leave the input folder (archived, deleted, moved to the failed
    /// folder, or gone), as a PostgreSQL timestamp; `None` while it is there.
    pub left_at: Option<i64>,
}

/// What one committed step writes to a file's ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update<'a> {
    pub name: &'a str,
    pub status: FileStatus,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: Option<String>,
    pub resume: Resume,
    pub rows_ok: i64,
    pub rows_rejected: i64,
    /// Rows skipped as duplicates of rows already in the target (a pipeline's `dedup_key`).
    pub rows_duplicate: i64,
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
        status: FileStatus,
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
            rows_duplicate: 0,
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
        status: FileStatus,
        resume: Resume,
        error: Option<String>,
    ) -> Self {
        Update {
            identity: Some(Identity::of(cand)),
            ..Update::status_only(&cand.name, status, cand.size, cand.mtime_ns, resume, error)
        }
    }
}

impl Entry {
    /// The row after `u` was committed over `before` (`now`: the commit's time, for a new row).
    pub fn after(u: &Update<'_>, before: Option<&Entry>, now: i64) -> Entry {
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
            discovered_at: before.map_or(now, |b| b.discovered_at),
            // Written: the file is in the folder.
            left_at: None,
        }
    }
}

/// Unix nanoseconds to microseconds since PostgreSQL's epoch (2000-01-01), rounding down.
pub fn pg_micros(unix_ns: i64) -> i64 {
    unix_ns.div_euclid(1000) - PG_EPOCH_US
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const PG_EPOCH_US: i64 = 946_684_800_000_000;

pub fn hash_hex(h: u64) -> String {
    format!("{h:016x}")
}

pub fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// A file's ledger row as the database has it, read under this worker's claim on the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InDb {
    pub offset: u64,
    pub status: FileStatus,
}

/// What a file's ledger row must agree on with the worker's copy before a transaction writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Rows are about to be committed: the committed offset (another session's committed rows
    /// would otherwise be ingested twice).
    Offset,
    /// Only a status and its message: the status too (another worker's verdict is never
    /// overwritten by one made from an older copy).
    OffsetAndStatus,
}

/// The database's row (`None`: no row) says what the worker's copy says: nobody else wrote the
/// file's row since the copy was made. When it does not, nothing is written and the copy is
/// reloaded.
pub fn agrees(in_db: Option<InDb>, copy: Option<&Entry>, check: Check) -> bool {
    match (in_db, copy) {
        (None, None) => true,
        // Deleted (ingest_retry()) or written by another: the copy is out of date.
        (None, Some(_)) | (Some(_), None) => false,
        (Some(d), Some(e)) => {
            d.offset == e.resume.byte && (check == Check::Offset || d.status == e.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand() -> Candidate {
        Candidate {
            name: "a.csv".into(),
            size: 100,
            mtime_ns: 1_700_000_000_123_456_789,
            inode: 7,
            dev: 3,
            ctime_ns: 1_700_000_001_999_999_999,
        }
    }

    #[test]
    fn statuses_round_trip_and_unknown_text_reads_as_error() {
        for s in [
            FileStatus::Ingesting,
            FileStatus::Growing,
            FileStatus::Done,
            FileStatus::Failed,
            FileStatus::Changed,
            FileStatus::Error,
        ] {
            assert_eq!(FileStatus::parse(s.as_str()), s);
        }
        assert_eq!(FileStatus::parse("bogus"), FileStatus::Error);
        assert!(FileStatus::Done.is_final() && FileStatus::Failed.is_final());
        assert!(!FileStatus::Changed.is_final() && !FileStatus::Growing.is_final());
    }

    #[test]
    fn identity_keeps_microseconds_of_ctime() {
        let i = Identity::of(&cand());
        assert_eq!((i.dev, i.inode, i.ctime_us), (3, 7, 1_700_000_001_999_999));
    }

    #[test]
    fn after_adds_chunks_and_keeps_what_the_update_leaves_out() {
        let c = cand();
        let mut u = Update::status_of(
            &c,
            FileStatus::Ingesting,
            Resume { byte: 50, line: 4 },
            None,
        );
        u.new_chunks = 1;
        u.prefix_hash = Some(9);
        let first = Entry::after(&u, None, 1234);
        assert_eq!(first.chunks, 1);
        assert_eq!(first.discovered_at, 1234);
        assert_eq!(first.identity, Some(Identity::of(&c)));
        let mut next = Update::status_only(
            "a.csv",
            FileStatus::Done,
            100,
            5,
            Resume { byte: 100, line: 9 },
            None,
        );
        next.new_chunks = 1;
        next.hash = Some("ff".into());
        let second = Entry::after(&next, Some(&first), 9999);
        assert_eq!(second.chunks, 2);
        assert_eq!(
            second.discovered_at, 1234,
            "discovery time is the first one"
        );
        assert_eq!(
            second.identity, first.identity,
            "kept when the update has none"
        );
        assert_eq!(second.prefix_hash, Some(9));
        assert_eq!(second.hash.as_deref(), Some("ff"));
        assert_eq!(second.status, FileStatus::Done);
    }

    #[test]
    fn hex_and_time_conversions() {
        assert_eq!(hash_hex(255), "00000000000000ff");
        assert_eq!(parse_hex(&hash_hex(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_hex("xyz"), None);
        assert_eq!(pg_micros(PG_EPOCH_US * 1000), 0);
        assert_eq!(pg_micros(PG_EPOCH_US * 1000 - 1), -1, "rounds down");
    }

    fn entry(byte: u64, status: FileStatus) -> Entry {
        Entry {
            status,
            size: 10,
            mtime_ns: 0,
            resume: Resume { byte, line: 2 },
            chunks: 1,
            hash: None,
            identity: None,
            prefix_hash: None,
            discovered_at: 0,
            left_at: None,
        }
    }

    #[test]
    fn the_row_in_the_database_must_agree_with_the_copy() {
        let db = |offset, status| Some(InDb { offset, status });
        let done = entry(100, FileStatus::Done);
        assert!(agrees(None, None, Check::Offset));
        assert!(agrees(None, None, Check::OffsetAndStatus));
        // Another worker committed rows of a file this one thinks new.
        assert!(!agrees(db(100, FileStatus::Done), None, Check::Offset));
        // Deleted by ingest_retry().
        assert!(!agrees(None, Some(&done), Check::Offset));
        assert!(agrees(
            db(100, FileStatus::Done),
            Some(&done),
            Check::Offset
        ));
        assert!(!agrees(
            db(200, FileStatus::Done),
            Some(&done),
            Check::Offset
        ));
        // Rows: only the offset matters; a status-only write: the status too.
        assert!(agrees(
            db(100, FileStatus::Failed),
            Some(&done),
            Check::Offset
        ));
        assert!(!agrees(
            db(100, FileStatus::Failed),
            Some(&done),
            Check::OffsetAndStatus
        ));
        assert!(agrees(
            db(100, FileStatus::Done),
            Some(&done),
            Check::OffsetAndStatus
        ));
    }
}
