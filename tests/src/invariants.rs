//! Invariants that must hold at any moment, whatever happened: no (file, line) stored twice,
//! and the ledger, its chunks, the rows and the rejects agree.

use crate::cluster::Cluster;
use postgres::Client;

/// Duplicated (file, line) pairs: must always be empty.
pub const DUPLICATES_QUERY: &str =
    "SELECT source_file, source_line, count(*) FROM user_events_with_source
  GROUP BY source_file, source_line HAVING count(*) > 1";

impl Cluster {
    pub fn duplicates(&mut self) -> Vec<(String, i64, i64)> {
        self.client()
            .query(DUPLICATES_QUERY, &[])
            .expect("duplicates query")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

/// Checks the exactly-once bookkeeping as committed at this moment, file by file: the ledger's
/// row and reject counts equal what `user_events` and `ingest_rejected` hold, nothing lies at or
/// beyond the committed line, the chunks add up to the ledger and are contiguous, and no
/// (file, line) is stored twice. Returns one line per problem (empty: all consistent). Only the
/// events pipeline's rows are looked at (other pipelines' rows are not in `user_events`; before
/// 0.3.0 the tables have no `pipeline` column and every row is the events pipeline's).
pub fn ledger_problems(client: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    let q = "WITH e AS (SELECT source_file AS f, count(*) AS n, max(source_line) AS m
                        FROM user_events_with_source GROUP BY 1),
                  r AS (SELECT file_name AS f, count(*) AS n, max(line_number) AS m
                        FROM (SELECT * FROM ingest_rejected x WHERE coalesce(to_jsonb(x) ->> 'pipeline', 'events') = 'events') rj GROUP BY 1),
                  k AS (SELECT file_name AS f, count(*) AS n, sum(rows_ok)::int8 AS ok,
                               sum(rows_rejected)::int8 AS rej
                        FROM (SELECT * FROM ingest_chunks x WHERE coalesce(to_jsonb(x) ->> 'pipeline', 'events') = 'events') ch GROUP BY 1)
             SELECT format('%s: ledger status %s rows_ok %s rows_rejected %s chunks %s committed_line %s; \
                            user_events %s rows (max line %s); rejects %s (max line %s); chunk rows %s/%s in %s chunks',
                           coalesce(l.file_name, e.f, r.f), l.status, l.rows_ok, l.rows_rejected, l.chunks,
                           l.committed_line, e.n, e.m, r.n, r.m, k.ok, k.rej, k.n)
               FROM (SELECT * FROM ingest_ledger x WHERE coalesce(to_jsonb(x) ->> 'pipeline', 'events') = 'events') l
               FULL JOIN e ON e.f = l.file_name
               FULL JOIN r ON r.f = coalesce(l.file_name, e.f)
               LEFT JOIN k ON k.f = l.file_name
              WHERE coalesce(l.rows_ok, 0) <> coalesce(e.n, 0)
                 OR coalesce(l.rows_rejected, 0) <> coalesce(r.n, 0)
                 OR e.m >= l.committed_line OR r.m >= l.committed_line
                 OR coalesce(k.ok, 0) <> coalesce(l.rows_ok, 0)
                 OR coalesce(k.rej, 0) <> coalesce(l.rows_rejected, 0)
                 OR coalesce(k.n, 0) <> coalesce(l.chunks, 0)";
    for r in client.query(q, &[]).expect("ledger consistency query") {
        out.push(r.get::<_, String>(0));
    }
    let q = "SELECT format('%s: chunk %s starts at %s (line %s) but the previous ended at %s (line %s)',
                           file_name, chunk_no, start_offset, first_line, prev_end, prev_line + 1)
               FROM (SELECT *, lag(end_offset) OVER w AS prev_end, lag(last_line) OVER w AS prev_line,
                            lag(chunk_no) OVER w AS prev_no
                       FROM (SELECT * FROM ingest_chunks x WHERE coalesce(to_jsonb(x) ->> 'pipeline', 'events') = 'events') ch WINDOW w AS (PARTITION BY file_name ORDER BY chunk_no)) c
              WHERE prev_no IS NOT NULL
                AND (prev_no <> chunk_no - 1 OR start_offset <> prev_end OR first_line <= prev_line)";
    for r in client.query(q, &[]).expect("chunk contiguity query") {
        out.push(r.get::<_, String>(0));
    }
    for r in client
        .query(DUPLICATES_QUERY, &[])
        .expect("duplicates query")
    {
        out.push(format!(
            "{}: line {} stored {} times",
            r.get::<_, String>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2)
        ));
    }
    out
}

/// Checks `ingest_status()`'s counters (files_ingested, files_failed, rows_ingested,
/// rows_rejected: kept in `ingest_counters` by triggers on the ledger) against the ledger's own
/// sums, for every pipeline the status shows, both read in one snapshot (a REPEATABLE READ
/// transaction: a worker committing meanwhile cannot make them differ). Returns one line per
/// pipeline that differs (empty: they agree). Needs 0.3.0 or later (a ledger with pipelines).
pub fn counter_problems(client: &mut Client) -> Vec<String> {
    let q = "WITH s AS (SELECT pipeline, files_ingested, files_failed, rows_ingested, rows_rejected
                        FROM ingest_status()),
                  l AS (SELECT pipeline, count(*) FILTER (WHERE status = 'done') AS files_ingested,
                               count(*) FILTER (WHERE status IN ('failed', 'changed')) AS files_failed,
                               coalesce(sum(rows_ok), 0)::int8 AS rows_ingested,
                               coalesce(sum(rows_rejected), 0)::int8 AS rows_rejected
                          FROM ingest_ledger GROUP BY pipeline)
             SELECT format('%s: ingest_status() counts %s/%s files ingested/failed and %s/%s rows \
                            ingested/rejected, the ledger %s/%s and %s/%s',
                           s.pipeline, s.files_ingested, s.files_failed, s.rows_ingested, s.rows_rejected,
                           coalesce(l.files_ingested, 0), coalesce(l.files_failed, 0),
                           coalesce(l.rows_ingested, 0), coalesce(l.rows_rejected, 0))
               FROM s LEFT JOIN l ON l.pipeline = s.pipeline
              WHERE (s.files_ingested, s.files_failed, s.rows_ingested, s.rows_rejected)
                    IS DISTINCT FROM (coalesce(l.files_ingested, 0), coalesce(l.files_failed, 0),
                                      coalesce(l.rows_ingested, 0), coalesce(l.rows_rejected, 0))";
    let mut t = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .expect("begin");
    let out = t
        .query(q, &[])
        .expect("counters against the ledger")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    t.commit().expect("commit");
    out
}
