-- Function privileges: nothing for PUBLIC; status for the monitoring role; control for the admin role.
REVOKE ALL ON FUNCTION ingest_status(), ingest_pause(), ingest_resume(), ingest_trigger(), ingest_retry(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ingest_status() TO ecommerce_ingest_monitor;
REVOKE ALL ON FUNCTION ingest_workers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ingest_workers() TO ecommerce_ingest_monitor;
GRANT EXECUTE ON FUNCTION ingest_pause(), ingest_resume(), ingest_trigger(), ingest_retry(text) TO ecommerce_ingest_admin;
-- The same for the functions on pipelines (create/alter/drop run as their caller, search_path pinned too).
REVOKE ALL ON FUNCTION ingest_pause(text), ingest_resume(text), ingest_trigger(text), ingest_retry(text, text),
    ingest_create_pipeline(text, text, regclass, text, jsonb, text), ingest_alter_pipeline(text, text, jsonb, text),
    ingest_drop_pipeline(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ingest_pause(text), ingest_resume(text), ingest_trigger(text), ingest_retry(text, text),
    ingest_create_pipeline(text, text, regclass, text, jsonb, text), ingest_alter_pipeline(text, text, jsonb, text),
    ingest_drop_pipeline(text) TO ecommerce_ingest_admin;
