#!/usr/bin/env bash
# Entrypoint of the ecommerce_ingest image (Dockerfile.postgres, stage `final`): Debian's
# PostgreSQL 15 with the conventions of the official `postgres` image, in small:
#   - POSTGRES_PASSWORD (required, unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER
#     (default postgres), POSTGRES_DB (default $POSTGRES_USER), PGDATA
#     (default /var/lib/postgresql/data), POSTGRES_INITDB_ARGS;
#   - on an empty PGDATA: initdb, then a server on the Unix socket only runs every file of
#     /docker-entrypoint-initdb.d in name order (*.sh executed, or sourced when not executable;
#     *.sql through psql), and stops; then the real server starts;
#   - started as root, it fixes the ownership of PGDATA and of the input folder, then runs
#     as `postgres` (setpriv); the server is PID 1, so `docker stop` (STOPSIGNAL SIGINT) is a
#     fast shutdown: clean, no recovery at the next start.
# Any command that is not `postgres ...` (e.g. `bash`) runs as given.
set -euo pipefail

export PGDATA=${PGDATA:-/var/lib/postgresql/data}
export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
PGBIN=/usr/lib/postgresql/15/bin
INPUT_DIR=/var/lib/ecommerce_ingest/input

log() { printf 'entrypoint: %s\n' "$*" >&2; }

if [ "${1:-}" = "" ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

# As root: make the volumes usable by postgres, then start again as postgres.
if [ "$(id -u)" -eq 0 ]; then
  install -d -o postgres -g postgres -m 0700 "$PGDATA"
  if [ "$(stat -c %U "$PGDATA")" != postgres ]; then
    chown -R postgres:postgres "$PGDATA"
  fi
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql "$INPUT_DIR"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    log "POSTGRES_PASSWORD is not set: set it (docker run -e POSTGRES_PASSWORD=...), or set POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without a password"
    exit 1
  fi
  log "initialising $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
  # The password reaches initdb through a file that only postgres can read, never argv.
  pwfile=$(mktemp)
  pwopt=()
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    pwopt=(--pwfile="$pwfile")
  fi
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options, split like the official image does.
  "$PGBIN/initdb" -D "$PGDATA" --username="$POSTGRES_USER" "${pwopt[@]}" \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$auth" \
    ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  {
    echo
    echo "# Added by the image's entrypoint: connections from other containers."
    echo "listen_addresses = '*'"
  } >>"$PGDATA/postgresql.conf"
  echo "host all all all $auth" >>"$PGDATA/pg_hba.conf"

  # The first-start server: Unix socket only, so that nothing connects before initialisation ends.
  "$PGBIN/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  psql=(psql -X -v ON_ERROR_STOP=1 --no-password --username "$POSTGRES_USER")
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" --dbname postgres -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh)
        log "running $f"
        if [ -x "$f" ]; then "$f"; else
          # shellcheck disable=SC1090 # init scripts are the user's
          . "$f"
        fi
        ;;
      *.sql)
        log "running $f"
        "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" >/dev/null
        ;;
      *) log "ignoring $f" ;;
    esac
  done
  "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  log "initialisation done; starting PostgreSQL"
fi

shift
exec "$PGBIN/postgres" -D "$PGDATA" "$@"
