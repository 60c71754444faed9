//! Pipelines: folders of CSV, TSV or NDJSON files, plain or compressed, into tables of the
//! user's choosing, next to the events pipeline in the same cluster. Every test checks exact
//! outcomes: the rows stored (read back), each reject's line, column and reason, each file's
//! status.

use e2e::*;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// Folder `name` inside the test's own folder, owned by the postgres OS user.
fn folder(c: &Cluster, name: &str) -> PathBuf {
    let d = c.root_dir().join(name);
    postgres_folder(&d);
    d
}

fn create_sql(name: &str, dir: &Path, target: &str, format: &str, options: &str) -> String {
    format!(
        "SELECT ingest_create_pipeline({}, {}, {}, {}, {}::jsonb)",
        lit(name),
        lit(&dir.display().to_string()),
        lit(target),
        lit(format),
        lit(options)
    )
}

fn create(c: &mut Cluster, name: &str, dir: &Path, target: &str, format: &str, options: &str) {
    c.execute(&create_sql(name, dir, target, format, options));
}

/// One row of `ingest_status()`, of a pipeline.
#[derive(Debug, Clone)]
struct PStatus {
    target: String,
    format: String,
    state: String,
    paused: bool,
    worker_pid: Option<i32>,
    files_ingested: i64,
    files_failed: i64,
    files_pending: Option<i64>,
    rows_ingested: i64,
    rows_rejected: i64,
    /// Unix microseconds.
    last_trigger_at: Option<i64>,
    detail: String,
}

fn try_pstatus(c: &mut Cluster, p: &str) -> Option<PStatus> {
    c.client()
        .query_opt(
            "SELECT target, format, state, paused, worker_pid, files_ingested, files_failed,
                    files_pending, rows_ingested, rows_rejected,
                    (extract(epoch FROM last_trigger_at) * 1e6)::int8, detail
               FROM ingest_status() WHERE pipeline = $1",
            &[&p],
        )
        .unwrap_or_else(|e| panic!("ingest_status(): {}", db_error_text(&e)))
        .map(|r| PStatus {
            target: r.get(0),
            format: r.get(1),
            state: r.get(2),
            paused: r.get(3),
            worker_pid: r.get(4),
            files_ingested: r.get(5),
            files_failed: r.get(6),
            files_pending: r.get(7),
            rows_ingested: r.get(8),
            rows_rejected: r.get(9),
            last_trigger_at: r.get(10),
            detail: r.get(11),
        })
}

fn pstatus(c: &mut Cluster, p: &str) -> PStatus {
    try_pstatus(c, p).unwrap_or_else(|| panic!("ingest_status() has no row for pipeline {p}"))
}

/// Files of pipeline `p` with status `done`.
fn done(c: &mut Cluster, p: &str) -> i64 {
    c.client()
        .query_one(
            "SELECT count(*) FROM ingest_files WHERE pipeline = $1 AND status = 'done'",
            &[&p],
        )
        .unwrap()
        .get(0)
}

/// Waits until exactly `n` files of pipeline `p` are done.
fn wait_done(c: &mut Cluster, p: &str, n: i64) {
    c.wait_for(&format!("{n} files of pipeline {p} done"), T, |c| {
        done(c, p) >= n
    });
    assert_eq!(done(c, p), n, "files of pipeline {p} done");
}

/// `ingest_trigger(p)`, then waits for a whole trigger of `p` that started after the call.
fn full_trigger(c: &mut Cluster, p: &str) {
    let t0 = c.now_us();
    c.execute(&format!("SELECT ingest_trigger({})", lit(p)));
    c.wait_for(
        &format!("a complete trigger of pipeline {p}"),
        Duration::from_secs(30),
        |c| pstatus(c, p).last_trigger_at.is_some_and(|t| t > t0),
    );
}

/// `(file, status, rows_ok, rows_rejected)` of every file of pipeline `p`, by name.
fn files(c: &mut Cluster, p: &str) -> Vec<(String, String, i64, i64)> {
    c.client()
        .query(
            "SELECT file_name, status, rows_ok, rows_rejected FROM ingest_files
              WHERE pipeline = $1 ORDER BY file_name",
            &[&p],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn file(name: &str, status: &str, ok: i64, rejected: i64) -> (String, String, i64, i64) {
    (name.into(), status.into(), ok, rejected)
}

/// `(error, extra_columns)` of file `f` of pipeline `p`.
fn file_error(c: &mut Cluster, p: &str, f: &str) -> (Option<String>, Option<Vec<String>>) {
    let r = c
        .client()
        .query_one(
            "SELECT error, extra_columns FROM ingest_files WHERE pipeline = $1 AND file_name = $2",
            &[&p, &f],
        )
        .unwrap_or_else(|e| panic!("{p}/{f} in ingest_files: {}", db_error_text(&e)));
    (r.get(0), r.get(1))
}

/// A reject: `(file, line, column, reason)`.
type Reject = (String, i64, Option<String>, String);

/// Every reject of pipeline `p`, by file and line.
fn rejects(c: &mut Cluster, p: &str) -> Vec<Reject> {
    c.client()
        .query(
            "SELECT file_name, line_number, column_name, reason FROM ingest_rejects
              WHERE pipeline = $1 ORDER BY file_name, line_number",
            &[&p],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// A reject refused by the database: PostgreSQL's message and SQLSTATE.
fn refused(file: &str, line: i64, column: Option<&str>, message: &str, state: &str) -> Reject {
    (
        file.into(),
        line,
        column.map(String::from),
        format!("refused by the database: {message} (SQLSTATE {state})"),
    )
}

/// Compares rejects one by one (a clearer failure than the whole lists).
fn assert_rejects(got: &[Reject], want: &[Reject]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "reject {i}");
    }
    assert_eq!(got.len(), want.len(), "rejects: {got:#?}");
}

/// The rows of a query, every column as text (NULL as `None`).
fn rows_text(c: &mut Cluster, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows = c
        .client()
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", db_error_text(&e)));
    rows.iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).map(String::from))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .collect()
}

/// The bookkeeping of pipeline `p` as committed now: for each file, the rows and rejects of
/// its chunks add up to its ledger row, its rejects are as many as the ledger says, and its
/// chunks are numbered from 0 and contiguous (each starts where the previous ended). One line
/// per problem.
fn pipeline_problems(c: &mut Cluster, p: &str) -> Vec<String> {
    let q = "WITH k AS (SELECT file_name, count(*) AS n, sum(rows_ok)::int8 AS ok,
                               sum(rows_rejected)::int8 AS rej, max(chunk_no) AS last_no
                          FROM ingest_file_chunks WHERE pipeline = $1 GROUP BY 1),
                  r AS (SELECT file_name, count(*) AS n FROM ingest_rejects WHERE pipeline = $1 GROUP BY 1)
             SELECT format('%s: ledger %s rows_ok %s rows_rejected %s chunks %s; chunks: %s rows, %s rejected in %s (last no %s); rejects %s',
                           f.file_name, f.status, f.rows_ok, f.rows_rejected, f.chunks, k.ok, k.rej, k.n, k.last_no, r.n)
               FROM ingest_files f LEFT JOIN k USING (file_name) LEFT JOIN r USING (file_name)
              WHERE f.pipeline = $1
                AND (coalesce(k.ok, 0) <> f.rows_ok OR coalesce(k.rej, 0) <> f.rows_rejected
                     OR coalesce(r.n, 0) <> f.rows_rejected OR coalesce(k.n, 0) <> f.chunks
                     OR coalesce(k.last_no, -1) <> f.chunks - 1)
             UNION ALL
             SELECT format('%s: chunk %s starts at %s (line %s), the previous ended at %s (line %s)',
                           file_name, chunk_no, start_offset, first_line, prev_end, prev_line)
               FROM (SELECT *, lag(end_offset) OVER w AS prev_end, lag(last_line) OVER w AS prev_line
                       FROM ingest_file_chunks WHERE pipeline = $1
                     WINDOW w AS (PARTITION BY file_name ORDER BY chunk_no)) x
              WHERE prev_end IS NOT NULL AND (start_offset <> prev_end OR first_line <> prev_line + 1)";
    c.client()
        .query(q, &[&p])
        .unwrap_or_else(|e| panic!("{}", db_error_text(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn assert_consistent(c: &mut Cluster, p: &str) {
    let problems = pipeline_problems(c, p);
    assert!(problems.is_empty(), "pipeline {p}: {problems:#?}");
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

// ---------------------------------------------------------------------------------------------
// 1. Two pipelines and the events pipeline at once; pausing one.

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
                s("user_events"),
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

// ---------------------------------------------------------------------------------------------
// 2. Every format, plain and compressed; header-less CSV by position; forced compression.

/// `(id, name, qty, note)` of every row of `table`, by id.
type Row4 = (i32, Option<String>, Option<i32>, Option<String>);

fn rows4(c: &mut Cluster, table: &str) -> Vec<Row4> {
    c.client()
        .query(
            &format!("SELECT id, name, qty, note FROM {table} ORDER BY id"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn row4(id: i32, name: Option<&str>, qty: Option<i32>, note: Option<&str>) -> Row4 {
    (id, name.map(String::from), qty, note.map(String::from))
}

/// A CSV file with quoting, an embedded line break, a backslash, an empty quoted and an
/// unquoted empty field, UTF-8, a tab inside a field, and one bad integer (line 6). `crlf`:
/// lines end with CR LF.
fn csv_variant(base: i32, crlf: bool) -> Vec<u8> {
    let nl = if crlf { "\r\n" } else { "\n" };
    let b = base;
    [
        "id,name,qty,note".to_string(),
        format!("{},\"a, \"\"quoted\"\" name\",10,plain", b + 1),
        format!("{},\"multi{nl}line\",20,", b + 2),
        format!("{},back\\slash,30,\"\"", b + 3),
        format!("{},x,notanumber,bad", b + 4),
        format!("{},Café,50,ünï", b + 5),
        format!("{},tab\tin,60,x", b + 6),
    ]
    .iter()
    .map(|l| format!("{l}{nl}"))
    .collect::<String>()
    .into_bytes()
}

fn csv_expected(base: i32, crlf: bool) -> Vec<Row4> {
    let b = base;
    let multi = if crlf { "multi\r\nline" } else { "multi\nline" };
    vec![
        row4(b + 1, Some("a, \"quoted\" name"), Some(10), Some("plain")),
        row4(b + 2, Some(multi), Some(20), None),
        row4(b + 3, Some("back\\slash"), Some(30), Some("")),
        row4(b + 5, Some("Café"), Some(50), Some("ünï")),
        row4(b + 6, Some("tab\tin"), Some(60), Some("x")),
    ]
}

/// TSV: no quoting (a `"` is data), a backslash is data, an empty field is NULL; a bad integer
/// on line 4.
fn tsv_variant(base: i32) -> Vec<u8> {
    let b = base;
    format!(
        "id\tname\tqty\tnote\n{}\ta \"quoted\" name, with comma\t10\tplain\n{}\tback\\slash\t20\t\n{}\tx\tbad\tbad\n{}\tCafé\t40\tü\n",
        b + 1,
        b + 2,
        b + 3,
        b + 4
    )
    .into_bytes()
}

fn tsv_expected(base: i32) -> Vec<Row4> {
    let b = base;
    vec![
        row4(
            b + 1,
            Some("a \"quoted\" name, with comma"),
            Some(10),
            Some("plain"),
        ),
        row4(b + 2, Some("back\\slash"), Some(20), None),
        row4(b + 4, Some("Café"), Some(40), Some("ü")),
    ]
}

/// NDJSON: escapes, a number as a string, an explicit null, a missing key (NULL), a bad
/// integer (line 3), a line that is not JSON (4), a blank line (5, skipped), an unknown key
/// (line 6) and an array instead of an object (7).
fn ndjson_variant(base: i32) -> Vec<u8> {
    let b = base;
    format!(
        "{{\"id\":{},\"name\":\"a \\\"q\\\"\\nb\\tc\\\\d\",\"qty\":10,\"note\":\"plain\"}}\n\
         {{\"id\":{},\"name\":\"Caf\\u00e9 \u{fc}\",\"qty\":\"20\",\"note\":null}}\n\
         {{\"id\":{},\"qty\":\"bad\"}}\n\
         {{not json\n\
         \n\
         {{\"id\":{},\"qty\":60,\"zzz\":1}}\n\
         [1,2]\n",
        b + 1,
        b + 2,
        b + 3,
        b + 6
    )
    .into_bytes()
}

fn ndjson_expected(base: i32) -> Vec<Row4> {
    let b = base;
    vec![
        row4(b + 1, Some("a \"q\"\nb\tc\\d"), Some(10), Some("plain")),
        row4(b + 2, Some("Café ü"), Some(20), None),
        row4(b + 6, None, Some(60), None),
    ]
}

#[test]
fn every_format_plain_gzip_and_zstd_and_header_less_csv_by_position() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&["max_worker_processes = 16"]));
    for t in ["f_csv", "f_tsv", "f_nd", "f_pos", "f_forced", "f_opts"] {
        c.execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, name text, qty int, note text)"
        ));
    }
    let fast = r#""trigger_interval": 100"#;
    let dirs: Vec<PathBuf> = ["csv", "tsv", "nd", "pos", "forced", "opts"]
        .iter()
        .map(|d| folder(&c, d))
        .collect();
    create(
        &mut c,
        "p_csv",
        &dirs[0],
        "f_csv",
        "csv",
        &format!("{{{fast}}}"),
    );
    create(
        &mut c,
        "p_tsv",
        &dirs[1],
        "f_tsv",
        "tsv",
        &format!("{{{fast}}}"),
    );
    create(
        &mut c,
        "p_nd",
        &dirs[2],
        "f_nd",
        "ndjson",
        &format!("{{{fast}}}"),
    );
    create(
        &mut c,
        "p_pos",
        &dirs[3],
        "f_pos",
        "csv",
        &format!(r#"{{{fast}, "header": false, "columns": ["id", null, "name", "qty"]}}"#),
    );
    create(
        &mut c,
        "p_forced",
        &dirs[4],
        "f_forced",
        "tsv",
        &format!(r#"{{{fast}, "compression": "zstd", "file_pattern": "*.dat"}}"#),
    );

    // Another dialect: '|' between fields, quotes ' escaped by a backslash, NULL spelled NULL
    // (an empty field is an empty string, a quoted 'NULL' the word), LATIN1.
    create(
        &mut c,
        "p_opts",
        &dirs[5],
        "f_opts",
        "csv",
        &format!(
            r#"{{{fast}, "delimiter": "|", "quote": "'", "escape": "\\", "null": "NULL", "encoding": "LATIN1"}}"#
        ),
    );
    write_atomic(
        &dirs[5],
        "latin1.csv",
        b"id|name|qty|note\n1|'it\\'s | here'|10|NULL\n2|caf\xe9|20|\n3|'NULL'|30|\xfc\n",
    );

    // CSV: plain, gzip, zstd (CR LF).
    write_atomic(&dirs[0], "a.csv", &csv_variant(0, false));
    write_atomic(&dirs[0], "b.csv.gz", &gz(&csv_variant(10, false)));
    write_atomic(&dirs[0], "c.csv.zst", &zst(&csv_variant(20, true)));
    // TSV.
    write_atomic(&dirs[1], "a.tsv", &tsv_variant(0));
    write_atomic(&dirs[1], "b.tsv.gz", &gz(&tsv_variant(10)));
    write_atomic(&dirs[1], "c.tsv.zst", &zst(&tsv_variant(20)));
    // NDJSON, under both names.
    write_atomic(&dirs[2], "a.ndjson", &ndjson_variant(0));
    write_atomic(&dirs[2], "b.jsonl", &ndjson_variant(10));
    write_atomic(&dirs[2], "c.ndjson.gz", &gz(&ndjson_variant(20)));
    write_atomic(&dirs[2], "d.jsonl.zst", &zst(&ndjson_variant(30)));
    // Header-less CSV: field 2 skipped, note absent (NULL); line 3 has a field too few.
    let pos = |b: i32| {
        format!(
            "{},skip,alpha,10\n{},skip,\"be,ta\",20\n{},skip,gamma\n{},skip,delta,40\n",
            b + 1,
            b + 2,
            b + 3,
            b + 4
        )
        .into_bytes()
    };
    write_atomic(&dirs[3], "a.csv", &pos(0));
    write_atomic(&dirs[3], "b.csv.gz", &gz(&pos(10)));
    // Forced zstd under another suffix; a plain .tsv there does not match the pattern.
    write_atomic(&dirs[4], "f.dat", &zst(&tsv_variant(0)));
    write_atomic(&dirs[4], "ignored.tsv", &tsv_variant(100));

    wait_done(&mut c, "p_csv", 3);
    wait_done(&mut c, "p_tsv", 3);
    wait_done(&mut c, "p_nd", 4);
    wait_done(&mut c, "p_pos", 2);
    wait_done(&mut c, "p_forced", 1);
    wait_done(&mut c, "p_opts", 1);

    // CSV.
    let mut want = csv_expected(0, false);
    want.extend(csv_expected(10, false));
    want.extend(csv_expected(20, true));
    assert_eq!(rows4(&mut c, "f_csv"), want);
    let bad_int = |f: &str, line: i64, v: &str| {
        refused(
            f,
            line,
            Some("qty"),
            &format!("invalid input syntax for type integer: \"{v}\""),
            "22P02",
        )
    };
    assert_rejects(
        &rejects(&mut c, "p_csv"),
        &[
            bad_int("a.csv", 6, "notanumber"),
            bad_int("b.csv.gz", 6, "notanumber"),
            bad_int("c.csv.zst", 6, "notanumber"),
        ],
    );
    assert_eq!(
        files(&mut c, "p_csv"),
        vec![
            file("a.csv", "done", 5, 1),
            file("b.csv.gz", "done", 5, 1),
            file("c.csv.zst", "done", 5, 1)
        ]
    );

    // TSV.
    let mut want = tsv_expected(0);
    want.extend(tsv_expected(10));
    want.extend(tsv_expected(20));
    assert_eq!(rows4(&mut c, "f_tsv"), want);
    assert_rejects(
        &rejects(&mut c, "p_tsv"),
        &[
            bad_int("a.tsv", 4, "bad"),
            bad_int("b.tsv.gz", 4, "bad"),
            bad_int("c.tsv.zst", 4, "bad"),
        ],
    );

    // NDJSON.
    let mut want = Vec::new();
    for b in [0, 10, 20, 30] {
        want.extend(ndjson_expected(b));
    }
    assert_eq!(rows4(&mut c, "f_nd"), want);
    let mut want = Vec::new();
    for f in ["a.ndjson", "b.jsonl", "c.ndjson.gz", "d.jsonl.zst"] {
        want.push(bad_int(f, 3, "bad"));
        want.push((
            f.to_string(),
            4,
            None,
            "not valid JSON: key must be a string at line 1 column 2".to_string(),
        ));
        want.push((
            f.to_string(),
            7,
            None,
            "expected a JSON object {\"column\": value, …} per line, found an array".to_string(),
        ));
    }
    assert_rejects(&rejects(&mut c, "p_nd"), &want);
    for f in ["a.ndjson", "b.jsonl", "c.ndjson.gz", "d.jsonl.zst"] {
        let (_, extra) = file_error(&mut c, "p_nd", f);
        assert_eq!(extra, Some(vec!["zzz".to_string()]), "{f}: the unknown key");
    }

    // Header-less, by position.
    assert_eq!(
        rows4(&mut c, "f_pos"),
        vec![
            row4(1, Some("alpha"), Some(10), None),
            row4(2, Some("be,ta"), Some(20), None),
            row4(4, Some("delta"), Some(40), None),
            row4(11, Some("alpha"), Some(10), None),
            row4(12, Some("be,ta"), Some(20), None),
            row4(14, Some("delta"), Some(40), None),
        ]
    );
    let short = |f: &str| {
        (
            f.to_string(),
            3,
            None,
            "expected 4 fields as in the \"columns\" option, found 3".to_string(),
        )
    };
    assert_rejects(
        &rejects(&mut c, "p_pos"),
        &[short("a.csv"), short("b.csv.gz")],
    );
    assert_eq!(
        file_error(&mut c, "p_pos", "a.csv"),
        (
            s("unknown columns ignored: #2"),
            Some(vec!["#2".to_string()])
        ),
        "the skipped position is listed"
    );

    // Forced zstd.
    assert_eq!(rows4(&mut c, "f_forced"), tsv_expected(0));
    assert_eq!(files(&mut c, "p_forced"), vec![file("f.dat", "done", 3, 1)]);

    // Options of the dialect.
    assert_eq!(
        rows4(&mut c, "f_opts"),
        vec![
            row4(1, Some("it's | here"), Some(10), None),
            row4(2, Some("café"), Some(20), Some("")),
            row4(3, Some("NULL"), Some(30), Some("ü")),
        ]
    );
    assert_eq!(
        files(&mut c, "p_opts"),
        vec![file("latin1.csv", "done", 3, 0)]
    );

    // A compressed file done is judged by its size on disk and its decompressed content:
    // touched (same bytes), it stays done; rewritten with other bytes, it is reported changed
    // and its new content is not ingested.
    let b_gz = dirs[0].join("b.csv.gz");
    let f = std::fs::File::options().append(true).open(&b_gz).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    write_atomic(&dirs[0], "c.csv.zst", &zst(&csv_variant(40, false)));
    full_trigger(&mut c, "p_csv");
    full_trigger(&mut c, "p_csv");
    assert_eq!(
        files(&mut c, "p_csv"),
        vec![
            file("a.csv", "done", 5, 1),
            file("b.csv.gz", "done", 5, 1),
            file("c.csv.zst", "changed", 5, 1)
        ]
    );
    assert_eq!(c.int("SELECT count(*) FROM f_csv"), 15);

    for p in ["p_csv", "p_tsv", "p_nd", "p_pos", "p_forced", "p_opts"] {
        assert_consistent(&mut c, p);
        let st = pstatus(&mut c, p);
        let failed = i64::from(p == "p_csv"); // c.csv.zst changed
        assert_eq!(
            (st.state.as_str(), st.files_failed),
            ("running", failed),
            "{p}: {st:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Every type: good values land exactly, a bad value rejects its row only.

const MIX_DDL: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent VALUES (1), (2);
CREATE TABLE mix (
    id int PRIMARY KEY,
    t text, vc varchar(5), ch char(3), si smallint, i int, bi bigint, nu numeric(6,2),
    nbig numeric, re real, dp double precision, bo boolean, d date, tm time, ts timestamp,
    tz timestamptz, iv interval, u uuid, j json, jb jsonb, by bytea, ip inet, ia int[],
    ta text[], m mood, p posint,
    pid int REFERENCES parent (id),
    must text NOT NULL,
    chk int CHECK (chk < 100),
    ident bigint GENERATED ALWAYS AS IDENTITY,
    dfl text DEFAULT 'hello',
    gen int GENERATED ALWAYS AS (id * 2) STORED
);";

/// The columns read back, as PostgreSQL prints them (TimeZone UTC).
const MIX_COLUMNS: &str =
    "id, t, vc, ch, si, i, bi, nu, nbig, re, dp, bo, d, tm, ts, tz, iv, u, j, jb, by, ip, ia, ta, m, p, pid, must, chk, dfl, gen";

/// The values of the good row, as PostgreSQL prints them, after `id`.
fn mix_good_printed(j: &str) -> Vec<Option<String>> {
    [
        "hello, world",
        "abcde",
        "ab ",
        "-32768",
        "2147483647",
        "9223372036854775807",
        "1234.57",
        "123456789012345678901234567890.123456789",
        "1.5",
        "3.141592653589793",
        "t",
        "2024-02-29",
        "23:59:59.999999",
        "2024-01-02 03:04:05.123456",
        "2024-01-02 01:04:05+00",
        "1 day 02:03:04",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        j,
        "{\"a\": [1, 2], \"b\": 1}",
        "\\x0001ff",
        "192.168.0.1/24",
        "{1,2,NULL}",
        "{a,\"b,c\",\"d\\\"e\"}",
        "happy",
        "7",
        "1",
        "must",
        "99",
        "hello",
    ]
    .iter()
    .map(|v| s(v))
    .collect()
}

fn mix_rows(c: &mut Cluster, ids: &str) -> Vec<Vec<Option<String>>> {
    rows_text(
        c,
        &format!("SET TimeZone = 'UTC'; SELECT {MIX_COLUMNS} FROM mix WHERE id {ids} ORDER BY id"),
    )
}

#[test]
fn every_type_converts_as_copy_does_and_a_bad_value_or_a_violated_constraint_rejects_only_its_row()
{
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute(MIX_DDL);
    let dir = folder(&c, "mix");
    // Header names match case-insensitively; "text_value" is mapped to t.
    create(
        &mut c,
        "mix",
        &dir,
        "mix",
        "csv",
        r#"{"trigger_interval": 100, "mapping": {"text_value": "t"}}"#,
    );
    let header = "ID,text_value,VC,ch,si,i,bi,nu,nbig,re,dp,bo,d,tm,ts,tz,iv,u,j,jb,by,ip,ia,ta,m,p,pid,must,chk";
    // The good row's values, in header order after id.
    let good: Vec<&str> = vec![
        "\"hello, world\"",
        "abcde",
        "ab",
        "-32768",
        "2147483647",
        "9223372036854775807",
        "1234.565",
        "123456789012345678901234567890.123456789",
        "1.5",
        "3.141592653589793",
        "yes",
        "2024-02-29",
        "23:59:59.999999",
        "2024-01-02 03:04:05.123456",
        "2024-01-02T03:04:05+02:00",
        "1 day 02:03:04",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "\"{\"\"b\"\": 1, \"\"a\"\": [1, 2]}\"",
        "\"{\"\"b\"\": 1, \"\"a\"\": [1, 2]}\"",
        "\\x0001ff",
        "192.168.0.1/24",
        "\"{1,2,NULL}\"",
        "\"{a,\"\"b,c\"\",\"\"d\\\"\"e\"\"}\"",
        "happy",
        "7",
        "1",
        "must",
        "99",
    ];
    let cols: Vec<&str> = header.split(',').skip(1).collect();
    assert_eq!(cols.len(), good.len());
    // A row with only id and must (everything else NULL, t an empty string).
    let sparse = |id: i32, col: &str, v: &str| -> String {
        cols.iter()
            .map(|c| match *c {
                _ if *c == col => v.to_string(),
                "text_value" => "\"\"".to_string(),
                "must" => "m".to_string(),
                _ => String::new(),
            })
            .fold(id.to_string(), |acc, v| format!("{acc},{v}"))
    };
    // One bad value per column (line, column, value, PostgreSQL's message, SQLSTATE).
    let bad: Vec<(&str, &str, &str, &str)> = vec![
        ("VC", "abcdef", "value too long for type character varying(5)", "22001"),
        ("ch", "abcd", "value too long for type character(3)", "22001"),
        ("si", "32768", "value \"32768\" is out of range for type smallint", "22003"),
        ("i", "2147483648", "value \"2147483648\" is out of range for type integer", "22003"),
        ("bi", "9223372036854775808", "value \"9223372036854775808\" is out of range for type bigint", "22003"),
        ("nu", "12345.67", "numeric field overflow: A field with precision 6, scale 2 must round to an absolute value less than 10^4.", "22003"),
        ("nbig", "1.2.3", "invalid input syntax for type numeric: \"1.2.3\"", "22P02"),
        ("re", "abc", "invalid input syntax for type real: \"abc\"", "22P02"),
        ("dp", "1e400", "\"1e400\" is out of range for type double precision", "22003"),
        ("bo", "maybe", "invalid input syntax for type boolean: \"maybe\"", "22P02"),
        ("d", "2023-02-29", "date/time field value out of range: \"2023-02-29\"", "22008"),
        ("tm", "25:00:00", "date/time field value out of range: \"25:00:00\"", "22008"),
        ("ts", "soon", "invalid input syntax for type timestamp: \"soon\"", "22007"),
        ("tz", "2024-13-01 00:00+00", "date/time field value out of range: \"2024-13-01 00:00+00\"", "22008"),
        ("iv", "1 fortnight", "invalid input syntax for type interval: \"1 fortnight\"", "22007"),
        ("u", "not-a-uuid", "invalid input syntax for type uuid: \"not-a-uuid\"", "22P02"),
        ("j", "{bad", "invalid input syntax for type json: Token \"bad\" is invalid.", "22P02"),
        ("jb", "\"[1,\"", "invalid input syntax for type json: The input string ended unexpectedly.", "22P02"),
        ("by", "\\xZZ", "invalid hexadecimal digit: \"Z\"", "22023"),
        ("ip", "300.1.1.1", "invalid input syntax for type inet: \"300.1.1.1\"", "22P02"),
        ("ia", "\"{1,x}\"", "invalid input syntax for type integer: \"x\"", "22P02"),
        ("ta", "{unterminated", "malformed array literal: \"{unterminated\": Unexpected end of input.", "22P02"),
        ("m", "meh", "invalid input value for enum mood: \"meh\"", "22P02"),
        ("p", "-1", "value for domain posint violates check constraint \"posint_check\"", "23514"),
    ];
    let mut text = format!("{header}\n1,{}\n", good.join(","));
    text += &format!("{}\n", sparse(2, "", ""));
    let first_bad_line = 4;
    for (k, (col, v, _, _)) in bad.iter().enumerate() {
        text += &format!("{}\n", sparse(10 + k as i32, col, v));
    }
    // Constraint violations: CHECK, NOT NULL, primary key, foreign key.
    let l_check = first_bad_line + bad.len() as i64;
    text += &format!("{}\n", sparse(50, "chk", "100"));
    text += &format!("{}\n", sparse(51, "must", ""));
    text += &format!("{}\n", sparse(1, "", ""));
    text += &format!("{}\n", sparse(53, "pid", "3"));
    // A good row after all of them.
    text += &format!("{}\n", sparse(3, "pid", "2"));
    write_atomic(&dir, "mix.csv", text.as_bytes());
    wait_done(&mut c, "mix", 1);

    let got = rejects(&mut c, "mix");
    let mut want: Vec<Reject> = Vec::new();
    for (k, (col, _, msg, state)) in bad.iter().enumerate() {
        let column = col.to_lowercase();
        want.push(refused(
            "mix.csv",
            first_bad_line + k as i64,
            Some(&column),
            msg,
            state,
        ));
    }
    want.push(refused(
        "mix.csv",
        l_check + 2,
        None,
        "duplicate key value violates unique constraint \"mix_pkey\": Key (id)=(1) already exists.",
        "23505",
    ));
    want.push(refused(
        "mix.csv",
        l_check + 3,
        None,
        "insert or update on table \"mix\" violates foreign key constraint \"mix_pid_fkey\": Key (pid)=(3) is not present in table \"parent\".",
        "23503",
    ));
    // CHECK and NOT NULL quote the failing row, whose identity value depends on how many
    // attempts consumed the sequence: compared without it.
    let (check, not_null): (Vec<Reject>, Vec<Reject>) = (
        got.iter().filter(|r| r.1 == l_check).cloned().collect(),
        got.iter().filter(|r| r.1 == l_check + 1).cloned().collect(),
    );
    let got_rest: Vec<Reject> = got
        .iter()
        .filter(|r| r.1 != l_check && r.1 != l_check + 1)
        .cloned()
        .collect();
    assert_rejects(&got_rest, &want);
    // The failing row: id, t (empty), 25 NULLs, must, chk, ident (not compared), dfl, gen.
    let nulls = ", null".repeat(25);
    for (r, head, row_start, row_end, state) in [
        (
            &check,
            "new row for relation \"mix\" violates check constraint \"mix_chk_check\"",
            format!("(50, {nulls}, m, 100, "),
            ", hello, 100).",
            "23514",
        ),
        (
            &not_null,
            "null value in column \"must\" of relation \"mix\" violates not-null constraint",
            format!("(51, {nulls}, null, null, "),
            ", hello, 102).",
            "23502",
        ),
    ] {
        assert_eq!(r.len(), 1, "{got:#?}");
        let (f, _, column, reason) = &r[0];
        assert_eq!((f.as_str(), column), ("mix.csv", &None));
        let prefix = format!("refused by the database: {head}: Failing row contains {row_start}");
        let suffix = format!("{row_end} (SQLSTATE {state})");
        assert!(
            reason.starts_with(&prefix) && reason.ends_with(&suffix),
            "{reason}\nexpected {prefix}…{suffix}"
        );
    }
    assert_eq!(
        files(&mut c, "mix"),
        vec![file("mix.csv", "done", 3, bad.len() as i64 + 4)]
    );

    // The good rows, exactly; the sparse ones with their defaults, identity and generated
    // column.
    let mut row1 = vec![s("1")];
    row1.extend(mix_good_printed("{\"b\": 1, \"a\": [1, 2]}"));
    row1.push(s("2"));
    let sparse_row = |id: i32, pid: Option<&str>| {
        let mut r = vec![s(&id.to_string()), s("")];
        r.extend(std::iter::repeat_n(None, 24));
        r.push(pid.map(String::from));
        r.extend([s("m"), None, s("hello"), s(&(id * 2).to_string())]);
        r
    };
    assert_eq!(
        mix_rows(&mut c, "< 100"),
        vec![row1, sparse_row(2, None), sparse_row(3, Some("2"))]
    );
    assert_eq!(
        c.int("SELECT count(DISTINCT ident) FROM mix WHERE ident IS NOT NULL"),
        3,
        "identity values"
    );

    // The same values as NDJSON: JSON numbers, booleans, objects and arrays as they are
    // written (a number keeps all its digits, a json column keeps the text as written).
    let nd = folder(&c, "mix_nd");
    create(
        &mut c,
        "mix_nd",
        &nd,
        "mix",
        "ndjson",
        r#"{"trigger_interval": 100}"#,
    );
    let lines = [
        r#"{"id":100,"t":"hello, world","vc":"abcde","ch":"ab","si":-32768,"i":2147483647,"bi":9223372036854775807,"nu":1234.565,"nbig":123456789012345678901234567890.123456789,"re":1.5,"dp":3.141592653589793,"bo":true,"d":"2024-02-29","tm":"23:59:59.999999","ts":"2024-01-02 03:04:05.123456","tz":"2024-01-02T03:04:05+02:00","iv":"1 day 02:03:04","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","j":{"b":1,"a":[1,2]},"jb":{"b":1,"a":[1,2]},"by":"\\x0001ff","ip":"192.168.0.1/24","ia":[1,2,null],"ta":["a","b,c","d\"e"],"m":"happy","p":7,"pid":1,"must":"must","chk":99}"#,
        r#"{"id":101,"must":"m","si":40000}"#,
        r#"{"id":102,"must":"m","ia":[1,"x"]}"#,
        r#"{"id":103,"ia":[1]}"#,
        r#"{"id":104,"must":"m","nu":1e2,"ia":[[1,2],[3,4]]}"#,
    ];
    write_atomic(
        &nd,
        "mix.ndjson",
        format!("{}\n", lines.join("\n")).as_bytes(),
    );
    wait_done(&mut c, "mix_nd", 1);
    let mut row100 = vec![s("100")];
    row100.extend(mix_good_printed("{\"b\":1,\"a\":[1,2]}"));
    row100.push(s("200"));
    let got = mix_rows(&mut c, ">= 100");
    assert_eq!(got.len(), 2, "{got:#?}");
    for (i, (g, w)) in got[0].iter().zip(&row100).enumerate() {
        assert_eq!(g, w, "column {}", MIX_COLUMNS.split(", ").nth(i).unwrap());
    }
    assert_eq!(
        rows_text(&mut c, "SELECT nu::text, ia::text FROM mix WHERE id = 104"),
        vec![vec![s("100.00"), s("{{1,2},{3,4}}")]]
    );
    assert_rejects(
        &rejects(&mut c, "mix_nd"),
        &[
            refused(
                "mix.ndjson",
                2,
                Some("si"),
                "value \"40000\" is out of range for type smallint",
                "22003",
            ),
            refused(
                "mix.ndjson",
                3,
                Some("ia"),
                "invalid input syntax for type integer: \"x\"",
                "22P02",
            ),
            (
                "mix.ndjson".into(),
                4,
                s("must"),
                "required column \"must\" (NOT NULL without default) is missing or null".into(),
            ),
        ],
    );
    assert_consistent(&mut c, "mix");
    assert_consistent(&mut c, "mix_nd");
}

// ---------------------------------------------------------------------------------------------
// 4. A required column missing fails the file; extra columns are listed; options changed.

#[test]
fn a_missing_required_column_fails_the_file_and_extra_columns_are_listed() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute(
        "CREATE TABLE req (id int PRIMARY KEY, must text NOT NULL, opt text,
                           dflt text NOT NULL DEFAULT 'd', n bigint GENERATED BY DEFAULT AS IDENTITY)",
    );
    let dir = folder(&c, "req");
    // Refused definitions: an unknown option (named), an unknown format, a bad value.
    for (format, options, why) in [
        (
            "csv",
            r#"{"delimeter": ";"}"#,
            "unknown option \"delimeter\" for format csv",
        ),
        ("xml", "{}", "unknown format \"xml\""),
        (
            "csv",
            r#"{"header": "yes"}"#,
            "option \"header\" must be true or false",
        ),
        (
            "ndjson",
            r#"{"delimiter": ";"}"#,
            "unknown option \"delimiter\" for format ndjson",
        ),
    ] {
        let err = expect_db_error(
            c.client()
                .batch_execute(&create_sql("req", &dir, "req", format, options)),
            options,
        );
        assert!(err.contains(why), "{format} {options}: {err}");
    }
    create(
        &mut c,
        "req",
        &dir,
        "req",
        "csv",
        r#"{"trigger_interval": 100}"#,
    );
    write_atomic(&dir, "missing.csv", b"id,opt,dflt\n1,a,b\n2,c,d\n");
    write_atomic(
        &dir,
        "extra.csv",
        b"id,MUST,Bonus,other\n1,x,9,9\n2,y,9,9\n",
    );
    c.wait_for("both files judged", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE pipeline = 'req' AND status IN ('done', 'failed')")
            == 2
    });
    assert_eq!(
        files(&mut c, "req"),
        vec![
            file("extra.csv", "done", 2, 0),
            file("missing.csv", "failed", 0, 0)
        ]
    );
    let (error, extra) = file_error(&mut c, "req", "missing.csv");
    assert_eq!(
        error.as_deref(),
        Some(
            "required table column \"must\" (NOT NULL without default) gets no value in the file; \
             the file's columns are \"id\", \"opt\", \"dflt\"; add it to the file, map a file column \
             to it with \"mapping\", or give it a default"
        )
    );
    assert_eq!(extra, None);
    assert_eq!(
        file_error(&mut c, "req", "extra.csv"),
        (
            s("unknown columns ignored: Bonus, other"),
            Some(vec!["Bonus".to_string(), "other".to_string()])
        )
    );
    // Nothing of the failed file; the other one with the defaults of the missing columns.
    assert_eq!(
        rows_text(&mut c, "SELECT id, must, opt, dflt, n FROM req ORDER BY id"),
        vec![
            vec![s("1"), s("x"), None, s("d"), s("1")],
            vec![s("2"), s("y"), None, s("d"), s("2")]
        ]
    );
    let st = pstatus(&mut c, "req");
    assert_eq!(
        (
            st.state.as_str(),
            st.files_ingested,
            st.files_failed,
            st.rows_ingested
        ),
        ("running", 1, 1, 2),
        "{st:#?}"
    );
    // Both files stay where they are (processed_action keep).
    assert!(dir.join("missing.csv").is_file() && dir.join("extra.csv").is_file());

    // Options are checked (an unknown key is named), merged, and a null removes a key.
    let err = expect_db_error(
        c.client().batch_execute(
            "SELECT ingest_alter_pipeline('req', options => '{\"procesed_action\": \"archive\"}')",
        ),
        "alter with a typo",
    );
    assert!(err.contains("unknown option \"procesed_action\""), "{err}");
    c.execute(
        "SELECT ingest_alter_pipeline('req', options => '{\"processed_action\": \"archive\"}')",
    );
    assert_eq!(
        c.text("SELECT options::text FROM ingest_pipelines WHERE pipeline_name = 'req'")
            .as_deref(),
        Some(r#"{"processed_action": "archive", "trigger_interval": 100}"#)
    );
    // Applied to the file already done (as for the events pipeline, a file already failed
    // stays where it is).
    c.wait_for("extra.csv archived", T, |_| {
        dir.join("archive/extra.csv").is_file()
    });
    assert!(!dir.join("extra.csv").exists());
    full_trigger(&mut c, "req");
    assert!(dir.join("missing.csv").is_file());

    // Retried, the failed file is judged again: failed again, now moved to the failed folder.
    assert_eq!(
        c.text("SELECT ingest_retry('missing.csv', 'req')")
            .as_deref(),
        Some("missing.csv will be ingested again")
    );
    c.wait_for("missing.csv in the failed folder", T, |_| {
        dir.join("failed/missing.csv").is_file()
    });
    let err = expect_db_error(
        c.client()
            .batch_execute("SELECT ingest_retry('extra.csv', 'req')"),
        "retry of a done file",
    );
    assert!(err.contains("is done"), "{err}");
    // Fixed and dropped again, it is ingested (and archived).
    write_atomic(&dir, "missing.csv", b"id,must\n3,z\n");
    c.wait_for("the fixed file archived", T, |_| {
        dir.join("archive/missing.csv").is_file()
    });
    assert_eq!(
        files(&mut c, "req"),
        vec![
            file("extra.csv", "done", 2, 0),
            file("missing.csv", "done", 1, 0)
        ]
    );
    assert_eq!(c.int("SELECT count(*) FROM req"), 3);
    c.execute("SELECT ingest_alter_pipeline('req', options => '{\"processed_action\": null}')");
    assert_eq!(
        c.text("SELECT options::text FROM ingest_pipelines WHERE pipeline_name = 'req'")
            .as_deref(),
        Some(r#"{"trigger_interval": 100}"#)
    );
    assert_consistent(&mut c, "req");
}

// ---------------------------------------------------------------------------------------------
// 5. Security: who may create what, folders inside the allowed roots, the owner's privileges.

/// The error `sql` gives when `client` runs it.
fn error_of(client: &mut postgres::Client, sql: &str) -> String {
    expect_db_error(client.batch_execute(sql), sql)
}

/// Waits for pipeline `p`'s state to be `state`; returns its detail.
fn wait_state(c: &mut Cluster, p: &str, state: &str) -> String {
    let mut detail = String::new();
    c.wait_for(&format!("pipeline {p} in state {state}"), T, |c| {
        let st = pstatus(c, p);
        detail = st.detail;
        st.state == state
    });
    detail
}

/// Gives pipeline `p` time for several triggers (its trigger_interval is 100 ms) and asks for
/// one more: for checking that something does not happen.
fn let_it_trigger(c: &mut Cluster, p: &str) {
    c.execute(&format!("SELECT ingest_trigger({})", lit(p)));
    std::thread::sleep(Duration::from_millis(800));
    c.execute(&format!("SELECT ingest_trigger({})", lit(p)));
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn a_non_superuser_admin_is_held_to_the_allowed_roots_and_inserts_with_its_own_privileges() {
    let mut c = Cluster::start(ClusterOptions::default());
    let allowed = folder(&c, "allowed");
    let outside = folder(&c, "outside");
    let evil_twin = folder(&c, "allowed_twin");
    let input = folder(&c, "allowed/in");
    std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
    let roots = format!("{}, /nonexistent/root", allowed.display());
    c.reload(&[("ecommerce_ingest.allowed_roots", &roots)]);
    c.wait_for("allowed_roots set", T, |c| {
        c.text("SHOW ecommerce_ingest.allowed_roots").as_deref() == Some(roots.as_str())
    });
    c.execute(
        "CREATE ROLE alice LOGIN; GRANT ecommerce_ingest_admin TO alice;
         CREATE ROLE bob LOGIN; GRANT ecommerce_ingest_admin TO bob;
         CREATE ROLE nobody LOGIN;
         CREATE TABLE sec (id int PRIMARY KEY, who text DEFAULT current_user, trig_user text);
         CREATE FUNCTION sec_stamp() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN NEW.trig_user := current_user; RETURN NEW; END $$;
         CREATE TRIGGER sec_stamp BEFORE INSERT ON sec FOR EACH ROW EXECUTE FUNCTION sec_stamp();
         GRANT INSERT, SELECT ON sec TO alice;
         CREATE TABLE noins (id int); GRANT SELECT ON noins TO alice;",
    );
    let mut alice = c.connect_as("alice");
    let mut bob = c.connect_as("bob");
    let mut nobody = c.connect_as("nobody");
    let opts = r#"{"trigger_interval": 100}"#;

    // Folders outside the roots, however they are spelled.
    let refused_dirs: Vec<(String, &str)> = vec![
        (outside.display().to_string(), "is not inside ecommerce_ingest.allowed_roots"),
        (
            format!("{}/../outside", allowed.display()),
            "once symbolic links and '..' are resolved, which is not inside ecommerce_ingest.allowed_roots",
        ),
        (
            allowed.join("link").display().to_string(),
            "once symbolic links and '..' are resolved, which is not inside ecommerce_ingest.allowed_roots",
        ),
        (
            allowed.join("link/sub").display().to_string(),
            "once symbolic links and '..' are resolved, which is not inside ecommerce_ingest.allowed_roots",
        ),
        (evil_twin.display().to_string(), "is not inside ecommerce_ingest.allowed_roots"),
        ("relative/dir".to_string(), "must be an absolute path"),
    ];
    for (dir, why) in &refused_dirs {
        let err = error_of(
            &mut alice,
            &create_sql("a1", Path::new(dir), "sec", "csv", opts),
        );
        assert!(err.contains(why), "{dir}: {err}");
        if !dir.starts_with("relative") {
            assert!(err.contains("input_dir"), "{dir}: {err}");
        }
    }
    // The archive and failed folders too.
    for key in ["archive_dir", "failed_dir"] {
        let err = error_of(
            &mut alice,
            &create_sql(
                "a1",
                &input,
                "sec",
                "csv",
                &format!(r#"{{"{key}": "{}/../outside"}}"#, allowed.display()),
            ),
        );
        assert!(
            err.contains(key) && err.contains("not inside ecommerce_ingest.allowed_roots"),
            "{key}: {err}"
        );
    }
    // A table the owner may not insert into.
    let err = error_of(&mut alice, &create_sql("a1", &input, "noins", "csv", opts));
    assert!(
        err.contains("the pipeline's owner (you) has no INSERT privilege on noins"),
        "{err}"
    );
    // Not an admin: no EXECUTE privilege; and even with it, the function refuses.
    let err = error_of(&mut nobody, &create_sql("a1", &input, "sec", "csv", opts));
    assert!(
        err.contains("permission denied for function ingest_create_pipeline"),
        "{err}"
    );
    c.execute("GRANT EXECUTE ON FUNCTION ingest_create_pipeline TO nobody");
    let err = error_of(&mut nobody, &create_sql("a1", &input, "sec", "csv", opts));
    assert!(
        err.contains("only superusers and members of ecommerce_ingest_admin manage pipelines"),
        "{err}"
    );
    assert_eq!(c.int("SELECT count(*) FROM ingest_pipelines"), 0);

    // Inside the roots: created, owned by alice.
    alice
        .batch_execute(&create_sql("alice_p", &input, "sec", "csv", opts))
        .unwrap_or_else(|e| panic!("{}", db_error_text(&e)));
    assert_eq!(
        c.text("SELECT owner::text FROM ingest_pipelines WHERE pipeline_name = 'alice_p'")
            .as_deref(),
        Some("alice")
    );
    // Another admin may neither drop nor change it; nor may alice move it out of the roots.
    for sql in [
        "SELECT ingest_drop_pipeline('alice_p')",
        "SELECT ingest_alter_pipeline('alice_p', options => '{\"batch_rows\": 5}')",
    ] {
        let err = error_of(&mut bob, sql);
        assert!(
            err.contains(
                "only the owner of pipeline \"alice_p\" (or a superuser) may change or drop it"
            ),
            "{sql}: {err}"
        );
    }
    let err = error_of(
        &mut alice,
        &format!(
            "SELECT ingest_alter_pipeline('alice_p', input_dir => {})",
            lit(&allowed.join("link").display().to_string())
        ),
    );
    assert!(
        err.contains("not inside ecommerce_ingest.allowed_roots"),
        "{err}"
    );

    // Rows are inserted as alice: the column default and the trigger see her.
    write_atomic(&input, "a.csv", b"id\n1\n2\n");
    // A symbolic link to a file outside the roots is never followed.
    std::fs::write(outside.join("secret.csv"), "id\n666\n").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.csv"), input.join("b.csv")).unwrap();
    wait_done(&mut c, "alice_p", 1);
    c.wait_for("the symlink judged", T, |c| files(c, "alice_p").len() == 2);
    assert_eq!(
        rows_text(&mut c, "SELECT id, who, trig_user FROM sec ORDER BY id"),
        vec![
            vec![s("1"), s("alice"), s("alice")],
            vec![s("2"), s("alice"), s("alice")]
        ]
    );
    assert_eq!(
        files(&mut c, "alice_p"),
        vec![file("a.csv", "done", 2, 0), file("b.csv", "failed", 0, 0)]
    );
    let (why, _) = file_error(&mut c, "alice_p", "b.csv");
    assert!(
        why.as_deref().is_some_and(|w| w.contains("symbolic link")),
        "{why:?}"
    );

    // INSERT revoked: state error saying why, nothing ingested; granted again: it goes on.
    c.execute("REVOKE INSERT ON sec FROM alice");
    let detail = wait_state(&mut c, "alice_p", "error");
    assert!(
        detail.contains("its owner has no INSERT privilege on public.sec"),
        "{detail}"
    );
    write_atomic(&input, "c.csv", b"id\n3\n");
    let_it_trigger(&mut c, "alice_p");
    assert_eq!(c.int("SELECT count(*) FROM sec"), 2);
    assert_eq!(pstatus(&mut c, "alice_p").state, "error");
    c.execute("GRANT INSERT ON sec TO alice");
    wait_done(&mut c, "alice_p", 2);
    assert_eq!(
        wait_state(&mut c, "alice_p", "running"),
        "ingesting files as they arrive"
    );
    assert_eq!(
        rows_text(&mut c, "SELECT who, trig_user FROM sec WHERE id = 3"),
        vec![vec![s("alice"), s("alice")]]
    );

    // Row-level security applying to alice: refused (COPY cannot enforce policies).
    c.execute(
        "ALTER TABLE sec ENABLE ROW LEVEL SECURITY;
         CREATE POLICY only_small ON sec WITH CHECK (id < 100);",
    );
    let detail = wait_state(&mut c, "alice_p", "error");
    assert!(
        detail.contains("row-level security applies to its owner on public.sec"),
        "{detail}"
    );
    write_atomic(&input, "d.csv", b"id\n4\n500\n");
    let_it_trigger(&mut c, "alice_p");
    assert_eq!(c.int("SELECT count(*) FROM sec"), 3);
    c.execute("ALTER TABLE sec DISABLE ROW LEVEL SECURITY");
    wait_done(&mut c, "alice_p", 3);
    assert_eq!(c.int("SELECT count(*) FROM sec"), 5);

    // The roots changed by a superuser: alice's folder is outside them now.
    c.reload(&[("ecommerce_ingest.allowed_roots", "/nonexistent/root")]);
    let detail = wait_state(&mut c, "alice_p", "error");
    assert!(
        detail.contains("is not inside ecommerce_ingest.allowed_roots (/nonexistent/root)"),
        "{detail}"
    );
    c.reload(&[("ecommerce_ingest.allowed_roots", &roots)]);
    wait_state(&mut c, "alice_p", "running");

    // A folder inside the roots replaced later by a symbolic link out of them stops it.
    let later = allowed.join("later");
    postgres_folder(&later);
    alice
        .batch_execute(&create_sql("alice_l", &later, "sec", "csv", opts))
        .unwrap_or_else(|e| panic!("{}", db_error_text(&e)));
    wait_state(&mut c, "alice_l", "running");
    std::fs::remove_dir(&later).unwrap();
    std::os::unix::fs::symlink(&outside, &later).unwrap();
    let detail = wait_state(&mut c, "alice_l", "error");
    assert!(
        detail.contains("once symbolic links and '..' are resolved"),
        "{detail}"
    );
    let_it_trigger(&mut c, "alice_l");
    // Whenever the swap fell (even between a trigger's check of the folder and the reading of
    // its files), the file outside was never read: at most listed, as not readable.
    assert_eq!(c.int("SELECT count(*) FROM sec WHERE id = 666"), 0);
    for (f, status, ok, rejected) in files(&mut c, "alice_l") {
        assert_eq!(
            (f.as_str(), status.as_str(), ok, rejected),
            ("secret.csv", "error", 0, 0)
        );
    }

    // The owner drops it.
    alice
        .batch_execute("SELECT ingest_drop_pipeline('alice_l')")
        .unwrap_or_else(|e| panic!("{}", db_error_text(&e)));
    assert_eq!(c.int("SELECT count(*) FROM ingest_pipelines"), 1);
    assert_consistent(&mut c, "alice_p");
}

// ---------------------------------------------------------------------------------------------
// 6. Dropping a pipeline.

#[test]
fn a_dropped_pipeline_leaves_its_rows_and_its_worker_stops_and_the_same_name_starts_afresh() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("CREATE TABLE d (id int, v text)");
    let dir = folder(&c, "d");
    let other = folder(&c, "other");
    c.execute("CREATE TABLE o (id int)");
    create(
        &mut c,
        "drop_me",
        &dir,
        "d",
        "csv",
        r#"{"trigger_interval": 100}"#,
    );
    create(
        &mut c,
        "keep_me",
        &other,
        "o",
        "csv",
        r#"{"trigger_interval": 100}"#,
    );
    write_atomic(&dir, "a.csv", b"id,v\n1,a\nx,b\n3,c\n");
    write_atomic(&dir, "b.csv.gz", &gz(b"id,v\n4,d\n"));
    write_atomic(&other, "o.csv", b"id\n1\n");
    wait_done(&mut c, "drop_me", 2);
    wait_done(&mut c, "keep_me", 1);
    let a = c.write_file_atomic("e.csv", &gen_file(3, 50));
    wait_done(&mut c, "events", 1);
    let counts = |c: &mut Cluster, p: &str| -> Vec<i64> {
        [
            "ingest_files",
            "ingest_rejects",
            "ingest_file_chunks",
            "ingest_batches",
        ]
        .iter()
        .map(|v| {
            c.client()
                .query_one(
                    &format!("SELECT count(*) FROM {v} WHERE pipeline = $1"),
                    &[&p],
                )
                .unwrap()
                .get(0)
        })
        .collect()
    };
    let before = counts(&mut c, "drop_me");
    assert_eq!(&before[..3], &[2, 1, 2], "files, rejects, chunks");
    assert!(before[3] >= 1, "batches: {before:?}");
    let pid = wait_worker_of(&mut c, "drop_me");

    assert_eq!(
        c.text("SELECT ingest_drop_pipeline('drop_me')").as_deref(),
        Some("pipeline drop_me dropped (2 files forgotten; the rows it inserted stay)")
    );
    assert_eq!(counts(&mut c, "drop_me"), vec![0, 0, 0, 0]);
    assert!(try_pstatus(&mut c, "drop_me").is_none());
    assert_eq!(c.int("SELECT count(*) FROM d"), 3, "the rows stay");
    c.wait_for("the dropped pipeline's worker gone", T, |c| {
        c.int(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        )) == 0
    });
    assert_eq!(
        c.int("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ecommerce_ingest pipeline'"),
        1,
        "keep_me's worker only"
    );
    // Nothing more lands in d meanwhile; the others are untouched.
    write_atomic(&dir, "c.csv", b"id,v\n5,e\n");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(c.int("SELECT count(*) FROM d"), 3);
    assert_eq!(counts(&mut c, "keep_me")[..3], [1, 0, 1]);
    assert_eq!(files(&mut c, "events"), vec![file("e.csv", "done", 50, 0)]);
    let err = expect_db_error(
        c.client().batch_execute("SELECT ingest_trigger('drop_me')"),
        "trigger of a dropped pipeline",
    );
    assert!(err.contains("drop_me"), "{err}");

    // Created again under the same name: an empty ledger, every file ingested again.
    create(
        &mut c,
        "drop_me",
        &dir,
        "d",
        "csv",
        r#"{"trigger_interval": 100}"#,
    );
    wait_done(&mut c, "drop_me", 3);
    assert_eq!(
        files(&mut c, "drop_me"),
        vec![
            file("a.csv", "done", 2, 1),
            file("b.csv.gz", "done", 1, 0),
            file("c.csv", "done", 1, 0)
        ]
    );
    assert_eq!(
        rows_text(&mut c, "SELECT id, count(*) FROM d GROUP BY id ORDER BY id"),
        vec![
            vec![s("1"), s("2")],
            vec![s("3"), s("2")],
            vec![s("4"), s("2")],
            vec![s("5"), s("1")]
        ]
    );
    let new_pid = wait_worker_of(&mut c, "drop_me");
    assert_ne!(new_pid, pid);
    c.assert_exact_rows(&expected_rows(&[a]).rows);
    assert_consistent(&mut c, "drop_me");
}

/// The pid of pipeline `p`'s worker, once it has one.
fn wait_worker_of(c: &mut Cluster, p: &str) -> i32 {
    let mut pid = 0;
    c.wait_for(&format!("the worker of pipeline {p}"), T, |c| {
        pid = pstatus(c, p).worker_pid.unwrap_or(0);
        pid != 0
    });
    pid
}

// ---------------------------------------------------------------------------------------------
// 7. Crashes in the middle of a big compressed file.

const BIG_ROWS: i64 = 300_000;

/// `big.csv`: ids 1..=BIG_ROWS, each row about 200 bytes (about 920 chunks of 64 kB).
fn big_csv() -> Vec<u8> {
    let pad = "x".repeat(180);
    let mut s = String::with_capacity(BIG_ROWS as usize * 200 + 20);
    s.push_str("id,payload,n\n");
    for i in 1..=BIG_ROWS {
        s.push_str(&format!("{i},p{i}-{pad},{}\n", i % 1000));
    }
    s.into_bytes()
}

/// Chunks of pipeline `big` committed, and its file's status.
fn big_progress(c: &mut Cluster) -> (i64, Option<String>) {
    (
        c.int("SELECT count(*) FROM ingest_file_chunks WHERE pipeline = 'big'"),
        c.text("SELECT (SELECT status FROM ingest_files WHERE pipeline = 'big')"),
    )
}

/// Waits until `more` chunks beyond `after` are committed; checks the file is not done yet (a
/// crash after the end would prove nothing).
fn big_mid_way(c: &mut Cluster, after: i64, more: i64) -> i64 {
    c.wait_for(&format!("{more} more chunks of big.csv.gz"), T, |c| {
        big_progress(c).0 >= after + more
    });
    let (chunks, status) = big_progress(c);
    assert_ne!(
        status.as_deref(),
        Some("done"),
        "big.csv.gz was done before the crash: the test proves nothing"
    );
    chunks
}

#[test]
fn crashes_in_the_middle_of_a_big_gzip_file_lose_and_duplicate_nothing() {
    let mut c = Cluster::start(ClusterOptions::default());
    // No unique constraint: a row stored twice would stay twice.
    c.execute("CREATE TABLE big (id bigint, payload text, n int)");
    let dir = folder(&c, "big");
    create(
        &mut c,
        "big",
        &dir,
        "big",
        "csv",
        r#"{"chunk_size": 64, "batch_rows": 200, "trigger_interval": 100}"#,
    );
    let t0 = Instant::now();
    let plain = big_csv();
    let size = plain.len() as i64;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&plain).unwrap();
    let packed = e.finish().unwrap();
    drop(plain);
    println!(
        "big.csv.gz: {size} bytes, {} compressed, made in {:?}",
        packed.len(),
        t0.elapsed()
    );
    let t0 = Instant::now();
    write_atomic(&dir, "big.csv.gz", &packed);

    // 1. SIGKILL of the pipeline's worker: the postmaster restarts every process.
    let chunks = big_mid_way(&mut c, 0, 3);
    let pid = wait_worker_of(&mut c, "big");
    println!("SIGKILL of the worker {pid} after {chunks} chunks");
    c.crash_process(pid);
    let after = big_progress(&mut c).0;
    assert!(after >= chunks, "committed chunks lost: {after} < {chunks}");
    // 2. An immediate shutdown.
    let chunks = big_mid_way(&mut c, after, 3);
    println!("immediate shutdown after {chunks} chunks");
    c.restart("immediate");
    let after = big_progress(&mut c).0;
    assert!(after >= chunks, "committed chunks lost: {after} < {chunks}");
    // 3. The worker terminated (a clean exit): started again by the events worker.
    let chunks = big_mid_way(&mut c, after, 3);
    let pid = wait_worker_of(&mut c, "big");
    println!("pg_terminate_backend({pid}) after {chunks} chunks");
    assert_eq!(
        c.text(&format!("SELECT pg_terminate_backend({pid})::text"))
            .as_deref(),
        Some("true")
    );
    let mut new_pid = 0;
    c.wait_for("the worker started again", T, |c| {
        new_pid = pstatus(c, "big").worker_pid.unwrap_or(0);
        new_pid != 0 && new_pid != pid
    });

    wait_done(&mut c, "big", 1);
    println!("big.csv.gz done {:?} after it was written", t0.elapsed());
    let n = BIG_ROWS;
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(id), sum(n),
                    count(*) FILTER (WHERE payload = 'p' || id || '-' || repeat('x', 180) AND n = id % 1000)
               FROM big"
        ),
        vec![vec![
            s(&n.to_string()),
            s(&n.to_string()),
            s("1"),
            s(&n.to_string()),
            s(&(n * (n + 1) / 2).to_string()),
            s(&(1..=n).map(|i| i % 1000).sum::<i64>().to_string()),
            s(&n.to_string()),
        ]]
    );
    assert_eq!(files(&mut c, "big"), vec![file("big.csv.gz", "done", n, 0)]);
    assert_consistent(&mut c, "big");
    // The chunks cover the decompressed content from the header's end to the last byte.
    let (first, last, count): (i64, i64, i64) = {
        let r = c
            .client()
            .query_one(
                "SELECT min(start_offset), max(end_offset), count(*) FROM ingest_file_chunks
                  WHERE pipeline = 'big'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((first, last), ("id,payload,n\n".len() as i64, size));
    assert!(count > 100, "{count} chunks");
    full_trigger(&mut c, "big");
    assert_eq!(c.int("SELECT count(*) FROM big"), n);
    assert_eq!(files(&mut c, "big"), vec![file("big.csv.gz", "done", n, 0)]);
}

// ---------------------------------------------------------------------------------------------
// 8. A damaged archive.

#[test]
fn a_truncated_or_corrupt_archive_fails_and_keeps_the_rows_before_the_damage() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("CREATE TABLE dmg (id bigint, payload text)");
    let dir = folder(&c, "dmg");
    create(
        &mut c,
        "dmg",
        &dir,
        "dmg",
        "csv",
        r#"{"chunk_size": 64, "trigger_interval": 100}"#,
    );
    let pad = "y".repeat(150);
    let mut text = String::from("id,payload\n");
    for i in 1..=20_000 {
        text += &format!("{i},{pad}\n");
    }
    let packed = gz(text.as_bytes());
    write_atomic(&dir, "cut.csv.gz", &packed[..packed.len() / 2]);
    write_atomic(&dir, "noise.csv.zst", b"this is not zstd at all\n");
    c.wait_for("both files failed", T, |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE pipeline = 'dmg' AND status = 'failed'") == 2
    });
    let got = files(&mut c, "dmg");
    let ok = got[0].2;
    assert_eq!(got[0].0, "cut.csv.gz");
    assert!(
        ok > 1000 && ok < 20_000,
        "rows before the damage: {ok} (the half of the archive holds several chunks)"
    );
    assert_eq!(got[1], file("noise.csv.zst", "failed", 0, 0));
    // Exactly the rows before the damage, each once.
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM dmg"
        ),
        vec![vec![
            s(&ok.to_string()),
            s(&ok.to_string()),
            s("1"),
            s(&ok.to_string())
        ]]
    );
    let (error, _) = file_error(&mut c, "dmg", "cut.csv.gz");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("truncated or corrupt gzip data")
            && error.contains(&format!("its rows before line {} were ingested", ok + 2)),
        "{error}"
    );
    let (error, _) = file_error(&mut c, "dmg", "noise.csv.zst");
    assert!(error.unwrap_or_default().contains("zstd"));
    let st = pstatus(&mut c, "dmg");
    assert_eq!((st.files_failed, st.rows_ingested), (2, ok), "{st:#?}");
    assert_consistent(&mut c, "dmg");
    full_trigger(&mut c, "dmg");
    assert_eq!(c.int("SELECT count(*) FROM dmg"), ok);
}
