//! `user_events` partitioned by time with `sql/partition_user_events.sql`, with and without
//! pg_partman: partitions made ahead, old ones detached by pg_partman's retention while the
//! worker ingests, a row whose time has no partition kept in the default one — and every row of
//! every file exactly once in the end.

use e2e::*;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// Runs `sql/partition_user_events.sql` with psql and these variables; panics with psql's
/// output if it fails.
fn partition(c: &Cluster, vars: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
        .args(["-p", &c.port().to_string(), "-v", "ON_ERROR_STOP=1"]);
    for (k, v) in vars {
        cmd.args(["-v", &format!("{k}={v}")]);
    }
    let out = cmd
        .arg("-f")
        .arg(repo_root().join("sql/partition_user_events.sql"))
        .output()
        .expect("psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "partition_user_events.sql: {text}");
    text
}

/// A file of the generator's rows moved from May 2024 to January 2019, before any partition.
/// (Not a future time: pg_partman 4 makes partitions ahead of the newest row it finds, default
/// partition included, and cannot attach one whose range has rows in the default partition —
/// docs/scale.md says what to do about far-future rows.)
fn old_file(seed: u64, rows: u64) -> Vec<u8> {
    String::from_utf8(gen_file(seed, rows))
        .unwrap()
        .replace("2024-05-", "2019-01-")
        .into_bytes()
}

fn partitions(c: &mut Cluster) -> Vec<String> {
    c.client()
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'public.user_events'::regclass ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn pg_partman_makes_and_retires_partitions_while_the_worker_ingests_and_no_row_is_lost() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("SELECT ingest_pause()");
    partition(
        &c,
        &[("partman", "on"), ("start", "2024-04-01"), ("premake", "2")],
    );
    let made = partitions(&mut c);
    for p in [
        "user_events_p2024_04",
        "user_events_p2024_05",
        "user_events_default",
    ] {
        assert!(made.contains(&p.to_string()), "{p} not in {made:?}");
    }
    c.execute("SELECT ingest_resume()");

    // May 2024 rows land in their partition; rows of 2019 (no partition) in the default one.
    for seed in 1..=6u64 {
        c.write_file_atomic(&format!("a{seed}.csv"), &gen_file(seed, 500));
    }
    c.write_file_atomic("old.csv", &old_file(7, 100));
    c.wait_files_done(7, T);
    assert_eq!(c.int("SELECT count(*) FROM user_events_default"), 100);
    assert!(c.int("SELECT count(*) FROM user_events_p2024_05") > 2500);

    // Retention (detach, keep the table) while files are being ingested: pg_partman's
    // maintenance and the worker's chunks take turns on the parent's lock.
    for seed in 8..=11u64 {
        c.write_file_atomic(&format!("b{seed}.csv"), &gen_file(seed, 20_000));
    }
    let mut admin = c.connect_as("postgres");
    println!(
        "files done when the maintenance starts: {} of 11",
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'")
    );
    admin
        .batch_execute(
            "UPDATE partman.part_config SET retention = '24 months', retention_keep_table = true
              WHERE parent_table = 'public.user_events'",
        )
        .unwrap();
    // (A procedure that commits: alone in its statement, outside a transaction block.)
    admin
        .batch_execute("CALL partman.run_maintenance_proc()")
        .expect("pg_partman maintenance");
    let after = partitions(&mut c);
    assert!(
        !after.contains(&"user_events_p2024_05".to_string()),
        "May 2024 is older than the retention: detached ({after:?})"
    );
    // Rows for May 2024 arriving after that have no partition: the default one keeps them.
    for seed in 12..=13u64 {
        c.write_file_atomic(&format!("c{seed}.csv"), &gen_file(seed, 300));
    }
    c.wait_files_done(13, T);
    assert!(c.int("SELECT count(*) FROM user_events_default") >= 100 + 2 * 290);
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_files WHERE status <> 'done'"),
        0
    );

    // Every row exactly once: the detached partition's rows back with the others.
    c.execute(
        "INSERT INTO user_events OVERRIDING SYSTEM VALUE SELECT * FROM user_events_p2024_05;
         INSERT INTO user_events OVERRIDING SYSTEM VALUE SELECT * FROM user_events_p2024_04;",
    );
    let exp = expected_rows(&[c.input_dir()]);
    assert_eq!(exp.rows.len(), 6 * 500 + 100 + 4 * 20_000 + 2 * 300);
    c.assert_exact_rows(&exp.rows);
}

#[test]
fn without_pg_partman_the_script_makes_day_partitions_ahead_and_refuses_a_table_with_rows() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.write_file_atomic("a.csv", &gen_file(1, 10));
    c.wait_files_done(1, T);
    // A table with rows: refused, with the way to the migration recipe; nothing changed.
    let mut cmd = Command::new("psql");
    let out = cmd
        .args(["-X", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
        .args(["-p", &c.port().to_string(), "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(repo_root().join("sql/partition_user_events.sql"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("user_events is not empty") && err.contains("docs/scale.md"),
        "{err}"
    );
    assert_eq!(c.int("SELECT count(*) FROM user_events"), 10);

    c.execute("SELECT ingest_pause(); TRUNCATE user_events");
    partition(&c, &[("granularity", "day"), ("premake", "3")]);
    // Today, three days ahead, and the default partition.
    assert_eq!(partitions(&mut c).len(), 5);
    c.execute("SELECT ingest_resume()");
    c.write_file_atomic("b.csv", &gen_file(2, 200));
    c.wait_files_done(2, T);
    // The generator's May 2024 rows: no day partition of theirs, all in the default one.
    assert_eq!(c.int("SELECT count(*) FROM user_events_default"), 200);
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'"),
        2
    );
}

#[test]
fn an_events_table_with_rows_becomes_the_legacy_partition_without_a_copy_and_ingestion_goes_on() {
    for partman in ["off", "on"] {
        let mut c = Cluster::start(ClusterOptions::default());
        for seed in 1..=3u64 {
            c.write_file_atomic(&format!("a{seed}.csv"), &gen_file(seed, 400));
        }
        c.wait_files_done(3, T);
        let before = c.int("SELECT max(event_id) FROM user_events");
        let file_of_old_rows: i64 = c.int("SELECT pg_relation_filenode('user_events')::int8");
        // The worker keeps running: the script waits for its chunk, and it for the script.
        partition(
            &c,
            &[
                ("existing", "attach"),
                ("partman", partman),
                ("premake", "2"),
            ],
        );
        let parts = partitions(&mut c);
        assert!(
            parts.contains(&"user_events_legacy".to_string())
                && parts.contains(&"user_events_default".to_string()),
            "partman={partman}: {parts:?}"
        );
        // No copy: the old rows are in the very same relation file, now a partition.
        assert_eq!(
            c.int("SELECT pg_relation_filenode('user_events_legacy')::int8"),
            file_of_old_rows,
            "partman={partman}"
        );
        // New files: their May 2024 rows go into the legacy partition (its range is every time
        // before the cutover); new ids continue after the old ones.
        for seed in 4..=5u64 {
            c.write_file_atomic(&format!("b{seed}.csv"), &gen_file(seed, 400));
        }
        c.wait_files_done(5, T);
        assert!(
            c.int("SELECT min(event_id) FROM user_events WHERE source_file_id IN (SELECT file_id FROM ingest_files WHERE file_name LIKE 'b%')")
                > before,
            "partman={partman}"
        );
        let exp = expected_rows(&[c.input_dir()]);
        assert_eq!(exp.rows.len(), 2000);
        c.assert_exact_rows(&exp.rows);
        assert_eq!(c.int("SELECT count(*) FROM user_events_legacy"), 2000);
    }
}
