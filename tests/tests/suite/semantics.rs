//! The worker inserts through PostgreSQL's COPY machinery; the table keeps its full semantics:
//! defaults and identity, extra indexes, row triggers (BEFORE and AFTER), and partitioning.

use e2e::*;
use std::time::Duration;

/// 2024-05-15 00:00:00 UTC in microseconds since the Unix epoch.
const MAY_15_US: i64 = 1_715_731_200_000_000;

#[test]
fn defaults_indexes_and_row_triggers_still_apply() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute(
        "CREATE UNIQUE INDEX user_events_source_key ON user_events (source_file_id, source_line);
         CREATE INDEX user_events_user_idx ON user_events (user_id);
         CREATE TABLE audit (event_id bigint, category text);
         CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.product_category := upper(NEW.product_category); RETURN NEW; END $$;
         CREATE FUNCTION remember() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO audit VALUES (NEW.event_id, NEW.product_category); RETURN NULL; END $$;
         CREATE TRIGGER a_shout BEFORE INSERT ON user_events FOR EACH ROW EXECUTE FUNCTION shout();
         CREATE TRIGGER b_remember AFTER INSERT ON user_events FOR EACH ROW EXECUTE FUNCTION remember();",
    );
    let before = c.now_us();
    c.write_file_atomic("a.csv", &gen_file(3, 1500));
    c.write_file_atomic("b.csv", &gen_file(4, 700));
    c.wait_files_done(2, Duration::from_secs(60));
    let after = c.now_us();

    assert_eq!(c.event_count(), 2200);
    // BEFORE row trigger ran on every row: categories were upper-cased on the way in.
    assert_eq!(
        c.int("SELECT count(*) FROM user_events WHERE product_category <> upper(product_category)"),
        0
    );
    let exp = expected_rows(&[c.input_dir()]);
    let upper: Vec<EventRow> = exp
        .rows
        .iter()
        .cloned()
        .map(|mut r| {
            r.product_category = r.product_category.to_uppercase();
            r
        })
        .collect();
    c.assert_exact_rows(&upper);
    // AFTER row trigger saw every row once, with its generated id.
    assert_eq!(c.int("SELECT count(*) FROM audit"), 2200);
    assert_eq!(
        c.int("SELECT count(*) FROM audit a JOIN user_events e USING (event_id)"),
        2200
    );
    // Identity and defaults: ids distinct and dense, inserted_at set by the server during the run.
    assert_eq!(
        c.int("SELECT count(DISTINCT event_id) FROM user_events"),
        2200
    );
    assert_eq!(
        c.int("SELECT max(event_id) - min(event_id) + 1 FROM user_events"),
        2200
    );
    assert_eq!(
        c.int(&format!(
            "SELECT count(*) FROM user_events
              WHERE (extract(epoch FROM inserted_at) * 1e6)::int8 NOT BETWEEN {before} AND {after}"
        )),
        0
    );
    // The extra indexes are maintained: an index-only lookup finds every row.
    c.execute("SET enable_seqscan = off");
    assert_eq!(
        c.int("SELECT count(*) FROM user_events WHERE source_file_id > 0 AND source_line > 0"),
        2200
    );
}

#[test]
fn a_partitioned_user_events_receives_every_row_in_its_partition() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("SELECT ingest_pause()");
    // Swap the extension's table for a partitioned one of the same shape.
    c.execute(
        "ALTER EXTENSION ecommerce_ingest DROP VIEW user_events_with_source;
         ALTER EXTENSION ecommerce_ingest DROP TABLE user_events;
         ALTER EXTENSION ecommerce_ingest DROP SEQUENCE user_events_event_id_seq;
         DROP VIEW user_events_with_source;
         DROP TABLE user_events;
         CREATE TABLE user_events (
             event_id bigint GENERATED ALWAYS AS IDENTITY,
             user_id varchar(50) NOT NULL, event_type varchar(20) NOT NULL,
             product_id varchar(50) NOT NULL, product_name varchar(200) NOT NULL,
             product_category varchar(100) NOT NULL, price numeric(10,2) NOT NULL,
             event_timestamp timestamptz NOT NULL, session_id varchar(100) NOT NULL,
             device_type varchar(50) NOT NULL, inserted_at timestamptz NOT NULL DEFAULT now(),
             source_file_id integer, source_line bigint,
             PRIMARY KEY (event_id, event_timestamp)
         ) PARTITION BY RANGE (event_timestamp);
         CREATE TABLE user_events_early PARTITION OF user_events
             FOR VALUES FROM ('2024-05-01 00:00Z') TO ('2024-05-15 00:00Z');
         CREATE TABLE user_events_late PARTITION OF user_events
             FOR VALUES FROM ('2024-05-15 00:00Z') TO ('2024-06-01 00:00Z');
         CREATE TABLE user_events_other PARTITION OF user_events DEFAULT;
         CREATE VIEW user_events_with_source AS
             SELECT e.*, l.file_name AS source_file
               FROM user_events e LEFT JOIN ingest_ledger l ON l.file_id = e.source_file_id;",
    );
    // Seeds 1..=20 spread the generator's timestamps over May.
    for seed in 1..=20u64 {
        c.write_file_atomic(&format!("p{seed:02}.csv"), &gen_file(seed, 300));
    }
    c.execute("SELECT ingest_resume()");
    c.wait_files_done(20, Duration::from_secs(60));

    let exp = expected_rows(&[c.input_dir()]);
    assert_eq!(exp.rows.len(), 6000);
    c.assert_exact_rows(&exp.rows);
    let early = exp.rows.iter().filter(|r| r.ts_us < MAY_15_US).count() as i64;
    assert!(
        early > 0 && early < 6000,
        "the data must span both partitions"
    );
    assert_eq!(c.int("SELECT count(*) FROM ONLY user_events"), 0);
    assert_eq!(c.int("SELECT count(*) FROM user_events_early"), early);
    assert_eq!(c.int("SELECT count(*) FROM user_events_late"), 6000 - early);
    assert_eq!(c.int("SELECT count(*) FROM user_events_other"), 0);
}
