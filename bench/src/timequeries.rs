//! Experiment 8: time queries on a big `user_events`, without and with a BRIN index on
//! `event_timestamp` (what `sql/partition_user_events.sql` adds): the reference design's "events
//! per hour" (the whole table) and `revenue_per_minute_last_hour` (`sql/analytics.sql`), each the
//! median of 5 runs; and what the index costs the worker's ingestion (a backlog appended with
//! and without it, alternating, two rounds each).

use crate::experiments::{pause, Env, Sizes, BASE_CONF};
use crate::util::{err, log, median, psql_file, stage, status, sync, wait_status, R};
use postgres::Client;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimeQueries {
    pub rows: u64,
    pub table_mib: f64,
    pub brin_kib: f64,
    pub events_per_hour_ms: f64,
    pub events_per_hour_brin_ms: f64,
    pub revenue_last_hour_ms: f64,
    pub revenue_last_hour_brin_ms: f64,
    /// Worker seconds for the same backlog appended without the index, then with it (each the
    /// median of its rounds).
    pub ingest_seconds: f64,
    pub ingest_brin_seconds: f64,
    pub backlog_rows: u64,
}

const EVENTS_PER_HOUR: &str = "SELECT * FROM events_per_hour";
const REVENUE_LAST_HOUR: &str = "SELECT * FROM revenue_per_minute_last_hour";

fn timed(c: &mut Client, sql: &str) -> R<f64> {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        c.query(sql, &[])?;
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&runs))
}

/// Rows of 30 days up to now, in time order (as an append-only table fills), 1 M per statement.
fn fill(c: &mut Client, rows: u64) -> R<()> {
    let step = 1_000_000u64;
    let mut from = 1u64;
    while from <= rows {
        let to = (from + step - 1).min(rows);
        c.execute(
            "INSERT INTO user_events (user_id, event_type, product_id, product_name, product_category,
                                      price, event_timestamp, session_id, device_type)
             SELECT 'user_' || i % 1000, CASE WHEN i % 3 = 0 THEN 'purchase' ELSE 'view' END,
                    'prod_' || i % 5000, 'Phone', 'Electronics', (i % 100000) / 100.0,
                    now() - interval '30 days' + (interval '30 days' / $3::float8) * i,
                    'sess_' || i / 10, 'mobile'
               FROM generate_series($1::int8, $2::int8) i",
            &[&(from as i64), &(to as i64), &(rows as f64)],
        )?;
        from = to + 1;
    }
    Ok(())
}

/// Resumes the paused worker on the files already moved in and returns its seconds (server
/// clock: resume to the last commit), once `want` files are done in all.
fn ingest(c: &mut Client, want: i64) -> R<f64> {
    c.batch_execute("CHECKPOINT")?;
    let t0: f64 = c
        .query_one(
            "SELECT extract(epoch FROM clock_timestamp())::float8, ingest_resume()",
            &[],
        )?
        .get(0);
    wait_status(
        c,
        "the worker to ingest the backlog",
        Duration::from_secs(900),
        Duration::from_millis(50),
        |s| s.files_ingested >= want || s.files_failed > 0,
    )?;
    if status(c)?.files_failed > 0 {
        return Err(err("time queries: a file failed"));
    }
    let t1: f64 = c
        .query_one(
            "SELECT extract(epoch FROM max(committed_at))::float8 FROM ingest_files",
            &[],
        )?
        .get(0);
    pause(c)?;
    Ok(t1 - t0)
}

pub fn time_queries(env: &Env, z: &Sizes) -> R<TimeQueries> {
    let rows = z.time_query_rows;
    log(&format!(
        "== 8. time queries on {rows} rows, without and with a BRIN index"
    ));
    let dir = env.fresh("timequeries")?;
    let mut cluster = env.cluster(&dir, &BASE_CONF)?;
    let input = cluster.input_dir().to_path_buf();
    let port = cluster.port();
    let c = cluster.client();
    pause(c)?;
    psql_file(port, &env.repo.join("sql/analytics.sql"), &[])?;
    let t = Instant::now();
    fill(c, rows)?;
    // (One statement per call: VACUUM cannot run in the implicit transaction of a batch.)
    for sql in [
        "VACUUM ANALYZE user_events",
        "CHECKPOINT",
        "SET TimeZone = 'UTC'",
    ] {
        c.batch_execute(sql)?;
    }
    log(&format!(
        "time queries: {rows} rows loaded in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    let eph = timed(c, EVENTS_PER_HOUR)?;
    let rev = timed(c, REVENUE_LAST_HOUR)?;
    c.batch_execute(
        "CREATE INDEX user_events_time_brin ON user_events USING brin (event_timestamp); ANALYZE user_events",
    )?;
    let eph_brin = timed(c, EVENTS_PER_HOUR)?;
    let rev_brin = timed(c, REVENUE_LAST_HOUR)?;
    let (table_bytes, brin_bytes): (i64, i64) = {
        let r = c.query_one(
            "SELECT pg_relation_size('user_events'), pg_relation_size('user_events_time_brin')",
            &[],
        )?;
        (r.get(0), r.get(1))
    };
    log(&format!(
        "time queries: events per hour {eph:.1} ms -> {eph_brin:.1} ms, revenue last hour {rev:.1} ms -> {rev_brin:.1} ms (BRIN {} kB)",
        brin_bytes / 1024
    ));

    // The index's cost to ingestion: the same backlog appended without it, with it, twice.
    let (files, per_file) = (z.backlog_files, z.backlog_rows_per_file);
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut done = 0i64;
    for round in 0..4u64 {
        let brin = round % 2 == 1;
        c.batch_execute(if brin {
            "CREATE INDEX IF NOT EXISTS user_events_time_brin ON user_events USING brin (event_timestamp)"
        } else {
            "DROP INDEX IF EXISTS user_events_time_brin"
        })?;
        let (staged, _) = stage(
            &env.repo,
            &dir.join(format!("staging{round}")),
            files,
            per_file,
            2,
        )?;
        // New names each round: the ledger must see new files.
        for f in &staged {
            std::fs::rename(&f.path, input.join(format!("r{round}-{}", f.name)))?;
        }
        sync();
        done += files as i64;
        let secs = ingest(c, done)?;
        log(&format!(
            "time queries: backlog {} BRIN: {secs:.2} s",
            if brin { "with" } else { "without" }
        ));
        if brin {
            with.push(secs);
        } else {
            without.push(secs);
        }
    }
    let r = TimeQueries {
        rows,
        table_mib: table_bytes as f64 / 1048576.0,
        brin_kib: brin_bytes as f64 / 1024.0,
        events_per_hour_ms: eph,
        events_per_hour_brin_ms: eph_brin,
        revenue_last_hour_ms: rev,
        revenue_last_hour_brin_ms: rev_brin,
        ingest_seconds: median(&without),
        ingest_brin_seconds: median(&with),
        backlog_rows: files * per_file,
    };
    drop(cluster);
    env.clean(&dir);
    Ok(r)
}
