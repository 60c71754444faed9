// In-server tests of the SQL surface, run by `cargo pgrx test pg15`. Each runs in a transaction
// that is rolled back, so the worker never sees them: the worker itself is tested end to end
// from outside (tests/).

use pgrx::prelude::*;

fn one<T: pgrx::FromDatum + pgrx::IntoDatum>(q: &str) -> T {
    Spi::get_one::<T>(q).expect("query failed").expect("NULL")
}

#[pg_test]
fn status_is_one_row_naming_the_settings() {
    assert_eq!(one::<i64>("SELECT count(*) FROM ingest_status()"), 1);
    assert_eq!(
        one::<String>("SELECT trigger_interval FROM ingest_status()"),
        "10s"
    );
    assert_eq!(
        one::<String>("SELECT database FROM ingest_status()"),
        "pgrx_tests"
    );
    let state = one::<String>("SELECT state FROM ingest_status()");
    assert!(
        // error: the test cluster sets no input_dir.
        ["running", "waiting", "no_worker", "error"].contains(&state.as_str()),
        "{state}"
    );
    assert!(!one::<String>("SELECT detail FROM ingest_status()").is_empty());
    assert_eq!(one::<i64>("SELECT rows_ingested FROM ingest_status()"), 0);
}

#[pg_test]
fn pause_and_resume_change_the_state() {
    assert_eq!(one::<String>("SELECT ingest_pause()"), "paused");
    assert!(one::<bool>("SELECT paused FROM ingest_control"));
    assert!(one::<bool>("SELECT paused FROM ingest_status()"));
    // The test database may not exist yet when the server starts: the worker may still be
    // waiting for it (or starting) while this runs.
    let state = one::<String>("SELECT state FROM ingest_status()");
    assert!(
        ["paused", "no_worker", "waiting", "error"].contains(&state.as_str()),
        "{state}"
    );
    assert_eq!(one::<String>("SELECT ingest_resume()"), "running");
    assert!(!one::<bool>("SELECT paused FROM ingest_control"));
    assert!(!one::<bool>("SELECT paused FROM ingest_status()"));
    assert_ne!(one::<String>("SELECT state FROM ingest_status()"), "paused");
}

#[pg_test]
fn trigger_answers() {
    let r = one::<String>("SELECT ingest_trigger()");
    assert!(r == "triggered" || r.starts_with("no worker"), "{r}");
}

#[pg_test]
fn status_counts_the_ledger() {
    Spi::run(
        "INSERT INTO ingest_ledger (file_name, status, size, rows_ok, rows_rejected)
         VALUES ('a.csv', 'done', 10, 7, 2), ('b.csv', 'failed', 3, 0, 0), ('c.csv', 'changed', 3, 4, 0)",
    )
    .unwrap();
    assert_eq!(one::<i64>("SELECT files_ingested FROM ingest_status()"), 1);
    assert_eq!(one::<i64>("SELECT files_failed FROM ingest_status()"), 2);
    assert_eq!(one::<i64>("SELECT rows_ingested FROM ingest_status()"), 11);
    assert_eq!(one::<i64>("SELECT rows_rejected FROM ingest_status()"), 2);
    assert_eq!(one::<i64>("SELECT count(*) FROM ingest_files"), 3);
}

#[pg_test]
fn retry_forgets_a_failed_file_only() {
    Spi::run("INSERT INTO ingest_ledger (file_name, status, size) VALUES ('bad.csv', 'failed', 3)")
        .unwrap();
    assert_eq!(
        one::<String>("SELECT ingest_retry('bad.csv')"),
        "bad.csv will be ingested again"
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM ingest_ledger"), 0);
}

#[pg_test(
    error = "ingest_retry: file \"ok.csv\" is done: only failed, changed or error files can be retried"
)]
fn retry_refuses_a_done_file() {
    Spi::run("INSERT INTO ingest_ledger (file_name, status, size, rows_ok) VALUES ('ok.csv', 'done', 3, 5)").unwrap();
    Spi::run("SELECT ingest_retry('ok.csv')").unwrap();
}

#[pg_test(
    error = "ingest_retry: file \"half.csv\" is failed, but 5 of its rows (lines up to 6) are already committed; ingesting it again from the start would store them twice"
)]
fn retry_refuses_a_failed_file_with_committed_rows() {
    Spi::run(
        "INSERT INTO ingest_ledger (file_name, status, size, rows_ok, chunks, committed_line)
         VALUES ('half.csv', 'failed', 300, 5, 1, 7)",
    )
    .unwrap();
    Spi::run("SELECT ingest_retry('half.csv')").unwrap();
}

#[pg_test(error = "ingest_retry: no file named \"nope.csv\" in ingest_files")]
fn retry_names_a_missing_file() {
    Spi::run("SELECT ingest_retry('nope.csv')").unwrap();
}

#[pg_test]
fn user_events_has_the_contract_columns() {
    let cols = one::<String>(
        "SELECT string_agg(column_name || ' ' || data_type || coalesce('(' || character_maximum_length || ')', ''), ', ' ORDER BY ordinal_position)
           FROM information_schema.columns WHERE table_name = 'user_events'",
    );
    assert_eq!(
        cols,
        "event_id bigint, user_id character varying(50), event_type character varying(20), \
         product_id character varying(50), product_name character varying(200), \
         product_category character varying(100), price numeric, \
         event_timestamp timestamp with time zone, session_id character varying(100), \
         device_type character varying(50), inserted_at timestamp with time zone, \
         source_file_id integer, source_line bigint"
    );
    assert_eq!(
        one::<String>("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'user_events'::regclass AND attname = 'price'"),
        "numeric(10,2)"
    );
}

#[pg_test]
fn the_reference_queries_run_unchanged() {
    Spi::run(
        "INSERT INTO user_events (user_id, event_type, product_id, product_name, product_category, price, event_timestamp, session_id, device_type)
         VALUES ('user_1', 'purchase', 'p1', 'n', 'Books', 10.50, '2024-05-01 10:00Z', 's', 'mobile'),
                ('user_2', 'view', 'p1', 'n', 'Books', 10.50, '2024-05-01 11:00Z', 's', 'mobile')",
    )
    .unwrap();
    assert_eq!(
        one::<i64>("SELECT sum(c)::int8 FROM (SELECT event_type, COUNT(*) AS c FROM user_events WHERE user_id LIKE 'user_%' GROUP BY event_type) t"),
        2
    );
    assert_eq!(
        one::<String>("SELECT revenue::text FROM (SELECT product_category, SUM(price) AS revenue FROM user_events WHERE event_type = 'purchase' GROUP BY product_category ORDER BY revenue DESC) t"),
        "10.50"
    );
    assert_eq!(
        one::<i64>("SELECT count(*) FROM (SELECT DATE_TRUNC('hour', event_timestamp) AS hour, COUNT(*) FROM user_events GROUP BY hour ORDER BY hour) t"),
        2
    );
    Spi::run("SELECT AVG(EXTRACT(EPOCH FROM (inserted_at - event_timestamp))) AS avg_latency_seconds FROM user_events").unwrap();
}

#[pg_test]
fn settings_have_documented_defaults() {
    assert_eq!(
        one::<String>("SHOW ecommerce_ingest.trigger_interval"),
        "10s"
    );
    assert_eq!(one::<String>("SHOW ecommerce_ingest.file_pattern"), "*.csv");
    assert_eq!(
        one::<String>("SHOW ecommerce_ingest.processed_action"),
        "keep"
    );
    assert_eq!(
        one::<String>("SHOW ecommerce_ingest.max_files_per_trigger"),
        "1000"
    );
    assert_eq!(one::<String>("SHOW ecommerce_ingest.chunk_size"), "64MB");
    assert_eq!(one::<String>("SHOW ecommerce_ingest.min_file_age"), "1s");
    assert_eq!(one::<String>("SHOW ecommerce_ingest.batch_rows"), "10000");
}

#[pg_test(error = "invalid configuration parameter name \"ecommerce_ingest.trigger_intervall\"")]
fn a_typo_in_a_setting_is_refused() {
    Spi::run("SET ecommerce_ingest.trigger_intervall = '1s'").unwrap();
}

#[pg_test(error = "parameter \"ecommerce_ingest.input_dir\" cannot be changed now")]
fn input_dir_cannot_be_set_in_a_session() {
    Spi::run("SET ecommerce_ingest.input_dir = '/etc'").unwrap();
}

#[pg_test]
fn processed_action_lists_its_choices() {
    assert_eq!(
        one::<String>("SELECT array_to_string(enumvals, ',') FROM pg_settings WHERE name = 'ecommerce_ingest.processed_action'"),
        "keep,archive,delete"
    );
    assert_eq!(
        one::<String>("SELECT context FROM pg_settings WHERE name = 'ecommerce_ingest.input_dir'"),
        "sighup"
    );
}

fn as_role(role: &str, grant: Option<&str>) {
    Spi::run(&format!("CREATE ROLE {role}")).unwrap();
    if let Some(g) = grant {
        Spi::run(&format!("GRANT {g} TO {role}")).unwrap();
    }
    Spi::run(&format!("SET ROLE {role}")).unwrap();
}

#[pg_test(error = "permission denied for function ingest_pause")]
fn public_cannot_pause() {
    as_role("t_nobody", None);
    Spi::run("SELECT ingest_pause()").unwrap();
}

#[pg_test(error = "permission denied for function ingest_status")]
fn public_cannot_read_status() {
    as_role("t_nobody", None);
    Spi::run("SELECT * FROM ingest_status()").unwrap();
}

#[pg_test(error = "permission denied for view ingest_files")]
fn public_cannot_read_files() {
    as_role("t_nobody", None);
    Spi::run("SELECT * FROM ingest_files").unwrap();
}

#[pg_test(error = "permission denied for function ingest_resume")]
fn monitor_cannot_resume() {
    as_role("t_mon", Some("ecommerce_ingest_monitor"));
    assert_eq!(one::<i64>("SELECT count(*) FROM ingest_status()"), 1);
    assert_eq!(one::<i64>("SELECT count(*) FROM ingest_rejects"), 0);
    assert_eq!(one::<i64>("SELECT count(*) FROM ingest_batches"), 0);
    Spi::run("SELECT ingest_resume()").unwrap();
}

#[pg_test(error = "permission denied for table ingest_control")]
fn monitor_cannot_write_control() {
    as_role("t_mon", Some("ecommerce_ingest_monitor"));
    Spi::run("UPDATE ingest_control SET paused = true").unwrap();
}

#[pg_test]
fn admin_can_pause_resume_and_trigger() {
    as_role("t_adm", Some("ecommerce_ingest_admin"));
    assert_eq!(one::<String>("SELECT ingest_pause()"), "paused");
    assert!(one::<bool>("SELECT paused FROM ingest_status()"));
    assert_eq!(one::<String>("SELECT ingest_resume()"), "running");
    let _ = one::<String>("SELECT ingest_trigger()");
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(
        one::<String>("SELECT changed_by FROM ingest_control"),
        "postgres"
    );
}
