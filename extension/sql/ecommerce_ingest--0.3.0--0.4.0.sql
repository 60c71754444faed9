-- ecommerce_ingest 0.3.0 -> 0.4.0 (ALTER EXTENSION ecommerce_ingest UPDATE): several workers
-- per pipeline (ingest_workers() shows each), and the ledger's counters kept once per statement
-- instead of once per row, in shards (so that a pipeline's workers do not wait for each other).
-- Every change here is also in schema.sql / the functions' definitions, so that an updated
-- installation equals a new one (tests/tests/suite/upgrade.rs compares them).

\echo Use "ALTER EXTENSION ecommerce_ingest UPDATE" to load this file. \quit

-- The ledger first, then the counters: the order in which the ledger's writers take them (so
-- that none of them can deadlock with this update).
LOCK TABLE @extschema@.ingest_ledger IN SHARE ROW EXCLUSIVE MODE;

-- A pipeline's counters are the sum of its shards (see schema.sql); 0.3.0's rows, one per
-- pipeline, become its shard 0.
ALTER TABLE @extschema@.ingest_counters ADD COLUMN shard integer NOT NULL DEFAULT 0;
ALTER TABLE @extschema@.ingest_counters DROP CONSTRAINT ingest_counters_pkey,
    ADD CONSTRAINT ingest_counters_pkey PRIMARY KEY (pipeline, shard);
COMMENT ON TABLE @extschema@.ingest_counters IS 'Per pipeline, summed over its shards: files done and failed, rows ingested and rejected, as ingest_ledger says (kept by triggers).';

-- Counted once per statement, from its transition tables, by three triggers (a trigger with
-- transition tables has one event) instead of once per row.
DROP TRIGGER ingest_ledger_counts ON @extschema@.ingest_ledger;
CREATE OR REPLACE FUNCTION @extschema@.ingest_count_ledger() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $count$
BEGIN
    -- Once per statement, from its transition tables: each pipeline's deltas added to this
    -- backend's shard in one upsert. A branch names only the tables its own trigger declares
    -- (PL/pgSQL plans a statement when it first runs it).
    IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        INSERT INTO public.ingest_counters AS c (pipeline, shard, files_done, files_failed, rows_ok, rows_rejected)
        SELECT d.pipeline, 1 OPERATOR(pg_catalog.+) (pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.%) 1023),
               pg_catalog.sum(CASE WHEN d.status OPERATOR(pg_catalog.=) 'done' THEN d.sign ELSE 0 END),
               pg_catalog.sum(CASE WHEN d.status OPERATOR(pg_catalog.=) ANY ('{failed,changed}'::text[]) THEN d.sign ELSE 0 END),
               pg_catalog.sum(d.sign OPERATOR(pg_catalog.*) d.rows_ok), pg_catalog.sum(d.sign OPERATOR(pg_catalog.*) d.rows_rejected)
          FROM (SELECT pipeline, status, rows_ok, rows_rejected, 1 AS sign FROM new_rows) d
         GROUP BY d.pipeline
        ON CONFLICT (pipeline, shard) DO UPDATE SET
            files_done = c.files_done OPERATOR(pg_catalog.+) EXCLUDED.files_done,
            files_failed = c.files_failed OPERATOR(pg_catalog.+) EXCLUDED.files_failed,
            rows_ok = c.rows_ok OPERATOR(pg_catalog.+) EXCLUDED.rows_ok,
            rows_rejected = c.rows_rejected OPERATOR(pg_catalog.+) EXCLUDED.rows_rejected;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
        INSERT INTO public.ingest_counters AS c (pipeline, shard, files_done, files_failed, rows_ok, rows_rejected)
        SELECT d.pipeline, 1 OPERATOR(pg_catalog.+) (pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.%) 1023),
               pg_catalog.sum(CASE WHEN d.status OPERATOR(pg_catalog.=) 'done' THEN d.sign ELSE 0 END),
               pg_catalog.sum(CASE WHEN d.status OPERATOR(pg_catalog.=) ANY ('{failed,changed}'::text[]) THEN d.sign ELSE 0 END),
               pg_catalog.sum(d.sign OPERATOR(pg_catalog.*) d.rows_ok), pg_catalog.sum(d.sign OPERATOR(pg_catalog.*) d.rows_rejected)
          FROM (SELECT pipeline, status, rows_ok, rows_rejected, 1 AS sign FROM new_rows
                UNION ALL
                SELECT pipeline, status, rows_ok, rows_rejected, -1 FROM old_rows) d
         GROUP BY d.pipeline
        ON CONFLICT (pipeline, shard) DO UPDATE SET
            files_done = c.files_done OPERATOR(pg_catalog.+) EXCLUDED.files_done,
            files_failed = c.files_failed OPERATOR(pg_catalog.+) EXCLUDED.files_failed,
            rows_ok = c.rows_ok OPERATOR(pg_catalog.+) EXCLUDED.rows_ok,
            rows_rejected = c.rows_rejected OPERATOR(pg_catalog.+) EXCLUDED.rows_rejected;
    ELSIF pg_catalog.current_setting('ecommerce_ingest.forgetting', true) OPERATOR(pg_catalog.=) 'on' THEN
        -- A worker forgetting files that left the folder long ago (ledger_retention): what
        -- they brought stays counted.
        NULL;
    ELSE
        INSERT INTO public.ingest_counters AS c (pipeline, shard, files_done, files_failed, rows_ok, rows_rejected)
        SELECT d.pipeline, 1 OPERATOR(pg_catalog.+) (pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.%) 1023),
               pg_catalog.sum(CASE WHEN d.status OPERATOR(pg_catalog.=) 'done' THEN d.sign ELSE 0 END),
               pg_catalog.sum(CASE WHEN d.status OPERATOR(pg_catalog.=) ANY ('{failed,changed}'::text[]) THEN d.sign ELSE 0 END),
               pg_catalog.sum(d.sign OPERATOR(pg_catalog.*) d.rows_ok), pg_catalog.sum(d.sign OPERATOR(pg_catalog.*) d.rows_rejected)
          FROM (SELECT pipeline, status, rows_ok, rows_rejected, -1 AS sign FROM old_rows) d
         GROUP BY d.pipeline
        ON CONFLICT (pipeline, shard) DO UPDATE SET
            files_done = c.files_done OPERATOR(pg_catalog.+) EXCLUDED.files_done,
            files_failed = c.files_failed OPERATOR(pg_catalog.+) EXCLUDED.files_failed,
            rows_ok = c.rows_ok OPERATOR(pg_catalog.+) EXCLUDED.rows_ok,
            rows_rejected = c.rows_rejected OPERATOR(pg_catalog.+) EXCLUDED.rows_rejected;
    END IF;
    RETURN NULL;
END
$count$;
CREATE TRIGGER ingest_ledger_counts_insert AFTER INSERT ON @extschema@.ingest_ledger
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.ingest_count_ledger();
CREATE TRIGGER ingest_ledger_counts_update AFTER UPDATE ON @extschema@.ingest_ledger
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.ingest_count_ledger();
CREATE TRIGGER ingest_ledger_counts_delete AFTER DELETE ON @extschema@.ingest_ledger
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.ingest_count_ledger();

-- One row per ingestion worker (a pipeline with the option workers > 1, or
-- ecommerce_ingest.workers > 1 for the events pipeline, has several).
CREATE FUNCTION @extschema@."ingest_workers"() RETURNS TABLE (
	"pipeline" TEXT,  /* String */
	"worker" INT,  /* i32 */
	"pid" INT,  /* Option < i32 > */
	"state" TEXT,  /* String */
	"files_pending" bigint,  /* Option < i64 > */
	"last_trigger_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"last_batch_rows" bigint,  /* Option < i64 > */
	"rows_per_second" double precision,  /* Option < f64 > */
	"last_error" TEXT,  /* Option < String > */
	"last_error_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"detail" TEXT  /* String */
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_workers_wrapper';
REVOKE ALL ON FUNCTION @extschema@.ingest_workers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.ingest_workers() TO ecommerce_ingest_monitor;

-- When a file left the input folder: ecommerce_ingest.ledger_retention after it, its record
-- (and its chunks) are deleted. Files that left before this update are found at the worker's
-- next full scan.
ALTER TABLE @extschema@.ingest_ledger ADD COLUMN left_at timestamptz;
CREATE INDEX ingest_ledger_left_idx ON @extschema@.ingest_ledger (pipeline, left_at) WHERE left_at IS NOT NULL;
CREATE OR REPLACE VIEW @extschema@.ingest_files AS
    SELECT file_name, file_id, status, size, content_hash, rows_ok, rows_rejected, chunks,
           committed_offset, error, extra_columns, mtime, discovered_at, committed_at, finished_at,
           pipeline, rows_duplicate, left_at
      FROM @extschema@.ingest_ledger;
