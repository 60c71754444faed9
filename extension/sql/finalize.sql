-- Function privileges: nothing for PUBLIC; status for the monitoring role; control for the admin role.
REVOKE ALL ON FUNCTION ingest_status(), ingest_pause(), ingest_resume(), ingest_trigger(), ingest_retry(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ingest_status() TO ecommerce_ingest_monitor;
GRANT EXECUTE ON FUNCTION ingest_pause(), ingest_resume(), ingest_trigger(), ingest_retry(text) TO ecommerce_ingest_admin;
