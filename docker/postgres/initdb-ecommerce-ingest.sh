#!/usr/bin/env bash
# Runs once, when the official postgres image initialises an empty data directory
# (as /docker-entrypoint-initdb.d/50-ecommerce-ingest.sh, as the postgres user, against the
# entrypoint's temporary socket-only server). It
#   1. makes postgresql.conf include /etc/postgresql/ecommerce_ingest.conf (preload + settings)
#      and points the worker at $POSTGRES_DB; both take effect when the entrypoint then starts
#      the real server;
#   2. creates the extension in $POSTGRES_DB (this works without the preload too).
set -euo pipefail

db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
conf=${PGDATA:?PGDATA is not set}/postgresql.conf

# The name goes into a quoted postgresql.conf value: refuse quotes and backslashes.
case "$db" in
  *"'"* | *\\*)
    echo "50-ecommerce-ingest.sh: POSTGRES_DB must not contain a quote or a backslash: $db" >&2
    exit 1
    ;;
esac

if ! grep -q "^include = '/etc/postgresql/ecommerce_ingest.conf'" "$conf"; then
  {
    echo
    echo "# ecommerce_ingest (added by /docker-entrypoint-initdb.d/50-ecommerce-ingest.sh)"
    echo "include = '/etc/postgresql/ecommerce_ingest.conf'"
    echo "ecommerce_ingest.database = '$db'"
  } >>"$conf"
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password \
  --username "${POSTGRES_USER:-postgres}" --dbname "$db" \
  -c 'CREATE EXTENSION IF NOT EXISTS ecommerce_ingest'
echo "50-ecommerce-ingest.sh: ecommerce_ingest created in database \"$db\"; preloaded from the next start"
