//! The analytics views of `sql/analytics.sql` and the postgres_exporter queries of
//! `sql/postgres_exporter.yml`, against real clusters: known rows in, exact results out.
//!
//! Run: `cargo test -p e2e -- --test-threads=1 analytics`

use e2e::*;
use postgres::{Client, SimpleQueryMessage};
use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

const VIEWS: [&str; 10] = [
    "events_by_type",
    "revenue_by_category",
    "events_per_hour",
    "ingest_latency",
    "conversion_by_category",
    "conversion_by_device",
    "revenue_per_minute_last_hour",
    "top_products",
    "active_sessions_last_5_minutes",
    "ingestion_overview",
];

/// A login role that is only a member of `ecommerce_ingest_monitor`.
const READER: &str = "analytics_reader";

fn analytics_sql() -> String {
    let path = repo_root().join("sql/analytics.sql");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn install_analytics(c: &mut Cluster) {
    let sql = analytics_sql();
    // Twice: the file is idempotent.
    c.execute(&sql);
    c.execute(&sql);
    c.execute(&format!(
        "CREATE ROLE {READER} LOGIN; GRANT ecommerce_ingest_monitor TO {READER};"
    ));
}

/// Every row of `sql` as text through the simple query protocol, its values joined by `|`
/// (NULL shown as `NULL`).
fn table(client: &mut Client, sql: &str) -> Vec<String> {
    let msgs = client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", db_error_text(&e)));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// `name type` of each column `sql` returns.
fn columns(client: &mut Client, sql: &str) -> Vec<String> {
    let st = client
        .prepare(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", db_error_text(&e)));
    st.columns()
        .iter()
        .map(|c| format!("{} {}", c.name(), c.type_().name()))
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// When an event happened: a fixed time, or seconds from `now()` of the test's transaction.
#[derive(Clone, Copy)]
enum Ts {
    At(&'static str),
    FromNow(i64),
}

struct Ev {
    user: &'static str,
    kind: &'static str,
    product: &'static str,
    name: &'static str,
    category: &'static str,
    price: &'static str,
    ts: Ts,
    session: &'static str,
    device: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn ev(
    user: &'static str,
    kind: &'static str,
    product: &'static str,
    name: &'static str,
    category: &'static str,
    price: &'static str,
    ts: Ts,
    session: &'static str,
    device: &'static str,
) -> Ev {
    Ev {
        user,
        kind,
        product,
        name,
        category,
        price,
        ts,
        session,
        device,
    }
}

const MIN: i64 = 60;
const EL: &str = "Electronics";
const HK: &str = "Home & Kitchen";
const WIDGET: &str = "Widget, \"Deluxe\"";

/// 11 events on 2024-05-01 (inserted 1.5 s after they happened) and 10 around now() (inserted
/// 3.6 s after): the average latency is (11 * 1.5 + 10 * 3.6) / 21 = 2.5 s.
#[rustfmt::skip]
const EVENTS: [Ev; 21] = [
    // S1..S11
    ev("user_1", "view", "prod_01", "Laptop Stand", EL, "30.00", Ts::At("2024-05-01 10:05:00Z"), "sess_1", "desktop"),
    ev("user_1", "view", "prod_01", "Laptop Stand", EL, "30.00", Ts::At("2024-05-01 10:15:00Z"), "sess_1", "desktop"),
    ev("user_1", "purchase", "prod_01", "Laptop Stand", EL, "30.00", Ts::At("2024-05-01 10:20:00Z"), "sess_1", "desktop"),
    ev("user_2", "view", "prod_02", "USB-C Cable", EL, "9.99", Ts::At("2024-05-01 10:59:59.999999Z"), "sess_2", "mobile"),
    ev("user_2", "purchase", "prod_02", "USB-C Cable", EL, "9.99", Ts::At("2024-05-01 11:00:00Z"), "sess_2", "mobile"),
    ev("user_2", "purchase", "prod_02", "USB-C Cable", EL, "9.99", Ts::At("2024-05-01 11:30:00Z"), "sess_2", "mobile"),
    ev("user_3", "view", "prod_03", "Café crème mug", HK, "12.50", Ts::At("2024-05-01 12:00:00+02:00"), "sess_3", "tablet"),
    // Not LIKE 'user_%': left out of events_by_type only.
    ev("guest_9", "view", "prod_04", WIDGET, "Books", "15.00", Ts::At("2024-05-01 11:10:00Z"), "sess_4", "mobile"),
    ev("guest_9", "purchase", "prod_04", WIDGET, "Books", "15.00", Ts::At("2024-05-01 11:12:00Z"), "sess_4", "mobile"),
    // LIKE 'user_%' matches 'userX' ('_' is any one character): counted, as the reference does.
    ev("userX", "view", "prod_05", "Yoga mat", "Sports", "20.00", Ts::At("2024-05-01 11:40:00Z"), "sess_5", "desktop"),
    ev("user_4", "purchase", "prod_00", "Kite", "Toys", "15.00", Ts::At("2024-05-01 11:50:00Z"), "sess_6", "tablet"),
    // D1..D10
    ev("user_5", "purchase", "prod_07", "Headphones", EL, "100.00", Ts::FromNow(-30 * MIN), "sess_7", "mobile"),
    ev("user_5", "purchase", "prod_02", "USB-C Cable", EL, "9.99", Ts::FromNow(-10 * MIN), "sess_7", "mobile"),
    ev("user_6", "purchase", "prod_03", "Café crème mug", HK, "12.50", Ts::FromNow(0), "sess_8", "desktop"),
    ev("user_6", "purchase", "prod_03", "Café crème mug", HK, "12.50", Ts::FromNow(-60 * MIN), "sess_8", "desktop"),
    ev("user_7", "purchase", "prod_01", "Laptop Stand", EL, "30.00", Ts::FromNow(-120 * MIN), "sess_9", "desktop"),
    ev("user_7", "purchase", "prod_01", "Laptop Stand", EL, "30.00", Ts::FromNow(MIN), "sess_9", "desktop"),
    ev("user_5", "view", "prod_07", "Headphones", EL, "100.00", Ts::FromNow(-MIN), "sess_7", "mobile"),
    // The product's latest event renames it.
    ev("user_5", "view", "prod_02", "USB-C Cable v2", EL, "9.99", Ts::FromNow(-4 * MIN), "sess_7", "mobile"),
    ev("user_8", "view", "prod_05", "Yoga mat", "Sports", "20.00", Ts::FromNow(-5 * MIN), "sess_10", "tablet"),
    ev("user_9", "view", "prod_05", "Yoga mat", "Sports", "20.00", Ts::FromNow(-6 * MIN), "sess_11", "tablet"),
];

fn insert_events_sql() -> String {
    let values: Vec<String> = EVENTS
        .iter()
        .map(|e| {
            let (ts, latency) = match e.ts {
                Ts::At(t) => (format!("{}::timestamptz", lit(t)), "1.5"),
                Ts::FromNow(s) => (format!("now() + interval '{s} seconds'"), "3.6"),
            };
            format!(
                "({}, {}, {}, {}, {}, {}, {ts}, {}, {}, {ts} + interval '{latency} seconds')",
                lit(e.user),
                lit(e.kind),
                lit(e.product),
                lit(e.name),
                lit(e.category),
                e.price,
                lit(e.session),
                lit(e.device),
            )
        })
        .collect();
    format!(
        "INSERT INTO user_events (user_id, event_type, product_id, product_name, product_category,
             price, event_timestamp, session_id, device_type, inserted_at) VALUES\n{}",
        values.join(",\n")
    )
}

#[test]
fn analytics_views_return_exactly_the_expected_rows() {
    let mut c = Cluster::start(ClusterOptions {
        preload: false,
        ..Default::default()
    });
    install_analytics(&mut c);
    let cl = c.client();
    cl.batch_execute("SET TimeZone = 'UTC'").unwrap();

    // The columns of every view, with their types.
    let expected_columns: [(&str, &[&str]); 10] = [
        ("events_by_type", &["event_type varchar", "events int8"]),
        (
            "revenue_by_category",
            &["product_category varchar", "revenue numeric"],
        ),
        ("events_per_hour", &["hour timestamptz", "events int8"]),
        ("ingest_latency", &["avg_latency_seconds numeric"]),
        (
            "conversion_by_category",
            &[
                "product_category varchar",
                "views int8",
                "purchases int8",
                "conversion numeric",
            ],
        ),
        (
            "conversion_by_device",
            &[
                "device_type varchar",
                "views int8",
                "purchases int8",
                "conversion numeric",
            ],
        ),
        (
            "revenue_per_minute_last_hour",
            &["minute timestamptz", "revenue numeric", "purchases int8"],
        ),
        (
            "top_products",
            &[
                "product_id varchar",
                "product_name varchar",
                "product_category varchar",
                "views int8",
                "purchases int8",
                "revenue numeric",
            ],
        ),
        (
            "active_sessions_last_5_minutes",
            &[
                "session_id varchar",
                "user_id varchar",
                "device_type varchar",
                "events int8",
                "last_event_at timestamptz",
            ],
        ),
        (
            "ingestion_overview",
            &[
                "files_done int8",
                "files_failed int8",
                "files_pending int8",
                "rows_ingested int8",
                "rows_rejected int8",
                "lag_seconds float8",
                "last_batch_ms numeric",
                "rows_per_second numeric",
                "state text",
                "paused bool",
                "worker_pid int4",
                "last_batch_rows int8",
                "last_batch_at timestamptz",
                "last_trigger_at timestamptz",
                "last_error text",
                "last_error_at timestamptz",
            ],
        ),
    ];
    for (view, cols) in expected_columns {
        assert_eq!(
            columns(cl, &format!("SELECT * FROM {view}")),
            strs(cols),
            "columns of {view}"
        );
        let comment = table(
            cl,
            &format!("SELECT obj_description('public.{view}'::regclass, 'pg_class') IS NOT NULL"),
        );
        assert_eq!(comment, ["t"], "COMMENT ON VIEW {view}");
    }

    // Empty table: the aggregates still answer.
    assert!(table(cl, "SELECT * FROM events_by_type").is_empty());
    assert_eq!(table(cl, "SELECT * FROM ingest_latency"), ["NULL"]);
    assert_eq!(
        table(
            cl,
            "SELECT count(*), sum(revenue), sum(purchases) FROM revenue_per_minute_last_hour"
        ),
        ["61|0.00|0"]
    );

    // One transaction, so that now() is the same for the rows and the views.
    cl.batch_execute("BEGIN").unwrap();
    cl.batch_execute(&insert_events_sql())
        .unwrap_or_else(|e| panic!("insert: {}", db_error_text(&e)));
    let now_us: i64 = table(cl, "SELECT (extract(epoch FROM now()) * 1000000)::int8")[0]
        .parse()
        .unwrap();
    let now_s = now_us.div_euclid(1_000_000);
    let minute = now_us.div_euclid(60_000_000) * 60;
    println!("now() = {now_us} µs since the epoch");

    assert_eq!(
        table(cl, "SELECT * FROM events_by_type"),
        ["purchase|10", "view|9"]
    );
    assert_eq!(
        table(cl, "SELECT * FROM revenue_by_category"),
        [
            "Electronics|219.97",
            "Home & Kitchen|25.00",
            "Books|15.00",
            "Toys|15.00"
        ]
    );

    // 2024-05-01 10:00 and 11:00 UTC, plus the hours of the rows around now().
    let mut hours: BTreeMap<i64, i64> = BTreeMap::from([(1_714_557_600, 5), (1_714_561_200, 6)]);
    for e in &EVENTS {
        if let Ts::FromNow(s) = e.ts {
            *hours
                .entry((now_us + s * 1_000_000).div_euclid(3_600_000_000) * 3600)
                .or_default() += 1;
        }
    }
    let expected_hours: Vec<String> = hours.iter().map(|(h, n)| format!("{h}|{n}")).collect();
    assert_eq!(
        table(
            cl,
            "SELECT extract(epoch FROM hour)::int8, events FROM events_per_hour"
        ),
        expected_hours
    );
    assert_eq!(
        table(cl, "SELECT hour, events FROM events_per_hour LIMIT 2"),
        ["2024-05-01 10:00:00+00|5", "2024-05-01 11:00:00+00|6"]
    );

    let latency = table(cl, "SELECT avg_latency_seconds FROM ingest_latency");
    assert_eq!(latency.len(), 1);
    assert_eq!(latency[0].parse::<f64>().unwrap(), 2.5, "{latency:?}");
    assert_eq!(
        table(cl, "SELECT avg_latency_seconds = 2.5 FROM ingest_latency"),
        ["t"]
    );

    assert_eq!(
        table(cl, "SELECT * FROM conversion_by_category"),
        [
            "Books|1|1|1.0000",
            "Electronics|5|7|1.4000",
            "Home & Kitchen|1|2|2.0000",
            "Sports|3|0|0.0000",
            "Toys|0|1|NULL"
        ]
    );
    assert_eq!(
        table(cl, "SELECT * FROM conversion_by_device"),
        [
            "desktop|3|5|1.6667",
            "mobile|4|5|1.2500",
            "tablet|3|1|0.3333"
        ]
    );

    // 61 minutes: now() - 1 hour (inclusive) .. now() (inclusive); -2 h and +1 min are out.
    let known: BTreeMap<i64, &str> = BTreeMap::from([
        (minute - 3600, "12.50|1"),
        (minute - 1800, "100.00|1"),
        (minute - 600, "9.99|1"),
        (minute, "12.50|1"),
    ]);
    let expected_minutes: Vec<String> = (0..=60)
        .map(|k| {
            let m = minute - 3600 + 60 * k;
            format!("{m}|{}", known.get(&m).copied().unwrap_or("0.00|0"))
        })
        .collect();
    assert_eq!(
        table(
            cl,
            "SELECT extract(epoch FROM minute)::int8, revenue, purchases FROM revenue_per_minute_last_hour"
        ),
        expected_minutes
    );

    assert_eq!(
        table(cl, "SELECT * FROM top_products"),
        [
            "prod_07|Headphones|Electronics|1|1|100.00",
            "prod_01|Laptop Stand|Electronics|2|3|90.00",
            "prod_02|USB-C Cable v2|Electronics|2|3|29.97",
            "prod_03|Café crème mug|Home & Kitchen|1|2|25.00",
            "prod_04|Widget, \"Deluxe\"|Books|1|1|15.00",
            "prod_00|Kite|Toys|0|1|15.00",
            "prod_05|Yoga mat|Sports|3|0|0.00"
        ]
    );

    // now() - 5 min (inclusive) .. now(): sess_11 (-6 min) and sess_9 (+1 min) are out.
    assert_eq!(
        table(
            cl,
            "SELECT session_id, user_id, device_type, events,
                    extract(epoch FROM last_event_at - now())
               FROM active_sessions_last_5_minutes"
        ),
        [
            "sess_8|user_6|desktop|1|0.000000",
            "sess_7|user_5|mobile|2|-60.000000",
            "sess_10|user_8|tablet|1|-300.000000"
        ]
    );
    assert_eq!(
        table(
            cl,
            "SELECT count(*) FROM active_sessions_last_5_minutes
              WHERE last_event_at = now() - interval '5 minutes'"
        ),
        ["1"]
    );
    assert!(now_s > 1_714_561_200);

    // No worker: the overview says so, with the ledger's counters.
    assert_eq!(
        table(cl, "SELECT * FROM ingestion_overview"),
        ["0|0|NULL|0|0|NULL|NULL|NULL|no_worker|f|NULL|NULL|NULL|NULL|NULL|NULL"]
    );
    cl.batch_execute("COMMIT").unwrap();

    // The monitoring role reads every view (the time-independent ones give the same rows).
    let mut reader = c.connect_as(READER);
    reader.batch_execute("SET TimeZone = 'UTC'").unwrap();
    for view in VIEWS {
        table(&mut reader, &format!("SELECT * FROM {view}"));
    }
    assert_eq!(
        table(&mut reader, "SELECT * FROM events_by_type"),
        ["purchase|10", "view|9"]
    );
    assert_eq!(
        table(&mut reader, "SELECT * FROM conversion_by_device"),
        [
            "desktop|3|5|1.6667",
            "mobile|4|5|1.2500",
            "tablet|3|1|0.3333"
        ]
    );
    assert_eq!(
        table(
            &mut reader,
            "SELECT count(*) FROM revenue_per_minute_last_hour"
        ),
        ["61"]
    );
    // PUBLIC gets nothing.
    c.execute("CREATE ROLE analytics_nobody LOGIN");
    let mut nobody = c.connect_as("analytics_nobody");
    for view in VIEWS {
        let err = expect_db_error(
            nobody
                .simple_query(&format!("SELECT * FROM {view}"))
                .map(|_| ()),
            view,
        );
        assert!(err.contains("permission denied"), "{view}: {err}");
    }

    // The exporter's queries, without a worker.
    let queries = exporter_queries();
    let got = run_exporter_queries(&mut reader, &queries);
    assert_eq!(
        got["ecommerce_ingest"],
        ["0|0|NULL|0|0|NULL|NULL|NULL|NULL|NULL|NULL|events"]
    );
    assert_eq!(got["ecommerce_ingest_worker"], ["no_worker|0|0|events"]);
    assert_eq!(
        got["ecommerce_ingest_ledger"],
        strs(&[
            "changed|0|events",
            "done|0|events",
            "error|0|events",
            "failed|0|events",
            "growing|0|events",
            "ingesting|0|events"
        ])
    );

    // DROP EXTENSION refuses while the views depend on user_events; CASCADE takes them along.
    let err = expect_db_error(
        c.client().batch_execute("DROP EXTENSION ecommerce_ingest"),
        "DROP EXTENSION",
    );
    assert!(
        err.contains("depend") || err.contains("would delete"),
        "{err}"
    );
}

const HEADER: &str = "user_id,event_type,product_id,product_name,product_category,price,event_timestamp,session_id,device_type";

#[test]
fn ingestion_overview_and_exporter_follow_the_worker() {
    let mut c = Cluster::start(ClusterOptions::default());
    install_analytics(&mut c);
    c.wait_worker();

    // 5 valid rows and 2 rejected ones; a file without the required columns fails whole.
    let good = format!(
        "{HEADER}\n\
         user_1,view,prod_1,Mug,Home,5.00,2024-05-01T10:00:00Z,s1,mobile\n\
         user_1,purchase,prod_1,Mug,Home,5.00,2024-05-01T10:01:00Z,s1,mobile\n\
         user_2,click,prod_1,Mug,Home,5.00,2024-05-01T10:02:00Z,s2,mobile\n\
         user_2,view,prod_2,\"Lamp, tall\",Home,40,2024-05-01T10:03:00Z,s2,desktop\n\
         user_3,view,prod_2,\"Lamp, tall\",Home,-1,2024-05-01T10:04:00Z,s3,tablet\n\
         user_3,purchase,prod_2,\"Lamp, tall\",Home,40.5,2024-05-01T10:05:00Z,s3,tablet\n\
         user_4,view,prod_3,Pen,Office,1.25,2024-05-01 10:06:00,s4,mobile\n"
    );
    c.write_file_atomic("good.csv", good.as_bytes());
    c.write_file_atomic("bad.csv", b"user_id,event_type\nuser_1,view\n");

    let overview = "SELECT files_done, files_failed, files_pending, rows_ingested, rows_rejected,
                           lag_seconds, state, paused, worker_pid IS NOT NULL
                      FROM ingestion_overview";
    let running = ["1|1|0|5|2|0|running|f|t"];
    c.wait_for(
        "good.csv done and bad.csv failed",
        Duration::from_secs(30),
        |c| table(c.client(), overview) == running,
    );
    // One more complete trigger: whatever the worker was logging is logged now.
    c.full_trigger();
    assert_eq!(table(c.client(), overview), running);
    // The last batch is the latest row of ingest_batches.
    let last_batch = "SELECT (o.last_batch_ms, o.rows_per_second, o.last_batch_rows, o.last_batch_at)
                             IS NOT DISTINCT FROM (b.duration_ms, b.rows_per_second, b.rows, b.finished_at),
                             o.last_batch_ms IS NOT NULL, o.last_trigger_at IS NOT NULL
                        FROM ingestion_overview o
                        LEFT JOIN (SELECT * FROM ingest_batches ORDER BY batch_id DESC LIMIT 1) b ON true";
    assert_eq!(table(c.client(), last_batch), ["t|t|t"]);
    assert_eq!(
        table(
            c.client(),
            "SELECT sum(rows), sum(rejected) FROM ingest_batches"
        ),
        ["5|2"]
    );
    assert_eq!(
        table(c.client(), "SELECT * FROM events_by_type"),
        ["purchase|2", "view|3"]
    );
    assert_eq!(
        table(c.client(), "SELECT * FROM revenue_by_category"),
        ["Home|45.50"]
    );
    // inserted_at is when the worker committed: after the 2024 events.
    assert_eq!(
        table(
            c.client(),
            "SELECT avg_latency_seconds > 0 FROM ingest_latency"
        ),
        ["t"]
    );

    let queries = exporter_queries();
    let mut reader = c.connect_as(READER);
    let got = run_exporter_queries(&mut reader, &queries);
    let main = &got["ecommerce_ingest"];
    assert_eq!(main.len(), 1);
    let v: Vec<&str> = main[0].split('|').collect();
    assert_eq!(&v[..6], ["1", "1", "0", "5", "2", "0"], "{main:?}");
    assert!(v[6..].iter().all(|x| *x != "NULL"), "{main:?}");
    assert_eq!(got["ecommerce_ingest_worker"], ["running|1|0|events"]);
    assert_eq!(
        got["ecommerce_ingest_ledger"],
        strs(&[
            "changed|0|events",
            "done|1|events",
            "error|0|events",
            "failed|1|events",
            "growing|0|events",
            "ingesting|0|events"
        ])
    );

    // Paused with a file waiting. files_pending and lag_seconds are ingest_status()'s (whether
    // a paused worker still counts the waiting files is the extension's business: the suite's
    // control tests pin that); the overview and the exporter pass them on consistently.
    assert_eq!(c.text("SELECT ingest_pause()").as_deref(), Some("paused"));
    c.write_file_atomic(
        "later.csv",
        format!(
            "{HEADER}\n\
             user_5,view,prod_9,Cup,Home,2.00,2024-05-02T08:00:00Z,s5,mobile\n\
             user_5,purchase,prod_9,Cup,Home,2.00,2024-05-02T08:01:00Z,s5,mobile\n\
             user_6,view,prod_9,Cup,Home,2.00,2024-05-02T08:02:00Z,s6,tablet\n"
        )
        .as_bytes(),
    );
    c.full_trigger();
    c.full_trigger();
    assert_eq!(
        table(
            c.client(),
            "SELECT o.files_done, o.files_failed, o.rows_ingested, o.rows_rejected, o.state, o.paused,
                    o.files_pending IS NOT DISTINCT FROM s.files_pending,
                    (o.lag_seconds > 0) = (s.files_pending > 0),
                    o.lag_seconds >= 0
               FROM ingestion_overview o, ingest_status() s"
        ),
        ["1|1|5|2|paused|t|t|t|t"]
    );
    let pending = table(c.client(), "SELECT files_pending FROM ingestion_overview");
    let got = run_exporter_queries(&mut reader, &queries);
    let v: Vec<String> = got["ecommerce_ingest"][0]
        .split('|')
        .map(str::to_string)
        .collect();
    assert_eq!(
        (&v[..2], &v[2], &v[3..5]),
        (&strs(&["1", "1"])[..], &pending[0], &strs(&["5", "2"])[..]),
        "{v:?}"
    );
    assert!(v[5].parse::<f64>().unwrap() >= 0.0, "lag_seconds {v:?}");
    assert_eq!(got["ecommerce_ingest_worker"], ["paused|1|1|events"]);

    // Resumed: the third file arrives, the counters move on.
    assert_eq!(c.text("SELECT ingest_resume()").as_deref(), Some("running"));
    let resumed = ["2|1|0|8|2|0|running|f|t"];
    c.wait_for("later.csv done", Duration::from_secs(30), |c| {
        table(c.client(), overview) == resumed
    });
    c.full_trigger();
    assert_eq!(table(c.client(), overview), resumed);
    assert_eq!(table(c.client(), last_batch), ["t|t|t"]);
    assert_eq!(
        table(
            c.client(),
            "SELECT sum(rows), sum(rejected) FROM ingest_batches"
        ),
        ["8|2"]
    );
    // (A file young when first seen is finished by a later trigger that adds no rows: the
    // last batch may hold 3 rows or 0.)
    let last_rows = table(c.client(), "SELECT last_batch_rows FROM ingestion_overview");
    assert!(last_rows == ["3"] || last_rows == ["0"], "{last_rows:?}");
    let got = run_exporter_queries(&mut reader, &queries);
    let v: Vec<&str> = got["ecommerce_ingest"][0].split('|').collect();
    assert_eq!(&v[..6], ["2", "1", "0", "8", "2", "0"], "{v:?}");
    assert_eq!(v[7], last_rows[0], "{v:?}");
    assert_eq!(got["ecommerce_ingest_worker"], ["running|1|0|events"]);
    assert_eq!(
        table(c.client(), "SELECT * FROM events_by_type"),
        ["purchase|3", "view|5"]
    );
}

// ------------------------------------------------------------------------------------------
// sql/postgres_exporter.yml
// ------------------------------------------------------------------------------------------

/// One namespace of the exporter's queries file.
#[derive(Debug, Clone, PartialEq)]
struct ExporterQuery {
    namespace: String,
    query: String,
    /// (column, usage) in file order.
    metrics: Vec<(String, String)>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

/// A small parser for the layout the file uses (namespace keys at column 0; `query: |` with an
/// indented block; `metrics:` with `- column:` items holding `usage:` and `description:`).
/// Anything else fails loudly. Cross-checked with PyYAML when python3 has it.
fn parse_exporter_yaml(text: &str) -> Vec<ExporterQuery> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<ExporterQuery> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        match indent(line) {
            0 => {
                let ns = t
                    .strip_suffix(':')
                    .unwrap_or_else(|| panic!("line {}: expected `namespace:`", i + 1));
                out.push(ExporterQuery {
                    namespace: ns.to_string(),
                    query: String::new(),
                    metrics: Vec::new(),
                });
                i += 1;
            }
            2 => {
                let q = out.last_mut().expect("a namespace first");
                if t == "query: |" {
                    i += 1;
                    let mut body = Vec::new();
                    while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > 2) {
                        body.push(lines[i].get(4..).unwrap_or("").trim_end());
                        i += 1;
                    }
                    q.query = body.join("\n").trim_end().to_string() + "\n";
                } else if let Some(v) = t.strip_prefix("query:") {
                    q.query = unquote(v);
                    i += 1;
                } else if t.starts_with("master:") || t.starts_with("cache_seconds:") {
                    i += 1;
                } else if t == "metrics:" {
                    i += 1;
                    while i < lines.len()
                        && (lines[i].trim().is_empty()
                            || lines[i].trim().starts_with('#')
                            || indent(lines[i]) > 2)
                    {
                        let l = lines[i].trim();
                        if let Some(col) = l.strip_prefix("- ") {
                            let col = col
                                .strip_suffix(':')
                                .unwrap_or_else(|| panic!("line {}: `- column:`", i + 1));
                            q.metrics.push((col.to_string(), String::new()));
                        } else if let Some(u) = l.strip_prefix("usage:") {
                            q.metrics.last_mut().expect("a column first").1 = unquote(u);
                        } else if !(l.is_empty()
                            || l.starts_with('#')
                            || l.starts_with("description:"))
                        {
                            panic!("line {}: unexpected {l:?}", i + 1);
                        }
                        i += 1;
                    }
                } else {
                    panic!("line {}: unexpected {t:?}", i + 1);
                }
            }
            n => panic!("line {}: unexpected indentation {n}", i + 1),
        }
    }
    out
}

/// The same fields through PyYAML, when python3 and PyYAML are there.
fn pyyaml_view(path: &std::path::Path) -> Option<String> {
    let script = r#"
import sys, yaml
d = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
assert isinstance(d, dict), "top level must be a mapping"
for ns, spec in d.items():
    print("NS", ns)
    print("Q", spec["query"].replace("\n", "\\n"))
    for m in spec["metrics"]:
        assert len(m) == 1, m
        (col, opt), = m.items()
        assert set(opt) <= {"usage", "description"}, opt
        print("M", col, opt["usage"])
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if err.contains("No module named 'yaml'") {
            return None;
        }
        panic!("PyYAML cannot read {}: {err}", path.display());
    }
    Some(String::from_utf8(out.stdout).unwrap())
}

fn exporter_queries() -> Vec<ExporterQuery> {
    let path = repo_root().join("sql/postgres_exporter.yml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let queries = parse_exporter_yaml(&text);
    assert!(!queries.is_empty(), "no namespace in {}", path.display());
    for q in &queries {
        assert!(!q.query.trim().is_empty(), "{}: no query", q.namespace);
        assert!(!q.metrics.is_empty(), "{}: no metrics", q.namespace);
        for (col, usage) in &q.metrics {
            assert!(
                ["GAUGE", "COUNTER", "LABEL"].contains(&usage.as_str()),
                "{}.{col}: usage {usage:?}",
                q.namespace
            );
            if usage == "COUNTER" {
                assert!(
                    col.ends_with("_total"),
                    "counter {col} should end in _total"
                );
            }
        }
    }
    match pyyaml_view(&path) {
        Some(py) => {
            let mine: String = queries
                .iter()
                .map(|q| {
                    let mut s = format!("NS {}\nQ {}\n", q.namespace, q.query.replace('\n', "\\n"));
                    for (col, usage) in &q.metrics {
                        s += &format!("M {col} {usage}\n");
                    }
                    s
                })
                .collect();
            assert_eq!(mine, py, "the test's parser and PyYAML disagree");
        }
        None => println!("python3 with PyYAML not found: YAML cross-check skipped"),
    }
    queries
}

/// Runs every query; checks it returns exactly the declared columns, in order, and that LABEL
/// columns are text and the others numbers. Returns each namespace's rows (as [`table`]),
/// sorted.
fn run_exporter_queries(
    client: &mut Client,
    queries: &[ExporterQuery],
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for q in queries {
        let st = client
            .prepare(&q.query)
            .unwrap_or_else(|e| panic!("{}: {}\n{}", q.namespace, db_error_text(&e), q.query));
        let got: Vec<(String, String)> = st
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.type_().name().to_string()))
            .collect();
        let names: Vec<&str> = got.iter().map(|c| c.0.as_str()).collect();
        let declared: Vec<&str> = q.metrics.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, declared, "{}: columns", q.namespace);
        for ((name, ty), (_, usage)) in got.iter().zip(&q.metrics) {
            let ok = match usage.as_str() {
                "LABEL" => ty == "text",
                _ => ["float8", "int8", "int4", "numeric"].contains(&ty.as_str()),
            };
            assert!(ok, "{}.{name}: type {ty} for {usage}", q.namespace);
        }
        let mut rows = table(client, &q.query);
        assert!(!rows.is_empty(), "{}: no rows", q.namespace);
        rows.sort();
        out.insert(q.namespace.clone(), rows);
    }
    out
}
