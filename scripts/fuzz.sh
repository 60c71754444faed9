#!/usr/bin/env bash
# Fuzzes the pgrx-free core (ecommerce_events) with cargo fuzz: the CSV reader with validation
# and the binary COPY encoder (`reader`), resuming from a committed offset (`resume`) and the
# reading thread in small chunks (`pipeline`). See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    # SECONDS per target, default 60; default all targets
#
# Runs on stable Rust: cargo fuzz passes one nightly flag, -Zsanitizer=address, which
# RUSTC_BOOTSTRAP=1 lets the stable compiler take; the sanitizer runtimes ship with the stable
# toolchain on x86_64 Linux (with FUZZ_SANITIZER=none no -Z flag is used at all). Installs cargo-fuzz (pinned) if it is missing. Seeds each target
# from tests/fixtures/hostile/ and a few generated files; corpora, crash artifacts and logs are
# kept under target/fuzz/ (FUZZ_WORK), the build under $CARGO_TARGET_DIR/fuzz-build (or
# target/fuzz-build). FUZZ_SANITIZER=none builds without AddressSanitizer (faster, no leak checks).
# Prints one line per target (runs, coverage) and last `fuzz: N passed, M failed`; exits non-zero
# if any target crashed, leaked, hung (-timeout) or went over the memory limit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

CARGO_FUZZ_VERSION=0.13.2
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(reader resume pipeline)
SANITIZER=${FUZZ_SANITIZER:-address}
WORK=${FUZZ_WORK:-$PWD/target/fuzz}
BUILD=${CARGO_TARGET_DIR:-$PWD/target}/fuzz-build
# Memory bound: libFuzzer fails a run whose RSS or any single allocation goes over it.
# AddressSanitizer keeps freed memory in a quarantine (256 MB by default): keep it small so the
# limit measures our memory, not the sanitizer's.
LIBFUZZER_ARGS=(-rss_limit_mb=512 -malloc_limit_mb=512 -max_len=4194304 -timeout=30
  -dict=fuzz/csv.dict -print_final_stats=1)
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16
export RUSTC_BOOTSTRAP=1

log() { printf 'fuzz: %s\n' "$*"; }

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# --- seeds: 6 setting bytes (fuzz/src/lib.rs) then the file --------------------------------
seeds=$WORK/seeds
rm -rf "$seeds"
mkdir -p "$seeds"
gen=$(mktemp -d)
# Each target rewrites one scratch file per input: in memory (/dev/shm) when there is one.
FUZZ_SCRATCH_DIR=$(mktemp -d -p "$([ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")
export FUZZ_SCRATCH_DIR
trap 'rm -rf "$gen" "$FUZZ_SCRATCH_DIR"' EXIT
# Setting prefixes: a 16 MiB cap; an 81-byte cap with small chunks; young one-chunk jobs with a
# 257 KiB cap; (alone) the contract header put before an empty file, with a 120-byte cap.
seed() { # seed NAME FILE: the file under each prefix
  printf '\x08\xff\xff\x40\x03\x05' | cat - "$2" >"$seeds/$1-big"
  printf '\x00\x50\x00\x10\x07\x02' | cat - "$2" >"$seeds/$1-small"
  printf '\x0e\x03\x04\x20\x01\x07' | cat - "$2" >"$seeds/$1-young"
}
for f in tests/fixtures/hostile/*.csv; do
  seed "$(basename "$f" .csv)" "$f"
done
printf '\x01\x77\x00\x20\x02\x01' >"$seeds/header-only-prefix"
# Generated files, like the ones the tests write: many rows with quoting, CRLF, blank lines,
# lone CRs, a line longer than the parser's buffer, a line of commas past the comma limit.
header=user_id,event_type,product_id,product_name,product_category,price,event_timestamp,session_id,device_type
{
  echo "$header"
  for i in $(seq 1 40); do
    printf 'user_%d,%s,prod_%04d,"Name %d, ""quoted""",Books,%d.%02d,2024-05-01T12:%02d:00.%06dZ,sess_%d,%s\n' \
      "$i" "$([ $((i % 3)) = 0 ] && echo purchase || echo view)" "$i" "$i" "$i" $((i % 100)) \
      $((i % 60)) "$i" "$i" "$([ $((i % 2)) = 0 ] && echo mobile || echo tablet)"
  done
} >"$gen/rows.csv"
sed 's/$/\r/' "$gen/rows.csv" >"$gen/rows_crlf.csv"
{
  printf '%s\r\n' "$header"
  printf 'u1,view,p1,"multi\r\nline, ""q""",Books,5,2024-05-01 12:30:00+02:00,s1,desktop\r\n\r\n\n'
  printf 'u2,purchase,p2,N,C,0.5,2016-12-31T23:59:60Z,s2,mobile\ru3,view,p3,N,C,7,2024-02-29T00:00:00-0530,s3,tablet\r'
  printf 'u4,view,p4,"open quote,C,1,2024-05-01T00:00:00Z,s4,mobile\n'
} >"$gen/mixed.csv"
{
  echo "$header"
  echo "u1,view,p1,N,C,1.00,2024-05-01T12:00:00Z,s1,mobile"
  printf 'u2,view,p2,%s,C,1.00,2024-05-01T12:00:00Z,s2,mobile\n' "$(head -c 300000 /dev/zero | tr '\0' x)"
  echo "u3,view,p3,N,C,1.00,2024-05-01T12:00:00Z,s3,mobile"
  printf 'u4%s\n' "$(head -c 70000 /dev/zero | tr '\0' ,)"
  echo "u5,view,p5,N,C,1.00,2024-05-01T12:00:00Z,s5,mobile"
} >"$gen/long.csv"
for f in "$gen"/{rows,rows_crlf,mixed}.csv; do
  seed "gen-$(basename "$f" .csv)" "$f"
done
# The long lines, unless FUZZ_BIG_SEEDS=0: under the 81-byte cap (the parser's feed refuses the
# 300 KB line, longer than its 256 KiB buffer) and a 1 MiB cap (the 300 KB line fits; the line
# of 70000 commas does not). They reach the feed's own limits, and cost: a 370 KB seed sets
# libFuzzer's length limit that high, and the reader target runs about three times fewer inputs.
if [ "${FUZZ_BIG_SEEDS:-1}" = 1 ]; then
  printf '\x00\x50\x00\x10\x07\x02' | cat - "$gen/long.csv" >"$seeds/gen-long-small"
  printf '\x08\xff\x0f\x40\x03\x05' | cat - "$gen/long.csv" >"$seeds/gen-long-1mib"
fi

# --- build once, then run each target ------------------------------------------------------
fuzz_opts=(--sanitizer "$SANITIZER" --target-dir "$BUILD")
started=$(date +%s)
log "building ${TARGETS[*]} (sanitizer: $SANITIZER, RUSTC_BOOTSTRAP=1 on $(rustc --version))"
mkdir -p "$WORK/logs"
if ! { cargo fetch --locked --manifest-path fuzz/Cargo.toml &&
  cargo fuzz build "${fuzz_opts[@]}"; } >"$WORK/logs/build.log" 2>&1; then
  tail -n 40 "$WORK/logs/build.log"
  log "the build failed (log: $WORK/logs/build.log)"
  echo "fuzz: 0 passed, ${#TARGETS[@]} failed"
  exit 1
fi
log "build took $(($(date +%s) - started)) s"

passed=0
failed=0
for t in "${TARGETS[@]}"; do
  corpus=$WORK/corpus/$t
  artifacts=$WORK/artifacts/$t
  out=$WORK/logs/$t.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$out")"
  rc=0
  # The outer timeout only guards against a hang libFuzzer cannot see (-timeout covers inputs).
  timeout --signal=KILL $((SECS + 300)) \
    cargo fuzz run "${fuzz_opts[@]}" "$t" "$corpus" "$seeds" -- \
    -max_total_time="$SECS" -artifact_prefix="$artifacts/" "${LIBFUZZER_ARGS[@]}" \
    >"$out" 2>&1 || rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$out" | tail -n 1)
  # Stopped by a failure: the last status line's count.
  [ -n "$runs" ] || runs=$(grep -E '^#[0-9]+[[:space:]]' "$out" | tail -n 1 | sed -E 's/^#([0-9]+).*/\1 runs/')
  stats=$(grep -E '^#[0-9]+[[:space:]]+[A-Z]+[[:space:]]+cov:' "$out" | tail -n 1 |
    sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+)\/([^ ]+).*/coverage \1 edges, \2 features, corpus \3 inputs (\4)/')
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    log "$t: ok, ${runs:-? runs}, ${stats:-no stats}"
  else
    failed=$((failed + 1))
    what=$(grep -v '^ *Running ' "$out" | grep -m1 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|out-of-memory|timeout after' || true)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -n 1)
    log "$t: FAILED (exit $rc) after ${runs:-? runs}, ${stats:-no stats}: ${what:-see the log}"
    log "$t: input: ${crash:-none written}; log: $out"
    log "$t: reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run ${fuzz_opts[*]} $t ${crash:-<input>}"
    grep -A 12 -m1 'panicked at' "$out" | sed 's/^/    /' || true
  fi
done
# cargo fuzz creates fuzz/artifacts/<target>/ even though -artifact_prefix points elsewhere.
rmdir fuzz/artifacts/* fuzz/artifacts 2>/dev/null || true
log "total $(($(date +%s) - started)) s (build and runs)"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
