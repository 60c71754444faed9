#!/usr/bin/env bash
# The benchmark: builds the feeder and installs the extension (release), then runs
# ecommerce_bench, which starts its own private clusters (data in .bench/, ignored by git),
# generates its input with the feeder, measures each figure against its yardstick in the same
# run, prints a table and writes results.md, results.json, ratios.svg and latency.svg.
#   scripts/bench.sh            full run (~10 min on 2 cores) -> docs/bench/
#   scripts/bench.sh --short    small sizes, for CI: fails if a count is wrong -> target/bench-short/
# Other arguments go to ecommerce_bench (--only backlog,latency,history,bigfile,feeder; --port N).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

out=$ROOT/docs/bench
for a in "$@"; do
  [ "$a" = --short ] && out=$ROOT/target/bench-short
done

echo "== building (release)"
cargo build --release -p feeder -p ecommerce_bench
bash scripts/install-ext.sh

# The benchmark stops its clusters itself; this covers Ctrl-C and kills.
cleanup() {
  for pid in "$ROOT"/.bench/*/data/postmaster.pid; do
    [ -f "$pid" ] && bash scripts/cluster.sh stop "$(dirname "$pid")" immediate
  done
  return 0
}
trap cleanup EXIT

echo "== benchmark"
FEEDER_BIN=$ROOT/target/release/feeder cargo run --release -q -p ecommerce_bench -- --out "$out" "$@"
