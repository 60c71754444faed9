//! Every SQL statement the worker runs. All values travel as parameters; no SQL text is ever
//! built from file names or file contents.

pub const EXTENSION_OID: &str =
    "SELECT (SELECT oid::int8 FROM pg_catalog.pg_extension WHERE extname = 'ecommerce_ingest')";

/// Taken (shared) first in every chunk transaction, and exclusively by DROP EXTENSION (see
/// drop_guard.rs): a DROP waits for the chunk in flight and the next chunk waits for the DROP,
/// so the two never lock the extension's tables in opposite orders.
pub const CHUNK_LOCK: &str = "SELECT pg_advisory_xact_lock_shared($1)";

/// Paused unless a row says otherwise (the row is created by the first ingest_pause()).
pub const PAUSED: &str = "SELECT coalesce((SELECT paused FROM public.ingest_control), false)";

pub const LEDGER_ROW_FOR_UPDATE: &str =
    "SELECT file_id, committed_offset FROM public.ingest_ledger WHERE file_name = $1 FOR UPDATE";

/// A new file's ledger row, created in the transaction of its first chunk (its id goes into
/// every row of `user_events`); the end of the chunk fills it in.
pub const LEDGER_NEW: &str = "INSERT INTO public.ingest_ledger (file_name, status, size)
VALUES ($1, 'ingesting', $2) RETURNING file_id";

pub const INSERT_REJECTS: &str = "
INSERT INTO public.ingest_rejected (file_name, line_number, column_name, reason, raw_text)
SELECT $1, l, c, r, w FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[]) AS t(l, c, r, w)";

pub const INSERT_CHUNK: &str = "
INSERT INTO public.ingest_chunks
    (file_name, chunk_no, start_offset, end_offset, first_line, last_line, rows_ok, rows_rejected)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub const LEDGER_UPSERT: &str = "
INSERT INTO public.ingest_ledger AS l
    (file_name, status, size, mtime, content_hash, committed_offset, committed_line,
     rows_ok, rows_rejected, chunks, extra_columns, error, committed_at, finished_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, clock_timestamp(),
        CASE WHEN $13 THEN clock_timestamp() END)
ON CONFLICT (file_name) DO UPDATE SET
    status = EXCLUDED.status,
    size = EXCLUDED.size,
    mtime = EXCLUDED.mtime,
    content_hash = coalesce(EXCLUDED.content_hash, l.content_hash),
    committed_offset = EXCLUDED.committed_offset,
    committed_line = EXCLUDED.committed_line,
    rows_ok = l.rows_ok + EXCLUDED.rows_ok,
    rows_rejected = l.rows_rejected + EXCLUDED.rows_rejected,
    chunks = l.chunks + EXCLUDED.chunks,
    extra_columns = coalesce(EXCLUDED.extra_columns, l.extra_columns),
    error = EXCLUDED.error,
    committed_at = EXCLUDED.committed_at,
    finished_at = EXCLUDED.finished_at";

/// A done file seen again with the same bytes (touched, copied back): remember its new
/// size and mtime, nothing else.
pub const LEDGER_TOUCH: &str =
    "UPDATE public.ingest_ledger SET size = $2, mtime = $3 WHERE file_name = $1";

/// A file that was never read (only a transient error was recorded) and is gone: forget it.
pub const LEDGER_FORGET_UNREAD: &str = "DELETE FROM public.ingest_ledger
WHERE file_name = $1 AND status = 'error' AND rows_ok = 0 AND rows_rejected = 0";

pub const INSERT_BATCH_LOG: &str = "
INSERT INTO public.ingest_batch_log
    (started_at, finished_at, trigger, files, rows, rejected, duration_ms, rows_per_second)
VALUES ($1, clock_timestamp(), $2, $3, $4, $5, $6, $7)";
