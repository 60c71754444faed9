//! Upgrading from the previous release (built by `scripts/previous-release.sh`): a server that
//! ran the released library with the released SQL objects, a file half ingested and the
//! ingestion paused, is stopped and started with the library installed now. Until
//! `ALTER EXTENSION ecommerce_ingest UPDATE` the new worker only waits; after it every file ends
//! exactly once, the half-ingested file resumes where it stopped, and the SQL objects equal a
//! fresh install's.

use e2e::*;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `(chunk_no, start_offset, end_offset, first_line, last_line, rows_ok, committed_at)` of
/// every committed chunk of `file`.
fn chunks_of(c: &mut Cluster, file: &str) -> Vec<(i32, i64, i64, i64, i64, i64, String)> {
    c.client()
        .query(
            "SELECT chunk_no, start_offset, end_offset, first_line, last_line, rows_ok,
                    committed_at::text
               FROM ingest_file_chunks WHERE file_name = $1 ORDER BY chunk_no",
            &[&file],
        )
        .expect("ingest_file_chunks")
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect()
}

/// `(state, detail)` of `ingest_status()`, or the error it raised.
fn state_and_detail(c: &mut Cluster) -> Result<(String, String), String> {
    c.client()
        .query_one("SELECT state, detail FROM ingest_status()", &[])
        .map(|r| (r.get(0), r.get(1)))
        .map_err(|e| db_error_text(&e))
}

/// What the input folder and the database hold: events, ledger rows and their progress.
fn progress(c: &mut Cluster) -> (i64, String) {
    let events = c.event_count();
    let ledger = c
        .text(
            "SELECT coalesce(string_agg(format('%s %s %s %s %s', file_name, status, committed_offset,
                                               rows_ok, rows_rejected), '; ' ORDER BY file_name), '')
               FROM ingest_ledger",
        )
        .unwrap_or_default();
    (events, ledger)
}

fn pg_setting(c: &mut Cluster, name: &str) -> String {
    c.text(&format!(
        "SELECT setting FROM pg_config WHERE name = {}",
        lit(name)
    ))
    .unwrap_or_else(|| panic!("pg_config has no {name}"))
}

#[test]
fn an_update_from_the_previous_release_resumes_every_file_exactly_once() {
    let prev = previous_release();
    let mut opts = ClusterOptions::small_chunks();
    opts.library_dir = Some(prev.library_dir.clone());
    opts.create_extension = false;
    let mut c = Cluster::start(opts);

    let default_version = c
        .text(
            "SELECT (SELECT default_version FROM pg_available_extensions
                      WHERE name = 'ecommerce_ingest')",
        )
        .expect("ecommerce_ingest is not installed (scripts/install-ext.sh)");
    if default_version == prev.version {
        println!(
            "SKIPPED: the installed extension is still version {default_version}, the previous \
             release: there is no update to test (bump the workspace version with the first \
             change of the SQL objects, and ship the update script)"
        );
        return;
    }
    // The released install script must be in sharedir, byte for byte, and an update path must
    // lead from it to the new version: a clearer failure than CREATE or ALTER EXTENSION's.
    let sharedir = PathBuf::from(pg_setting(&mut c, "SHAREDIR")).join("extension");
    let script_name = format!("ecommerce_ingest--{}.sql", prev.version);
    let installed = fs::read(sharedir.join(&script_name)).unwrap_or_default();
    assert!(
        installed == fs::read(&prev.install_script).unwrap(),
        "{} is missing or is not the released {}: run scripts/previous-release.sh",
        sharedir.join(&script_name).display(),
        prev.install_script.display()
    );
    let path = c.text(&format!(
        "SELECT (SELECT path FROM pg_extension_update_paths('ecommerce_ingest')
                  WHERE source = {} AND target = {})",
        lit(&prev.version),
        lit(&default_version)
    ));
    assert!(
        path.is_some(),
        "no update path from {} to {default_version}: ship \
         extension/sql/ecommerce_ingest--{}--{default_version}.sql (scripts/install-ext.sh installs it)",
        prev.version,
        prev.version
    );
    println!(
        "updating {} -> {default_version} along {}",
        prev.version,
        path.unwrap()
    );

    // 1. The previous release: its library (really: the one the worker has mapped) and its SQL.
    let pid = c.wait_worker();
    let old_lib = c.root_dir().join("lib/ecommerce_ingest.so");
    assert_eq!(
        Cluster::mapped_libraries(pid),
        vec![old_lib],
        "the worker does not run the previous release's library"
    );
    c.execute(&format!(
        "CREATE EXTENSION ecommerce_ingest VERSION {}",
        lit(&prev.version)
    ));

    let header = ecommerce_events::header_line();
    let ts = "2024-05-01T10:00:00Z";
    let bad = [
        header,
        gen_row(30, 0),
        format!("user_1,click,prod_1,Thing,Books,1.00,{ts},s1,mobile"), // unknown event type
        gen_row(30, 1),
        "user_1,view,prod_1".to_string(), // too few columns
        format!("user_1,view,prod_1,Thing,Books,1.00,{ts},s1,phone"), // unknown device
        gen_row(30, 2),
    ]
    .join("\n")
        + "\n";
    c.write_file_atomic("a.csv", &gen_file(10, 1_000));
    c.write_file_atomic("b.csv", &gen_file(20, 500));
    c.write_file_atomic("c_bad.csv", bad.as_bytes());
    c.wait_files_done(3, Duration::from_secs(60));
    assert_eq!(c.int("SELECT count(*) FROM ingest_rejects"), 3);

    // A big file, committed in 64 kB chunks: paused once a few chunks are in.
    c.write_file_atomic("big.csv", &gen_file(77, 300_000));
    c.wait_for("3 chunks of big.csv", Duration::from_secs(60), |c| {
        c.int("SELECT count(*) FROM ingest_file_chunks WHERE file_name = 'big.csv'") >= 3
    });
    assert_eq!(c.text("SELECT ingest_pause()").as_deref(), Some("paused"));
    c.wait_for("state paused", Duration::from_secs(30), |c| {
        c.status().state == "paused"
    });
    // The state says paused at once, but a chunk in flight still commits: wait until the
    // chunks of big.csv stay the same (what is read below must not move before the stop).
    c.wait_steady(Duration::from_millis(700), |c| {
        chunks_of(c, "big.csv").len()
    });
    let big_status = c.text("SELECT status FROM ingest_files WHERE file_name = 'big.csv'");
    assert_eq!(
        big_status.as_deref(),
        Some("ingesting"),
        "big.csv should be half ingested when the server stops: the test proves nothing"
    );
    let big_chunks = chunks_of(&mut c, "big.csv");
    let (big_rows, big_max_id) = {
        let r = c
            .client()
            .query_one(
                "SELECT count(*), max(event_id) FROM user_events_with_source WHERE source_file = 'big.csv'",
                &[],
            )
            .unwrap();
        (r.get::<_, i64>(0), r.get::<_, i64>(1))
    };
    println!(
        "{} stops with big.csv at {} chunks, {big_rows} rows",
        prev.version,
        big_chunks.len()
    );
    let problems = ledger_problems(c.client());
    assert!(problems.is_empty(), "before the update: {problems:#?}");

    // 2. The new library with the old SQL objects: it waits for the update, and touches nothing.
    let before = progress(&mut c);
    c.stop("fast");
    c.use_installed_library();
    c.write_file_atomic("d_while_waiting.csv", &gen_file(40, 300));
    c.start_again();
    let pid = c.wait_worker();
    let libdir = PathBuf::from(pg_setting(&mut c, "PKGLIBDIR"));
    assert_eq!(
        Cluster::mapped_libraries(pid),
        vec![libdir.join("ecommerce_ingest.so")],
        "after the switch the worker should run the installed library"
    );
    let mut last = Err(String::new());
    c.wait_for(
        "state 'waiting' with a detail naming ALTER EXTENSION ecommerce_ingest UPDATE",
        Duration::from_secs(30),
        |c| {
            last = state_and_detail(c);
            matches!(&last, Ok((state, detail))
                if state == "waiting" && detail.contains("ALTER EXTENSION ecommerce_ingest UPDATE"))
        },
    );
    println!("before the update: {last:?}");
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(
            progress(&mut c),
            before,
            "the worker changed events or the ledger before ALTER EXTENSION UPDATE"
        );
        let now = state_and_detail(&mut c);
        assert!(
            matches!(&now, Ok((s, _)) if s == "waiting"),
            "state left 'waiting' before the update: {now:?}"
        );
    }

    // 3. The update.
    c.execute("ALTER EXTENSION ecommerce_ingest UPDATE");
    assert_eq!(
        c.text("SELECT extversion FROM pg_extension WHERE extname = 'ecommerce_ingest'"),
        Some(default_version.clone())
    );
    // The updated objects equal a fresh install's (in a second database of the same cluster).
    c.execute("CREATE DATABASE fresh_install");
    let mut fresh = c.connect_to("fresh_install");
    fresh
        .batch_execute("CREATE EXTENSION ecommerce_ingest")
        .unwrap_or_else(|e| panic!("fresh CREATE EXTENSION: {}", db_error_text(&e)));
    let fresh_version: String = fresh
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'ecommerce_ingest'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(fresh_version, default_version);
    let updated = extension_catalog(c.client(), "ecommerce_ingest");
    let installed = extension_catalog(&mut fresh, "ecommerce_ingest");
    println!("catalog: {} entries compared", updated.len());
    assert_same_catalog(
        &format!("after the update from {}", prev.version),
        &updated,
        "in a fresh install",
        &installed,
    );
    drop(fresh);
    // The counters of ingest_status(), as the previous release kept them, still equal the ledger.
    let problems = counter_problems(c.client());
    assert!(
        problems.is_empty(),
        "counters after the update: {problems:#?}"
    );

    // 4. The pause survives the update; resumed, every file ends done, exactly once.
    c.wait_for(
        "state 'paused' after the update (ingest_pause() before it)",
        Duration::from_secs(60),
        |c| {
            c.try_status()
                .is_ok_and(|s| s.state == "paused" && s.paused)
        },
    );
    assert_eq!(
        progress(&mut c),
        before,
        "the worker ingested while paused after the update"
    );
    assert_eq!(c.text("SELECT ingest_resume()").as_deref(), Some("running"));
    c.write_file_atomic("e_after_update.csv", &gen_file(50, 700));
    c.wait_files_done(6, Duration::from_secs(120));
    c.settle();

    let exp = expected_rows(&[c.input_dir().to_path_buf()]);
    assert_eq!(
        exp.rows.len(),
        1_000 + 500 + 3 + 300_000 + 300 + 700,
        "the files hold other rows than the test wrote"
    );
    c.assert_exact_rows(&exp.rows);
    assert_eq!(c.stored_rejects(), exp.rejects, "rejects after the update");
    let files: Vec<(String, String)> = c
        .client()
        .query(
            "SELECT file_name, status FROM ingest_files ORDER BY file_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        files,
        [
            "a.csv",
            "b.csv",
            "big.csv",
            "c_bad.csv",
            "d_while_waiting.csv",
            "e_after_update.csv"
        ]
        .iter()
        .map(|f| (f.to_string(), "done".to_string()))
        .collect::<Vec<_>>()
    );
    // big.csv resumed: the chunks the previous release committed are untouched, its rows too.
    let after = chunks_of(&mut c, "big.csv");
    assert_eq!(
        &after[..big_chunks.len()],
        &big_chunks[..],
        "the chunks committed before the update changed"
    );
    assert!(after.len() > big_chunks.len());
    assert_eq!(
        c.int(&format!(
            "SELECT count(*) FROM user_events_with_source
              WHERE source_file = 'big.csv' AND event_id <= {big_max_id}"
        )),
        big_rows,
        "rows of big.csv committed before the update were replaced"
    );
    let problems = ledger_problems(c.client());
    assert!(problems.is_empty(), "after the update: {problems:#?}");

    // 5. A pipeline of its own (new in 0.3.0) works on the updated installation, and the
    //    counters (kept per statement and in shards since 0.4.0) follow both pipelines.
    let orders = c.input_dir().parent().unwrap().join("orders");
    postgres_folder(&orders);
    c.execute("CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL)");
    c.execute(&format!(
        "SELECT ingest_create_pipeline('orders', '{}', 'orders')",
        orders.display()
    ));
    std::fs::write(orders.join("o.csv"), "id,customer\n1,a\n2,b\nx,c\n").unwrap();
    c.wait_for(
        "the orders pipeline's file done",
        Duration::from_secs(60),
        |c| {
            c.int("SELECT count(*) FROM ingest_files WHERE pipeline = 'orders' AND status = 'done'")
                == 1
        },
    );
    assert_eq!(c.int("SELECT count(*) FROM orders"), 2);
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_rejects WHERE pipeline = 'orders' AND line_number = 4"),
        1
    );
    let s = c.status();
    assert_eq!(
        (
            s.state.as_str(),
            s.files_ingested,
            s.files_failed,
            s.rows_ingested,
            s.rows_rejected
        ),
        (
            "running",
            6,
            0,
            exp.rows.len() as i64,
            exp.rejects.len() as i64
        ),
        "{s:#?}"
    );
    let problems = counter_problems(c.client());
    assert!(problems.is_empty(), "counters at the end: {problems:#?}");
}
