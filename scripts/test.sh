#!/usr/bin/env bash
# Every test of the project: unit tests (no server), in-server tests (#[pg_test]), end-to-end
# tests against real PostgreSQL 15 clusters with the worker preloaded, and the pgAdmin test
# (real pgAdmin 4 driven by headless Chromium against a streaming cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every cargo test's output also goes to $log, for the closing total.
t() { "$@" 2>&1 | tee -a "$log"; }

echo "== building the feeder"
cargo build -p feeder

echo "== unit tests (no server)"
t cargo test -p ingest_core -p ecommerce_events -p feeder

echo "== in-server tests (cargo pgrx test)"
if [ "$(id -u)" -eq 0 ]; then
  # initdb refuses root: the test cluster runs as postgres; its folder's parent must be writable by it.
  t bash -c 'cd extension && RUST_TEST_THREADS=1 cargo pgrx test pg15 --runas postgres --pgdata /tmp/pgx'
else
  t bash -c 'cd extension && RUST_TEST_THREADS=1 cargo pgrx test pg15'
fi

echo "== end-to-end tests (real clusters)"
bash scripts/install-ext.sh
# The released version the upgrade test starts from (tests/tests/suite/upgrade.rs): built from git
# once into target/previous/ (about a minute), its SQL install script installed beside ours.
bash scripts/previous-release.sh
t cargo test -p e2e --tests -- --test-threads=1

echo "== pgAdmin in a real browser (scripts/pgadmin-test.sh)"
t bash scripts/pgadmin-test.sh

# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 }
     /^pgadmin ui test result:/ { p += $5; f += $7 } END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
