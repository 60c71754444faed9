//! Every SQL statement the worker runs. All values travel as parameters; no SQL text is ever
//! built from file names or file contents. Every name is schema-qualified (the extension lives
//! in `public`, see the control file), and the worker's session pins `search_path` to
//! `pg_catalog, pg_temp` (session.rs), so no object or operator a database owner creates can
//! be picked up by the worker, which runs as a superuser.

/// Folders of tablespaces other than pg_default and pg_global (which live in the data directory).
pub const TABLESPACES: &str =
    "SELECT spcname::pg_catalog.text, pg_catalog.pg_tablespace_location(oid)
  FROM pg_catalog.pg_tablespace";

/// The first lock of every worker transaction that reads or writes the extension's tables, taken
/// ACCESS EXCLUSIVE by DROP EXTENSION first of all (see drop_guard.rs): a DROP waits for the
/// chunk in flight and the next chunk waits for the DROP, so the two never lock the tables in
/// opposite orders. (A table lock, not an advisory one: any role could take an advisory lock and
/// stall the worker; this one needs a privilege on the table.)
pub const FIRST_LOCK: &str = "LOCK TABLE public.ingest_control IN ACCESS SHARE MODE";

/// Whether pipeline $1 is paused. The events pipeline: paused when ingest_control says so (its
/// row is created by the first ingest_pause()). Another pipeline: its row in ingest_pipelines,
/// and paused when the row is gone (dropped: nothing more is written; its worker stops).
pub const PAUSED: &str = "SELECT CASE WHEN $1 OPERATOR(pg_catalog.=) 'events'
  THEN coalesce((SELECT paused FROM public.ingest_control), false)
  ELSE coalesce((SELECT paused FROM public.ingest_pipelines
                  WHERE pipeline_name OPERATOR(pg_catalog.=) $1 FOR KEY SHARE), true) END";

/// The worker pauses itself (a re-created extension next to files an earlier installation
/// ingested); a state set by a user first is kept.
pub const PAUSE_WITH_REASON: &str =
    "INSERT INTO public.ingest_control (paused, changed_at, changed_by, reason)
VALUES (true, pg_catalog.now(), 'ecommerce_ingest', $1)
ON CONFLICT (singleton) DO NOTHING";

/// Loads the whole ledger (once per start or extension re-creation).
/// (EXTRACT gives an exact numeric: date_part's double would round nanoseconds and make a
/// file look changed.)
pub const LEDGER_LOAD: &str =
    "SELECT file_name, status, size, (EXTRACT(epoch FROM mtime) * 1e9)::pg_catalog.int8,
        committed_offset, committed_line, chunks, content_hash, device, inode,
        (EXTRACT(epoch FROM ctime) * 1e9)::pg_catalog.int8, prefix_hash,
        (EXTRACT(epoch FROM discovered_at) * 1e6)::pg_catalog.int8,
        (EXTRACT(epoch FROM left_at) * 1e6)::pg_catalog.int8
   FROM public.ingest_ledger WHERE pipeline OPERATOR(pg_catalog.=) $1";

/// File $1 of pipeline $2's ledger row, locked for this transaction unless another session
/// holds it (then no row: see [`LEDGER_ROW_EXISTS`]).
pub const LEDGER_ROW_FOR_UPDATE: &str =
    "SELECT file_id, committed_offset, status FROM public.ingest_ledger
  WHERE file_name OPERATOR(pg_catalog.=) $1 AND pipeline OPERATOR(pg_catalog.=) $2
  FOR UPDATE SKIP LOCKED";

/// Whether file $1 of pipeline $2 has a committed ledger row (whoever holds it).
pub const LEDGER_ROW_EXISTS: &str = "SELECT EXISTS (SELECT FROM public.ingest_ledger
  WHERE file_name OPERATOR(pg_catalog.=) $1 AND pipeline OPERATOR(pg_catalog.=) $2)";

/// A new file's ledger row, created in the transaction of its first chunk (its id goes into
/// every row of `user_events`); the end of the chunk fills it in.
pub const LEDGER_NEW: &str = "INSERT INTO public.ingest_ledger (file_name, status, size, pipeline)
VALUES ($1, 'ingesting', $2, $3) ON CONFLICT (pipeline, file_name) DO NOTHING RETURNING file_id";

pub const INSERT_REJECTS: &str = "
INSERT INTO public.ingest_rejected (file_name, line_number, column_name, reason, raw_text, pipeline)
SELECT $1, l, c, r, w, $6
  -- (unqualified: only the plain name is the multi-array form; search_path is pg_catalog)
  FROM unnest($2::pg_catalog.int8[], $3::pg_catalog.text[], $4::pg_catalog.text[], $5::pg_catalog.text[]) AS t(l, c, r, w)";

pub const INSERT_CHUNK: &str = "
INSERT INTO public.ingest_chunks
    (file_name, chunk_no, start_offset, end_offset, first_line, last_line, rows_ok, rows_rejected,
     pipeline)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Writes a file's ledger row. The identity columns (device, inode, ctime) describe the file the
/// row is about; `prefix_hash` is the hash of the bytes before `committed_offset`, checked
/// before a later chunk resumes (NULL: keep the one recorded).
pub const LEDGER_UPSERT: &str = "
INSERT INTO public.ingest_ledger AS l
    (file_name, status, size, mtime, content_hash, committed_offset, committed_line,
     rows_ok, rows_rejected, chunks, extra_columns, error, committed_at, finished_at,
     device, inode, ctime, prefix_hash, pipeline, rows_duplicate)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, pg_catalog.clock_timestamp(),
        CASE WHEN $13 THEN pg_catalog.clock_timestamp() END, $14, $15, $16, $17, $18, $19)
ON CONFLICT (pipeline, file_name) DO UPDATE SET
    status = EXCLUDED.status,
    size = EXCLUDED.size,
    mtime = EXCLUDED.mtime,
    content_hash = coalesce(EXCLUDED.content_hash, l.content_hash),
    committed_offset = EXCLUDED.committed_offset,
    committed_line = EXCLUDED.committed_line,
    rows_ok = l.rows_ok OPERATOR(pg_catalog.+) EXCLUDED.rows_ok,
    rows_rejected = l.rows_rejected OPERATOR(pg_catalog.+) EXCLUDED.rows_rejected,
    rows_duplicate = l.rows_duplicate OPERATOR(pg_catalog.+) EXCLUDED.rows_duplicate,
    chunks = l.chunks OPERATOR(pg_catalog.+) EXCLUDED.chunks,
    extra_columns = coalesce(EXCLUDED.extra_columns, l.extra_columns),
    error = EXCLUDED.error,
    committed_at = EXCLUDED.committed_at,
    finished_at = EXCLUDED.finished_at,
    device = coalesce(EXCLUDED.device, l.device),
    inode = coalesce(EXCLUDED.inode, l.inode),
    ctime = coalesce(EXCLUDED.ctime, l.ctime),
    prefix_hash = coalesce(EXCLUDED.prefix_hash, l.prefix_hash)";

/// A done file seen again with the same bytes (touched, copied back): remember its new
/// size, mtime and identity, nothing else.
pub const LEDGER_TOUCH: &str = "UPDATE public.ingest_ledger
   SET size = $2, mtime = $3, device = $4, inode = $5, ctime = $6
 WHERE file_name OPERATOR(pg_catalog.=) $1 AND pipeline OPERATOR(pg_catalog.=) $7";

/// A file that was never read (only a transient error was recorded) and is gone: forget it.
pub const LEDGER_FORGET_UNREAD: &str = "DELETE FROM public.ingest_ledger
WHERE file_name OPERATOR(pg_catalog.=) $1 AND pipeline OPERATOR(pg_catalog.=) $2
  AND status OPERATOR(pg_catalog.=) 'error'
  AND rows_ok OPERATOR(pg_catalog.=) 0 AND rows_rejected OPERATOR(pg_catalog.=) 0";

pub const INSERT_BATCH_LOG: &str = "
INSERT INTO public.ingest_batch_log
    (started_at, finished_at, trigger, files, rows, rejected, duration_ms, rows_per_second, pipeline)
VALUES ($1, pg_catalog.clock_timestamp(), $2, $3, $4, $5, $6, $7, $8)";

/// A pipeline's definition (other than the events pipeline, which postgresql.conf configures).
pub const PIPELINE_DEF: &str = "
SELECT p.owner::pg_catalog.oid, p.target::pg_catalog.oid, p.target::pg_catalog.text, p.input_dir,
       p.format, p.options::pg_catalog.text, p.paused, p.transform,
       coalesce((SELECT c.relkind OPERATOR(pg_catalog.=) 'v' FROM pg_catalog.pg_class c
                  WHERE c.oid OPERATOR(pg_catalog.=) p.target), false),
       (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) p.target)
  FROM public.ingest_pipelines p WHERE p.pipeline_name OPERATOR(pg_catalog.=) $1";

/// The other pipelines' folders (pipeline.rs: `neighbours`): name, input folder, format and
/// options (archive_dir, failed_dir).
pub const PIPELINE_FOLDERS: &str = "
SELECT pipeline_name, input_dir, format, options::pg_catalog.text
  FROM public.ingest_pipelines WHERE pipeline_name OPERATOR(pg_catalog.<>) $1";

/// Every pipeline's name and its number of workers (the events worker starts them; the option
/// is checked when stored, and clamped here all the same).
pub const PIPELINE_NAMES: &str = "SELECT pipeline_name,
    CASE WHEN pg_catalog.jsonb_typeof(options -> 'workers') OPERATOR(pg_catalog.=) 'number'
         THEN LEAST(GREATEST((options ->> 'workers')::pg_catalog.numeric, 1), 8)::pg_catalog.int8 END
  FROM public.ingest_pipelines ORDER BY pipeline_name";

/// Deletes up to `$3` of a pipeline's oldest rejects, of those older than `$2` seconds
/// (`ecommerce_ingest.history_retention`): oldest first by id, so a pass reads at most `$3`
/// rows however many are kept. Returns the rows deleted.
pub const PRUNE_REJECTS: &str = "
DELETE FROM public.ingest_rejected
 WHERE reject_id OPERATOR(pg_catalog.=) ANY (ARRAY(
       SELECT o.reject_id FROM (SELECT reject_id, rejected_at FROM public.ingest_rejected
                                 WHERE pipeline OPERATOR(pg_catalog.=) $1
                                 ORDER BY reject_id LIMIT $3) o
        WHERE o.rejected_at OPERATOR(pg_catalog.<)
              (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $2))))
RETURNING 1";

/// The same for the batch history.
pub const PRUNE_BATCHES: &str = "
DELETE FROM public.ingest_batch_log
 WHERE batch_id OPERATOR(pg_catalog.=) ANY (ARRAY(
       SELECT o.batch_id FROM (SELECT batch_id, finished_at FROM public.ingest_batch_log
                                WHERE pipeline OPERATOR(pg_catalog.=) $1
                                ORDER BY batch_id LIMIT $3) o
        WHERE o.finished_at OPERATOR(pg_catalog.<)
              (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $2))))
RETURNING 1";

/// Folds pipeline `$1`'s counters into its shard 0: the other shards (where each backend adds
/// its statements' deltas, see schema.sql) are deleted and their sums added to shard 0, so that
/// they do not pile up. A shard another transaction holds (a writer not yet committed) is
/// skipped, never waited for; it is folded next time. Writers never write shard 0.
pub const FOLD_COUNTERS: &str = "
WITH gone AS (
    DELETE FROM public.ingest_counters
     WHERE pipeline OPERATOR(pg_catalog.=) $1
       AND shard OPERATOR(pg_catalog.=) ANY (ARRAY(
           SELECT s.shard FROM public.ingest_counters s
            WHERE s.pipeline OPERATOR(pg_catalog.=) $1 AND s.shard OPERATOR(pg_catalog.<>) 0
              FOR UPDATE SKIP LOCKED))
    RETURNING pipeline, files_done, files_failed, rows_ok, rows_rejected)
INSERT INTO public.ingest_counters AS c (pipeline, shard, files_done, files_failed, rows_ok, rows_rejected)
SELECT pipeline, 0, pg_catalog.sum(files_done), pg_catalog.sum(files_failed), pg_catalog.sum(rows_ok),
       pg_catalog.sum(rows_rejected)
  FROM gone GROUP BY pipeline
ON CONFLICT (pipeline, shard) DO UPDATE SET
    files_done = c.files_done OPERATOR(pg_catalog.+) EXCLUDED.files_done,
    files_failed = c.files_failed OPERATOR(pg_catalog.+) EXCLUDED.files_failed,
    rows_ok = c.rows_ok OPERATOR(pg_catalog.+) EXCLUDED.rows_ok,
    rows_rejected = c.rows_rejected OPERATOR(pg_catalog.+) EXCLUDED.rows_rejected";

/// Records that files $2 of pipeline $1 left the input folder (unless already recorded, or
/// still being ingested); returns each name marked and when (µs since the Unix epoch).
pub const LEDGER_LEFT: &str = "UPDATE public.ingest_ledger SET left_at = pg_catalog.now()
 WHERE pipeline OPERATOR(pg_catalog.=) $1 AND file_name OPERATOR(pg_catalog.=) ANY ($2)
   AND left_at IS NULL AND status OPERATOR(pg_catalog.=) ANY ('{done,failed,changed}'::pg_catalog.text[])
RETURNING file_name, (EXTRACT(epoch FROM left_at) * 1e6)::pg_catalog.int8";

/// Files $2 of pipeline $1 are in the input folder again: they have not left.
pub const LEDGER_BACK: &str = "UPDATE public.ingest_ledger SET left_at = NULL
 WHERE pipeline OPERATOR(pg_catalog.=) $1 AND file_name OPERATOR(pg_catalog.=) ANY ($2)
   AND left_at IS NOT NULL";

/// Deletes the records (and chunks) of files $2 of pipeline $1 that left the folder more than
/// $3 seconds ago; returns the names deleted. (ecommerce_ingest.forgetting is set for the
/// transaction: the counters keep what these files brought.)
pub const LEDGER_FORGET: &str = "WITH gone AS (
    DELETE FROM public.ingest_ledger
     WHERE pipeline OPERATOR(pg_catalog.=) $1 AND file_name OPERATOR(pg_catalog.=) ANY ($2)
       AND left_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $3))
       AND status OPERATOR(pg_catalog.=) ANY ('{done,failed,changed}'::pg_catalog.text[])
    RETURNING file_name),
  chunks AS (
    DELETE FROM public.ingest_chunks c USING gone
     WHERE c.pipeline OPERATOR(pg_catalog.=) $1 AND c.file_name OPERATOR(pg_catalog.=) gone.file_name)
SELECT file_name FROM gone";
