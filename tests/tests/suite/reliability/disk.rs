//! A full disk: the table's tablespace (heap `ENOSPC`: the chunk fails and is retried), the
//! WAL (a `PANIC`: the server crashes, as PostgreSQL does), the archive and failed folders
//! (full, then read-only: files stay in the input folder until they can be moved). Each disk is
//! a small tmpfs the test mounts and unmounts. Afterwards every file is there exactly once,
//! with its rejects, and the ledger agrees.

use super::mount::Tmpfs;
use super::report;
use e2e::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

/// `rows` rows of [`gen_file`] with a bad row (fields missing) after every 500th line.
fn with_bad_rows(seed: u64, rows: u64) -> Vec<u8> {
    let text = String::from_utf8(gen_file(seed, rows)).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        out.push_str(line);
        out.push('\n');
        if i > 0 && i % 500 == 0 {
            out.push_str("user_1,view,prod_1\n");
        }
    }
    out.into_bytes()
}

/// Drops files into the input folder, keeping a copy in `staging` to compare with.
struct Dropper<'a> {
    staging: &'a Path,
}

impl Dropper<'_> {
    fn put(&self, c: &Cluster, name: &str, bytes: &[u8]) {
        write_atomic(self.staging, name, bytes);
        c.write_file_atomic(name, bytes);
    }
}

fn done_count(c: &mut Cluster) -> i64 {
    c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'")
}

/// Rows, rejects and ledger exactly as the files in `staging` say.
fn assert_exactly_once(c: &mut Cluster, staging: &Path) -> Expected {
    let exp = expected_rows(&[staging]);
    c.assert_exact_rows(&exp.rows);
    assert_eq!(c.stored_rejects(), exp.rejects, "the rejects");
    let problems = ledger_problems(c.client());
    assert!(problems.is_empty(), "{problems:#?}");
    exp
}

/// The server log's lines since byte `from` that contain `what`.
fn log_lines(c: &Cluster, from: usize, what: &str) -> Vec<String> {
    c.server_log()[from..]
        .lines()
        .filter(|l| l.contains(what))
        .map(String::from)
        .collect()
}

#[test]
fn a_full_tablespace_fails_the_chunk_says_why_and_once_space_is_freed_every_file_is_there_once() {
    let disk = Tmpfs::mount("heap", "32m");
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '100ms'",
        "ecommerce_ingest.chunk_size = '64kB'",
        "ecommerce_ingest.batch_rows = 200",
    ]));
    let ts = disk.dir().join("ts");
    postgres_folder(&ts);
    c.execute(&format!(
        "CREATE TABLESPACE small LOCATION {}",
        lit(&ts.display().to_string())
    ));
    c.execute("ALTER TABLE user_events SET TABLESPACE small");
    let staging = tempfile::tempdir().unwrap();
    let d = Dropper {
        staging: staging.path(),
    };
    d.put(&c, "a.csv", &with_bad_rows(300, 1_000));
    c.wait_files_done(1, Duration::from_secs(30));
    let filler = disk.fill();
    let log_from = c.server_log().len();
    for i in 0..6 {
        d.put(&c, &format!("b{i}.csv"), &with_bad_rows(301 + i, 3_000));
    }
    c.wait_for(
        "last_error saying the disk is full",
        Duration::from_secs(30),
        |c| {
            c.status()
                .last_error
                .is_some_and(|e| e.contains("No space left on device"))
        },
    );
    let st = c.status();
    println!("while full: {} / {:?}", st.state, st.last_error);
    let err = st.last_error.unwrap_or_default();
    assert!(err.contains("could not extend file"), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    // Full for a while: the chunk is retried and fails again; what is committed stays
    // consistent, and not every file can be done.
    std::thread::sleep(Duration::from_secs(3));
    let problems = ledger_problems(c.client());
    assert!(problems.is_empty(), "while full: {problems:#?}");
    assert!(done_count(&mut c) < 7, "every file done on a full disk");
    fs::remove_file(&filler).unwrap();
    c.wait_files_done(7, Duration::from_secs(120));
    c.settle();
    let injected = log_lines(&c, log_from, "No space left on device")
        .iter()
        .filter(|l| l.contains("WARNING"))
        .count();
    assert!(injected > 0);
    let exp = assert_exactly_once(&mut c, staging.path());
    assert_eq!(exp.rows.len(), 1_000 + 6 * 3_000);
    report("heap-full", injected, &mut c, exp.rows.len());
    assert_eq!(c.status().state, "running");
}

#[test]
fn a_full_wal_disk_panics_the_server_and_once_space_is_freed_every_file_is_there_once() {
    let disk = Tmpfs::mount("wal", "64m");
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '100ms'",
        "ecommerce_ingest.chunk_size = '64kB'",
        "ecommerce_ingest.batch_rows = 200",
    ]));
    // pg_wal on the small disk, as `initdb --waldir` would put it.
    c.stop("fast");
    let wal = disk.dir().join("wal");
    let pg_wal = c.data_dir().join("pg_wal");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(&pg_wal)
        .arg(&wal)
        .status()
        .unwrap();
    assert!(ok.success(), "cp -a pg_wal");
    fs::remove_dir_all(&pg_wal).unwrap();
    std::os::unix::fs::symlink(&wal, &pg_wal).unwrap();
    c.start_again();
    let staging = tempfile::tempdir().unwrap();
    let d = Dropper {
        staging: staging.path(),
    };
    d.put(&c, "a.csv", &with_bad_rows(400, 1_000));
    c.wait_files_done(1, Duration::from_secs(30));
    // No checkpoint recycles a segment meanwhile (max_wal_size is 1 GB): the next segment
    // needs new space, and there is none.
    let filler = disk.fill();
    let log_from = c.server_log().len();
    for i in 0..20 {
        d.put(&c, &format!("b{i:02}.csv"), &with_bad_rows(401 + i, 5_000));
    }
    c.wait_for("a PANIC", Duration::from_secs(120), |c| {
        !log_lines(c, log_from, "PANIC").is_empty()
    });
    let panics = log_lines(&c, log_from, "PANIC");
    println!("{}", panics.join("\n"));
    assert!(
        panics[0].contains("No space left on device"),
        "{}",
        panics[0]
    );
    // Still full for a while: crash recovery and the restarted worker meet the full disk too.
    std::thread::sleep(Duration::from_secs(3));
    fs::remove_file(&filler).unwrap();
    c.recover_after_crash(Duration::from_secs(60));
    // What the server did about it, as its log says.
    for what in [
        "terminated by signal",
        "aborting startup",
        "database system is ready",
    ] {
        for l in log_lines(&c, log_from, what) {
            println!("{l}");
        }
    }
    c.wait_files_done(21, Duration::from_secs(120));
    c.settle();
    // Every PANIC (recovery may have hit the full disk again before it was freed).
    let injected = log_lines(&c, log_from, "PANIC").len();
    let exp = assert_exactly_once(&mut c, staging.path());
    assert_eq!(exp.rows.len(), 1_000 + 20 * 5_000);
    report("wal-full", injected, &mut c, exp.rows.len());
    assert_eq!(c.status().state, "running");
}

#[test]
fn a_full_then_read_only_archive_folder_leaves_every_file_in_place_and_says_why() {
    let disk = Tmpfs::mount("archive", "4m");
    let archive = disk.dir().join("archive");
    let failed = disk.dir().join("failed");
    postgres_folder(&archive);
    postgres_folder(&failed);
    let filler = disk.fill();
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '100ms'",
        "ecommerce_ingest.processed_action = 'archive'",
        &format!(
            "ecommerce_ingest.archive_dir = {}",
            lit(&archive.display().to_string())
        ),
        &format!(
            "ecommerce_ingest.failed_dir = {}",
            lit(&failed.display().to_string())
        ),
    ]));
    let staging = tempfile::tempdir().unwrap();
    let d = Dropper {
        staging: staging.path(),
    };
    let names: Vec<String> = (0..6).map(|i| format!("f{i}.csv")).collect();
    for (i, n) in names.iter().enumerate() {
        d.put(&c, n, &with_bad_rows(500 + i as u64, 2_000));
    }
    // A header without price: the file fails as a whole and goes to the failed folder.
    let bad = b"user_id,event_type,product_id,product_name,product_category,event_timestamp,session_id,device_type\n\
                user_1,view,prod_1,Thing,Books,2024-05-01T10:00:00Z,s1,mobile\n";
    c.write_file_atomic("bad.csv", bad);
    let all_in_place = |c: &Cluster| {
        for n in &names {
            let want = fs::read(staging.path().join(n)).unwrap();
            let got = fs::read(c.input_dir().join(n))
                .unwrap_or_else(|e| panic!("{n} is not in the input folder: {e}"));
            assert!(got == want, "{n} changed in the input folder");
        }
        assert!(c.input_dir().join("bad.csv").exists(), "bad.csv left");
        assert_eq!(data_files(&archive), Vec::<String>::new(), "archived");
        assert_eq!(data_files(&failed), Vec::<String>::new(), "moved to failed");
    };

    // Full: every file is ingested, none can be moved, the state and last_error say why.
    c.wait_for(
        "every file judged, and the full archive folder reported",
        Duration::from_secs(60),
        |c| {
            c.int("SELECT count(*) FROM ingest_files WHERE status IN ('done', 'failed')") == 7
                && c.status().state == "degraded"
                && c.status()
                    .last_error
                    .is_some_and(|e| e.contains("No space left on device"))
        },
    );
    let st = c.status();
    println!("archive full: {} / {}", st.state, st.detail);
    c.full_trigger();
    all_in_place(&c);
    println!(
        "archive folder while full: {:?}",
        fs::read_dir(&archive)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );

    // Read-only: the same, with the new reason. Paused while the filler goes and the folder
    // turns read-only: a trigger in that gap would move the files (nothing is moved while paused).
    assert_eq!(c.text("SELECT ingest_pause()").as_deref(), Some("paused"));
    c.full_trigger();
    fs::remove_file(&filler).unwrap();
    disk.remount("ro");
    assert_eq!(c.text("SELECT ingest_resume()").as_deref(), Some("running"));
    c.trigger();
    c.wait_for(
        "the read-only archive folder reported",
        Duration::from_secs(30),
        |c| {
            let st = c.status();
            st.last_error
                .is_some_and(|e| e.contains("Read-only file system"))
                && st.detail.contains("Read-only file system")
        },
    );
    let st = c.status();
    println!("archive read-only: {} / {}", st.state, st.detail);
    assert_eq!(st.state, "degraded");
    c.full_trigger();
    all_in_place(&c);

    // Writable again: every file moved, each exactly once, with its bytes.
    disk.remount("rw");
    c.wait_for("the input folder emptied", Duration::from_secs(30), |c| {
        data_files(c.input_dir()).is_empty()
    });
    c.settle();
    assert_eq!(data_files(&archive), names, "the archive folder");
    for n in &names {
        assert!(
            fs::read(archive.join(n)).unwrap() == fs::read(staging.path().join(n)).unwrap(),
            "{n} archived with other bytes"
        );
    }
    // Nothing else either: no partial copy left behind.
    let mut everything: Vec<String> = fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    everything.sort();
    assert_eq!(everything, names, "the archive folder, hidden files too");
    assert_eq!(data_files(&failed), vec!["bad.csv".to_string()]);
    assert!(fs::read(failed.join("bad.csv")).unwrap() == bad);
    let exp = assert_exactly_once(&mut c, staging.path());
    assert_eq!(exp.rows.len(), 6 * 2_000);
    report("archive-full", 1, &mut c, exp.rows.len());
    report("archive-read-only", 1, &mut c, exp.rows.len());
    assert_eq!(c.status().state, "running");
}
