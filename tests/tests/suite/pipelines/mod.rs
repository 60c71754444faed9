//! Pipelines: folders of CSV, TSV or NDJSON files, plain or compressed, into tables of the
//! user's choosing, next to the events pipeline in the same cluster. Every test checks exact
//! outcomes: the rows stored (read back), each reject's line, column and reason, each file's
//! status.

mod columns;
mod crash;
mod flow;
mod formats;
mod lifecycle;
mod locks;
mod security;
mod targets;
mod transform;
mod types;

use e2e::*;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(super) const T: Duration = Duration::from_secs(60);

pub(super) fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub(super) fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// Folder `name` inside the test's own folder, owned by the postgres OS user.
pub(super) fn folder(c: &Cluster, name: &str) -> PathBuf {
    let d = c.root_dir().join(name);
    postgres_folder(&d);
    d
}

pub(super) fn create_sql(
    name: &str,
    dir: &Path,
    target: &str,
    format: &str,
    options: &str,
) -> String {
    format!(
        "SELECT ingest_create_pipeline({}, {}, {}, {}, {}::jsonb)",
        lit(name),
        lit(&dir.display().to_string()),
        lit(target),
        lit(format),
        lit(options)
    )
}

pub(super) fn create(
    c: &mut Cluster,
    name: &str,
    dir: &Path,
    target: &str,
    format: &str,
    options: &str,
) {
    c.execute(&create_sql(name, dir, target, format, options));
}

/// One row of `ingest_status()`, of a pipeline.
#[derive(Debug, Clone)]
pub(super) struct PStatus {
    pub(super) target: String,
    pub(super) format: String,
    pub(super) state: String,
    pub(super) paused: bool,
    pub(super) worker_pid: Option<i32>,
    pub(super) files_ingested: i64,
    pub(super) files_failed: i64,
    pub(super) files_pending: Option<i64>,
    pub(super) rows_ingested: i64,
    pub(super) rows_rejected: i64,
    /// Unix microseconds.
    pub(super) last_trigger_at: Option<i64>,
    pub(super) detail: String,
}

pub(super) fn try_pstatus(c: &mut Cluster, p: &str) -> Option<PStatus> {
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

pub(super) fn pstatus(c: &mut Cluster, p: &str) -> PStatus {
    try_pstatus(c, p).unwrap_or_else(|| panic!("ingest_status() has no row for pipeline {p}"))
}

/// Files of pipeline `p` with status `done`.
pub(super) fn done(c: &mut Cluster, p: &str) -> i64 {
    c.client()
        .query_one(
            "SELECT count(*) FROM ingest_files WHERE pipeline = $1 AND status = 'done'",
            &[&p],
        )
        .unwrap()
        .get(0)
}

/// Waits until exactly `n` files of pipeline `p` are done.
pub(super) fn wait_done(c: &mut Cluster, p: &str, n: i64) {
    c.wait_for(&format!("{n} files of pipeline {p} done"), T, |c| {
        done(c, p) >= n
    });
    assert_eq!(done(c, p), n, "files of pipeline {p} done");
}

/// `ingest_trigger(p)`, then waits for a whole trigger of `p` that started after the call.
pub(super) fn full_trigger(c: &mut Cluster, p: &str) {
    let t0 = c.now_us();
    c.execute(&format!("SELECT ingest_trigger({})", lit(p)));
    c.wait_for(
        &format!("a complete trigger of pipeline {p}"),
        Duration::from_secs(30),
        |c| pstatus(c, p).last_trigger_at.is_some_and(|t| t > t0),
    );
}

/// `(file, status, rows_ok, rows_rejected)` of every file of pipeline `p`, by name.
pub(super) fn files(c: &mut Cluster, p: &str) -> Vec<(String, String, i64, i64)> {
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

pub(super) fn file(name: &str, status: &str, ok: i64, rejected: i64) -> (String, String, i64, i64) {
    (name.into(), status.into(), ok, rejected)
}

/// `(error, extra_columns)` of file `f` of pipeline `p`.
pub(super) fn file_error(
    c: &mut Cluster,
    p: &str,
    f: &str,
) -> (Option<String>, Option<Vec<String>>) {
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
pub(super) type Reject = (String, i64, Option<String>, String);

/// Every reject of pipeline `p`, by file and line.
pub(super) fn rejects(c: &mut Cluster, p: &str) -> Vec<Reject> {
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
pub(super) fn refused(
    file: &str,
    line: i64,
    column: Option<&str>,
    message: &str,
    state: &str,
) -> Reject {
    (
        file.into(),
        line,
        column.map(String::from),
        format!("refused by the database: {message} (SQLSTATE {state})"),
    )
}

/// Compares rejects one by one (a clearer failure than the whole lists).
pub(super) fn assert_rejects(got: &[Reject], want: &[Reject]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "reject {i}");
    }
    assert_eq!(got.len(), want.len(), "rejects: {got:#?}");
}

/// The rows of a query, every column as text (NULL as `None`).
pub(super) fn rows_text(c: &mut Cluster, sql: &str) -> Vec<Vec<Option<String>>> {
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
pub(super) fn pipeline_problems(c: &mut Cluster, p: &str) -> Vec<String> {
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

pub(super) fn assert_consistent(c: &mut Cluster, p: &str) {
    let problems = pipeline_problems(c, p);
    assert!(problems.is_empty(), "pipeline {p}: {problems:#?}");
}

pub(super) fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// The pid of pipeline `p`'s worker, once it has one.
pub(super) fn wait_worker_of(c: &mut Cluster, p: &str) -> i32 {
    let mut pid = 0;
    c.wait_for(&format!("the worker of pipeline {p}"), T, |c| {
        pid = pstatus(c, p).worker_pid.unwrap_or(0);
        pid != 0
    });
    pid
}

/// Creates a CSV pipeline with `options` and an optional transform.
pub(super) fn create_with(
    c: &mut Cluster,
    name: &str,
    dir: &Path,
    target: &str,
    options: &str,
    transform: Option<&str>,
) {
    c.execute(&format!(
        "SELECT ingest_create_pipeline({}, {}, {}, 'csv', {}::jsonb, {})",
        lit(name),
        lit(&dir.display().to_string()),
        lit(target),
        lit(options),
        transform.map_or("NULL".to_string(), lit)
    ));
}

/// Drops a file into `dir` atomically (written beside it, then renamed).
pub(super) fn put(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// `(file, status, rows_ok, rows_rejected, rows_duplicate, error)` of every file of `p`.
pub(super) fn ledger(
    c: &mut Cluster,
    p: &str,
) -> Vec<(String, String, i64, i64, i64, Option<String>)> {
    c.client()
        .query(
            "SELECT file_name, status, rows_ok, rows_rejected, rows_duplicate, error
               FROM ingest_files WHERE pipeline = $1 ORDER BY file_name",
            &[&p],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

/// Waits until every one of the `n` files of `p` is done or failed.
pub(super) fn wait_settled(c: &mut Cluster, p: &str, n: i64) {
    c.wait_for(&format!("{n} files of {p} done or failed"), T, |c| {
        c.client()
            .query_one(
                "SELECT count(*) FROM ingest_files WHERE pipeline = $1 AND status IN ('done', 'failed')",
                &[&p],
            )
            .unwrap()
            .get::<_, i64>(0)
            >= n
    });
}
