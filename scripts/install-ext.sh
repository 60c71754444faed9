#!/usr/bin/env bash
# Builds the extension (release unless --debug) and installs it into PostgreSQL 15.
# Files are staged beside their destination and renamed into place, so servers that have
# the old library mapped keep running (overwriting a loaded .so in place can crash them).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
profile=release
flags=()
if [ "${1:-}" = "--debug" ]; then profile=debug; flags=(--debug); fi

(cd extension && cargo pgrx package --pg-config "$PG_CONFIG" "${flags[@]}" >/dev/null)
pkg="target/$profile/ecommerce_ingest-pg15"
libdir=$("$PG_CONFIG" --pkglibdir)
sharedir="$("$PG_CONFIG" --sharedir)/extension"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

put() { # put SOURCE DEST_DIR
  local name tmp
  name=$(basename "$1")
  tmp="$2/.${name}.new.$$"
  as_root cp "$1" "$tmp"
  as_root chmod 644 "$tmp"
  as_root mv -f "$tmp" "$2/$name"
}

put "$pkg$libdir/ecommerce_ingest.so" "$libdir"
for f in "$pkg$sharedir"/ecommerce_ingest*; do put "$f" "$sharedir"; done
echo "installed ecommerce_ingest ($profile) into $libdir and $sharedir"
