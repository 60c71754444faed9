-- ecommerce_ingest 0.2.0 -> 0.3.0 (ALTER EXTENSION ecommerce_ingest UPDATE): pipelines.
-- Every change here is also in schema.sql / the functions' definitions, so that an updated
-- installation equals a new one (tests/tests/suite/upgrade.rs compares them).

\echo Use "ALTER EXTENSION ecommerce_ingest UPDATE" to load this file. \quit

-- Every ledger, chunk, reject and batch row belongs to a pipeline; the rows 0.2.0 wrote are the
-- events pipeline's. A file name is unique within its pipeline.
ALTER TABLE @extschema@.ingest_ledger ADD COLUMN pipeline text NOT NULL DEFAULT 'events';
-- Rows skipped because their key was already in the target (a pipeline's dedup_key).
ALTER TABLE @extschema@.ingest_ledger ADD COLUMN rows_duplicate bigint NOT NULL DEFAULT 0;
ALTER TABLE @extschema@.ingest_ledger DROP CONSTRAINT ingest_ledger_pkey,
    ADD CONSTRAINT ingest_ledger_pkey PRIMARY KEY (pipeline, file_name);
ALTER TABLE @extschema@.ingest_chunks ADD COLUMN pipeline text NOT NULL DEFAULT 'events';
ALTER TABLE @extschema@.ingest_chunks DROP CONSTRAINT ingest_chunks_pkey,
    ADD CONSTRAINT ingest_chunks_pkey PRIMARY KEY (pipeline, file_name, chunk_no);
ALTER TABLE @extschema@.ingest_rejected ADD COLUMN pipeline text NOT NULL DEFAULT 'events';
DROP INDEX @extschema@.ingest_rejected_file_idx;
CREATE INDEX ingest_rejected_file_idx ON @extschema@.ingest_rejected (pipeline, file_name, line_number);
ALTER TABLE @extschema@.ingest_batch_log ADD COLUMN pipeline text NOT NULL DEFAULT 'events';

CREATE TABLE @extschema@.ingest_pipelines (
    pipeline_name text PRIMARY KEY
        CHECK (pipeline_name ~ '^[a-z_][a-z0-9_]{0,62}$' AND pipeline_name <> 'events'),
    owner         regrole NOT NULL,
    target        regclass NOT NULL,
    input_dir     text NOT NULL,
    format        text NOT NULL CHECK (format IN ('csv', 'tsv', 'ndjson')),
    options       jsonb NOT NULL DEFAULT '{}',
    -- SQL run on each chunk's rows (in pg_temp.ingest_batch), in the chunk's transaction, as
    -- the owner; NULL: the rows are appended to the target.
    transform     text,
    paused        boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    changed_at    timestamptz NOT NULL DEFAULT now(),
    changed_by    text NOT NULL DEFAULT current_user
);
COMMENT ON TABLE @extschema@.ingest_pipelines IS 'One row per pipeline besides events: its folder, target table, format, options and owner.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ingest_pipelines', '');
REVOKE ALL ON @extschema@.ingest_pipelines FROM PUBLIC;
GRANT SELECT ON @extschema@.ingest_pipelines TO ecommerce_ingest_monitor;

-- Each pipeline's counters, kept by a trigger on ingest_ledger in the transaction that changes
-- the ledger, so that ingest_status() reads one row per pipeline whatever the number of files
-- ever ingested. Derived data: not dumped (restoring the ledger fires the trigger again).
CREATE TABLE @extschema@.ingest_counters (
    pipeline      text PRIMARY KEY,
    files_done    bigint NOT NULL DEFAULT 0,
    files_failed  bigint NOT NULL DEFAULT 0,
    rows_ok       bigint NOT NULL DEFAULT 0,
    rows_rejected bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE @extschema@.ingest_counters IS 'Per pipeline: files done and failed, rows ingested and rejected, as ingest_ledger says (kept by a trigger).';
CREATE FUNCTION @extschema@.ingest_count_ledger() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $count$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN
        INSERT INTO public.ingest_counters AS c (pipeline, files_done, files_failed, rows_ok, rows_rejected)
        VALUES (OLD.pipeline,
                CASE WHEN OLD.status OPERATOR(pg_catalog.=) 'done' THEN -1 ELSE 0 END,
                CASE WHEN OLD.status OPERATOR(pg_catalog.=) ANY ('{failed,changed}'::text[]) THEN -1 ELSE 0 END,
                OPERATOR(pg_catalog.-) OLD.rows_ok, OPERATOR(pg_catalog.-) OLD.rows_rejected)
        ON CONFLICT (pipeline) DO UPDATE SET
            files_done = c.files_done OPERATOR(pg_catalog.+) EXCLUDED.files_done,
            files_failed = c.files_failed OPERATOR(pg_catalog.+) EXCLUDED.files_failed,
            rows_ok = c.rows_ok OPERATOR(pg_catalog.+) EXCLUDED.rows_ok,
            rows_rejected = c.rows_rejected OPERATOR(pg_catalog.+) EXCLUDED.rows_rejected;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN
        INSERT INTO public.ingest_counters AS c (pipeline, files_done, files_failed, rows_ok, rows_rejected)
        VALUES (NEW.pipeline,
                CASE WHEN NEW.status OPERATOR(pg_catalog.=) 'done' THEN 1 ELSE 0 END,
                CASE WHEN NEW.status OPERATOR(pg_catalog.=) ANY ('{failed,changed}'::text[]) THEN 1 ELSE 0 END,
                NEW.rows_ok, NEW.rows_rejected)
        ON CONFLICT (pipeline) DO UPDATE SET
            files_done = c.files_done OPERATOR(pg_catalog.+) EXCLUDED.files_done,
            files_failed = c.files_failed OPERATOR(pg_catalog.+) EXCLUDED.files_failed,
            rows_ok = c.rows_ok OPERATOR(pg_catalog.+) EXCLUDED.rows_ok,
            rows_rejected = c.rows_rejected OPERATOR(pg_catalog.+) EXCLUDED.rows_rejected;
    END IF;
    RETURN NULL;
END
$count$;
CREATE TRIGGER ingest_ledger_counts AFTER INSERT OR UPDATE OR DELETE ON @extschema@.ingest_ledger
    FOR EACH ROW EXECUTE FUNCTION @extschema@.ingest_count_ledger();
-- TRUNCATE of the ledger empties the counters too.
CREATE FUNCTION @extschema@.ingest_count_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $truncate$
BEGIN
    DELETE FROM public.ingest_counters;
    RETURN NULL;
END
$truncate$;
CREATE TRIGGER ingest_ledger_truncate AFTER TRUNCATE ON @extschema@.ingest_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.ingest_count_truncate();
REVOKE ALL ON @extschema@.ingest_counters FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ingest_count_ledger(), @extschema@.ingest_count_truncate() FROM PUBLIC;
-- What 0.2.0's ledger already counts (the worker waits for this update: nothing changes meanwhile).
INSERT INTO @extschema@.ingest_counters (pipeline, files_done, files_failed, rows_ok, rows_rejected)
SELECT pipeline, count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status IN ('failed', 'changed')),
       coalesce(sum(rows_ok), 0), coalesce(sum(rows_rejected), 0)
  FROM @extschema@.ingest_ledger GROUP BY pipeline;

-- The views show the pipeline (a new last column).
CREATE OR REPLACE VIEW @extschema@.ingest_files AS
    SELECT file_name, file_id, status, size, content_hash, rows_ok, rows_rejected, chunks,
           committed_offset, error, extra_columns, mtime, discovered_at, committed_at, finished_at,
           pipeline, rows_duplicate
      FROM @extschema@.ingest_ledger;
CREATE OR REPLACE VIEW @extschema@.ingest_file_chunks AS
    SELECT file_name, chunk_no, start_offset, end_offset, first_line, last_line, rows_ok, rows_rejected, committed_at,
           pipeline
      FROM @extschema@.ingest_chunks;
CREATE OR REPLACE VIEW @extschema@.ingest_rejects AS
    SELECT reject_id, file_name, line_number, column_name, reason, raw_text, rejected_at, pipeline
      FROM @extschema@.ingest_rejected;
CREATE OR REPLACE VIEW @extschema@.ingest_batches AS
    SELECT batch_id, started_at, finished_at, trigger, files, rows, rejected,
           round(duration_ms::numeric, 3) AS duration_ms, round(rows_per_second::numeric, 1) AS rows_per_second,
           pipeline
      FROM @extschema@.ingest_batch_log;

-- ingest_status(): one row per pipeline (new leading columns pipeline, target, format).
DROP FUNCTION @extschema@.ingest_status();
CREATE FUNCTION @extschema@."ingest_status"() RETURNS TABLE (
	"pipeline" TEXT,  /* String */
	"target" TEXT,  /* String */
	"format" TEXT,  /* String */
	"state" TEXT,  /* String */
	"paused" bool,  /* bool */
	"worker_pid" INT,  /* Option < i32 > */
	"database" TEXT,  /* String */
	"input_dir" TEXT,  /* String */
	"trigger_interval" TEXT,  /* String */
	"files_ingested" bigint,  /* i64 */
	"files_failed" bigint,  /* i64 */
	"files_pending" bigint,  /* Option < i64 > */
	"rows_ingested" bigint,  /* i64 */
	"rows_rejected" bigint,  /* i64 */
	"last_trigger_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"last_trigger_ms" double precision,  /* Option < f64 > */
	"last_batch_ms" double precision,  /* Option < f64 > */
	"last_batch_rows" bigint,  /* Option < i64 > */
	"rows_per_second" double precision,  /* Option < f64 > */
	"lag_seconds" double precision,  /* Option < f64 > */
	"last_error" TEXT,  /* Option < String > */
	"last_error_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"detail" TEXT  /* String */
)
STRICT VOLATILE SECURITY DEFINER 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_status_by_pipeline_wrapper';

CREATE FUNCTION @extschema@."ingest_create_pipeline"(
	"pipeline_name" TEXT,
	"input_dir" TEXT,
	"target" regclass,
	"format" TEXT DEFAULT 'csv',
	"options" jsonb DEFAULT '{}',
	"transform" TEXT DEFAULT NULL
) RETURNS TEXT
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'ingest_create_pipeline_wrapper';

CREATE FUNCTION @extschema@."ingest_alter_pipeline"(
	"pipeline_name" TEXT, /* & str */
	"input_dir" TEXT DEFAULT NULL, /* Option < & str > */
	"options" jsonb DEFAULT NULL, /* Option < JsonB > */
	"transform" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TEXT /* String */
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_alter_pipeline_wrapper';

CREATE FUNCTION @extschema@."ingest_drop_pipeline"(
	"pipeline_name" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_drop_pipeline_wrapper';

CREATE FUNCTION @extschema@."ingest_pause"(
	"pipeline" TEXT /* & str */
) RETURNS TEXT /* & '_ str */
STRICT VOLATILE SECURITY DEFINER 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_pause_pipeline_wrapper';

CREATE FUNCTION @extschema@."ingest_resume"(
	"pipeline" TEXT /* & str */
) RETURNS TEXT /* & '_ str */
STRICT VOLATILE SECURITY DEFINER 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_resume_pipeline_wrapper';

CREATE FUNCTION @extschema@."ingest_trigger"(
	"pipeline" TEXT /* & str */
) RETURNS TEXT /* & '_ str */
STRICT VOLATILE SECURITY DEFINER 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_trigger_pipeline_wrapper';

CREATE FUNCTION @extschema@."ingest_retry"(
	"file_name" TEXT, /* & str */
	"pipeline" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE SECURITY DEFINER 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_retry_pipeline_wrapper';

-- Privileges: nothing for PUBLIC; status for the monitoring role; the rest for the admin role.
REVOKE ALL ON FUNCTION @extschema@.ingest_status(), @extschema@.ingest_pause(text), @extschema@.ingest_resume(text),
    @extschema@.ingest_trigger(text), @extschema@.ingest_retry(text, text),
    @extschema@.ingest_create_pipeline(text, text, regclass, text, jsonb, text),
    @extschema@.ingest_alter_pipeline(text, text, jsonb, text), @extschema@.ingest_drop_pipeline(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.ingest_status() TO ecommerce_ingest_monitor;
GRANT EXECUTE ON FUNCTION @extschema@.ingest_pause(text), @extschema@.ingest_resume(text),
    @extschema@.ingest_trigger(text), @extschema@.ingest_retry(text, text),
    @extschema@.ingest_create_pipeline(text, text, regclass, text, jsonb, text),
    @extschema@.ingest_alter_pipeline(text, text, jsonb, text), @extschema@.ingest_drop_pipeline(text)
    TO ecommerce_ingest_admin;
