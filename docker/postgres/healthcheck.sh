#!/usr/bin/env bash
# HEALTHCHECK of the ecommerce_ingest image: healthy when PostgreSQL accepts TCP connections on
# 127.0.0.1 (the entrypoint's first-initialisation server listens on its socket only, so it does
# not count) and ingest_status() in $POSTGRES_DB reports the worker `running` or `paused`.
set -euo pipefail

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
export PGPASSWORD=${POSTGRES_PASSWORD:-}
export PGCONNECT_TIMEOUT=3

pg_isready -q -h 127.0.0.1 -p "${PGPORT:-5432}" -U "$user" -d "$db"
state=$(psql -X -q -At -h 127.0.0.1 -p "${PGPORT:-5432}" -U "$user" -d "$db" \
  -c 'SELECT state FROM ingest_status()')
case "$state" in
  running | paused) exit 0 ;;
  *)
    echo "ingest_status().state = ${state:-<none>}" >&2
    exit 1
    ;;
esac
