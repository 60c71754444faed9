//! Pausing, triggering, reloading settings, running without the worker, dropping the extension.

use e2e::*;
use std::time::{Duration, Instant};

fn count_matching(log: &str, pat: &str) -> usize {
    log.lines().filter(|l| l.contains(pat)).count()
}

#[test]
fn pause_holds_new_files_across_a_restart_and_resume_delivers_them() {
    let mut c = Cluster::start(ClusterOptions::default());
    let a = c.write_file_atomic("a.csv", &gen_file(1, 100));
    c.wait_files_done(1, Duration::from_secs(30));

    assert_eq!(c.text("SELECT ingest_pause()").as_deref(), Some("paused"));
    c.wait_for("state paused", Duration::from_secs(10), |c| {
        let s = c.status();
        s.state == "paused" && s.paused
    });
    let b = c.write_file_atomic("b.csv", &gen_file(2, 100));
    c.full_trigger();
    c.full_trigger();
    let held = |c: &mut Cluster| {
        assert_eq!(c.event_count(), 100, "rows arrived while paused");
        assert_eq!(
            c.int("SELECT count(*) FROM ingest_files WHERE file_name = 'b.csv' AND rows_ok > 0"),
            0
        );
        let s = c.status();
        assert_eq!((s.state.as_str(), s.paused), ("paused", true), "{s:#?}");
        s
    };
    held(&mut c);

    // The paused state survives a restart.
    c.restart("fast");
    c.wait_worker();
    c.full_trigger();
    held(&mut c);

    assert_eq!(c.text("SELECT ingest_resume()").as_deref(), Some("running"));
    c.wait_files_done(2, Duration::from_secs(30));
    let s = c.status();
    assert_eq!(
        (s.state.as_str(), s.paused, s.rows_ingested),
        ("running", false, 200)
    );
    let exp = expected_rows(&[a, b]);
    c.assert_exact_rows(&exp.rows);
    c.settle();
    c.assert_exact_rows(&exp.rows);
}

#[test]
fn status_counts_the_files_waiting_while_paused() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.write_file_atomic("a.csv", &gen_file(1, 10));
    c.wait_files_done(1, Duration::from_secs(30));
    assert_eq!(c.text("SELECT ingest_pause()").as_deref(), Some("paused"));
    c.write_file_atomic("b.csv", &gen_file(2, 10));
    c.write_file_atomic("c.csv", &gen_file(3, 10));
    c.full_trigger();
    c.full_trigger();
    let s = c.status();
    assert_eq!(c.event_count(), 10);
    assert_eq!(s.state, "paused");
    assert_eq!(
        s.files_pending,
        Some(2),
        "while paused, ingest_status().files_pending should count b.csv and c.csv: {s:#?}"
    );
    assert!(
        s.lag_seconds.is_some(),
        "lag_seconds while 2 files wait: {s:#?}"
    );
}

#[test]
fn trigger_interval_reload_takes_effect() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1h'",
    ]));
    // One trigger so that last_trigger_at is set.
    c.trigger();
    c.wait_for("a first trigger", Duration::from_secs(10), |c| {
        c.status().last_trigger_at.is_some()
    });
    // Let any trigger in flight finish: last_trigger_at unchanged for 500 ms.
    let t1 = c.wait_steady(Duration::from_millis(500), |c| c.status().last_trigger_at);
    let shown = c.status().trigger_interval;
    assert!(shown == "1h" || shown == "3600s", "{shown}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.status().last_trigger_at,
        t1,
        "with trigger_interval = 1h the worker triggered by itself"
    );

    c.reload(&[("ecommerce_ingest.trigger_interval", "100ms")]);
    let mut seen = vec![t1];
    let took = c.wait_for(
        "last_trigger_at advancing 3 times after the reload",
        Duration::from_secs(15),
        |c| {
            let t = c.status().last_trigger_at;
            if seen.last() != Some(&t) {
                seen.push(t);
            }
            seen.len() >= 4
        },
    );
    println!("trigger_interval 1h -> 100ms: 3 triggers within {took:?}");
    assert_eq!(
        c.text("SHOW ecommerce_ingest.trigger_interval").as_deref(),
        Some("100ms")
    );
    assert_eq!(c.status().trigger_interval, "100ms");
}

#[test]
fn a_dropped_file_is_ingested_without_waiting_for_the_interval() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1h'",
    ]));
    // The extension was created after the worker started: one trigger to get it going.
    c.trigger();
    c.wait_for("the worker running", Duration::from_secs(10), |c| {
        let s = c.status();
        s.state == "running" && s.last_trigger_at.is_some()
    });
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    c.write_file_atomic("now.csv", &gen_file(5, 200));
    let rename_done = t0.elapsed();
    c.wait_for("now.csv's rows", Duration::from_secs(15), |c| {
        c.event_count() == 200
    });
    let latency = t0.elapsed();
    println!("file drop to committed rows: {latency:?} (write+rename took {rename_done:?}) with trigger_interval = 1h");
    c.wait_files_done(1, Duration::from_secs(30));
    let exp = expected_rows(&[c.input_dir()]);
    c.assert_exact_rows(&exp.rows);
}

#[test]
fn create_extension_after_the_worker_started_is_noticed_without_waiting_for_the_interval() {
    // The natural order: the server starts with the library preloaded, then an administrator
    // runs CREATE EXTENSION and files start to arrive. Nobody calls ingest_trigger().
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1h'",
    ]));
    let t0 = Instant::now();
    c.write_file_atomic("first.csv", &gen_file(6, 50));
    c.wait_for(
        "first.csv ingested after CREATE EXTENSION, with trigger_interval = 1h and no ingest_trigger()",
        Duration::from_secs(30),
        |c| c.event_count() == 50,
    );
    println!("first file after CREATE EXTENSION: {:?}", t0.elapsed());
}

#[test]
fn without_preloading_create_extension_works_and_status_explains() {
    let mut c = Cluster::start(ClusterOptions {
        preload: false,
        ..Default::default()
    });
    assert_eq!(c.text("SHOW shared_preload_libraries").as_deref(), Some(""));
    let s = c.status();
    println!("{s:#?}");
    assert_eq!(s.state, "no_worker");
    assert_eq!(s.worker_pid, None);
    assert!(
        s.detail.contains("shared_preload_libraries"),
        "detail should mention shared_preload_libraries: {:?}",
        s.detail
    );
    assert_eq!(c.worker_pid(), None);
    let t = c.trigger();
    assert!(t.contains("no worker"), "ingest_trigger(): {t:?}");
    assert_eq!(c.event_count(), 0);
}

#[test]
fn drop_extension_is_guarded_and_the_worker_waits_quietly_for_a_new_one() {
    let mut c = Cluster::start(ClusterOptions::default());
    let a = c.write_file_atomic("a.csv", &gen_file(10, 123));
    c.wait_files_done(1, Duration::from_secs(30));

    let err = expect_db_error(
        c.client().batch_execute("DROP EXTENSION ecommerce_ingest"),
        "DROP EXTENSION with events",
    );
    println!("{err}");
    assert!(
        err.contains("123"),
        "the error should give the number of events: {err}"
    );
    assert_eq!(c.event_count(), 123);

    let log_before = c.server_log();
    let waiting_line = "waiting for CREATE EXTENSION ecommerce_ingest";
    let waiting_before = count_matching(&log_before, waiting_line);
    let pid = c.wait_worker();
    c.execute("DROP EXTENSION ecommerce_ingest CASCADE");
    assert_eq!(
        c.text("SELECT to_regclass('public.user_events')::text"),
        None
    );
    c.wait_for(
        "the worker logging that it waits",
        Duration::from_secs(10),
        |c| count_matching(&c.server_log(), waiting_line) > waiting_before,
    );
    // A few more triggers (200 ms apart) must not repeat the message nor warn each time.
    std::thread::sleep(Duration::from_millis(1500));
    let log = c.server_log();
    let new = &log[log_before.len()..];
    println!("--- log after the drop ---\n{new}");
    assert_eq!(c.worker_pid(), Some(pid), "the worker should keep running");
    assert_eq!(count_matching(new, waiting_line), 1, "{new}");
    let noisy = new
        .lines()
        .filter(|l| l.contains("WARNING") || l.contains("ERROR"))
        .count();
    assert!(
        noisy <= 1,
        "the worker spams the log after DROP EXTENSION:\n{new}"
    );

    // Recreated: a new file arrives (the old one is removed: its ledger was dropped too).
    std::fs::remove_file(&a).unwrap();
    c.execute("CREATE EXTENSION ecommerce_ingest");
    // The worker looks at the (empty) folder for the new installation first; files that are
    // there at that moment could be ones ingested before (see identity.rs).
    c.full_trigger();
    let b = c.write_file_atomic("b.csv", &gen_file(11, 77));
    c.trigger();
    c.wait_files_done(1, Duration::from_secs(30));
    let exp = expected_rows(&[b]);
    c.assert_exact_rows(&exp.rows);
    let s = c.status();
    assert_eq!(
        (s.state.as_str(), s.files_ingested, s.rows_ingested),
        ("running", 1, 77)
    );
}

#[test]
fn files_moved_in_from_another_folder_are_noticed_without_polling() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1h'",
    ]));
    c.wait_for("the worker running", Duration::from_secs(10), |c| {
        c.status().state == "running"
    });
    let stage = c.input_dir().parent().unwrap().join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_588_000_000);
    let mut names = Vec::new();
    for i in 0..10u64 {
        let name = format!("moved_{i}.csv");
        let p = write_atomic(&stage, &name, &gen_file(40 + i, 30));
        // Like `cp -p` or `mv` of an old file: its mtime is long past.
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        names.push(name);
    }
    let exp = expected_rows(&[&stage]);
    let t0 = Instant::now();
    for n in &names {
        std::fs::rename(stage.join(n), c.input_dir().join(n)).unwrap();
    }
    c.wait_files_done(10, Duration::from_secs(30));
    println!("10 files moved in: done after {:?}", t0.elapsed());
    c.assert_exact_rows(&exp.rows);
}

#[test]
fn a_backlog_larger_than_max_files_per_trigger_continues_at_once() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1h'",
        "ecommerce_ingest.max_files_per_trigger = 3",
    ]));
    c.wait_for("the worker running", Duration::from_secs(10), |c| {
        c.status().state == "running"
    });
    let t0 = Instant::now();
    for i in 0..20u64 {
        c.write_file_atomic(&format!("f_{i:02}.csv"), &gen_file(80 + i, 50));
    }
    c.wait_files_done(20, Duration::from_secs(10));
    println!("20 files, 3 per trigger: done after {:?}", t0.elapsed());
    let exp = expected_rows(&[c.input_dir()]);
    c.assert_exact_rows(&exp.rows);
    let most = c.int("SELECT max(files)::int8 FROM ingest_batches");
    assert!(
        most <= 3,
        "a trigger ingested {most} files with max_files_per_trigger = 3"
    );
}

#[test]
fn files_written_while_the_server_is_down_are_ingested_at_start_without_polling() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1h'",
    ]));
    c.write_file_atomic("before.csv", &gen_file(119, 40));
    c.wait_files_done(1, Duration::from_secs(30));
    c.stop("immediate");
    for i in 0..5u64 {
        c.write_file_atomic(&format!("while_down_{i}.csv"), &gen_file(120 + i, 40));
    }
    let t0 = Instant::now();
    c.start_again();
    c.wait_files_done(6, Duration::from_secs(30));
    println!(
        "5 files written while down: done {:?} after start",
        t0.elapsed()
    );
    let exp = expected_rows(&[c.input_dir()]);
    c.assert_exact_rows(&exp.rows);
}

#[test]
fn many_configuration_reloads_leave_the_worker_running() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.write_file_atomic("a.csv", &gen_file(1, 10));
    c.wait_files_done(1, Duration::from_secs(30));
    let pid = c.wait_worker();
    let postmaster_restarts_before = count_matching(
        &c.server_log(),
        "terminating any other active server processes",
    );
    for i in 0..100 {
        let interval = if i % 2 == 0 { "150ms" } else { "250ms" };
        c.reload(&[("ecommerce_ingest.trigger_interval", interval)]);
        std::thread::sleep(Duration::from_millis(10));
    }
    c.write_file_atomic("b.csv", &gen_file(2, 10));
    c.wait_files_done(2, Duration::from_secs(30));
    let log = c.server_log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("panicked")
                || l.contains("terminated by signal")
                || l.contains("exited with exit code")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "the worker crashed on SIGHUP:\n{}",
        bad.join("\n")
    );
    assert_eq!(
        count_matching(&log, "terminating any other active server processes"),
        postmaster_restarts_before
    );
    assert_eq!(c.worker_pid(), Some(pid), "the worker was restarted");
    assert_eq!(c.event_count(), 20);
}

#[test]
fn a_storm_of_sighups_leaves_the_worker_running() {
    // pg_reload_conf() sends SIGHUP to every server process. The worker runs a file-system
    // notification thread; a process-directed signal may be delivered to any thread that does
    // not block it, so the handler must be safe to run on that thread too.
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1h'",
    ]));
    c.write_file_atomic("a.csv", &gen_file(1, 10));
    c.wait_files_done(1, Duration::from_secs(30));
    let pid = c.wait_worker();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    println!("worker {pid} has {threads} threads");
    let crashed = |c: &Cluster| -> Vec<String> {
        c.server_log()
            .lines()
            .filter(|l| {
                l.contains("panicked")
                    || l.contains("may not be called")
                    || l.contains("terminated by signal")
                    || l.contains("exited with exit code")
            })
            .map(str::to_string)
            .collect()
    };
    for _round in 0..10 {
        for _ in 0..20_000 {
            unsafe { libc::kill(pid, libc::SIGHUP) };
        }
        std::thread::sleep(Duration::from_millis(200));
        if !crashed(&c).is_empty() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let bad = crashed(&c);
    // What the failure does to the pipeline: is the worker alive, do notifications still work?
    let alive = c.worker_pid();
    let t0 = Instant::now();
    c.write_file_atomic("b.csv", &gen_file(2, 10));
    let mut arrived = false;
    while t0.elapsed() < Duration::from_secs(15) {
        if c.int("SELECT count(*) FROM ingest_files WHERE file_name = 'b.csv' AND status = 'done'")
            == 1
        {
            arrived = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "after the SIGHUP storm: worker pid {alive:?} (was {pid}); b.csv ingested within 15 s without polling: {arrived}"
    );
    assert!(
        bad.is_empty(),
        "the worker's SIGHUP handler failed (worker pid now {alive:?}, was {pid}; a new file noticed without polling: {arrived}):\n{}",
        bad.join("\n")
    );
    assert_eq!(alive, Some(pid), "the worker was restarted");
    assert!(
        arrived,
        "b.csv was not noticed within 15 s after the SIGHUPs"
    );
}

/// An input folder that disappears puts the worker in state `error`, with the reason in
/// `detail` and `last_error`; once the folder is back, it runs again on its own.
#[test]
fn a_missing_input_folder_shows_state_error_until_it_is_back() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1s'",
    ]));
    let input = c.input_dir().to_path_buf();
    let away = input.with_extension("away");
    std::fs::rename(&input, &away).unwrap();
    c.wait_for("state error", Duration::from_secs(15), |c| {
        c.status().state == "error"
    });
    let s = c.status();
    println!("{s:#?}");
    let folder = input.display().to_string();
    assert!(s.detail.contains(&folder), "{}", s.detail);
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains(&folder)),
        "{:?}",
        s.last_error
    );
    std::fs::rename(&away, &input).unwrap();
    c.wait_for("state running again", Duration::from_secs(15), |c| {
        c.status().state == "running"
    });
    let path = c.write_file_atomic("back.csv", &gen_file(71, 20));
    c.wait_files_done(1, Duration::from_secs(15));
    c.assert_exact_rows(&expected_rows(&[&path]).rows);
}

/// `ecommerce_ingest.database` naming a database that does not exist yet: the launcher says so
/// once and waits (no FATAL restart loop); once it is created, the worker starts there.
#[test]
fn a_missing_database_is_waited_for_then_the_worker_starts_in_it() {
    let mut c = Cluster::start(ClusterOptions {
        create_extension: false,
        ..ClusterOptions::with_conf(&["ecommerce_ingest.database = 'shop'"])
    });
    // ingest_status() works in any database where the extension exists.
    c.execute("CREATE EXTENSION ecommerce_ingest");
    c.wait_for("state waiting", Duration::from_secs(15), |c| {
        c.status().detail.contains("does not exist")
    });
    let s = c.status();
    assert_eq!(
        (s.state.as_str(), s.worker_pid),
        ("waiting", None),
        "{s:#?}"
    );
    assert!(s.detail.contains("\"shop\""), "{}", s.detail);
    // Several checks later (one every 5 s): still one log line, and no worker dying.
    std::thread::sleep(Duration::from_secs(11));
    let log = c.server_log();
    let said = log
        .lines()
        .filter(|l| l.contains("\"shop\"") && l.contains("does not exist"))
        .count();
    assert_eq!(said, 1, "{}", c.log_tail(30));
    assert!(!log.contains("FATAL"), "{}", c.log_tail(30));

    c.execute("CREATE DATABASE shop");
    let mut shop = c.connect_to("shop");
    shop.batch_execute("CREATE EXTENSION ecommerce_ingest")
        .unwrap();
    c.wait_for("the worker running in shop", Duration::from_secs(20), |c| {
        let s = c.status();
        s.state == "running" && s.database == "shop" && s.worker_pid.is_some()
    });
    let path = c.write_file_atomic("shop.csv", &gen_file(81, 25));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let n = loop {
        let n: i64 = shop
            .query_one("SELECT count(*) FROM user_events", &[])
            .unwrap()
            .get(0);
        if n == 25 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(n, 25, "rows of {} in shop.user_events", path.display());
    // The postgres database's own user_events is not the worker's.
    assert_eq!(c.event_count(), 0);
}
