#!/usr/bin/env bash
# The main job: build and install the extension, start a private cluster with it preloaded
# (data in .demo/, port 55432 on 127.0.0.1), create the extension, stream events with the
# feeder, and show ingest_status() live. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PORT=${DEMO_PORT:-55432}
DEMO=$ROOT/.demo
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== building (release)"
cargo build --release -p feeder
bash scripts/install-ext.sh

feeder_pid=
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "== stopping"
  [ -n "$feeder_pid" ] && kill -INT "$feeder_pid" 2>/dev/null && wait "$feeder_pid" 2>/dev/null || true
  bash scripts/cluster.sh stop "$DEMO/pgdata" fast
  echo "stopped: data kept in $DEMO (remove it to start afresh)"
  exit 0
}
trap cleanup INT TERM EXIT

echo "== starting PostgreSQL on 127.0.0.1:$PORT (data in $DEMO/pgdata)"
bash scripts/cluster.sh start "$DEMO/pgdata" "$PORT" "$DEMO/input" \
  "ecommerce_ingest.trigger_interval = '10s'" "ecommerce_ingest.processed_action = 'keep'"
PSQL=(psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE EXTENSION IF NOT EXISTS ecommerce_ingest"

echo "== starting the feeder into $DEMO/input"
"$ROOT/target/release/feeder" --output-dir "$DEMO/input" --events-per-file "${DEMO_EVENTS_PER_FILE:-100}" \
  --delay "${DEMO_DELAY:-1s}" --total-files 0 --quiet &
feeder_pid=$!

while true; do
  status=$("${PSQL[@]}" -x -c "SELECT state, worker_pid, files_ingested, files_pending, rows_ingested, rows_rejected,
           last_trigger_at, round(last_batch_ms::numeric, 2) AS last_batch_ms, last_batch_rows,
           round(rows_per_second::numeric) AS rows_per_second, round(lag_seconds::numeric, 3) AS lag_seconds, last_error
      FROM ingest_status()" 2>&1 || true)
  batches=$("${PSQL[@]}" -c "SELECT batch_id, trigger, files, rows, rejected, duration_ms, rows_per_second
      FROM ingest_batches ORDER BY batch_id DESC LIMIT 5" 2>&1 || true)
  if [ -t 1 ]; then clear; fi
  echo "ecommerce_ingest demo — psql -h 127.0.0.1 -p $PORT -U postgres   (Ctrl-C stops everything)"
  echo "$status"
  echo
  echo "last batches:"
  echo "$batches"
  sleep 1
done
