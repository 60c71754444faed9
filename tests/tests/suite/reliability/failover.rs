//! Failover to a promoted standby: asynchronous replication (what was not streamed is
//! ingested again on the standby) and synchronous replication (nothing acknowledged is lost),
//! the primary stopped with `-m immediate` or its postmaster SIGKILLed, with processed_action
//! archive and delete. Every file must end exactly once on the new primary, and no file may
//! leave the folder before its commit is on the standby.

use super::report;
use e2e::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A hot standby's worker writes nothing and says `standby`; the primary dies in the middle of
/// a backlog (asynchronous replication, an immediate stop: what was committed but not yet
/// streamed is lost with it); the standby is promoted, ingests within seconds, and every file of
/// the shared folder ends exactly once — a file whose commit did not reach the standby is
/// ingested again there, because its ledger row went with its rows; and no file was archived
/// before its commit was on the standby (processed_action = archive).
#[test]
fn after_a_failover_to_a_promoted_standby_every_file_is_ingested_exactly_once() {
    let mut p = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '100ms'",
        "ecommerce_ingest.chunk_size = '64kB'",
        "ecommerce_ingest.batch_rows = 200",
        "ecommerce_ingest.processed_action = 'archive'",
    ]));
    for i in 0..5 {
        p.write_file_atomic(&format!("a{i}.csv"), &gen_file(100 + i, 1_000));
    }
    p.wait_files_done(5, Duration::from_secs(60));
    let mut s = p.start_standby();
    s.wait_for(
        "the standby's worker says standby",
        Duration::from_secs(30),
        |s| {
            s.try_status()
                .is_ok_and(|st| st.state == "standby" && st.worker_pid.is_some())
        },
    );
    // A backlog the primary is in the middle of when it dies.
    for i in 5..25 {
        p.write_file_atomic(&format!("b{i}.csv"), &gen_file(100 + i, 5_000));
    }
    p.wait_for(
        "the primary in the middle of the backlog",
        Duration::from_secs(60),
        |p| p.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") >= 8,
    );
    // Nothing was written on the standby by its own worker meanwhile.
    let st = s.status();
    assert_eq!(st.state, "standby", "{st:#?}");
    p.stop("immediate");
    s.promote();
    s.wait_files_done(25, Duration::from_secs(120));
    s.settle();
    let archive = s.input_dir().join("archive");
    let exp = expected_rows(&[s.input_dir().to_path_buf(), archive]);
    assert_eq!(exp.rows.len(), 5 * 1_000 + 20 * 5_000, "files were lost");
    s.assert_exact_rows(&exp.rows);
    let problems = ledger_problems(s.client());
    assert!(problems.is_empty(), "{problems:#?}");
    report(
        "async-failover-immediate-archive",
        1,
        &mut s,
        exp.rows.len(),
    );
    let st = s.status();
    assert_eq!(st.state, "running", "{st:#?}");
}

/// Waits until the standby has replayed all it will: its replay position has not moved for
/// three seconds (the primary is gone, nothing more arrives). Not "replayed up to what it received":
/// a record the primary's death cut in the middle is received but never replayed.
fn replay_settled(s: &mut Cluster) {
    let start = Instant::now();
    let mut last = String::new();
    let mut since = Instant::now();
    loop {
        let now = s
            .text("SELECT pg_last_wal_replay_lsn()::text")
            .unwrap_or_default();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(3) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the standby still replays after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How the primary dies.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// `pg_ctl stop -m immediate`: every process quits at once, nothing is flushed.
    Immediate,
    /// SIGKILL of the postmaster (the OOM killer): its children notice and exit by themselves.
    KilledPostmaster,
}

/// The names of the files `done` in the ledger.
fn done_files(c: &mut Cluster) -> BTreeSet<String> {
    c.client()
        .query(
            "SELECT file_name FROM ingest_files WHERE status = 'done'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `(file, rows)` of user_events, by file.
fn rows_per_file(c: &mut Cluster) -> Vec<(String, i64)> {
    c.client()
        .query(
            "SELECT source_file, count(*) FROM user_events_with_source GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Synchronous replication (`sync`: `synchronous_standby_names` names the standby) or
/// asynchronous, a backlog in progress, the primary dies (`death`), the standby is promoted.
/// With `sync`, every commit the primary acknowledged is on the standby. Either way no file
/// left the folder (archived or deleted, `action`) before its commit was on the standby; and on
/// the new primary every file ends exactly once: rows per file and in total as the files say,
/// no (file, line) twice.
fn failover(fault: &str, sync: bool, action: &str, death: Death) {
    let mut p = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '100ms'",
        "ecommerce_ingest.chunk_size = '64kB'",
        "ecommerce_ingest.batch_rows = 200",
        &format!("ecommerce_ingest.processed_action = '{action}'"),
    ]));
    // A copy of every file outside the shared folder: deleted files are still counted.
    let staging = tempfile::tempdir().unwrap();
    let drop_file = |c: &Cluster, name: &str, bytes: &[u8]| {
        write_atomic(staging.path(), name, bytes);
        c.write_file_atomic(name, bytes);
    };
    for i in 0..3 {
        drop_file(&p, &format!("a{i}.csv"), &gen_file(200 + i, 1_000));
    }
    p.wait_files_done(3, Duration::from_secs(60));
    // The base backup is taken before synchronous_standby_names is set: the promoted standby
    // must not wait for a standby of its own.
    let mut s = p.start_standby();
    let mut app = String::new();
    p.wait_for("the standby streaming", Duration::from_secs(30), |p| {
        let r = p
            .client()
            .query_opt(
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
                &[],
            )
            .unwrap();
        app = r.map(|r| r.get(0)).unwrap_or_default();
        !app.is_empty()
    });
    if sync {
        p.reload(&[("synchronous_standby_names", &format!("\"{app}\""))]);
        p.wait_for("the standby synchronous", Duration::from_secs(30), |p| {
            p.int("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == 1
        });
    }
    s.wait_for(
        "the standby's worker says standby",
        Duration::from_secs(30),
        |s| {
            s.try_status()
                .is_ok_and(|st| st.state == "standby" && st.worker_pid.is_some())
        },
    );
    let names: Vec<String> = (0..3)
        .map(|i| format!("a{i}.csv"))
        .chain((3..18).map(|i| format!("b{i}.csv")))
        .collect();
    for (i, name) in names.iter().enumerate().skip(3) {
        drop_file(&p, name, &gen_file(200 + i as u64, 5_000));
    }
    p.wait_for(
        "the primary in the middle of the backlog",
        Duration::from_secs(60),
        |p| p.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") >= 8,
    );
    // With synchronous replication, what other sessions see committed was acknowledged by
    // the standby first.
    let acknowledged = done_files(&mut p);
    match death {
        Death::Immediate => p.stop("immediate"),
        Death::KilledPostmaster => p.kill_postmaster(),
    }
    // Once the standby has replayed all it got: every acknowledged commit is there, and
    // every file gone from the folder is done there.
    replay_settled(&mut s);
    let gone: Vec<&String> = {
        let left = data_files(s.input_dir());
        names.iter().filter(|n| !left.contains(n)).collect()
    };
    let on_standby = done_files(&mut s);
    let lost: Vec<&String> = acknowledged.difference(&on_standby).collect();
    // Asynchronous: what was acknowledged may be lost (it is ingested again, below).
    assert!(
        !sync || lost.is_empty(),
        "acknowledged but not on the standby: {lost:?}"
    );
    let early: Vec<&&String> = gone.iter().filter(|n| !on_standby.contains(**n)).collect();
    assert!(
        early.is_empty(),
        "{action}: files removed from the folder before their commit was on the standby: {early:?}"
    );
    println!(
        "{fault}: {} files done on the primary as seen before it died, {} on the standby ({} lost), {} out of the folder",
        acknowledged.len(),
        on_standby.len(),
        lost.len(),
        gone.len()
    );
    s.promote();
    s.wait_files_done(names.len() as i64, Duration::from_secs(120));
    s.wait_for(
        "every file out of the input folder",
        Duration::from_secs(30),
        |s| data_files(s.input_dir()).is_empty(),
    );
    s.settle();
    let exp = expected_rows(&[staging.path()]);
    assert_eq!(exp.rows.len(), 3 * 1_000 + 15 * 5_000);
    report(fault, 1, &mut s, exp.rows.len());
    let want: Vec<(String, i64)> = names
        .iter()
        .map(|n| (n.clone(), if n.starts_with('a') { 1_000 } else { 5_000 }))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(rows_per_file(&mut s), want, "rows per file");
    s.assert_exact_rows(&exp.rows);
    let problems = ledger_problems(s.client());
    assert!(problems.is_empty(), "{problems:#?}");
    if action == "archive" {
        // Each file archived once: by the old primary or by the new one, never both (a second
        // copy would be named `<file>.1`).
        let archived = data_files(&s.input_dir().join("archive"));
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(archived, sorted, "the archive folder");
        assert_same_bytes(staging.path(), &s.input_dir().join("archive"), &names);
    }
    let st = s.status();
    assert_eq!(st.state, "running", "{st:#?}");
}

/// Every file named is in `dir` with the bytes it has in `staging`.
fn assert_same_bytes(staging: &Path, dir: &Path, names: &[String]) {
    for n in names {
        let want = std::fs::read(staging.join(n)).unwrap();
        let got = std::fs::read(dir.join(n)).unwrap_or_default();
        assert!(
            got == want,
            "{}: not the file that was dropped",
            dir.join(n).display()
        );
    }
}

#[test]
fn sync_replication_failover_after_an_immediate_stop_keeps_every_archived_file_exactly_once() {
    failover(
        "sync-failover-immediate-archive",
        true,
        "archive",
        Death::Immediate,
    );
}

#[test]
fn sync_replication_failover_after_the_postmaster_is_killed_keeps_every_deleted_file_exactly_once()
{
    failover(
        "sync-failover-sigkill-delete",
        true,
        "delete",
        Death::KilledPostmaster,
    );
}

#[test]
fn async_replication_failover_after_the_postmaster_is_killed_keeps_every_deleted_file_exactly_once()
{
    failover(
        "async-failover-sigkill-delete",
        false,
        "delete",
        Death::KilledPostmaster,
    );
}
