#!/usr/bin/env bash
# Soak test: the feeder writes files without end (small delay, some bad rows) while the worker is
# SIGKILLed or the server stopped with `pg_ctl stop -m immediate` and started again, at random
# moments, for N minutes. Then the feeder stops, ingestion finishes, and every file is compared
# with the database, row by row (exactly once: no row missing, none twice, values equal, every bad
# row in the rejects). Prints a summary; exits non-zero on any mismatch.
#
#   scripts/soak.sh [MINUTES]        default 10
#
# Environment: SOAK_SEED (random moments and feeder seed; printed), SOAK_PORT (default 55440),
# SOAK_KEEP=1 (keep the cluster's folder), SOAK_DELAY (feeder delay, default 100ms),
# SOAK_EVENTS (rows per file, default 200). Needs the extension installed
# (`cd extension && cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config`).
set -euo pipefail

minutes=${1:-10}
case "$minutes" in '' | *[!0-9]*) echo "usage: $0 [MINUTES]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
repo=$PWD
port=${SOAK_PORT:-55440}
seed=${SOAK_SEED:-$(( $(date +%s) % 1000000 ))}
delay=${SOAK_DELAY:-100ms}
events=${SOAK_EVENTS:-200}
root=$(mktemp -d /tmp/soak-XXXXXX)
chmod 755 "$root"
data=$root/data
input=$root/in
conf=(
  "ecommerce_ingest.trigger_interval = '500ms'"
  "ecommerce_ingest.min_file_age = '200ms'"
  "ecommerce_ingest.chunk_size = '64kB'"
  "ecommerce_ingest.batch_rows = 500"
)

log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
sql() { psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc "$1"; }
up() { sql 'SELECT 1' >/dev/null 2>&1; }
worker_pid() { sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ecommerce_ingest'" 2>/dev/null || true; }

feeder_pid=
cleanup() {
  if [ -n "$feeder_pid" ] && kill -0 "$feeder_pid" 2>/dev/null; then
    kill -INT "$feeder_pid" 2>/dev/null || true
    wait "$feeder_pid" 2>/dev/null || true
  fi
  bash scripts/cluster.sh stop "$data" immediate >/dev/null 2>&1 || true
  if [ "${SOAK_KEEP:-}" = 1 ]; then
    log "kept $root"
  else
    rm -rf "$root"
  fi
}
trap cleanup EXIT

log "seed $seed (repeat with SOAK_SEED=$seed); $minutes minute(s); folder $root"
cargo build -q -p feeder -p e2e --bin soak_check
feeder=$repo/target/debug/feeder
check=$repo/target/debug/soak_check

start_cluster() { bash scripts/cluster.sh start "$data" "$port" "$input" "${conf[@]}"; }

# Waits (up to 60 s) until the server answers and a worker other than $1 runs; prints its pid.
wait_new_worker() {
  local old=$1 pid=''
  for _ in $(seq 600); do
    if up; then
      pid=$(worker_pid)
      if [ -n "$pid" ] && [ "$pid" != "$old" ]; then
        echo "$pid"
        return 0
      fi
    fi
    sleep 0.1
  done
  echo "no new worker after 60 s" >&2
  return 1
}

max_rss=0
rss_pid=
sample_rss() {
  local kb
  [ -n "$rss_pid" ] || return 0
  kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$rss_pid/status" 2>/dev/null || true)
  if [ -n "$kb" ] && [ "$kb" -gt "$max_rss" ]; then max_rss=$kb; fi
}

start_cluster
sql "CREATE EXTENSION ecommerce_ingest"
rss_pid=$(wait_new_worker "")

"$feeder" --output-dir "$input" --events-per-file "$events" --delay "$delay" --total-files 0 \
  --bad-row-ratio 0.01 --seed "$seed" --summary-json "$root/feeder.json" --quiet &
feeder_pid=$!

RANDOM=$seed
kills=0
restarts=0
t_end=$((SECONDS + minutes * 60))
while [ "$SECONDS" -lt "$t_end" ]; do
  # 1 to 6 s of work, sampling the worker's anonymous memory every 0.2 s.
  steps=$((5 + RANDOM % 26))
  for _ in $(seq "$steps"); do
    sample_rss
    sleep 0.2
  done
  old=$(worker_pid)
  if [ $((RANDOM % 2)) -eq 0 ] && [ -n "$old" ]; then
    kill -9 "$old"
    kills=$((kills + 1))
    log "crash $((kills + restarts)): SIGKILL worker $old"
  else
    bash scripts/cluster.sh stop "$data" immediate
    start_cluster
    restarts=$((restarts + 1))
    log "crash $((kills + restarts)): pg_ctl stop -m immediate, start"
  fi
  rss_pid=$(wait_new_worker "$old")
done

log "stopping the feeder"
kill -INT "$feeder_pid"
wait "$feeder_pid" || true
feeder_pid=
files=$(find "$input" -maxdepth 1 -type f -name '*.csv' ! -name '.*' | wc -l)
log "$files files written; waiting for the worker to finish them"
sql "SELECT ingest_trigger()" >/dev/null
finished=
for _ in $(seq 600); do
  sample_rss
  n=$(sql "SELECT count(*) FROM ingest_files WHERE status = 'done'")
  if [ "$n" -ge "$files" ]; then finished=yes; break; fi
  sleep 0.5
done
[ -n "$finished" ] || log "not finished after 5 minutes: $n of $files files done"
sql "SELECT ingest_trigger()" >/dev/null
sleep 1

set +e
report=$("$check" "$port" "$input")
check_rc=$?
set -e
val() { printf '%s\n' "$report" | sed -n "s/^$1=//p"; }
fj() { sed -n "s/^  \"$1\": \\([0-9]*\\).*/\\1/p" "$root/feeder.json"; }
f_events=$(fj events)
f_bad=$(fj bad_rows)
f_files=$(fj files)
status=$(sql "SELECT state || ' pid ' || worker_pid || ', ' || files_ingested || ' files, ' || rows_ingested || ' rows, ' || rows_rejected || ' rejected' FROM ingest_status()")

verdict=PASS
[ "$check_rc" -eq 0 ] || verdict=FAIL
[ "$(val rows_expected)" = "$f_events" ] || verdict=FAIL
[ "$(val rejects_expected)" = "$f_bad" ] || verdict=FAIL
[ "$files" = "$f_files" ] || verdict=FAIL
[ -n "$finished" ] || verdict=FAIL

cat <<EOF

==================== soak summary ====================
minutes            $minutes (seed $seed)
worker SIGKILLs    $kills
immediate restarts $restarts
files              $files written ($f_files by the feeder's count), $(val files_not_done) not done
rows               $(val rows_stored) stored / $(val rows_expected) valid in the files / $f_events by the feeder
rejects            $(val rejects_stored) stored / $(val rejects_expected) bad in the files / $f_bad by the feeder
duplicates         $(val duplicates)
missing            $(val missing)
extra              $(val extra)
different values   $(val different)
ledger problems    $(val ledger_problems)
worker RssAnon max $max_rss kB
ingest_status()    $status
verdict            $verdict
======================================================
EOF
[ "$verdict" = PASS ]
