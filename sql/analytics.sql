-- Analytics views over the events ingested by ecommerce_ingest.
--
--   psql -v ON_ERROR_STOP=1 -d shop -f sql/analytics.sql      (as a superuser or the extension's owner)
--
-- Idempotent: every object is CREATE OR REPLACE, so running the file again is safe. The views live
-- in schema public, next to user_events; they are not part of the extension, so
-- DROP EXTENSION ecommerce_ingest refuses while they exist (drop them first, or say CASCADE).
-- CREATE OR REPLACE VIEW cannot rename or retype a column: if a later version of this file changes
-- a view's columns, DROP VIEW that view before running it.
--
-- Time zones: events_per_hour, revenue_per_minute_last_hour and the timestamps they return follow
-- the session's TimeZone (SET TimeZone = 'UTC' for UTC buckets), as the reference query does.

BEGIN;

DO $check$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'ecommerce_ingest') THEN
        RAISE EXCEPTION 'sql/analytics.sql needs the ecommerce_ingest extension in this database'
            USING HINT = 'Run CREATE EXTENSION ecommerce_ingest first (in the database named by ecommerce_ingest.database).';
    END IF;
END
$check$;

-- ---------------------------------------------------------------------------------------------
-- The reference design's four sample queries, unchanged, as views.
-- ---------------------------------------------------------------------------------------------

-- Reference query 1. Note: in LIKE, '_' matches any one character, so 'user_%' also matches
-- e.g. 'userX'; kept exactly as the reference wrote it.
CREATE OR REPLACE VIEW public.events_by_type AS
SELECT event_type, count(*) AS events
  FROM public.user_events
 WHERE user_id LIKE 'user_%'
 GROUP BY event_type
 ORDER BY event_type;
COMMENT ON VIEW public.events_by_type IS
    'Reference query 1: events per event_type for users whose user_id is LIKE ''user_%''.';

-- Reference query 2.
CREATE OR REPLACE VIEW public.revenue_by_category AS
SELECT product_category, sum(price) AS revenue
  FROM public.user_events
 WHERE event_type = 'purchase'
 GROUP BY product_category
 ORDER BY revenue DESC, product_category;
COMMENT ON VIEW public.revenue_by_category IS
    'Reference query 2: revenue (sum of purchase prices) per product_category, highest first.';

-- Reference query 3.
CREATE OR REPLACE VIEW public.events_per_hour AS
SELECT date_trunc('hour', event_timestamp) AS hour, count(*) AS events
  FROM public.user_events
 GROUP BY hour
 ORDER BY hour;
COMMENT ON VIEW public.events_per_hour IS
    'Reference query 3: events per hour of event_timestamp (hours of the session''s TimeZone).';

-- Reference query 4.
CREATE OR REPLACE VIEW public.ingest_latency AS
SELECT avg(extract(epoch FROM (inserted_at - event_timestamp))) AS avg_latency_seconds
  FROM public.user_events;
COMMENT ON VIEW public.ingest_latency IS
    'Reference query 4: average seconds between an event''s event_timestamp and its insertion (inserted_at).';

-- ---------------------------------------------------------------------------------------------
-- What a product analyst asks next.
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW public.conversion_by_category AS
SELECT product_category,
       count(*) FILTER (WHERE event_type = 'view')     AS views,
       count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
       round(count(*) FILTER (WHERE event_type = 'purchase')::numeric
             / nullif(count(*) FILTER (WHERE event_type = 'view'), 0), 4) AS conversion
  FROM public.user_events
 GROUP BY product_category
 ORDER BY product_category;
COMMENT ON VIEW public.conversion_by_category IS
    'Views, purchases and conversion = purchases / views (4 decimals; NULL without views) per product_category.';

CREATE OR REPLACE VIEW public.conversion_by_device AS
SELECT device_type,
       count(*) FILTER (WHERE event_type = 'view')     AS views,
       count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
       round(count(*) FILTER (WHERE event_type = 'purchase')::numeric
             / nullif(count(*) FILTER (WHERE event_type = 'view'), 0), 4) AS conversion
  FROM public.user_events
 GROUP BY device_type
 ORDER BY device_type;
COMMENT ON VIEW public.conversion_by_device IS
    'Views, purchases and conversion = purchases / views (4 decimals; NULL without views) per device_type.';

-- One row per minute that overlaps the last hour: 61 rows, from the minute of now() - 1 hour to
-- the minute of now(); minutes without purchases show 0. Purchases count when
-- now() - 1 hour <= event_timestamp <= now() (events dated in the future are left out).
CREATE OR REPLACE VIEW public.revenue_per_minute_last_hour AS
WITH win AS (
    SELECT now() - interval '1 hour' AS lo, now() AS hi
), minutes AS (
    SELECT generate_series(date_trunc('minute', win.lo), date_trunc('minute', win.hi), interval '1 minute') AS minute
      FROM win
), purchases AS (
    SELECT date_trunc('minute', e.event_timestamp) AS minute, sum(e.price) AS revenue, count(*) AS purchases
      FROM public.user_events e, win
     WHERE e.event_type = 'purchase'
       AND e.event_timestamp >= win.lo
       AND e.event_timestamp <= win.hi
     GROUP BY 1
)
SELECT m.minute,
       coalesce(p.revenue, 0.00::numeric(10,2)) AS revenue,
       coalesce(p.purchases, 0)                  AS purchases
  FROM minutes m
  LEFT JOIN purchases p USING (minute)
 ORDER BY m.minute;
COMMENT ON VIEW public.revenue_per_minute_last_hour IS
    'Revenue and purchases per minute over the last hour (event_timestamp between now() - 1 hour and now()); 61 rows, empty minutes show 0.';

-- One row per product_id; product_name and product_category are those of the product's latest
-- event (names may change over time).
CREATE OR REPLACE VIEW public.top_products AS
SELECT product_id,
       (array_agg(product_name ORDER BY event_timestamp DESC, event_id DESC))[1]     AS product_name,
       (array_agg(product_category ORDER BY event_timestamp DESC, event_id DESC))[1] AS product_category,
       count(*) FILTER (WHERE event_type = 'view')     AS views,
       count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
       coalesce(sum(price) FILTER (WHERE event_type = 'purchase'), 0.00::numeric(10,2)) AS revenue
  FROM public.user_events
 GROUP BY product_id
 ORDER BY revenue DESC, views DESC, product_id;
COMMENT ON VIEW public.top_products IS
    'Per product: views, purchases and revenue, by revenue then views (use LIMIT); name and category from its latest event.';

-- Sessions with at least one event in the last 5 minutes (now() - 5 minutes <= event_timestamp
-- <= now()); events counts those events; user_id and device_type are the latest event's.
CREATE OR REPLACE VIEW public.active_sessions_last_5_minutes AS
SELECT session_id,
       (array_agg(user_id ORDER BY event_timestamp DESC, event_id DESC))[1]     AS user_id,
       (array_agg(device_type ORDER BY event_timestamp DESC, event_id DESC))[1] AS device_type,
       count(*)             AS events,
       max(event_timestamp) AS last_event_at
  FROM public.user_events
 WHERE event_timestamp >= now() - interval '5 minutes'
   AND event_timestamp <= now()
 GROUP BY session_id
 ORDER BY last_event_at DESC, session_id;
COMMENT ON VIEW public.active_sessions_last_5_minutes IS
    'Sessions with an event in the last 5 minutes: events in that window, the latest event''s user and device, last_event_at.';

-- One row for dashboards, about the events pipeline. Counters come from ingest_status(); the last
-- batch is the latest row of ingest_batches (a trigger that ingested something; it survives
-- restarts). lag_seconds is the age of the oldest file waiting, 0 when none waits, NULL when no
-- worker runs. (Every pipeline's row: ingest_status().)
CREATE OR REPLACE VIEW public.ingestion_overview AS
SELECT s.files_ingested AS files_done,
       s.files_failed,
       s.files_pending,
       s.rows_ingested,
       s.rows_rejected,
       CASE WHEN s.files_pending IS NULL THEN NULL ELSE coalesce(s.lag_seconds, 0) END AS lag_seconds,
       b.duration_ms     AS last_batch_ms,
       b.rows_per_second AS rows_per_second,
       s.state,
       s.paused,
       s.worker_pid,
       b.rows            AS last_batch_rows,
       b.finished_at     AS last_batch_at,
       s.last_trigger_at,
       s.last_error,
       s.last_error_at
  FROM public.ingest_status() s
  LEFT JOIN LATERAL (
        SELECT duration_ms, rows_per_second, rows, finished_at
          FROM public.ingest_batches
         WHERE pipeline = s.pipeline
         ORDER BY batch_id DESC
         LIMIT 1
       ) b ON true
 WHERE s.pipeline = 'events';
COMMENT ON VIEW public.ingestion_overview IS
    'One row for dashboards: files done/failed/pending, rows ingested/rejected, lag, the last batch (ingest_batches) and the worker state.';

REVOKE ALL ON public.events_by_type, public.revenue_by_category, public.events_per_hour,
              public.ingest_latency, public.conversion_by_category, public.conversion_by_device,
              public.revenue_per_minute_last_hour, public.top_products,
              public.active_sessions_last_5_minutes, public.ingestion_overview
  FROM PUBLIC;
GRANT SELECT ON public.events_by_type, public.revenue_by_category, public.events_per_hour,
                public.ingest_latency, public.conversion_by_category, public.conversion_by_device,
                public.revenue_per_minute_last_hour, public.top_products,
                public.active_sessions_last_5_minutes, public.ingestion_overview
  TO ecommerce_ingest_monitor;

COMMIT;
