//! The worker's decisions, as pure functions over plain data: what to do with a file the
//! ledger knows, when a file is young, how files are grouped into one transaction, how long a
//! failing file waits, and what a file that vanished ends as. The extension's worker only
//! carries them out.

use crate::ledger::{Entry, FileStatus, Identity};
use crate::select::Candidate;
use std::time::Duration;

/// What a trigger does with a file the ledger already knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Nothing,
    Ingest,
    /// Done and unchanged: only the processed action (archive/delete) may be due.
    AfterDone,
    /// Still young and fully read: look again once it is old enough.
    LookAgainSoon,
    /// It differs from what was ingested (size, mtime, inode, ctime): same bytes, or changed?
    CheckChanged,
}

/// A file already reported as changed, as it was then: reported again only if it changes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub size: u64,
    pub mtime_ns: i64,
}

impl Seen {
    pub fn of(c: &Candidate) -> Seen {
        Seen {
            size: c.size,
            mtime_ns: c.mtime_ns,
        }
    }
}

/// True if the ledger's row is about this very file: same size, same mtime (at the ledger's
/// microsecond precision) and, when the row recorded them, same device, inode and ctime.
/// Size and mtime alone are not enough: `rsync -t` or `cp -p` of other content keep both.
/// (Rows written by 0.1.0 have no identity: size and mtime only, as then.)
pub fn same_file(e: &Entry, cand: &Candidate) -> bool {
    e.size == cand.size
        && e.mtime_ns.div_euclid(1000) == cand.mtime_ns.div_euclid(1000)
        && e.identity.is_none_or(|i| i == Identity::of(cand))
}

/// What to do with `cand`, which the ledger knows as `e`. `young`: modified less than
/// `min_file_age` ago. `changed_seen`: how it was when last reported as changed.
pub fn plan_known(e: &Entry, cand: &Candidate, young: bool, changed_seen: Option<Seen>) -> Plan {
    let same = same_file(e, cand);
    match e.status {
        FileStatus::Done if same => Plan::AfterDone,
        // Nothing was consumed from it (it was empty): new bytes are simply new.
        FileStatus::Done if e.resume.byte == 0 => Plan::Ingest,
        FileStatus::Done => Plan::CheckChanged,
        FileStatus::Changed if changed_seen != Some(Seen::of(cand)) => Plan::CheckChanged,
        FileStatus::Changed => Plan::Nothing,
        FileStatus::Failed if same => Plan::Nothing,
        FileStatus::Failed | FileStatus::Error => Plan::Ingest,
        FileStatus::Ingesting | FileStatus::Growing if cand.size < e.resume.byte => {
            Plan::CheckChanged
        }
        FileStatus::Ingesting => Plan::Ingest,
        FileStatus::Growing if cand.size > e.resume.byte || !young => Plan::Ingest,
        FileStatus::Growing => Plan::LookAgainSoon,
    }
}

/// As [`plan_known`], for a compressed file (a pipeline's `.gz`, `.zst`): its offsets count
/// decompressed bytes, which its size on disk cannot be compared with. A file in progress is
/// read on (its resume checks the hash of the decompressed prefix, so a file whose committed
/// part changed is refused then); a growing one is read again once it changed or is old
/// enough.
pub fn plan_known_compressed(
    e: &Entry,
    cand: &Candidate,
    young: bool,
    changed_seen: Option<Seen>,
) -> Plan {
    match e.status {
        FileStatus::Ingesting => Plan::Ingest,
        FileStatus::Growing if !young || !same_file(e, cand) => Plan::Ingest,
        FileStatus::Growing => Plan::LookAgainSoon,
        _ => plan_known(e, cand, young, changed_seen),
    }
}

/// Modified less than `min_age` ago (all in nanoseconds since the epoch).
pub fn is_young(now_ns: i64, mtime_ns: i64, min_age_ns: i64) -> bool {
    now_ns - mtime_ns < min_age_ns
}

/// The earliest wake-up among `wake_in` and the moment a file modified at `mtime_ns` is
/// `min_age_ns` old (at least 1 ms from now).
pub fn wake_at_age(
    wake_in: Option<Duration>,
    mtime_ns: i64,
    min_age_ns: i64,
    now_ns: i64,
) -> Duration {
    let d = Duration::from_nanos((mtime_ns + min_age_ns - now_ns).max(1_000_000) as u64);
    wake_in.map_or(d, |w| w.min(d))
}

/// How long a file waits after its `failures`-th failure in the database: 2 s, 4 s, 8 s ...
/// up to a minute.
pub fn backoff_delay(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.clamp(1, 6)).min(Duration::from_secs(60))
}

/// A back-off forgotten this long after it expired: the file starts again from the first delay.
pub const BACKOFF_MEMORY: Duration = Duration::from_secs(120);

/// Where a file stands with back-off, for grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Never failed (or forgotten).
    None,
    /// Failed before and not due yet: skipped this time.
    Waiting,
    /// Failed before and due: retried, alone.
    Due,
}

/// A file planned for ingestion, as grouping sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupItem {
    /// Bytes still to read.
    pub left: u64,
    pub backoff: Backoff,
}

/// The next group from `items[*next..]`: consecutive files, at most `max_files` and about
/// `chunk_bytes` in all. A bigger file forms a group of its own; so does a file that failed
/// before (a file that keeps failing never rolls back a group of others); files still backed
/// off are skipped. Returns the members' indices; advances `*next` past them.
pub fn next_group(
    items: &[GroupItem],
    next: &mut usize,
    chunk_bytes: u64,
    max_files: usize,
) -> Vec<usize> {
    let mut group = Vec::new();
    let mut bytes = 0u64;
    while let Some(item) = items.get(*next) {
        let retry = match item.backoff {
            Backoff::Waiting => {
                *next += 1;
                continue;
            }
            Backoff::Due => true,
            Backoff::None => false,
        };
        let alone = retry || bytes + item.left > chunk_bytes || group.len() >= max_files;
        if alone && !group.is_empty() {
            break;
        }
        bytes += item.left;
        group.push(*next);
        *next += 1;
        if retry {
            break;
        }
    }
    group
}

/// What a file that was still in progress ends as once it is gone from the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vanished {
    /// Its ledger row becomes `status`, with this message.
    End { status: FileStatus, message: String },
    /// Never read (only a transient error was recorded): its row is forgotten.
    Forget,
    /// Nothing to do (done, failed, changed: already final).
    Keep,
}

/// A growing file whose complete lines were all ingested is finished as it is; a file that was
/// never read is forgotten; a partly ingested one fails, saying how far it got (its committed
/// rows stay).
pub fn vanished(e: &Entry) -> Vanished {
    match e.status {
        FileStatus::Growing => Vanished::End {
            status: FileStatus::Done,
            message: "removed before it settled; every complete line it had was ingested".into(),
        },
        FileStatus::Ingesting => Vanished::End {
            status: FileStatus::Failed,
            message: format!(
                "removed from the folder before it was fully ingested: its lines up to {} \
                 (its first {} bytes) are in user_events, the rest was never read",
                e.resume.line.saturating_sub(1),
                e.resume.byte
            ),
        },
        FileStatus::Error => Vanished::Forget,
        FileStatus::Done | FileStatus::Failed | FileStatus::Changed => Vanished::Keep,
    }
}

/// A file still waits for bytes to be read (counts in `files_pending` and the lag).
/// `compressed`: its offsets count decompressed bytes (see [`plan_known_compressed`]).
pub fn is_pending(e: Option<&Entry>, cand: &Candidate, compressed: bool) -> bool {
    match e {
        None => true,
        Some(e) => {
            matches!(e.status, FileStatus::Ingesting | FileStatus::Error)
                || (e.status == FileStatus::Growing
                    && if compressed {
                        !same_file(e, cand)
                    } else {
                        cand.size > e.resume.byte
                    })
        }
    }
}

/// Longest wait between two passes that delete old history (worker/retention.rs).
pub const HISTORY_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Whether an idle worker deletes old history now: a retention is set, and the last pass was
/// long enough ago (a minute, or the retention itself if shorter). Passes that found a full
/// batch (`more`) go on at once.
pub fn history_prune_due(
    retention: Option<Duration>,
    since_last: Option<Duration>,
    more: bool,
) -> bool {
    let Some(keep) = retention else {
        return false;
    };
    more || since_last.is_none_or(|d| d >= keep.min(HISTORY_PRUNE_EVERY))
}

/// How long a worker may go without an idle trigger before its housekeeping runs anyway.
pub const HOUSEKEEPING_STARVES_AFTER: Duration = Duration::from_secs(300);

/// Whether a worker does its housekeeping (retention, the counters' fold) after this trigger:
/// when it was idle, or when every trigger has found work for [`HOUSEKEEPING_STARVES_AFTER`]
/// (each step is a small batch, and paces itself: see [`history_prune_due`]).
pub fn housekeeping_due(idle: bool, busy_for: Option<Duration>) -> bool {
    idle || busy_for.is_some_and(|d| d >= HOUSEKEEPING_STARVES_AFTER)
}

/// A file's ledger entry may record that the file left the input folder: its status is final
/// (nothing more will be read of it) and it is not there. An entry still being ingested is
/// never marked: `plan::vanished` decides what happens to it first.
pub fn left_the_folder(e: &Entry, present: bool) -> bool {
    !present && e.left_at.is_none() && closed(e.status)
}

/// Nothing more will be read of a file with this status (a changed file is never resumed).
fn closed(s: FileStatus) -> bool {
    s.is_final() || s == FileStatus::Changed
}

/// A file's record may be deleted (`ecommerce_ingest.ledger_retention`): the file left the
/// input folder at least `keep` before `now` (PostgreSQL timestamps, µs) and has not come back.
pub fn ledger_prunable(e: &Entry, now: i64, keep: Option<Duration>) -> bool {
    match (keep, e.left_at) {
        (Some(keep), Some(left)) => closed(e.status) && now - left >= keep.as_micros() as i64,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::Resume;

    #[test]
    fn housekeeping_runs_when_idle_or_after_minutes_of_steady_work() {
        assert!(housekeeping_due(true, None));
        assert!(!housekeeping_due(false, Some(Duration::from_secs(10))));
        assert!(!housekeeping_due(false, None));
        assert!(housekeeping_due(false, Some(HOUSEKEEPING_STARVES_AFTER)));
    }

    #[test]
    fn a_record_is_pruned_only_once_its_file_left_long_enough_ago() {
        let mut e = entry_with(FileStatus::Done);
        let keep = Some(Duration::from_secs(10));
        assert!(left_the_folder(&e, false));
        assert!(!left_the_folder(&e, true), "still there");
        assert!(
            !ledger_prunable(&e, 100_000_000, keep),
            "not known to have left"
        );
        e.left_at = Some(1_000_000);
        assert!(!left_the_folder(&e, false), "already marked");
        assert!(!ledger_prunable(&e, 10_999_999, keep));
        assert!(ledger_prunable(&e, 11_000_000, keep));
        assert!(
            !ledger_prunable(&e, 11_000_000, None),
            "no retention: kept for ever"
        );
        let mut growing = entry_with(FileStatus::Growing);
        assert!(!left_the_folder(&growing, false), "in progress: not marked");
        growing.left_at = Some(0);
        assert!(!ledger_prunable(&growing, i64::MAX, keep));
    }

    fn entry_with(status: FileStatus) -> Entry {
        Entry {
            status,
            size: 1,
            mtime_ns: 0,
            resume: Resume::default(),
            chunks: 1,
            hash: None,
            identity: None,
            prefix_hash: None,
            discovered_at: 0,
            left_at: None,
        }
    }

    fn cand(size: u64, mtime_ns: i64) -> Candidate {
        Candidate {
            name: "f.csv".into(),
            size,
            mtime_ns,
            inode: 11,
            dev: 2,
            ctime_ns: 5_000,
        }
    }

    fn entry(status: FileStatus, size: u64, mtime_ns: i64, byte: u64) -> Entry {
        Entry {
            status,
            size,
            mtime_ns,
            resume: Resume { byte, line: 3 },
            chunks: 1,
            hash: None,
            identity: Some(Identity {
                dev: 2,
                inode: 11,
                ctime_us: 5,
            }),
            prefix_hash: None,
            discovered_at: 0,
            left_at: None,
        }
    }

    #[test]
    fn history_is_pruned_when_a_retention_is_set_and_not_more_often_than_needed() {
        let min = Duration::from_secs(60);
        assert!(!history_prune_due(None, None, true));
        assert!(history_prune_due(Some(min * 60), None, false));
        assert!(!history_prune_due(
            Some(min * 60),
            Some(Duration::from_secs(10)),
            false
        ));
        assert!(history_prune_due(
            Some(min * 60),
            Some(Duration::from_secs(10)),
            true
        ));
        assert!(history_prune_due(Some(min * 60), Some(min), false));
        assert!(history_prune_due(
            Some(Duration::from_secs(2)),
            Some(Duration::from_secs(2)),
            false
        ));
        assert!(!history_prune_due(
            Some(Duration::from_secs(2)),
            Some(Duration::from_secs(1)),
            false
        ));
    }

    #[test]
    fn a_done_file_unchanged_only_gets_its_processed_action() {
        let e = entry(FileStatus::Done, 100, 1_000_000, 100);
        assert_eq!(
            plan_known(&e, &cand(100, 1_000_000), false, None),
            Plan::AfterDone
        );
        // Nanoseconds below the ledger's microseconds do not count.
        assert_eq!(
            plan_known(&e, &cand(100, 1_000_999), false, None),
            Plan::AfterDone
        );
    }

    #[test]
    fn a_done_file_with_another_size_mtime_inode_or_ctime_is_checked() {
        let e = entry(FileStatus::Done, 100, 1_000_000, 100);
        assert_eq!(
            plan_known(&e, &cand(101, 1_000_000), false, None),
            Plan::CheckChanged
        );
        assert_eq!(
            plan_known(&e, &cand(100, 2_000_000), false, None),
            Plan::CheckChanged
        );
        let mut other_inode = cand(100, 1_000_000);
        other_inode.inode = 12;
        assert_eq!(
            plan_known(&e, &other_inode, false, None),
            Plan::CheckChanged
        );
        let mut other_ctime = cand(100, 1_000_000);
        other_ctime.ctime_ns = 9_000;
        assert_eq!(
            plan_known(&e, &other_ctime, false, None),
            Plan::CheckChanged
        );
        let mut other_dev = cand(100, 1_000_000);
        other_dev.dev = 3;
        assert_eq!(plan_known(&e, &other_dev, false, None), Plan::CheckChanged);
    }

    #[test]
    fn rows_without_identity_compare_size_and_mtime_only() {
        let mut e = entry(FileStatus::Done, 100, 1_000_000, 100);
        e.identity = None;
        let mut c = cand(100, 1_000_000);
        c.inode = 99;
        assert_eq!(plan_known(&e, &c, false, None), Plan::AfterDone);
    }

    #[test]
    fn an_empty_done_file_that_grew_is_simply_new() {
        let e = entry(FileStatus::Done, 0, 1_000_000, 0);
        assert_eq!(
            plan_known(&e, &cand(50, 2_000_000), false, None),
            Plan::Ingest
        );
    }

    #[test]
    fn a_changed_file_is_reported_again_only_when_it_changes_again() {
        let e = entry(FileStatus::Changed, 100, 1_000_000, 100);
        let c = cand(120, 3_000_000);
        assert_eq!(plan_known(&e, &c, false, None), Plan::CheckChanged);
        assert_eq!(plan_known(&e, &c, false, Some(Seen::of(&c))), Plan::Nothing);
        let again = cand(130, 4_000_000);
        assert_eq!(
            plan_known(&e, &again, false, Some(Seen::of(&c))),
            Plan::CheckChanged
        );
    }

    #[test]
    fn failed_files_are_retried_only_when_they_change_errors_always() {
        let e = entry(FileStatus::Failed, 100, 1_000_000, 0);
        assert_eq!(
            plan_known(&e, &cand(100, 1_000_000), false, None),
            Plan::Nothing
        );
        assert_eq!(
            plan_known(&e, &cand(100, 2_000_000), false, None),
            Plan::Ingest
        );
        let e = entry(FileStatus::Error, 100, 1_000_000, 0);
        assert_eq!(
            plan_known(&e, &cand(100, 1_000_000), false, None),
            Plan::Ingest
        );
    }

    #[test]
    fn files_in_progress_resume_grow_or_wait() {
        let e = entry(FileStatus::Ingesting, 100, 1_000_000, 60);
        assert_eq!(
            plan_known(&e, &cand(100, 1_000_000), true, None),
            Plan::Ingest
        );
        // Shorter than what was committed: not the same file any more.
        assert_eq!(
            plan_known(&e, &cand(50, 1_000_000), false, None),
            Plan::CheckChanged
        );
        let g = entry(FileStatus::Growing, 100, 1_000_000, 100);
        assert_eq!(
            plan_known(&g, &cand(100, 1_000_000), true, None),
            Plan::LookAgainSoon
        );
        assert_eq!(
            plan_known(&g, &cand(100, 1_000_000), false, None),
            Plan::Ingest
        );
        assert_eq!(
            plan_known(&g, &cand(150, 2_000_000), true, None),
            Plan::Ingest
        );
        assert_eq!(
            plan_known(&g, &cand(90, 2_000_000), true, None),
            Plan::CheckChanged
        );
    }

    #[test]
    fn youth_and_the_wake_up_for_it() {
        assert!(is_young(1_500, 1_000, 1_000));
        assert!(!is_young(2_000, 1_000, 1_000));
        let now = 10_000_000_000;
        // 300 ms left.
        let d = wake_at_age(None, now - 700_000_000, 1_000_000_000, now);
        assert_eq!(d, Duration::from_millis(300));
        // An earlier wake-up wins; a past one is 1 ms.
        assert_eq!(
            wake_at_age(
                Some(Duration::from_millis(5)),
                now - 700_000_000,
                1_000_000_000,
                now
            ),
            Duration::from_millis(5)
        );
        assert_eq!(wake_at_age(None, 0, 1, now), Duration::from_millis(1));
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let d: Vec<u64> = (1..=8).map(|f| backoff_delay(f).as_secs()).collect();
        assert_eq!(d, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_delay(0), Duration::from_secs(2));
    }

    fn items(spec: &[(u64, Backoff)]) -> Vec<GroupItem> {
        spec.iter()
            .map(|&(left, backoff)| GroupItem { left, backoff })
            .collect()
    }

    #[test]
    fn small_files_share_a_group_up_to_the_bytes_and_the_count() {
        let it = items(&[(10, Backoff::None); 5]);
        let mut next = 0;
        assert_eq!(next_group(&it, &mut next, 25, 32), vec![0, 1]);
        assert_eq!(next_group(&it, &mut next, 25, 32), vec![2, 3]);
        assert_eq!(next_group(&it, &mut next, 25, 32), vec![4]);
        assert_eq!(next_group(&it, &mut next, 25, 32), Vec::<usize>::new());
        let mut next = 0;
        assert_eq!(next_group(&it, &mut next, 1000, 3), vec![0, 1, 2]);
    }

    #[test]
    fn a_big_file_is_alone_and_a_first_big_file_is_still_taken() {
        let it = items(&[
            (100, Backoff::None),
            (5, Backoff::None),
            (100, Backoff::None),
        ]);
        let mut next = 0;
        assert_eq!(next_group(&it, &mut next, 50, 32), vec![0]);
        assert_eq!(next_group(&it, &mut next, 50, 32), vec![1]);
        assert_eq!(next_group(&it, &mut next, 50, 32), vec![2]);
    }

    #[test]
    fn a_retried_file_is_alone_and_a_waiting_one_is_skipped() {
        let it = items(&[
            (1, Backoff::None),
            (1, Backoff::Due),
            (1, Backoff::Waiting),
            (1, Backoff::None),
            (1, Backoff::None),
        ]);
        let mut next = 0;
        assert_eq!(next_group(&it, &mut next, 100, 32), vec![0]);
        assert_eq!(next_group(&it, &mut next, 100, 32), vec![1]);
        assert_eq!(next_group(&it, &mut next, 100, 32), vec![3, 4]);
    }

    #[test]
    fn vanished_files_end_by_their_status() {
        let g = entry(FileStatus::Growing, 10, 0, 10);
        assert!(matches!(
            vanished(&g),
            Vanished::End {
                status: FileStatus::Done,
                ..
            }
        ));
        let i = entry(FileStatus::Ingesting, 100, 0, 60);
        match vanished(&i) {
            Vanished::End { status, message } => {
                assert_eq!(status, FileStatus::Failed);
                assert!(
                    message.contains("lines up to 2 (its first 60 bytes)"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            vanished(&entry(FileStatus::Error, 0, 0, 0)),
            Vanished::Forget
        );
        for s in [FileStatus::Done, FileStatus::Failed, FileStatus::Changed] {
            assert_eq!(vanished(&entry(s, 1, 0, 1)), Vanished::Keep);
        }
    }

    #[test]
    fn pending_means_bytes_left_to_read() {
        let c = cand(100, 0);
        assert!(is_pending(None, &c, false));
        assert!(is_pending(
            Some(&entry(FileStatus::Ingesting, 100, 0, 50)),
            &c,
            false
        ));
        assert!(is_pending(
            Some(&entry(FileStatus::Error, 100, 0, 0)),
            &c,
            false
        ));
        assert!(is_pending(
            Some(&entry(FileStatus::Growing, 80, 0, 80)),
            &c,
            false
        ));
        assert!(!is_pending(
            Some(&entry(FileStatus::Growing, 100, 0, 100)),
            &c,
            false
        ));
        assert!(!is_pending(
            Some(&entry(FileStatus::Done, 100, 0, 100)),
            &c,
            false
        ));
        assert!(!is_pending(
            Some(&entry(FileStatus::Failed, 100, 0, 0)),
            &c,
            false
        ));
        // Compressed: 100 bytes on disk hold 900 decompressed ones; only a change of the file
        // says there is more.
        assert!(!is_pending(
            Some(&entry(FileStatus::Growing, 100, 0, 900)),
            &c,
            true
        ));
        assert!(is_pending(
            Some(&entry(FileStatus::Growing, 80, 0, 900)),
            &c,
            true
        ));
    }

    #[test]
    fn a_compressed_file_is_never_judged_by_comparing_its_size_with_its_offsets() {
        // 100 bytes on disk, 900 decompressed bytes read.
        let c = cand(100, 0);
        let seen = None;
        // Unchanged and still young: look again; old enough: finish it.
        let growing = entry(FileStatus::Growing, 100, 0, 900);
        assert_eq!(
            plan_known(&growing, &c, true, seen),
            Plan::CheckChanged,
            "what the plain rule would say"
        );
        assert_eq!(
            plan_known_compressed(&growing, &c, true, seen),
            Plan::LookAgainSoon
        );
        assert_eq!(
            plan_known_compressed(&growing, &c, false, seen),
            Plan::Ingest
        );
        // Rewritten (another size): read on, the resume's prefix hash tells.
        assert_eq!(
            plan_known_compressed(&growing, &cand(150, 7), true, seen),
            Plan::Ingest
        );
        assert_eq!(
            plan_known_compressed(&entry(FileStatus::Ingesting, 100, 0, 900), &c, false, seen),
            Plan::Ingest
        );
        // Done: as any file (same size and mtime on disk: nothing to do).
        assert_eq!(
            plan_known_compressed(&entry(FileStatus::Done, 100, 0, 900), &c, false, seen),
            Plan::AfterDone
        );
        assert_eq!(
            plan_known_compressed(
                &entry(FileStatus::Done, 100, 0, 900),
                &cand(100, 9_000),
                false,
                seen
            ),
            Plan::CheckChanged
        );
    }
}
