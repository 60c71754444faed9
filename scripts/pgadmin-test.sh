#!/usr/bin/env bash
# Proves that the pipeline is operable from pgAdmin: runs real pgAdmin 4 (PyPI `pgadmin4`, server
# mode, loopback only) against a private cluster with ecommerce_ingest preloaded and the feeder
# streaming events into it, and drives it with headless Debian Chromium through playwright-core
# (ui-tests/pgadmin.spec.mjs): log in, open the Query Tool on the pre-registered server, read
# ingest_status(), pause (checked independently with psql), resume, read ingest_batches and
# ingest_files. Every step saves a screenshot (pgadmin-*.png). Exits non-zero if anything fails;
# its last line is "pgadmin ui test result: N passed, M failed" (scripts/test.sh counts it).
#
# Installs only what is missing: Debian's chromium, a venv in .venv-pgadmin/ with pgadmin4,
# ui-tests/node_modules from the committed package-lock.json.
#
# Environment:
#   PGADMIN_TEST_WORK=/tmp/pga      scratch folder (cluster data, input, pgAdmin data, logs); wiped first
#   PGADMIN_TEST_SKIP_BUILD=1       do not build the feeder / install the extension (already done)
#   PGADMIN_TEST_SHOTS=DIR          where the screenshots go (default: $PGADMIN_TEST_WORK/shots);
#                                   PGADMIN_TEST_SHOTS=docs/img refreshes the user guide's
#   PGADMIN_TEST_HOLD=1             set everything up, print the URL and wait (explore by hand)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
PGADMIN_VERSION=9.18
VENV=$ROOT/.venv-pgadmin
WORK=${PGADMIN_TEST_WORK:-/tmp/pga}
SHOTS=${PGADMIN_TEST_SHOTS:-$WORK/shots}
case $SHOTS in /*) ;; *) SHOTS=$ROOT/$SHOTS ;; esac
PGA_EMAIL=admin@example.com
PGA_PASSWORD=ingest-demo-pw
started=$(date +%s)

step() { echo "== [pgadmin-test $(($(date +%s) - started))s] $*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# A free TCP port on 127.0.0.1, starting from $1.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# ---------------------------------------------------------------------------------------------
step "installing what is missing"
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('pgadmin4') != '$PGADMIN_VERSION')" 2>/dev/null; then
  rm -rf "$VENV"
  PY=python3
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    PY=/usr/bin/python3
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "pgadmin4==$PGADMIN_VERSION"
fi
want=$(node -p "require('./ui-tests/package-lock.json').packages['node_modules/playwright-core'].version")
have=$(node -p "try { require('./ui-tests/node_modules/playwright-core/package.json').version } catch (e) { '' }")
if [ "$want" != "$have" ]; then
  (cd ui-tests && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ -z "${PGADMIN_TEST_SKIP_BUILD:-}" ]; then
  step "building the feeder and installing the extension"
  cargo build --release -q -p feeder
  # Staged and renamed into place: servers running the old library are not disturbed.
  bash scripts/install-ext.sh
fi

# ---------------------------------------------------------------------------------------------
DATA=$WORK/data
INPUT=$WORK/input
PGA_DATA=$WORK/pgadmin
LOGS=$WORK/logs
feeder_pid=
pgadmin_pid=
cleanup() {
  rc=$?
  trap - INT TERM EXIT
  set +e
  step "stopping pgAdmin, the feeder and the cluster"
  if [ -n "$pgadmin_pid" ]; then kill "$pgadmin_pid" 2>/dev/null; wait "$pgadmin_pid" 2>/dev/null; fi
  if [ -n "$feeder_pid" ]; then kill -INT "$feeder_pid" 2>/dev/null; wait "$feeder_pid" 2>/dev/null; fi
  bash scripts/cluster.sh stop "$DATA" fast
  if [ "$rc" -ne 0 ]; then
    echo "pgadmin-test FAILED (exit $rc); logs in $LOGS and $DATA/server.log" >&2
    for f in "$LOGS"/pgadmin.out "$PGA_DATA"/pgadmin4.log "$DATA"/server.log; do
      [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 30 "$f" >&2; }
    done
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -f "$DATA/postmaster.pid" ] && bash scripts/cluster.sh stop "$DATA" immediate
rm -rf "$WORK"
mkdir -p "$WORK" "$LOGS" "$PGA_DATA" "$SHOTS"

PGPORT=$(free_port 55480)
step "starting PostgreSQL on 127.0.0.1:$PGPORT (data in $DATA, input $INPUT)"
bash scripts/cluster.sh start "$DATA" "$PGPORT" "$INPUT" \
  "ecommerce_ingest.trigger_interval = '2s'" "ecommerce_ingest.processed_action = 'keep'"
PSQL=(psql -X -q -At -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE EXTENSION IF NOT EXISTS ecommerce_ingest"

step "starting the feeder into $INPUT"
"$ROOT/target/release/feeder" --output-dir "$INPUT" --events-per-file 200 --delay 1s \
  --bad-row-ratio 0.01 --total-files 0 --quiet >"$LOGS/feeder.out" 2>&1 &
feeder_pid=$!

step "waiting for the worker to ingest the first files"
for _ in $(seq 1 120); do
  n=$("${PSQL[@]}" -c "SELECT count(*) FROM ingest_batches" 2>/dev/null || echo 0)
  [ "${n:-0}" -ge 2 ] && break
  sleep 0.5
done
"${PSQL[@]}" -c "SELECT state, files_ingested, rows_ingested FROM ingest_status()"
[ "$("${PSQL[@]}" -c "SELECT state FROM ingest_status()")" = running ] || { echo "worker is not running" >&2; exit 1; }
[ "${n:-0}" -ge 2 ] || { echo "no batch ingested" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
PGA_PORT=$(free_port 5050)
step "configuring pgAdmin $PGADMIN_VERSION in server mode on 127.0.0.1:$PGA_PORT (data in $PGA_DATA)"
cat >"$PGA_DATA/config_pgadmin_test.py" <<EOF
# Written by scripts/pgadmin-test.sh; loaded through CONFIG_DISTRO_FILE_PATH.
import logging
HELP_PATH = '../../docs/en_US/_build/html/'
MINIFY_HTML = False
SERVER_MODE = True
DEFAULT_SERVER = '127.0.0.1'
DEFAULT_SERVER_PORT = $PGA_PORT
DATA_DIR = '$PGA_DATA'
LOG_FILE = '$PGA_DATA/pgadmin4.log'
SQLITE_PATH = '$PGA_DATA/pgadmin4.db'
SESSION_DB_PATH = '$PGA_DATA/sessions'
STORAGE_DIR = '$PGA_DATA/storage'
AZURE_CREDENTIAL_CACHE_DIR = '$PGA_DATA/azurecredentialcache'
KERBEROS_CCACHE_DIR = '$PGA_DATA/krbccache'
MASTER_PASSWORD_REQUIRED = False
UPGRADE_CHECK_ENABLED = False
CHECK_EMAIL_DELIVERABILITY = False
CONSOLE_LOG_LEVEL = logging.WARNING
FILE_LOG_LEVEL = logging.WARNING
SHOW_GRAVATAR_IMAGE = False
EOF
export CONFIG_DISTRO_FILE_PATH=$PGA_DATA/config_pgadmin_test.py
PGA_DIR=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/pgadmin4
cat >"$PGA_DATA/servers.json" <<EOF
{
  "Servers": {
    "1": {
      "Name": "ecommerce_ingest demo",
      "Group": "Servers",
      "Host": "127.0.0.1",
      "Port": $PGPORT,
      "MaintenanceDB": "postgres",
      "Username": "postgres",
      "SSLMode": "disable",
      "ConnectionParameters": { "sslmode": "disable", "connect_timeout": 10 }
    }
  }
}
EOF
PGADMIN_SETUP_EMAIL=$PGA_EMAIL PGADMIN_SETUP_PASSWORD=$PGA_PASSWORD \
  "$VENV/bin/python" "$PGA_DIR/setup.py" setup-db >"$LOGS/setup-db.out" 2>&1
"$VENV/bin/python" "$PGA_DIR/setup.py" load-servers "$PGA_DATA/servers.json" --user "$PGA_EMAIL" \
  >"$LOGS/load-servers.out" 2>&1
cat "$LOGS/load-servers.out"

step "starting pgAdmin"
"$VENV/bin/python" "$PGA_DIR/pgAdmin4.py" >"$LOGS/pgadmin.out" 2>&1 &
pgadmin_pid=$!
PGA_URL=http://127.0.0.1:$PGA_PORT
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "$PGA_URL/misc/ping" 2>/dev/null && break
  kill -0 "$pgadmin_pid" 2>/dev/null || { echo "pgAdmin exited" >&2; exit 1; }
  sleep 1
done
curl -fsS -o /dev/null "$PGA_URL/misc/ping" || { echo "pgAdmin did not answer on $PGA_URL" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
if [ -n "${PGADMIN_TEST_HOLD:-}" ]; then
  echo "PGADMIN_TEST_HOLD: pgAdmin at $PGA_URL ($PGA_EMAIL / $PGA_PASSWORD), PostgreSQL on port $PGPORT; Ctrl-C stops"
  echo "$PGA_URL $PGPORT" >"$WORK/hold"
  while true; do sleep 1; done
fi
step "driving pgAdmin with headless Chromium (ui-tests/pgadmin.spec.mjs)"
rows_before=$("${PSQL[@]}" -c "SELECT rows_ingested FROM ingest_status()")
PGA_URL=$PGA_URL PGA_EMAIL=$PGA_EMAIL PGA_PASSWORD=$PGA_PASSWORD PGA_SERVER="ecommerce_ingest demo" \
  PGPORT=$PGPORT SHOTS_DIR=$SHOTS CHROME_DATA=$WORK/chrome \
  node ui-tests/pgadmin.spec.mjs

step "checking with psql that the worker runs again and rows still flow"
state=$("${PSQL[@]}" -c "SELECT state FROM ingest_status()")
[ "$state" = running ] || { echo "state after the test is '$state', expected running" >&2; exit 1; }
for _ in $(seq 1 60); do
  rows_after=$("${PSQL[@]}" -c "SELECT rows_ingested FROM ingest_status()")
  [ "$rows_after" -gt "$rows_before" ] && break
  sleep 0.5
done
[ "$rows_after" -gt "$rows_before" ] || { echo "no rows ingested after resume ($rows_before -> $rows_after)" >&2; exit 1; }
echo "rows_ingested: $rows_before before the UI test, $rows_after after it"
step "pgAdmin test passed in $(($(date +%s) - started))s"
