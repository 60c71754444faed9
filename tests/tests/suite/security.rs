//! Settings and privileges, over real connections.

use e2e::*;
use postgres::Client;
use std::time::Duration;

#[test]
fn settings_are_reserved_guarded_and_default_to_the_documented_values() {
    let mut c = Cluster::start(ClusterOptions::default());
    // A cluster that does not set trigger_interval: drop every line that sets it, reload.
    c.remove_conf_lines("ecommerce_ingest.trigger_interval");
    c.execute("SELECT pg_reload_conf()");
    c.wait_for(
        "trigger_interval back to its default",
        Duration::from_secs(10),
        |c| {
            c.text(
                "SELECT source FROM pg_settings WHERE name = 'ecommerce_ingest.trigger_interval'",
            )
            .as_deref()
                == Some("default")
        },
    );
    assert_eq!(
        c.text("SHOW ecommerce_ingest.trigger_interval").as_deref(),
        Some("10s")
    );
    c.wait_for("ingest_status() shows 10s", Duration::from_secs(10), |c| {
        c.status().trigger_interval == "10s"
    });
    for (name, want) in [
        ("ecommerce_ingest.max_files_per_trigger", "1000"),
        ("ecommerce_ingest.file_pattern", "*.csv"),
        ("ecommerce_ingest.processed_action", "keep"),
        ("ecommerce_ingest.chunk_size", "64MB"),
        ("ecommerce_ingest.batch_rows", "10000"),
    ] {
        assert_eq!(
            c.text(&format!("SHOW {name}")).as_deref(),
            Some(want),
            "{name}"
        );
    }

    // The prefix is reserved: no made-up settings.
    let err = expect_db_error(
        c.client()
            .batch_execute("SET ecommerce_ingest.no_such_setting = 1"),
        "SET ecommerce_ingest.no_such_setting",
    );
    println!("{err}");
    assert!(err.contains("no_such_setting"), "{err}");
    assert!(err.contains("reserved"), "{err}");

    // Reload-only settings cannot be SET in a session.
    let err = expect_db_error(
        c.client()
            .batch_execute("SET ecommerce_ingest.trigger_interval = '1s'"),
        "SET trigger_interval",
    );
    assert!(err.contains("cannot be changed now"), "{err}");

    // A non-superuser cannot change input_dir, nor even read it.
    c.execute("CREATE ROLE joe LOGIN");
    let mut joe = c.connect_as("joe");
    let err = expect_db_error(
        joe.batch_execute("ALTER SYSTEM SET ecommerce_ingest.input_dir = '/tmp'"),
        "joe: ALTER SYSTEM SET input_dir",
    );
    println!("{err}");
    assert!(err.contains("permission denied"), "{err}");
    let err = expect_db_error(
        joe.query_one("SHOW ecommerce_ingest.input_dir", &[]),
        "joe: SHOW input_dir",
    );
    assert!(
        err.contains("superuser") || err.contains("pg_read_all_settings"),
        "{err}"
    );
    let auto = std::fs::read_to_string(c.data_dir().join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains("input_dir"), "{auto}");
}

fn ok_or_denied(client: &mut Client, sql: &str) -> Result<(), String> {
    match client.batch_execute(sql) {
        Ok(()) => Ok(()),
        Err(e) => Err(db_error_text(&e)),
    }
}

fn assert_denied(client: &mut Client, who: &str, sql: &str) {
    match ok_or_denied(client, sql) {
        Ok(()) => panic!("{who} could run: {sql}"),
        Err(e) => assert!(e.contains("permission denied"), "{who}: {sql}: {e}"),
    }
}

fn assert_allowed(client: &mut Client, who: &str, sql: &str) {
    if let Err(e) = ok_or_denied(client, sql) {
        panic!("{who} could not run: {sql}: {e}");
    }
}

#[test]
fn roles_grant_exactly_what_they_say_over_real_connections() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.write_file_atomic("a.csv", &gen_file(1, 10));
    c.wait_files_done(1, Duration::from_secs(30));
    c.execute(
        "CREATE ROLE mon LOGIN; GRANT ecommerce_ingest_monitor TO mon;
         CREATE ROLE adm LOGIN; GRANT ecommerce_ingest_admin TO adm;
         CREATE ROLE nobody LOGIN;",
    );
    let mut nobody = c.connect_as("nobody");
    let mut mon = c.connect_as("mon");
    let mut adm = c.connect_as("adm");
    for who in ["nobody", "mon", "adm"] {
        let u: String = c
            .connect_as(who)
            .query_one("SELECT current_user::text", &[])
            .unwrap()
            .get(0);
        assert_eq!(u, who);
    }

    for sql in [
        "SELECT * FROM ingest_status()",
        "SELECT ingest_pause()",
        "SELECT ingest_resume()",
        "SELECT ingest_trigger()",
        "SELECT ingest_retry('a.csv')",
        "SELECT * FROM ingest_files",
        "SELECT * FROM ingest_rejects",
        "SELECT * FROM ingest_file_chunks",
        "SELECT * FROM ingest_batches",
        "SELECT * FROM user_events",
        "SELECT * FROM ingest_ledger",
        "INSERT INTO user_events (user_id, event_type, product_id, product_name, product_category, price, event_timestamp, session_id, device_type) VALUES ('u','view','p','n','c',1,now(),'s','mobile')",
        "UPDATE ingest_control SET paused = true",
    ] {
        assert_denied(&mut nobody, "nobody", sql);
    }

    for sql in [
        "SELECT * FROM ingest_status()",
        "SELECT * FROM ingest_files",
        "SELECT * FROM ingest_rejects",
        "SELECT * FROM ingest_file_chunks",
        "SELECT * FROM ingest_batches",
        "SELECT count(*) FROM user_events",
    ] {
        assert_allowed(&mut mon, "mon", sql);
    }
    let n: i64 = mon
        .query_one("SELECT count(*) FROM user_events", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
    for sql in [
        "SELECT ingest_pause()",
        "SELECT ingest_resume()",
        "SELECT ingest_trigger()",
        "SELECT ingest_retry('a.csv')",
        "UPDATE ingest_control SET paused = true",
        "DELETE FROM user_events",
    ] {
        assert_denied(&mut mon, "mon", sql);
    }
    assert!(!c.status().paused);

    let r: String = adm.query_one("SELECT ingest_pause()", &[]).unwrap().get(0);
    assert_eq!(r, "paused");
    assert!(c.status().paused);
    let by = c.text("SELECT changed_by FROM ingest_control");
    assert_eq!(by.as_deref(), Some("adm"));
    assert_allowed(&mut adm, "adm", "SELECT * FROM ingest_status()");
    assert_allowed(&mut adm, "adm", "SELECT ingest_trigger()");
    assert_allowed(&mut adm, "adm", "SELECT * FROM ingest_files");
    let r: String = adm.query_one("SELECT ingest_resume()", &[]).unwrap().get(0);
    assert_eq!(r, "running");
    assert!(!c.status().paused);
    assert_denied(&mut adm, "adm", "DELETE FROM user_events");
    c.wait_for("state running again", Duration::from_secs(10), |c| {
        c.status().state == "running"
    });
}
