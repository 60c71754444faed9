#!/usr/bin/env bash
# Fuzzes the pgrx-free cores with cargo fuzz. ecommerce_events: the CSV reader with validation
# and the binary COPY encoder (`reader`), resuming from a committed offset (`resume`) and the
# reading thread (`pipeline`). ingest_core: the CSV/TSV/NDJSON row reader with gzip/zstd,
# options drawn from the input and resuming at every record boundary (`rows`), and the pipeline
# options' parsing and merging (`options`). See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    # SECONDS per target, default 60; default all targets
#
# Runs on stable Rust: cargo fuzz passes one nightly flag, -Zsanitizer=address, which
# RUSTC_BOOTSTRAP=1 lets the stable compiler take; the sanitizer runtimes ship with the stable
# toolchain on x86_64 Linux (with FUZZ_SANITIZER=none no -Z flag is used at all). Installs cargo-fuzz (pinned) if it is missing. Seeds
# the events targets from tests/fixtures/hostile/ and a few generated files, `rows` and
# `options` from small generated files; corpora, crash artifacts and logs are kept under
# target/fuzz/ (FUZZ_WORK), the build under $CARGO_TARGET_DIR/fuzz-build (or
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
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(reader resume pipeline rows options)
SANITIZER=${FUZZ_SANITIZER:-address}
WORK=${FUZZ_WORK:-$PWD/target/fuzz}
BUILD=${CARGO_TARGET_DIR:-$PWD/target}/fuzz-build
# Memory bound: libFuzzer fails a run whose RSS or any single allocation goes over it.
# AddressSanitizer keeps freed memory in a quarantine (256 MB by default): keep it small so the
# limit measures our memory, not the sanitizer's.
LIBFUZZER_ARGS=(-rss_limit_mb=512 -malloc_limit_mb=512 -timeout=30 -print_final_stats=1)
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16
export RUSTC_BOOTSTRAP=1

log() { printf 'fuzz: %s\n' "$*"; }

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# --- seeds: 6 setting bytes (fuzz/src/lib.rs) then the file --------------------------------
seeds=$WORK/seeds
rm -rf "$seeds" "$WORK/seeds-rows" "$WORK/seeds-options"
mkdir -p "$seeds" "$WORK/seeds-rows" "$WORK/seeds-options"
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

# --- seeds of `rows`: 6 setting bytes (fuzz/src/ingest.rs) then the file -----------------
# Table columns id (required), name, price, tags (array), doc (json), total (generated).
rs=$WORK/seeds-rows
{
  printf 'id,name,price,tags,doc\n1,Ann,9.50,"{a,b}","{""k"": 1}"\r\n\r\n\n'
  printf '2,"multi\nline, ""q""",,{},null\n3,Bob,1,x,y,extra\n4,\\N,NULL,,\n'
  printf '5,"open quote,1,x,y\n'
} >"$gen/r.csv"
printf 'id\tname\tprice\ttags\tdoc\n1\tAnn\t9.5\t\\N\t{}\n2\ta\\tb\t\t{x}\t[1]\n\n3\tshort\n4\tx\ty' >"$gen/r.tsv"
{
  printf '{"id":1,"name":"Ann","price":9.5,"tags":["a",null,["b","c\\"d"]],"doc":{"k":[1,2]}}\n'
  printf '{"ID":2,"Name":"x","tags":[],"doc":"s"}\r\n  \n{"id":null,"name":"no id"}\n'
  printf '[1,2]\nnot json\n{"id":3,"total":7,"extra":true}\n{"id":"\\u0000"}\n{"id":4,"id":5}\n'
  printf '{"id":1e15,"price":-0.0,"doc":null,"tags":[{"a":1}]}'
} >"$gen/r.ndjson"
printf '1,Ann,9.5,{a},{}\n2,,,,\n3,x\n' >"$gen/r-noheader.csv"
printf 'id;name;price\n1;caf\xe9;\x27a;b\x27\n2;\x27x\\\x27y\x27;NULL\n' >"$gen/r-dialect.csv"
# seed_rows NAME SETTINGS FILE: SETTINGS as printf escapes.
seed_rows() { printf '%b' "$2" | cat - "$3" >"$rs/$1"; }
seed_rows csv '\x80\x00\x00\x00\xff\x00' "$gen/r.csv"             # csv, 4 KiB cap
seed_rows csv-small '\x00\x00\x00\x00\x28\x00' "$gen/r.csv"       # csv, 41-byte cap
seed_rows csv-gzip '\x90\x00\x00\x00\xff\x00' "$gen/r.csv"        # compressed here, .gz
seed_rows csv-zstd '\xe0\x00\x00\x00\xff\x00' "$gen/r.csv"        # zstd by the option
seed_rows tsv '\x81\x00\x00\x00\xff\x00' "$gen/r.tsv"
seed_rows tsv-quoted '\x81\x00\x12\x03\xff\x00' "$gen/r.tsv"      # quote ", escape \, null \N
seed_rows ndjson '\x82\x00\x00\x00\xff\x00' "$gen/r.ndjson"
seed_rows ndjson-latin1-zstd '\xaa\x00\x00\x00\xff\x00' "$gen/r.ndjson"
seed_rows noheader '\x84\x00\x00\x00\xff\x00' "$gen/r-noheader.csv"
seed_rows dialect '\x88\x02\x13\x02\xff\x00' "$gen/r-dialect.csv" # ; ' \ NULL, Latin-1
# Real archives given as they are (packing 3), for the fuzzer to corrupt.
gzip -c -n "$gen/r.csv" >"$gen/r.csv.gz"
seed_rows raw-gzip '\xb0\x00\x00\x00\xff\x00' "$gen/r.csv.gz"
if command -v zstd >/dev/null; then
  zstd -q -c "$gen/r.ndjson" >"$gen/r.ndjson.zst"
  seed_rows raw-zstd '\xb2\x80\x00\x00\xff\x00' "$gen/r.ndjson.zst"
fi

# --- seeds of `options`: options text a, NUL, options text b (fuzz/fuzz_targets/options.rs) -
os=$WORK/seeds-options
printf '{"delimiter":";","header":false,"columns":["id",null,"name"]}\0{"null":"NULL"}' >"$os/columns"
printf '{"quote":null}\0{"escape":"\\\\"}' >"$os/quote-escape"
printf '{"mapping":{"a":"id","b":null},"compression":"gzip","encoding":"LATIN1"}\0{"chunk_size":64,"batch_rows":10,"file_pattern":["*.csv","*.txt"]}' >"$os/mapping"
printf '{"trigger_interval":1000,"processed_action":"archive","archive_dir":"done","failed_dir":"bad","min_file_age":0,"max_files_per_trigger":5}\0{"archive_dir":null,"processed_action":"keep"}' >"$os/settings"
printf '{"null":";"}\0{"delimiter":";"}' >"$os/conflict"
printf ' \0{}' >"$os/blank"
printf '{"mapping":{"a\\nb":1,"c":"id"}}\0{"null":"x,y"}' >"$os/bad-values"
printf '[1,2]\0{"header":true,"quote":"\x27","delimiter":"|"}' >"$os/not-object"

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
  # Each target's seeds, dictionary and longest input.
  case $t in
    rows) args=("$WORK/seeds-rows" -- -max_len=1048576 -dict=fuzz/rows.dict) ;;
    options) args=("$WORK/seeds-options" -- -max_len=65536 -dict=fuzz/options.dict) ;;
    *) args=("$seeds" -- -max_len=4194304 -dict=fuzz/csv.dict) ;;
  esac
  rc=0
  # The outer timeout only guards against a hang libFuzzer cannot see (-timeout covers inputs).
  timeout --signal=KILL $((SECS + 300)) \
    cargo fuzz run "${fuzz_opts[@]}" "$t" "$corpus" "${args[@]}" \
    -max_total_time="$SECS" -artifact_prefix="$artifacts/" "${LIBFUZZER_ARGS[@]}" \
    >"$out" 2>&1 || rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$out" | tail -n 1)
  # Stopped by a failure: the last status line's count. (`|| true`: a failure while loading
  # the seeds leaves no status line, and grep's status must not stop the script.)
  [ -n "$runs" ] || runs=$(grep -E '^#[0-9]+[[:space:]]' "$out" | tail -n 1 | sed -E 's/^#([0-9]+).*/\1 runs/' || true)
  stats=$(grep -E '^#[0-9]+[[:space:]]+[A-Z]+[[:space:]]+cov:' "$out" | tail -n 1 |
    sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+)\/([^ ]+).*/coverage \1 edges, \2 features, corpus \3 inputs (\4)/' || true)
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
