#!/usr/bin/env bash
# Builds the previous released version of the extension from git, for the upgrade test
# (tests/tests/suite/upgrade.rs), and installs its SQL install script into PostgreSQL 15:
#   target/previous/<version>/lib/ecommerce_ingest.so      the released library (debug build)
#   target/previous/<version>/ecommerce_ingest--<version>.sql  its install script, as pgrx generates it
#   target/previous/version                                  <version>, read by the test harness
# Idempotent: quiet when everything is up to date. Needs the commit in the local repository (a
# full clone; `git fetch --unshallow` in a shallow one). After each release, set the two lines
# below to it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
PREVIOUS_VERSION=0.3.0
PREVIOUS_COMMIT=f3f85cc0a2dd2ccbeefe117e64d093558d3d0d3c
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

root=$PWD/target/previous
src=$root/src-$PREVIOUS_VERSION
out=$root/$PREVIOUS_VERSION
sql=ecommerce_ingest--$PREVIOUS_VERSION.sql
stamp=$out/.built-from

# The workspace version: with no new version there is nothing to upgrade to, and this script must
# not replace the install script scripts/install-ext.sh put there for the current code.
current=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

if [ "$(cat "$stamp" 2>/dev/null)" != "$PREVIOUS_COMMIT" ] ||
   [ ! -f "$out/lib/ecommerce_ingest.so" ] || [ ! -f "$out/$sql" ]; then
  git cat-file -e "$PREVIOUS_COMMIT^{commit}" 2>/dev/null || {
    echo "previous-release: commit $PREVIOUS_COMMIT ($PREVIOUS_VERSION) is not in this clone (git fetch --unshallow)" >&2
    exit 1
  }
  echo "== building the previous release $PREVIOUS_VERSION ($PREVIOUS_COMMIT) into $out"
  start=$(date +%s)
  # git archive, not a worktree: no state in .git to go stale when target/ is cleaned. The files
  # get the commit's time as mtime, so a second extraction does not make cargo rebuild.
  rm -rf "$src"
  mkdir -p "$src"
  git archive "$PREVIOUS_COMMIT" | tar -x -C "$src"
  # Its own target directory. Sharing the workspace's target/ would reuse the compiled
  # dependencies, but cargo gives a workspace crate (ecommerce_events, ecommerce_ingest) the same
  # artefact names and hashes in both source trees and decides freshness by mtimes alone: after
  # building one tree, a build of the other can be reported `Fresh` and link the wrong version of
  # the crate, silently (checked with two copies of a toy cdylib crate). A debug build: the test
  # needs the release's behaviour, not its speed.
  # No incremental state and line tables only: a build made once, smaller and quicker to link.
  rm -rf "$out.tmp"
  if ! (cd "$src/extension" &&
    CARGO_TARGET_DIR="$root/target" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
      CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only \
      cargo pgrx package --debug --pg-config "$PG_CONFIG" --out-dir "$out.tmp") >"$root/build.log" 2>&1; then
    tail -n 40 "$root/build.log" >&2
    echo "previous-release: building $PREVIOUS_VERSION failed (whole log: $root/build.log)" >&2
    exit 1
  fi
  libdir=$("$PG_CONFIG" --pkglibdir)
  sharedir="$("$PG_CONFIG" --sharedir)/extension"
  mkdir -p "$out.tmp/result/lib"
  cp "$out.tmp$libdir/ecommerce_ingest.so" "$out.tmp/result/lib/"
  cp "$out.tmp$sharedir/$sql" "$out.tmp/result/"
  chmod -R a+rX "$out.tmp/result"
  rm -rf "$out"
  mv "$out.tmp/result" "$out"
  rm -rf "$out.tmp"
  echo "$PREVIOUS_COMMIT" >"$stamp"
  echo "== previous release $PREVIOUS_VERSION built in $(($(date +%s) - start)) s"
fi
echo "$PREVIOUS_VERSION" >"$root/version.new" && mv -f "$root/version.new" "$root/version"

# Only the install script goes into PostgreSQL's sharedir, so that
# `CREATE EXTENSION ecommerce_ingest VERSION '0.1.0'` works (PostgreSQL runs the current
# control file, and then the update scripts, from there). The old library never goes into
# $libdir: $libdir/ecommerce_ingest.so is the current version, which every other cluster on this
# machine loads (and a real upgrade replaces exactly that file). It stays under target/previous;
# the test copies it into its own cluster's folder and names that folder first in
# `dynamic_library_path` (tests/src/cluster.rs, ClusterOptions::library_dir).
if [ "$current" = "$PREVIOUS_VERSION" ]; then
  echo "previous-release: the workspace version is still $PREVIOUS_VERSION: $sql not installed (nothing to upgrade to)" >&2
  exit 0
fi
sharedir="$("$PG_CONFIG" --sharedir)/extension"
if ! cmp -s "$out/$sql" "$sharedir/$sql"; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  # Staged beside its destination and renamed into place, as scripts/install-ext.sh does.
  tmp="$sharedir/.$sql.new.$$"
  as_root cp "$out/$sql" "$tmp"
  as_root chmod 644 "$tmp"
  as_root mv -f "$tmp" "$sharedir/$sql"
  echo "installed $sql (released $PREVIOUS_VERSION) into $sharedir"
fi
