-- Makes user_events a table partitioned by range of event_timestamp, by day or by month: a new,
-- empty user_events, or (with existing=attach) one that holds rows already, without copying
-- them: the old table becomes the partition of every time before the cutover (the first day or
-- month after its newest row), and new partitions start there.
--
--   psql -v ON_ERROR_STOP=1 -d shop -v granularity=month -v partman=on -f sql/partition_user_events.sql
--
-- Variables (all optional):
--   granularity  day | month                                          [month]
--   start        the first partition's start, a date (empty table)   [the current day or month]
--   premake      partitions made ahead of the current one             [4]
--   partman      on: pg_partman (Debian's postgresql-15-partman) makes the partitions, ahead
--                of time and on a schedule (partman.run_maintenance_proc(), from pg_cron or
--                pg_partman_bgw), and drops old ones if you set a retention (docs/scale.md);
--                off: the partitions from start to premake ahead are made now, once, and
--                making later ones is yours                            [off]
--   existing     attach: user_events has rows; it becomes the partition user_events_legacy
--                (FROM MINVALUE TO the cutover: the start of the day or month after its newest
--                row, or of the current one if that is later). It is read once under the lock, to check its
--                rows against that range (no row is copied), and the primary key index of the
--                partitioned table is built on it: plan for that time (docs/scale.md)
--                                                                      [refuse a table with rows]
-- Either way a DEFAULT partition takes a row whose time has no partition of its own: no row is
-- refused or lost for its time (move them out when you add the partition: docs/scale.md).
--
-- Run as a superuser. One transaction: it waits for the worker's current chunk (an ACCESS
-- EXCLUSIVE lock on user_events), and the worker waits for it (state waiting_for_lock) and then
-- goes on with the new table. The new table is yours, not the extension's: pg_dump dumps it,
-- DROP EXTENSION leaves it (drop it yourself before a new CREATE EXTENSION).

\if :{?granularity}
\else
  \set granularity month
\endif
\if :{?premake}
\else
  \set premake 4
\endif
\if :{?partman}
\else
  \set partman off
\endif
\if :{?start}
\else
  \set start ''
\endif
\if :{?existing}
\else
  \set existing refuse
\endif

BEGIN;
-- Partition bounds and names in UTC, whatever the session's time zone.
SET LOCAL TimeZone = 'UTC';

SELECT set_config('ecommerce_ingest_partition.granularity', :'granularity', true),
       set_config('ecommerce_ingest_partition.premake', :'premake', true),
       set_config('ecommerce_ingest_partition.partman', :'partman', true),
       set_config('ecommerce_ingest_partition.start', :'start', true),
       set_config('ecommerce_ingest_partition.existing', :'existing', true);

DO $swap$
DECLARE
    g        text := current_setting('ecommerce_ingest_partition.granularity');
    premake  int  := current_setting('ecommerce_ingest_partition.premake')::int;
    partman  bool := current_setting('ecommerce_ingest_partition.partman')::bool;
    start    timestamptz;
    step     interval;
    p_from   timestamptz;
    rows_in  bigint;
    attach   bool := current_setting('ecommerce_ingest_partition.existing') = 'attach';
    newest   timestamptz;
    last_id  bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'ecommerce_ingest') THEN
        RAISE EXCEPTION 'sql/partition_user_events.sql needs the ecommerce_ingest extension in this database';
    END IF;
    IF g NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'granularity must be day or month, not %', g;
    END IF;
    step := ('1 ' || g)::interval;
    start := pg_catalog.date_trunc(g, coalesce(nullif(current_setting('ecommerce_ingest_partition.start'), '')::timestamptz, pg_catalog.now()));
    LOCK TABLE public.user_events IN ACCESS EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_partitioned_table WHERE partrelid = 'public.user_events'::regclass) THEN
        RAISE EXCEPTION 'user_events is partitioned already';
    END IF;
    SELECT count(*) INTO rows_in FROM (SELECT 1 FROM public.user_events LIMIT 1) x;
    IF rows_in > 0 AND NOT attach THEN
        RAISE EXCEPTION 'user_events is not empty'
            USING HINT = 'To keep its rows where they are (no copy: the table becomes the partition of the times before its newest row''s next day or month), run again with -v existing=attach; see "Partitioning an existing user_events" in docs/scale.md.';
    END IF;
    attach := rows_in > 0;

    ALTER EXTENSION ecommerce_ingest DROP VIEW public.user_events_with_source;
    ALTER EXTENSION ecommerce_ingest DROP TABLE public.user_events;
    ALTER EXTENSION ecommerce_ingest DROP SEQUENCE public.user_events_event_id_seq;
    DROP VIEW public.user_events_with_source;
    IF attach THEN
        -- The rows stay in this table; new partitions start at the first boundary after its
        -- newest row. New ids continue after its largest.
        SELECT max(event_timestamp), max(event_id) INTO newest, last_id FROM public.user_events;
        -- (Past periods without a partition of their own stay the legacy table's.)
        start := greatest(pg_catalog.date_trunc(g, newest) + step, pg_catalog.date_trunc(g, pg_catalog.now()));
    END IF;
    ALTER TABLE public.user_events RENAME TO user_events_legacy;

    -- The extension's table, column for column, as this installation has it (defaults and the
    -- identity included); the primary key includes the partition key (PostgreSQL requires it of
    -- a unique index on a partitioned table).
    CREATE TABLE public.user_events (
        LIKE public.user_events_legacy INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED
            INCLUDING STORAGE INCLUDING COMPRESSION,
        PRIMARY KEY (event_id, event_timestamp)
    ) PARTITION BY RANGE (event_timestamp);

    IF attach THEN
        -- Its primary key (event_id) gives way to the partitioned table's (event_id,
        -- event_timestamp), built on it by ATTACH PARTITION. (A foreign key of yours that
        -- references user_events (event_id) makes this fail: nothing is changed then.) Its
        -- identity ends here.
        ALTER TABLE public.user_events_legacy DROP CONSTRAINT user_events_pkey;
        ALTER TABLE public.user_events_legacy ALTER COLUMN event_id DROP IDENTITY;
        -- Proves the range to ATTACH PARTITION (which then reads nothing more).
        EXECUTE pg_catalog.format(
            'ALTER TABLE public.user_events_legacy ADD CONSTRAINT user_events_legacy_range CHECK (event_timestamp < %L)',
            start);
    ELSE
        DROP TABLE public.user_events_legacy;
    END IF;
    COMMENT ON TABLE public.user_events IS 'E-commerce events ingested by ecommerce_ingest, partitioned by event_timestamp (sql/partition_user_events.sql).';
    IF attach THEN
        EXECUTE pg_catalog.format(
            'ALTER TABLE public.user_events ALTER COLUMN event_id RESTART WITH %s', last_id + 1);
        EXECUTE pg_catalog.format(
            'ALTER TABLE public.user_events ATTACH PARTITION public.user_events_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
            start);
    END IF;

    IF partman THEN
        CREATE SCHEMA IF NOT EXISTS partman;
        CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
        -- pg_partman 4.x: native partitioning, a default partition, `premake` ahead.
        PERFORM partman.create_parent(
            p_parent_table := 'public.user_events',
            p_control := 'event_timestamp',
            p_type := 'native',
            p_interval := CASE g WHEN 'day' THEN 'daily' ELSE 'monthly' END,
            p_premake := premake,
            p_start_partition := pg_catalog.to_char(start, 'YYYY-MM-DD HH24:MI:SSOF'));
    ELSE
        p_from := start;
        WHILE p_from <= pg_catalog.date_trunc(g, pg_catalog.now()) + premake * step LOOP
            EXECUTE pg_catalog.format(
                'CREATE TABLE public.%I PARTITION OF public.user_events FOR VALUES FROM (%L) TO (%L)',
                'user_events_p' || pg_catalog.to_char(p_from AT TIME ZONE 'UTC', CASE g WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END),
                p_from, p_from + step);
            p_from := p_from + step;
        END LOOP;
        CREATE TABLE public.user_events_default PARTITION OF public.user_events DEFAULT;
    END IF;

    -- BRIN on the time column: tiny and cheap to keep up for an append-only table, and what the
    -- time queries (events per hour, revenue per minute) need (docs/scale.md).
    CREATE INDEX user_events_time_brin ON public.user_events USING brin (event_timestamp);

    CREATE VIEW public.user_events_with_source AS
        SELECT e.*, l.file_name AS source_file
          FROM public.user_events e LEFT JOIN public.ingest_ledger l ON l.file_id = e.source_file_id;
    REVOKE ALL ON public.user_events, public.user_events_with_source FROM PUBLIC;
    GRANT SELECT ON public.user_events, public.user_events_with_source TO ecommerce_ingest_monitor;
END
$swap$;

COMMIT;

SELECT c.oid::regclass AS partition, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bounds
  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'public.user_events'::regclass
 ORDER BY 1;
