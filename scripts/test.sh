#!/usr/bin/env bash
# Every test of the project: unit tests (no server), in-server tests (#[pg_test]) and
# end-to-end tests against real PostgreSQL 15 clusters with the worker preloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== building the feeder"
cargo build -p feeder

echo "== unit tests (no server)"
cargo test -p ecommerce_events -p feeder

echo "== in-server tests (cargo pgrx test)"
if [ "$(id -u)" -eq 0 ]; then
  # initdb refuses root: the test cluster runs as postgres; its folder's parent must be writable by it.
  (cd extension && RUST_TEST_THREADS=1 cargo pgrx test pg15 --runas postgres --pgdata /tmp/pgx)
else
  (cd extension && RUST_TEST_THREADS=1 cargo pgrx test pg15)
fi

echo "== end-to-end tests (real clusters)"
bash scripts/install-ext.sh
cargo test -p e2e -- --test-threads=1
