-- Tables of the ecommerce_ingest extension. The event table follows docs/contract.md.
-- The extension is installed in schema public (not relocatable): the worker and the functions
-- name every table as public.<name> and resolve everything else in pg_catalog only.

-- The schema must be owned by a superuser: in PostgreSQL 15 public belongs to pg_database_owner,
-- i.e. the database's owner, who could otherwise rename it and have the extension's superuser
-- code read look-alike tables (docs/security.md). The worker and the functions check it again.
DO $owner$
DECLARE
    owner_name text;
    owner_is_super boolean;
BEGIN
    SELECT r.rolname, r.rolsuper INTO owner_name, owner_is_super
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) CASE
            WHEN n.nspowner OPERATOR(pg_catalog.=) 'pg_database_owner'::pg_catalog.regrole
            THEN (SELECT d.datdba FROM pg_catalog.pg_database d
                   WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
            ELSE n.nspowner END
     WHERE n.nspname OPERATOR(pg_catalog.=) 'public';
    IF NOT owner_is_super THEN
        RAISE EXCEPTION 'schema public is owned by %, who is not a superuser', owner_name
            USING HINT = 'ecommerce_ingest runs superuser code on its tables in public: as a superuser, ALTER SCHEMA public OWNER TO postgres (then GRANT CREATE ON SCHEMA public TO ' || pg_catalog.quote_ident(owner_name) || ' if needed), then CREATE EXTENSION again.';
    END IF;
END
$owner$;

-- Roles are cluster-wide and outlive the extension; create them only once.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ecommerce_ingest_monitor') THEN
        CREATE ROLE ecommerce_ingest_monitor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ecommerce_ingest_admin') THEN
        CREATE ROLE ecommerce_ingest_admin NOLOGIN;
    END IF;
END
$roles$;
GRANT ecommerce_ingest_monitor TO ecommerce_ingest_admin;

CREATE TABLE user_events (
    event_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          varchar(50)  NOT NULL,
    event_type       varchar(20)  NOT NULL,
    product_id       varchar(50)  NOT NULL,
    product_name     varchar(200) NOT NULL,
    product_category varchar(100) NOT NULL,
    price            numeric(10,2) NOT NULL,
    event_timestamp  timestamptz  NOT NULL,
    session_id       varchar(100) NOT NULL,
    device_type      varchar(50)  NOT NULL,
    inserted_at      timestamptz  NOT NULL DEFAULT now(),
    source_file_id   integer,
    source_line      bigint
);
COMMENT ON TABLE user_events IS 'E-commerce events ingested by ecommerce_ingest, one row per valid CSV row; source_file_id (ingest_files.file_id) and source_line say where it came from: see user_events_with_source.';

CREATE TABLE ingest_ledger (
    file_name        text NOT NULL,
    file_id          integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    status           text NOT NULL CHECK (status IN ('ingesting', 'growing', 'done', 'failed', 'changed', 'error')),
    size             bigint NOT NULL,
    mtime            timestamptz,
    content_hash     text,
    committed_offset bigint NOT NULL DEFAULT 0,
    committed_line   bigint NOT NULL DEFAULT 1,
    rows_ok          bigint NOT NULL DEFAULT 0,
    rows_rejected    bigint NOT NULL DEFAULT 0,
    chunks           integer NOT NULL DEFAULT 0,
    extra_columns    text[],
    error            text,
    discovered_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    committed_at     timestamptz,
    finished_at      timestamptz,
    -- Which file the row is about (a file replaced under the same name differs here), and the
    -- hash of its bytes before committed_offset, checked before a later chunk resumes.
    device           bigint,
    inode            bigint,
    ctime            timestamptz,
    prefix_hash      text,
    -- The pipeline the file belongs to ('events': the events pipeline of postgresql.conf).
    pipeline         text NOT NULL DEFAULT 'events',
    -- Rows skipped because their key was already in the target (a pipeline's dedup_key).
    rows_duplicate   bigint NOT NULL DEFAULT 0,
    CONSTRAINT ingest_ledger_pkey PRIMARY KEY (pipeline, file_name),
    -- When the file was seen to leave the input folder (NULL: it is there, or not known to
    -- have left); ecommerce_ingest.ledger_retention after it, the row is deleted.
    left_at          timestamptz
);
COMMENT ON TABLE ingest_ledger IS 'One row per input file: how far it was ingested. Written in the same transaction as the rows.';
CREATE INDEX ingest_ledger_left_idx ON ingest_ledger (pipeline, left_at) WHERE left_at IS NOT NULL;

CREATE TABLE ingest_chunks (
    file_name     text NOT NULL,
    chunk_no      integer NOT NULL,
    start_offset  bigint NOT NULL,
    end_offset    bigint NOT NULL,
    first_line    bigint NOT NULL,
    last_line     bigint NOT NULL,
    rows_ok       bigint NOT NULL,
    rows_rejected bigint NOT NULL,
    committed_at  timestamptz NOT NULL DEFAULT now(),
    pipeline      text NOT NULL DEFAULT 'events',
    CONSTRAINT ingest_chunks_pkey PRIMARY KEY (pipeline, file_name, chunk_no)
);

CREATE TABLE ingest_rejected (
    reject_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_name   text NOT NULL,
    line_number bigint NOT NULL,
    column_name text,
    reason      text NOT NULL,
    raw_text    text,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    pipeline    text NOT NULL DEFAULT 'events'
);
CREATE INDEX ingest_rejected_file_idx ON ingest_rejected (pipeline, file_name, line_number);

CREATE TABLE ingest_batch_log (
    batch_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    trigger         text NOT NULL,
    files           integer NOT NULL,
    rows            bigint NOT NULL,
    rejected        bigint NOT NULL,
    duration_ms     double precision NOT NULL,
    rows_per_second double precision,
    pipeline        text NOT NULL DEFAULT 'events'
);

CREATE TABLE ingest_control (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    paused     boolean NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL DEFAULT current_user,
    -- Why the worker paused itself (NULL when a user paused or resumed).
    reason     text
);
-- No row until the first ingest_pause(): no row means running (and pg_dump can restore the row).

-- Pipelines other than the events pipeline: a folder into a table of the user's choosing
-- (ingest_create_pipeline()). Rows go in with the privileges of `owner`, who created it.
CREATE TABLE ingest_pipelines (
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
COMMENT ON TABLE ingest_pipelines IS 'One row per pipeline besides events: its folder, target table, format, options and owner.';

-- Each pipeline's counters, kept by triggers on ingest_ledger in the transaction that changes
-- the ledger, so that ingest_status() reads a few rows per pipeline whatever the number of files
-- ever ingested. Derived data: not dumped (restoring the ledger fires the triggers again).
-- A pipeline's counters are the sum of its shards. Each statement on the ledger adds its deltas
-- to the shard of its backend (1 + pg_backend_pid() % 1023), so that concurrent writers (several
-- workers of a pipeline) almost never wait for one another's row; shard 0 holds what each
-- pipeline's worker, while idle, folds the other shards into (worker/sql.rs, FOLD_COUNTERS).
CREATE TABLE ingest_counters (
    pipeline      text NOT NULL,
    files_done    bigint NOT NULL DEFAULT 0,
    files_failed  bigint NOT NULL DEFAULT 0,
    rows_ok       bigint NOT NULL DEFAULT 0,
    rows_rejected bigint NOT NULL DEFAULT 0,
    -- (last: 0.4.0 added it to the table, and an updated installation equals a new one)
    shard         integer NOT NULL DEFAULT 0,
    CONSTRAINT ingest_counters_pkey PRIMARY KEY (pipeline, shard)
);
COMMENT ON TABLE ingest_counters IS 'Per pipeline, summed over its shards: files done and failed, rows ingested and rejected, as ingest_ledger says (kept by triggers).';
CREATE FUNCTION ingest_count_ledger() RETURNS trigger
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
CREATE TRIGGER ingest_ledger_counts_insert AFTER INSERT ON ingest_ledger
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ingest_count_ledger();
CREATE TRIGGER ingest_ledger_counts_update AFTER UPDATE ON ingest_ledger
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ingest_count_ledger();
CREATE TRIGGER ingest_ledger_counts_delete AFTER DELETE ON ingest_ledger
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ingest_count_ledger();
-- TRUNCATE of the ledger empties the counters too.
CREATE FUNCTION ingest_count_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $truncate$
BEGIN
    DELETE FROM public.ingest_counters;
    RETURN NULL;
END
$truncate$;
CREATE TRIGGER ingest_ledger_truncate AFTER TRUNCATE ON ingest_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_count_truncate();
REVOKE ALL ON ingest_counters FROM PUBLIC;
REVOKE ALL ON FUNCTION ingest_count_ledger(), ingest_count_truncate() FROM PUBLIC;

-- pg_dump keeps the data of these tables (the extension's own objects are recreated by CREATE EXTENSION).
SELECT pg_catalog.pg_extension_config_dump('user_events', '');
SELECT pg_catalog.pg_extension_config_dump('user_events_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ingest_ledger', '');
SELECT pg_catalog.pg_extension_config_dump('ingest_ledger_file_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ingest_chunks', '');
SELECT pg_catalog.pg_extension_config_dump('ingest_rejected', '');
SELECT pg_catalog.pg_extension_config_dump('ingest_rejected_reject_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ingest_batch_log', '');
SELECT pg_catalog.pg_extension_config_dump('ingest_batch_log_batch_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ingest_control', '');
SELECT pg_catalog.pg_extension_config_dump('ingest_pipelines', '');

CREATE VIEW ingest_files AS
    SELECT file_name, file_id, status, size, content_hash, rows_ok, rows_rejected, chunks,
           committed_offset, error, extra_columns, mtime, discovered_at, committed_at, finished_at,
           pipeline, rows_duplicate, left_at
      FROM ingest_ledger;
COMMENT ON VIEW ingest_files IS 'One row per input file: status, size, content hash, rows ingested and rejected, error.';

-- The events with the name of the file they came from (user_events stores the file's id: 4 bytes
-- a row instead of the whole name).
CREATE VIEW user_events_with_source AS
    SELECT e.*, l.file_name AS source_file
      FROM user_events e LEFT JOIN ingest_ledger l ON l.file_id = e.source_file_id;
COMMENT ON VIEW user_events_with_source IS 'user_events plus source_file, the name of the file each row came from.';

CREATE VIEW ingest_file_chunks AS
    SELECT file_name, chunk_no, start_offset, end_offset, first_line, last_line, rows_ok, rows_rejected, committed_at,
           pipeline
      FROM ingest_chunks;

CREATE VIEW ingest_rejects AS
    SELECT reject_id, file_name, line_number, column_name, reason, raw_text, rejected_at, pipeline
      FROM ingest_rejected;
COMMENT ON VIEW ingest_rejects IS 'Every rejected row with its file, line, column and the reason.';

CREATE VIEW ingest_batches AS
    SELECT batch_id, started_at, finished_at, trigger, files, rows, rejected,
           round(duration_ms::numeric, 3) AS duration_ms, round(rows_per_second::numeric, 1) AS rows_per_second,
           pipeline
      FROM ingest_batch_log;
COMMENT ON VIEW ingest_batches IS 'One row per trigger that ingested something, like Spark''s progress report.';

REVOKE ALL ON user_events, ingest_ledger, ingest_chunks, ingest_rejected, ingest_batch_log, ingest_control, ingest_pipelines FROM PUBLIC;
REVOKE ALL ON ingest_files, ingest_file_chunks, ingest_rejects, ingest_batches, user_events_with_source FROM PUBLIC;
GRANT SELECT ON ingest_files, ingest_file_chunks, ingest_rejects, ingest_batches TO ecommerce_ingest_monitor;
GRANT SELECT ON ingest_pipelines TO ecommerce_ingest_monitor;
GRANT SELECT ON user_events, user_events_with_source TO ecommerce_ingest_monitor;
