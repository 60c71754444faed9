-- ecommerce_ingest 0.1.0 -> 0.2.0 (ALTER EXTENSION ecommerce_ingest UPDATE).
-- Every change here is also in schema.sql / the functions' definitions, so that an updated
-- installation equals a new one (tests/tests/suite/upgrade.rs compares them).

\echo Use "ALTER EXTENSION ecommerce_ingest UPDATE" to load this file. \quit

-- Which file a ledger row is about (device, inode, ctime), and the hash of the bytes before
-- committed_offset, checked before a later chunk resumes. Rows written by 0.1.0 keep NULLs
-- there: they are compared by size and mtime only, as before.
ALTER TABLE @extschema@.ingest_ledger
    ADD COLUMN device      bigint,
    ADD COLUMN inode       bigint,
    ADD COLUMN ctime       timestamptz,
    ADD COLUMN prefix_hash text;

-- Why the worker paused itself (a re-created extension next to files ingested before).
ALTER TABLE @extschema@.ingest_control ADD COLUMN reason text;

-- The SECURITY DEFINER functions resolve nothing in a schema a non-superuser can write to.
ALTER FUNCTION @extschema@.ingest_status() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.ingest_pause() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.ingest_resume() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.ingest_trigger() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.ingest_retry(text) SET search_path = pg_catalog, pg_temp;
