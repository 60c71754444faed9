//! Pipelines: Two pipelines and the events pipeline at once; pausing one.

use super::*;
use e2e::*;

/// `orders.csv` with `;` as delimiter: ids `from..=to`; every 7th customer has a `;` in it
/// (quoted), meta is a quoted JSON object.
fn orders_csv(from: i64, to: i64) -> Vec<u8> {
    let mut s = String::from("id;customer;amount;placed_at;tags;meta\n");
    for i in from..=to {
        let customer = if i % 7 == 0 {
            format!("\"Smith; {i}\"")
        } else {
            format!("cust {i}")
        };
        s += &format!(
            "{i};{customer};{i}.{:02};2024-03-{:02} 10:{:02}:00+00;{{t{},x}};\"{{\"\"n\"\": {i}}}\"\n",
            i % 100,
            i % 28 + 1,
            i % 60,
            i % 3
        );
    }
    s.into_bytes()
}

fn clicks_ndjson(from: i64, to: i64) -> Vec<u8> {
    let mut s = String::new();
    for i in from..=to {
        s += &format!(
            "{{\"id\": {i}, \"url\": \"https://shop.example/p/{i}?q=a\\tb\", \"at\": \"2024-03-01T00:00:{:02}Z\", \"meta\": {{\"i\": {i}, \"tags\": [\"a\", \"b\"]}}}}\n",
            i % 60
        );
    }
    s.into_bytes()
}

/// Checks that `orders` holds exactly ids 1..=n with the values `orders_csv` wrote.
fn assert_orders(c: &mut Cluster, n: i64) {
    let amount_cents: i64 = (1..=n).map(|i| i * 100 + i % 100).sum();
    let smiths = (1..=n).filter(|i| i % 7 == 0).count() as i64;
    let got = rows_text(
        c,
        "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(amount * 100),
                count(*) FILTER (WHERE customer = CASE WHEN id % 7 = 0 THEN 'Smith; ' || id ELSE 'cust ' || id END),
                count(*) FILTER (WHERE customer LIKE 'Smith; %'),
                count(*) FILTER (WHERE placed_at = make_timestamptz(2024, 3, (id % 28 + 1)::int, 10, (id % 60)::int, 0, 'UTC')),
                count(*) FILTER (WHERE tags = ARRAY['t' || id % 3, 'x']),
                count(*) FILTER (WHERE meta = jsonb_build_object('n', id)),
                count(*) FILTER (WHERE paid = false)
           FROM orders",
    );
    let n_s = n.to_string();
    assert_eq!(
        got[0],
        vec![
            s(&n_s),
            s(&n_s),
            s("1"),
            s(&n_s),
            s(&format!("{amount_cents}.00")),
            s(&n_s),
            s(&smiths.to_string()),
            s(&n_s),
            s(&n_s),
            s(&n_s),
            s(&n_s),
        ],
        "orders: count, distinct, min, max, sum(amount), customers, smiths, placed_at, tags, meta, paid"
    );
}

/// Checks that `clicks` holds exactly ids 1..=n with the values `clicks_ndjson` wrote.
fn assert_clicks(c: &mut Cluster, n: i64) {
    let got = rows_text(
        c,
        "SELECT count(*), count(DISTINCT id), min(id), max(id),
                count(*) FILTER (WHERE url = 'https://shop.example/p/' || id || E'?q=a\\tb'),
                count(*) FILTER (WHERE at = timestamptz '2024-03-01 00:00:00Z' + (id % 60) * interval '1s'),
                count(*) FILTER (WHERE meta = jsonb_build_object('i', id, 'tags', jsonb_build_array('a', 'b')))
           FROM clicks",
    );
    let n_s = n.to_string();
    assert_eq!(
        got[0],
        vec![s(&n_s), s(&n_s), s("1"), s(&n_s), s(&n_s), s(&n_s), s(&n_s)],
        "clicks: count, distinct, min, max, url, at, meta"
    );
}

#[test]
fn two_pipelines_and_the_events_pipeline_flow_at_once_and_a_pause_holds_only_its_own() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2),
                              placed_at timestamptz, tags text[], paid boolean DEFAULT false, meta jsonb);
         CREATE TABLE clicks (id bigint PRIMARY KEY, url text NOT NULL, at timestamptz, meta jsonb);",
    );
    let od = folder(&c, "orders");
    let cd = folder(&c, "clicks");
    create(
        &mut c,
        "orders",
        &od,
        "orders",
        "csv",
        r#"{"delimiter": ";", "trigger_interval": 200}"#,
    );
    create(
        &mut c,
        "clicks",
        &cd,
        "clicks",
        "ndjson",
        r#"{"trigger_interval": 200}"#,
    );
    let a = c.write_file_atomic("a.csv", &gen_file(1, 300));
    write_atomic(&od, "orders_1.csv", &orders_csv(1, 400));
    write_atomic(&cd, "clicks_1.ndjson.gz", &gz(&clicks_ndjson(1, 400)));
    wait_done(&mut c, "orders", 1);
    wait_done(&mut c, "clicks", 1);
    wait_done(&mut c, "events", 1);

    // One row per pipeline, the events pipeline first, then by name.
    let listed = rows_text(
        &mut c,
        "SELECT pipeline, target, format, state, paused::text, input_dir FROM ingest_status()",
    );
    assert_eq!(
        listed,
        vec![
            vec![
                s("events"),
                s("public.user_events"),
                s("csv"),
                s("running"),
                s("false"),
                s(&c.input_dir().display().to_string())
            ],
            vec![
                s("clicks"),
                s("public.clicks"),
                s("ndjson"),
                s("running"),
                s("false"),
                s(&cd.display().to_string())
            ],
            vec![
                s("orders"),
                s("public.orders"),
                s("csv"),
                s("running"),
                s("false"),
                s(&od.display().to_string())
            ],
        ]
    );
    // Each pipeline has its own worker process.
    let pids: Vec<i32> = ["events", "clicks", "orders"]
        .iter()
        .map(|p| {
            pstatus(&mut c, p)
                .worker_pid
                .unwrap_or_else(|| panic!("{p} has no worker"))
        })
        .collect();
    assert!(
        pids[0] != pids[1] && pids[1] != pids[2] && pids[0] != pids[2],
        "{pids:?}"
    );
    for (p, pid) in [("clicks", pids[1]), ("orders", pids[2])] {
        let bt = c
            .text(&format!(
                "SELECT backend_type FROM pg_stat_activity WHERE pid = {pid}"
            ))
            .unwrap_or_default();
        assert_eq!(bt, "ecommerce_ingest pipeline", "{p}'s worker {pid}");
        let title = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            title.contains(&format!("ecommerce_ingest pipeline {p}")),
            "{p}'s worker {pid}: {title:?}"
        );
    }

    // Pause orders: clicks and events go on, orders holds its new file.
    assert_eq!(
        c.text("SELECT ingest_pause('orders')").as_deref(),
        Some("paused")
    );
    c.wait_for("orders paused", T, |c| {
        let s = pstatus(c, "orders");
        s.state == "paused" && s.paused
    });
    write_atomic(&od, "orders_2.csv", &orders_csv(401, 800));
    write_atomic(&cd, "clicks_2.ndjson.gz", &gz(&clicks_ndjson(401, 800)));
    let b = c.write_file_atomic("b.csv", &gen_file(2, 300));
    wait_done(&mut c, "clicks", 2);
    wait_done(&mut c, "events", 2);
    full_trigger(&mut c, "orders");
    full_trigger(&mut c, "orders");
    assert_eq!(
        c.int("SELECT count(*) FROM orders"),
        400,
        "rows while paused"
    );
    assert_eq!(
        files(&mut c, "orders"),
        vec![file("orders_1.csv", "done", 400, 0)],
        "orders_2.csv is not touched while paused"
    );
    let o = pstatus(&mut c, "orders");
    assert_eq!(
        (o.state.as_str(), o.paused, o.files_pending),
        ("paused", true, Some(1)),
        "{o:#?}"
    );
    assert!(o.detail.contains("ingest_resume(\"orders\")"), "{o:#?}");
    for p in ["events", "clicks"] {
        let st = pstatus(&mut c, p);
        assert_eq!((st.state.as_str(), st.paused), ("running", false), "{p}");
    }
    assert_clicks(&mut c, 800);

    assert_eq!(
        c.text("SELECT ingest_resume('orders')").as_deref(),
        Some("running")
    );
    wait_done(&mut c, "orders", 2);
    assert_orders(&mut c, 800);

    // Every file exactly once, nothing more after further triggers.
    for p in ["orders", "clicks", "events"] {
        full_trigger(&mut c, p);
    }
    assert_orders(&mut c, 800);
    assert_clicks(&mut c, 800);
    c.assert_exact_rows(&expected_rows(&[a, b]).rows);
    assert_eq!(
        files(&mut c, "orders"),
        vec![
            file("orders_1.csv", "done", 400, 0),
            file("orders_2.csv", "done", 400, 0)
        ]
    );
    assert_eq!(
        files(&mut c, "clicks"),
        vec![
            file("clicks_1.ndjson.gz", "done", 400, 0),
            file("clicks_2.ndjson.gz", "done", 400, 0)
        ]
    );
    assert_eq!(
        files(&mut c, "events"),
        vec![file("a.csv", "done", 300, 0), file("b.csv", "done", 300, 0)]
    );
    for (p, rows) in [("events", 600), ("clicks", 800), ("orders", 800)] {
        let st = pstatus(&mut c, p);
        assert_eq!(
            (
                st.state.as_str(),
                st.files_ingested,
                st.files_failed,
                st.rows_ingested,
                st.rows_rejected
            ),
            ("running", 2, 0, rows, 0),
            "{p}: {st:#?}"
        );
    }
    let o = pstatus(&mut c, "orders");
    assert_eq!(
        (o.target.as_str(), o.format.as_str()),
        ("public.orders", "csv")
    );
    assert!(ledger_problems(c.client()).is_empty());
    assert_consistent(&mut c, "orders");
    assert_consistent(&mut c, "clicks");
}
