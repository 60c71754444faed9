//! The database pushing back: a lock held on `user_events`, rows refused by a constraint or a
//! trigger, `DROP EXTENSION` while the worker is busy, and settings a normal user cannot change.

use e2e::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn worker_wait_event(c: &mut Cluster) -> Option<(String, String)> {
    c.client()
        .query_opt(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity
              WHERE backend_type = 'ecommerce_ingest' AND wait_event_type IS NOT NULL",
            &[],
        )
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

fn warnings_in(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("WARNING") || l.contains("ERROR"))
        .collect()
}

fn status_of(c: &mut Cluster, file: &str) -> Option<String> {
    c.file_status(file)
}

#[test]
fn a_locked_user_events_makes_the_worker_wait_and_pause_still_answers_at_once() {
    let mut c = Cluster::start(ClusterOptions::default());
    let pid = c.wait_worker();
    let a = c.write_file_atomic("a.csv", &gen_file(1, 100));
    c.wait_files_done(1, Duration::from_secs(30));

    let mut locker = c.connect_as("postgres");
    locker
        .batch_execute("BEGIN; LOCK TABLE user_events IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let log_before = c.server_log().len();
    let b = c.write_file_atomic("b.csv", &gen_file(2, 200));
    c.wait_for(
        "the worker waiting for the lock on user_events",
        Duration::from_secs(10),
        |c| worker_wait_event(c).is_some_and(|(t, _)| t == "Lock"),
    );
    println!("worker waits: {:?}", worker_wait_event(&mut c));
    // A file dropped while the worker waits.
    let cfile = c.write_file_atomic("c.csv", &gen_file(3, 300));

    // The admin functions and the monitoring views answer at once meanwhile.
    let t = Instant::now();
    assert_eq!(c.text("SELECT ingest_pause()").as_deref(), Some("paused"));
    let pause_took = t.elapsed();
    let t = Instant::now();
    let s = c.status();
    let status_took = t.elapsed();
    let t = Instant::now();
    let n_files = c.int("SELECT count(*) FROM ingest_files");
    let files_took = t.elapsed();
    println!(
        "while locked: ingest_pause() {pause_took:?}, ingest_status() {status_took:?} ({}), ingest_files {files_took:?}",
        s.state
    );
    assert!(
        pause_took < Duration::from_secs(1),
        "ingest_pause() took {pause_took:?}"
    );
    assert!(
        status_took < Duration::from_secs(1),
        "ingest_status() took {status_took:?}"
    );
    assert!(
        files_took < Duration::from_secs(1),
        "ingest_files took {files_took:?}"
    );
    assert!(s.paused);
    assert_eq!(n_files, 1, "b.csv is not committed while the lock is held");

    // Held for a while: the chunk that waited gives up after lock_timeout (1 s) and is rolled
    // back; paused now, the worker tries no more, without errors, without restarting.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.worker_pid(), Some(pid));
    assert!(
        worker_wait_event(&mut c).is_none_or(|(t, _)| t != "Lock"),
        "a paused worker still waits for the lock"
    );
    locker.batch_execute("COMMIT").unwrap();
    drop(locker);

    // The pause holds b.csv and c.csv back, nothing of them was committed.
    std::thread::sleep(Duration::from_millis(800));
    c.trigger();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        status_of(&mut c, "b.csv"),
        None,
        "b.csv ingested while paused"
    );
    assert_eq!(
        status_of(&mut c, "c.csv"),
        None,
        "c.csv ingested while paused"
    );
    assert_eq!(c.status().state, "paused");
    assert_eq!(c.text("SELECT ingest_resume()").as_deref(), Some("running"));
    c.wait_files_done(3, Duration::from_secs(30));
    c.settle();
    let exp = expected_rows(&[a, b, cfile]);
    assert_eq!(exp.rows.len(), 600);
    c.assert_exact_rows(&exp.rows);
    assert_eq!(c.worker_pid(), Some(pid));
    let log = c.server_log();
    let new = &log[log_before..];
    let noisy = warnings_in(new);
    assert!(
        noisy.is_empty(),
        "the worker complained while waiting: {noisy:#?}"
    );
}

#[test]
fn rows_the_database_refuses_cost_only_themselves() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.batch_rows = 200",
    ]));
    c.execute(
        "ALTER TABLE user_events ADD CONSTRAINT price_below_500 CHECK (price < 500);
         CREATE FUNCTION no_tablet_prod_1() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.device_type = 'tablet' AND NEW.product_id LIKE 'prod_1%' THEN
                 RAISE EXCEPTION 'tablets may not order product %', NEW.product_id
                     USING HINT = 'ask the shop team';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER no_tablet_prod_1 BEFORE INSERT ON user_events
             FOR EACH ROW EXECUTE FUNCTION no_tablet_prod_1();",
    );
    let path = c.write_file_atomic("refused.csv", &gen_file(31, 1000));
    let after = c.write_file_atomic("after.csv", &gen_file(32, 10));
    c.wait_files_done(2, Duration::from_secs(60));

    let exp = expected_rows(&[&path]);
    let exp_after = expected_rows(&[&after]);
    let by_trigger = |r: &EventRow| r.device_type == "tablet" && r.product_id.starts_with("prod_1");
    let by_check = |r: &EventRow| r.price.parse::<f64>().unwrap() >= 500.0;
    let mut want_rows: Vec<EventRow> = Vec::new();
    let mut want_rejects: Vec<(i64, String)> = Vec::new();
    for r in exp.rows.iter().chain(&exp_after.rows) {
        if by_trigger(r) {
            want_rejects.push((
                r.line,
                format!("tablets may not order product {}", r.product_id),
            ));
        } else if by_check(r) {
            want_rejects.push((
                r.line,
                "violates check constraint \"price_below_500\"".to_string(),
            ));
        } else {
            want_rows.push(r.clone());
        }
    }
    let n_trigger = exp.rows.iter().filter(|r| by_trigger(r)).count();
    let after_refused = exp_after
        .rows
        .iter()
        .filter(|r| by_trigger(r) || by_check(r))
        .count();
    want_rejects.truncate(want_rejects.len() - after_refused);
    println!(
        "refused.csv: {} rows, {} refused by the trigger, {} by the check",
        exp.rows.len(),
        n_trigger,
        want_rejects.len() - n_trigger
    );
    assert!(n_trigger >= 5 && want_rejects.len() - n_trigger >= 5);
    want_rows.sort();
    c.assert_exact_rows(&want_rows);

    let got: Vec<(i64, Option<String>, String, Option<String>)> = c
        .client()
        .query(
            "SELECT line_number, column_name, reason, raw_text FROM ingest_rejects
              WHERE file_name = 'refused.csv' ORDER BY line_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(got.len(), want_rejects.len(), "{got:#?}");
    for ((line, col, reason, raw), (wl, wr)) in got.iter().zip(&want_rejects) {
        assert_eq!(line, wl, "{reason}");
        assert_eq!(col, &None);
        assert!(
            reason.contains("refused by the database") && reason.contains(wr.as_str()),
            "line {line}: {reason:?} should give the database's message {wr:?}"
        );
        if *line == want_rejects[0].0 {
            println!("e.g. line {line}: {reason:?}, raw text {raw:?}");
        }
    }
    let (status, ok, rej): (String, i64, i64) = {
        let r = c
            .client()
            .query_one(
                "SELECT status, rows_ok, rows_rejected FROM ingest_files WHERE file_name = 'refused.csv'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        (status.as_str(), ok, rej),
        (
            "done",
            (exp.rows.len() - want_rejects.len()) as i64,
            want_rejects.len() as i64
        )
    );
    let s = c.status();
    assert_eq!(
        (s.rows_ingested, s.rows_rejected, s.files_failed),
        (
            want_rows.len() as i64,
            (want_rejects.len() + after_refused) as i64,
            0
        )
    );
    let problems = ledger_problems(c.client());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn drop_extension_cascade_while_the_worker_is_busy_then_create_again() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.chunk_size = '64kB'",
        "ecommerce_ingest.batch_rows = 500",
    ]));
    let pid = c.wait_worker();
    for i in 0..40u64 {
        c.write_file_atomic(&format!("f_{i:02}.csv"), &gen_file(400 + i, 3000));
    }
    c.wait_for("a few files done", Duration::from_secs(60), |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") >= 3
    });
    let done = c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'");
    assert!(done < 40, "the backlog was finished before the drop");
    let oids: Vec<String> = c
        .client()
        .query(
            "SELECT format('%s=%s', c.oid, c.relname) FROM pg_class c
               JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'ecommerce_ingest'
              WHERE c.relkind = 'r' ORDER BY c.oid",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!("the extension's tables: {}", oids.join(" "));
    let log_before = c.server_log().len();
    // The DROP must succeed at the first attempt. If it fails (a deadlock with the worker's
    // chunk transaction has been seen), the failure is kept and reported at the end, and the
    // DROP is retried so that the rest of the behaviour is still checked.
    let t = Instant::now();
    let mut drop_errors = Vec::new();
    loop {
        match c
            .client()
            .batch_execute("DROP EXTENSION ecommerce_ingest CASCADE")
        {
            Ok(()) => break,
            Err(e) => {
                let e = db_error_text(&e);
                println!("DROP EXTENSION ... CASCADE failed: {e}");
                drop_errors.push(e);
                assert!(drop_errors.len() < 10, "DROP EXTENSION keeps failing");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    println!(
        "dropped after {done} files done; DROP took {:?} ({} failed attempts)",
        t.elapsed(),
        drop_errors.len()
    );
    // (ingest_status() went with the extension: the log tells.)
    c.wait_for(
        "the worker waiting for CREATE EXTENSION",
        Duration::from_secs(20),
        |c| c.server_log()[log_before..].contains("waiting for CREATE EXTENSION"),
    );
    // Idle for a while (many trigger intervals): quiet.
    std::thread::sleep(Duration::from_secs(2));
    let log = c.server_log();
    let new = &log[log_before..];
    // The server's own report of a failed DROP is not the worker's noise.
    let noisy: Vec<&str> = warnings_in(new)
        .into_iter()
        .filter(|l| !l.contains("ERROR:  deadlock detected"))
        .collect();
    println!("--- log after the drop ---\n{new}");
    assert_eq!(c.worker_pid(), Some(pid), "the worker restarted");
    // Found problems are collected and reported at the end, after the rest was checked.
    let mut bugs: Vec<String> = Vec::new();
    if noisy.len() > 1 {
        bugs.push(format!(
            "{} WARNING/ERROR lines after DROP EXTENSION (error spam; at most one expected):\n{}",
            noisy.len(),
            noisy.join("\n")
        ));
    }
    assert_eq!(
        new.matches("waiting for CREATE EXTENSION").count(),
        1,
        "the waiting message should be logged once"
    );

    // Created again: the ledger went with the extension. The worker notices files that an
    // earlier installation ingested and starts paused; resumed, every file arrives exactly once
    // in the new table.
    c.execute("CREATE EXTENSION ecommerce_ingest");
    c.wait_for("paused after re-creation", Duration::from_secs(20), |c| {
        let s = c.status();
        s.state == "paused" && s.detail.contains("created again")
    });
    assert_eq!(c.event_count(), 0);
    c.execute("SELECT ingest_resume()");
    c.wait_files_done(40, Duration::from_secs(120));
    c.settle();
    let exp = expected_rows(&[c.input_dir()]);
    assert_eq!(exp.rows.len(), 120_000);
    c.assert_exact_rows(&exp.rows);
    let problems = ledger_problems(c.client());
    assert!(problems.is_empty(), "{problems:#?}");
    let s = c.status();
    assert_eq!(
        (s.state.as_str(), s.files_ingested, s.rows_ingested),
        ("running", 40, 120_000)
    );
    assert_eq!(c.worker_pid(), Some(pid));
    if let Some(l) = new.lines().find(|l| l.contains("deadlock detected")) {
        bugs.push(format!(
            "DROP EXTENSION ... CASCADE and the worker deadlocked (one of them was aborted):\n{l}"
        ));
    }
    if !drop_errors.is_empty() {
        bugs.push(format!(
            "DROP EXTENSION ecommerce_ingest CASCADE failed while the worker was ingesting \
             ({} attempts failed): {drop_errors:#?}",
            drop_errors.len()
        ));
    }
    assert!(bugs.is_empty(), "{}", bugs.join("\n\n"));
}

#[test]
fn the_folders_can_be_set_only_by_a_superuser() {
    let mut c = Cluster::start(ClusterOptions::default());
    let evil = c.root_dir().join("evil");
    fs::create_dir_all(&evil).unwrap();
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o777)).unwrap();
    write_atomic(&evil, "evil.csv", &gen_file(66, 10));
    let evil_s = evil.to_str().unwrap().to_string();
    c.execute(
        "CREATE ROLE joe LOGIN; GRANT ecommerce_ingest_admin TO joe;
         GRANT CREATE ON DATABASE postgres TO joe",
    );
    let mut joe = c.connect_as("joe");
    for name in ["input_dir", "archive_dir", "failed_dir"] {
        let g = format!("ecommerce_ingest.{name}");
        let v = lit(&evil_s);
        for sql in [
            format!("ALTER SYSTEM SET {g} = {v}"),
            format!("ALTER SYSTEM RESET {g}"),
            format!("SET {g} = {v}"),
            format!("BEGIN; SET LOCAL {g} = {v}; COMMIT"),
            format!("SELECT set_config('{g}', {v}, false)"),
            format!("ALTER ROLE joe SET {g} = {v}"),
            format!("ALTER ROLE postgres SET {g} = {v}"),
            format!("ALTER DATABASE postgres SET {g} = {v}"),
            format!("ALTER ROLE joe IN DATABASE postgres SET {g} = {v}"),
        ] {
            let err = expect_db_error(joe.batch_execute(&sql), &format!("joe: {sql}"));
            let _ = joe.batch_execute("ROLLBACK");
            println!("joe: {sql}\n   -> {err}");
            assert!(
                err.contains("permission denied")
                    || err.contains("cannot be changed")
                    || err.contains("must be superuser")
                    || err.contains("must be owner"),
                "joe: {sql}: {err}"
            );
        }
        // Not even a superuser can set them per role or per database: only the server's
        // configuration (postgresql.conf, ALTER SYSTEM) sets them.
        for sql in [
            format!("ALTER ROLE joe SET {g} = {v}"),
            format!("ALTER DATABASE postgres SET {g} = {v}"),
        ] {
            let err = expect_db_error(c.client().batch_execute(&sql), &format!("postgres: {sql}"));
            assert!(err.contains("cannot be changed"), "{sql}: {err}");
        }
    }
    let auto = fs::read_to_string(c.data_dir().join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains("evil"), "{auto}");
    let role_settings = c.int("SELECT count(*) FROM pg_db_role_setting");
    assert_eq!(role_settings, 0);
    c.execute("SELECT pg_reload_conf()");
    let a = c.write_file_atomic("a.csv", &gen_file(67, 10));
    c.wait_files_done(1, Duration::from_secs(30));
    c.settle();
    let exp = expected_rows(&[a]);
    c.assert_exact_rows(&exp.rows);
    let s = c.status();
    assert_eq!(s.input_dir, c.input_dir().to_str().unwrap());
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_files WHERE file_name = 'evil.csv'"),
        0
    );
    // joe, a member of the admin role, still cannot read where the folders are.
    let err = expect_db_error(
        joe.query_one("SHOW ecommerce_ingest.archive_dir", &[]),
        "joe: SHOW archive_dir",
    );
    assert!(
        err.contains("superuser") || err.contains("pg_read_all_settings"),
        "{err}"
    );
}
