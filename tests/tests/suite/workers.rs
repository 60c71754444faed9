//! Several workers per pipeline (`ecommerce_ingest.workers`, a pipeline's option `workers`):
//! each worker is a backend of its own (its row in pg_stat_activity and in ingest_workers()),
//! owns the files whose name hashes to it, and writes all of each file it owns; changing the
//! number starts or stops workers without losing or repeating a row. Crashes with four workers:
//! crash_random.rs.

use crate::pipelines::{create, done, folder, pstatus, wait_done, T};
use e2e::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// `(worker number, pid)` of each running worker of pipeline `p`.
fn workers(c: &mut Cluster, p: &str) -> Vec<(i32, i32)> {
    c.client()
        .query(
            "SELECT worker, pid FROM ingest_workers() WHERE pipeline = $1 AND pid IS NOT NULL ORDER BY worker",
            &[&p],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Waits until pipeline `p` runs exactly `n` workers, numbered 1..=n; returns their pids.
fn wait_workers(c: &mut Cluster, p: &str, n: usize) -> Vec<i32> {
    c.wait_for(&format!("{n} workers of pipeline {p}"), T, |c| {
        let w = workers(c, p);
        w.len() == n && w.iter().enumerate().all(|(i, (k, _))| *k == i as i32 + 1)
    });
    workers(c, p).into_iter().map(|(_, pid)| pid).collect()
}

/// pg_stat_activity's application_name of each pid.
fn app_names(c: &mut Cluster, pids: &[i32]) -> Vec<String> {
    pids.iter()
        .map(|pid| {
            c.text(&format!(
                "SELECT application_name FROM pg_stat_activity WHERE pid = {pid}"
            ))
            .unwrap_or_default()
        })
        .collect()
}

/// `n` CSV files for table `t`: file `f` holds ids f*100+1 ..= f*100+10.
fn write_files(dir: &std::path::Path, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|f| {
            let name = format!("part_{f:03}.csv");
            let mut s = String::from("id,v\n");
            for i in 1..=10 {
                s.push_str(&format!("{},v{f}-{i}\n", f * 100 + i));
            }
            write_atomic(dir, &name, s.as_bytes());
            name
        })
        .collect()
}

/// Which backend wrote each file's rows (every file's rows by one backend, or the test fails).
fn writer_of_each_file(c: &mut Cluster) -> BTreeMap<String, i32> {
    let rows = c
        .client()
        .query(
            "SELECT format('part_%s.csv', lpad((id / 100)::text, 3, '0')), count(DISTINCT pid)::int,
                    min(pid), count(*)::int
               FROM t GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap();
    rows.iter()
        .map(|r| {
            let (f, writers, pid, n): (String, i32, i32, i32) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            assert_eq!(writers, 1, "{f} was written by {writers} backends");
            assert_eq!(n, 10, "{f} has {n} rows");
            (f, pid)
        })
        .collect()
}

#[test]
fn a_pipeline_s_files_are_shared_by_its_workers_and_their_number_can_change() {
    let mut c = Cluster::start(ClusterOptions::default());
    // pid: the backend that inserted the row (a column the files do not have).
    c.execute("CREATE TABLE t (id int PRIMARY KEY, v text, pid int DEFAULT pg_backend_pid())");
    let dir = folder(&c, "shared");
    for bad in ["0", "9", "\"two\""] {
        let e = c
            .client()
            .batch_execute(&crate::pipelines::create_sql(
                "bad",
                &dir,
                "t",
                "csv",
                &format!(r#"{{"workers": {bad}}}"#),
            ))
            .expect_err("workers out of range is refused");
        assert!(
            db_error_text(&e).contains("workers"),
            "{}",
            db_error_text(&e)
        );
    }
    create(
        &mut c,
        "shared",
        &dir,
        "t",
        "csv",
        r#"{"workers": 3, "trigger_interval": 100}"#,
    );
    let pids = wait_workers(&mut c, "shared", 3);
    assert_eq!(
        app_names(&mut c, &pids),
        [
            "ecommerce_ingest pipeline shared",
            "ecommerce_ingest pipeline shared worker 2",
            "ecommerce_ingest pipeline shared worker 3"
        ]
    );
    let names = write_files(&dir, 0, 30);
    wait_done(&mut c, "shared", 30);
    assert_eq!(c.int("SELECT count(*) FROM t"), 300);
    // Each file by the worker its name hashes to; all three workers had files.
    let by = writer_of_each_file(&mut c);
    for n in &names {
        let owner = ingest_core::share_of(n, 3) as usize;
        assert_eq!(by[n], pids[owner], "{n} belongs to worker {}", owner + 1);
    }
    let writers: BTreeSet<i32> = by.values().copied().collect();
    assert_eq!(writers.len(), 3, "{by:?}");
    let s = pstatus(&mut c, "shared");
    assert_eq!((s.files_ingested, s.rows_ingested), (30, 300), "{s:?}");
    assert_eq!(s.worker_pid, Some(pids[0]));

    // Down to one: workers 2 and 3 stop, the first ingests everything that comes.
    c.execute(r#"SELECT ingest_alter_pipeline('shared', options => '{"workers": 1}')"#);
    let one = wait_workers(&mut c, "shared", 1);
    assert_eq!(one, [pids[0]]);
    write_files(&dir, 30, 10);
    wait_done(&mut c, "shared", 40);
    let by = writer_of_each_file(&mut c);
    for f in 30..40 {
        assert_eq!(by[&format!("part_{f:03}.csv")], pids[0]);
    }
    // Up to four: new workers, each file once.
    c.execute(r#"SELECT ingest_alter_pipeline('shared', options => '{"workers": 4}')"#);
    let four = wait_workers(&mut c, "shared", 4);
    assert_eq!(four[0], pids[0]);
    write_files(&dir, 40, 20);
    wait_done(&mut c, "shared", 60);
    assert_eq!(c.int("SELECT count(*) FROM t"), 600);
    let by = writer_of_each_file(&mut c);
    for f in 40..60 {
        let n = format!("part_{f:03}.csv");
        assert_eq!(by[&n], four[ingest_core::share_of(&n, 4) as usize], "{n}");
    }
    assert_eq!(done(&mut c, "shared"), 60);
    // Dropped: every worker stops and frees its slot.
    c.execute("SELECT ingest_drop_pipeline('shared')");
    c.wait_for("no worker of the dropped pipeline", T, |c| {
        c.int("SELECT count(*) FROM ingest_workers() WHERE pipeline = 'shared'") == 0
    });
}

#[test]
fn the_events_pipeline_runs_several_workers() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.workers = 4",
        "ecommerce_ingest.min_file_age = 0",
    ]));
    let pids = wait_workers(&mut c, "events", 4);
    let distinct: BTreeSet<i32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{pids:?}");
    assert_eq!(
        c.int(
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name LIKE 'ecommerce_ingest pipeline events%'
                AND backend_type IN ('ecommerce_ingest', 'ecommerce_ingest pipeline')"
        ),
        4
    );
    let stage = tempfile::tempdir_in("/tmp").unwrap();
    for i in 0..40u64 {
        let name = format!("ev_{i:03}.csv");
        std::fs::write(stage.path().join(&name), gen_file(i, 50)).unwrap();
        c.write_file_atomic(&name, &gen_file(i, 50));
    }
    c.wait_for("40 files done", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 40
    });
    let exp = expected_rows(&[stage.path()]);
    c.assert_exact_rows(&exp.rows);
    // Each worker ingested its own files: every file's rows carry its file id, and the
    // worker that wrote them is the one the name hashes to (seen through its triggers: the
    // status of every worker has run a trigger and none failed).
    let s = c.status();
    assert_eq!(s.files_ingested, 40, "{s:#?}");
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_workers() WHERE pipeline = 'events' AND last_trigger_at IS NOT NULL AND last_error IS NULL"),
        4
    );
    // Fewer, then more: workers stop and start, files arrive meanwhile, each row once.
    c.reload(&[("ecommerce_ingest.workers", "2")]);
    let two = wait_workers(&mut c, "events", 2);
    assert_eq!(two[0], pids[0], "the first worker stays");
    for i in 40..60u64 {
        let name = format!("ev_{i:03}.csv");
        std::fs::write(stage.path().join(&name), gen_file(i, 50)).unwrap();
        c.write_file_atomic(&name, &gen_file(i, 50));
        if i == 50 {
            c.reload(&[("ecommerce_ingest.workers", "3")]);
        }
    }
    wait_workers(&mut c, "events", 3);
    c.wait_for("60 files done", Duration::from_secs(60), |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") == 60
    });
    let exp = expected_rows(&[stage.path()]);
    c.settle();
    c.assert_exact_rows(&exp.rows);
    assert_eq!(c.status().files_ingested, 60);
}

/// Workers that cannot start (max_worker_processes too small) leave the files that hash to them
/// waiting: the status says so (`degraded`, naming them) instead of `running`.
#[test]
fn workers_that_cannot_start_are_reported() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "max_worker_processes = 4",
        "ecommerce_ingest.workers = 6",
    ]));
    c.wait_for("the status to name the workers that do not run", T, |c| {
        let s = c.status();
        s.state == "degraded" && s.detail.contains("are not running") && s.detail.contains("6")
    });
    let running = c
        .int("SELECT count(*) FROM ingest_workers() WHERE pipeline = 'events' AND pid IS NOT NULL");
    assert!((1..6).contains(&running), "{running} workers run");
    assert!(
        c.int("SELECT count(*) FROM ingest_workers() WHERE pipeline = 'events' AND pid IS NULL AND state = 'no_worker'")
            >= 1
    );
}

/// A file whose ledger row another session holds (here a superuser's `SELECT … FOR UPDATE`;
/// between workers, a transaction of another worker while their number changes) waits alone:
/// the files behind it go on, and it is finished once the row is free.
#[test]
fn a_held_ledger_row_holds_back_only_its_own_file() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        // Every file stays "growing": its complete lines are ingested at once, and more lines
        // appended later are ingested in later chunks.
        "ecommerce_ingest.min_file_age = '1h'",
        "ecommerce_ingest.lock_timeout = '300ms'",
    ]));
    let first = gen_file(1, 10);
    c.write_file_atomic("a_held.csv", &first);
    c.wait_for("a_held.csv's first rows", T, |c| c.event_count() == 10);
    let mut holder = c.connect_to("postgres");
    holder
        .batch_execute(
            "BEGIN; SELECT * FROM ingest_ledger WHERE file_name = 'a_held.csv' FOR UPDATE",
        )
        .unwrap();
    // More lines for the held file (it stays first in line), then 20 other files.
    let more = String::from_utf8(gen_file(2, 10)).unwrap();
    let more_lines: String = more.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let path = c.input_dir().join("a_held.csv");
    // Appended (a rewrite would show the worker a shorter file for a moment).
    std::io::Write::write_all(
        &mut std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap(),
        more_lines.as_bytes(),
    )
    .unwrap();
    for i in 0..20u64 {
        c.write_file_atomic(&format!("b_{i:02}.csv"), &gen_file(10 + i, 5));
    }
    c.wait_for("the other files while a_held.csv's row is held", T, |c| {
        c.event_count() == 10 + 20 * 5
    });
    assert_eq!(c.event_count(), 110, "a_held.csv waited");
    holder.batch_execute("COMMIT").unwrap();
    c.wait_for("a_held.csv's new lines once its row is free", T, |c| {
        c.event_count() == 120
    });
    c.settle();
    assert_eq!(c.duplicates().len(), 0);
    assert_eq!(c.event_count(), 120);
}
