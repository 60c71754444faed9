#!/usr/bin/env bash
# A private PostgreSQL 15 cluster with ecommerce_ingest preloaded, on a loopback port.
#   scripts/cluster.sh start DATA_DIR PORT INPUT_DIR [extra postgresql.conf lines...]
#   scripts/cluster.sh stop DATA_DIR [mode]
# initdb refuses root: as root, the cluster runs as the `postgres` OS user.
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    sudo -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd=${1:?usage: cluster.sh start|stop DATA_DIR ...}
data=${2:?DATA_DIR}
case "$cmd" in
  start)
    port=${3:?PORT}
    input=${4:?INPUT_DIR}
    shift 4
    mkdir -p "$(dirname "$data")" "$input"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres "$(dirname "$data")" "$input"
      # postgres must be able to reach the folders through their parents.
      d=$(dirname "$data"); while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
      d=$input; while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
      as_pg "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    {
      echo "# written by scripts/cluster.sh"
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '$data'"
      echo "shared_preload_libraries = 'ecommerce_ingest'"
      echo "ecommerce_ingest.database = 'postgres'"
      echo "ecommerce_ingest.input_dir = '$input'"
      echo "ecommerce_ingest.trigger_interval = '10s'"
      echo "logging_collector = off"
      for line in "$@"; do echo "$line"; done
    } | as_pg tee "$data/ecommerce_ingest.conf" >/dev/null
    grep -q "include_if_exists = 'ecommerce_ingest.conf'" "$data/postgresql.conf" ||
      echo "include_if_exists = 'ecommerce_ingest.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
    ;;
  stop)
    mode=${3:-fast}
    if [ -f "$data/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$data" -m "$mode" -w -t 60 stop >/dev/null || true
    fi
    ;;
  *) echo "usage: cluster.sh start|stop DATA_DIR ..." >&2; exit 2 ;;
esac
