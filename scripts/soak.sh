#!/usr/bin/env bash
# Soak test: the feeder writes files without end (small delay, some bad rows) while, at random
# moments for N minutes, one fault at a time hits the worker:
#   - SIGKILL of the worker (the postmaster restarts every process);
#   - `pg_ctl stop -m immediate`, then start again;
#   - the input folder replaced: moved away, made again, its files moved back (the feeder is
#     stopped with SIGSTOP meanwhile and everything in the folder is ingested first, so that no
#     file in progress vanishes: a file removed half-way ends `failed`, by design);
#   - a lock holder: ACCESS EXCLUSIVE on user_events for 1 to 3 s;
#   - once, half-way: failover. The primary stops (`-m immediate`) and its streaming standby
#     (asynchronous, same folder, made with pg_basebackup at the start) is promoted; the run
#     goes on against it.
# Then the feeder stops, ingestion finishes, and every file is compared with the database, row by
# row (exactly once: no row missing, none twice, values equal, every bad row in the rejects).
# Prints a summary and a `reliability:` line per fault; exits non-zero on any mismatch.
#
#   scripts/soak.sh [MINUTES]        default 10
#
# Environment: SOAK_SEED (random moments and feeder seed; printed), SOAK_PORT (default 55440; the
# standby uses the next port), SOAK_KEEP=1 (keep the cluster's folder), SOAK_DELAY (feeder delay,
# default 100ms), SOAK_EVENTS (rows per file, default 200), SOAK_FAILOVER=0 (no standby, no
# failover), SOAK_WORKERS (the events pipeline's workers, default 2: the faults hit a pipeline
# whose files two workers share). Needs the extension installed (scripts/install-ext.sh). Binaries are built into
# $CARGO_TARGET_DIR (default target/).
set -euo pipefail

minutes=${1:-10}
case "$minutes" in '' | *[!0-9]*) echo "usage: $0 [MINUTES]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
repo=$PWD
port=${SOAK_PORT:-55440}
standby_port=$((port + 1))
failover=${SOAK_FAILOVER:-1}
seed=${SOAK_SEED:-$(( $(date +%s) % 1000000 ))}
delay=${SOAK_DELAY:-100ms}
events=${SOAK_EVENTS:-200}
workers=${SOAK_WORKERS:-2}
root=$(mktemp -d /tmp/soak-XXXXXX)
chmod 755 "$root"
data=$root/data
standby=$root/standby
input=$root/in
PGBIN=/usr/lib/postgresql/15/bin
conf=(
  "ecommerce_ingest.trigger_interval = '500ms'"
  "ecommerce_ingest.min_file_age = '200ms'"
  "ecommerce_ingest.chunk_size = '64kB'"
  "ecommerce_ingest.batch_rows = 500"
  "ecommerce_ingest.workers = $workers"
)

log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
sql() { psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc "$1"; }
up() { sql 'SELECT 1' >/dev/null 2>&1; }
worker_pid() { sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ecommerce_ingest'" 2>/dev/null || true; }

feeder_pid=
cleanup() {
  if [ -n "$feeder_pid" ] && kill -0 "$feeder_pid" 2>/dev/null; then
    kill -CONT "$feeder_pid" 2>/dev/null || true
    kill -INT "$feeder_pid" 2>/dev/null || true
    wait "$feeder_pid" 2>/dev/null || true
  fi
  for d in "$root/data" "$standby"; do
    bash scripts/cluster.sh stop "$d" immediate >/dev/null 2>&1 || true
  done
  if [ "${SOAK_KEEP:-}" = 1 ]; then
    log "kept $root"
  else
    rm -rf "$root"
  fi
}
trap cleanup EXIT

log "seed $seed (repeat with SOAK_SEED=$seed); $minutes minute(s); folder $root"
cargo build -q -p feeder
cargo build -q -p e2e --bin soak_check
target=${CARGO_TARGET_DIR:-$repo/target}
feeder=$target/debug/feeder
check=$target/debug/soak_check

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

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
csv_files() { find "$input" -maxdepth 1 -type f -name '*.csv' ! -name '.*' | wc -l; }
done_files() { sql "SELECT count(*) FROM ingest_files WHERE status = 'done'" 2>/dev/null || echo 0; }

# An asynchronous streaming standby of the primary, reading the same folder.
start_standby() {
  mkdir -p "$standby"
  chmod 700 "$standby"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$standby"; fi
  as_pg "$PGBIN/pg_basebackup" -D "$standby" -c fast -R -X stream -h 127.0.0.1 -U postgres -p "$port"
  bash scripts/cluster.sh start "$standby" "$standby_port" "$input" "${conf[@]}"
}

# The primary dies (-m immediate), the standby is promoted and is the server from now on.
fail_over() {
  bash scripts/cluster.sh stop "$data" immediate
  psql -X -q -h 127.0.0.1 -p "$standby_port" -U postgres -d postgres -Atc "SELECT pg_promote(true, 60)" >/dev/null
  data=$standby
  port=$standby_port
}

# The input folder moved away, made again and its files moved back, the feeder stopped
# meanwhile, once everything in it is ingested (up to 60 s).
replace_folder() {
  kill -STOP "$feeder_pid"
  for _ in $(seq 600); do
    [ "$(done_files)" -ge "$(csv_files)" ] && break
    sleep 0.1
  done
  mv "$input" "$input.old"
  mkdir "$input"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$input"; fi
  find "$input.old" -mindepth 1 -maxdepth 1 -exec mv -t "$input" {} +
  rmdir "$input.old"
  kill -CONT "$feeder_pid"
}

# ACCESS EXCLUSIVE on user_events for 1 to 3 s; counts the holds during which ingest_status()
# said waiting_for_lock.
hold_lock() {
  local secs=$((1 + RANDOM % 3)) holder seen=''
  sql "BEGIN; LOCK TABLE user_events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep($secs); COMMIT" >/dev/null &
  holder=$!
  while kill -0 "$holder" 2>/dev/null; do
    if [ "$(sql "SELECT state FROM ingest_status() LIMIT 1" 2>/dev/null)" = waiting_for_lock ]; then seen=yes; fi
    sleep 0.1
  done
  wait "$holder"
  if [ -n "$seen" ]; then lock_seen=$((lock_seen + 1)); fi
}

start_cluster
sql "CREATE EXTENSION ecommerce_ingest"
rss_pid=$(wait_new_worker "")
if [ "$failover" = 1 ]; then start_standby; fi

"$feeder" --output-dir "$input" --events-per-file "$events" --delay "$delay" --total-files 0 \
  --bad-row-ratio 0.01 --seed "$seed" --summary-json "$root/feeder.json" --quiet &
feeder_pid=$!

RANDOM=$seed
kills=0
restarts=0
replaced=0
locks=0
lock_seen=0
failovers=0
t_half=$((SECONDS + minutes * 30))
t_end=$((SECONDS + minutes * 60))
while [ "$SECONDS" -lt "$t_end" ]; do
  # 1 to 6 s of work, sampling the worker's anonymous memory every 0.2 s.
  steps=$((5 + RANDOM % 26))
  for _ in $(seq "$steps"); do
    sample_rss
    sleep 0.2
  done
  n=$((kills + restarts + replaced + locks + failovers + 1))
  old=$(worker_pid)
  fault=$((RANDOM % 5))
  if [ "$failover" = 1 ] && [ "$failovers" -eq 0 ] && [ "$SECONDS" -ge "$t_half" ]; then
    fault=failover
  elif [ "$fault" -le 1 ] && [ -z "$old" ]; then
    fault=2
  fi
  case $fault in
    0 | 1)
      kill -9 "$old"
      kills=$((kills + 1))
      log "fault $n: SIGKILL worker $old"
      ;;
    2)
      bash scripts/cluster.sh stop "$data" immediate
      start_cluster
      restarts=$((restarts + 1))
      log "fault $n: pg_ctl stop -m immediate, start"
      ;;
    3)
      replace_folder
      replaced=$((replaced + 1))
      log "fault $n: input folder replaced"
      old=''
      ;;
    4)
      hold_lock
      locks=$((locks + 1))
      log "fault $n: ACCESS EXCLUSIVE on user_events held (waiting_for_lock seen in $lock_seen of $locks)"
      old=''
      ;;
    failover)
      fail_over
      failovers=1
      log "fault $n: primary stopped (-m immediate), standby promoted"
      ;;
  esac
  # After a crash, a restart or a failover: a new worker. Otherwise the same one, still there.
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
folder replaced    $replaced
lock holders       $locks (waiting_for_lock seen during $lock_seen)
failovers          $failovers
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
echo "reliability: fault=soak injected=$((kills + restarts + replaced + locks + failovers)) expected=$(val rows_expected) found=$(val rows_stored) duplicated=$(val duplicates) (kills=$kills restarts=$restarts replaced=$replaced locks=$locks failovers=$failovers minutes=$minutes)"
[ "$verdict" = PASS ]
