#!/usr/bin/env bash
# Builds the Debian package postgresql-15-ecommerce-ingest_<version>_amd64.deb from the output of
# `cargo pgrx package` (the extension's .so, .control and SQL scripts under /usr/lib and
# /usr/share/postgresql/15). It depends on Debian's postgresql-15; its postinst says how to
# preload the library. Install it with `apt-get install ./postgresql-15-ecommerce-ingest_*.deb`.
#
#   scripts/package-deb.sh [--from PGRX_PACKAGE_DIR] [--out DIR]
#
# Without --from it runs `cargo pgrx package` itself (release build, into $CARGO_TARGET_DIR or
# target/). --from takes an existing output folder (the one holding usr/), e.g. the builder
# stage's /src/target/release/ecommerce_ingest-pg15 (scripts/docker-test.sh does that).
# --out: where the .deb goes (default: target/debian). Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
NAME=postgresql-15-ecommerce-ingest

from=
out=target/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "package-deb.sh: unknown argument $1 (usage: package-deb.sh [--from DIR] [--out DIR])" >&2; exit 2 ;;
  esac
done

version=$(sed -n 's/^version = "\([^"]*\)".*/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || { echo "package-deb.sh: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }

if [ -z "$from" ]; then
  (cd extension && cargo pgrx package --pg-config "$PG_CONFIG" >/dev/null)
  from=${CARGO_TARGET_DIR:-target}/release/ecommerce_ingest-pg15
fi
so=$from/usr/lib/postgresql/15/lib/ecommerce_ingest.so
[ -f "$so" ] || { echo "package-deb.sh: $so is missing: give the output folder of 'cargo pgrx package' (--from)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/share/doc/$NAME"
cp -a "$from/usr" "$stage/"
chmod 0644 "$stage"/usr/lib/postgresql/15/lib/*.so "$stage"/usr/share/postgresql/15/extension/*
printf 'ecommerce_ingest %s\nLicense: MIT (Cargo.toml: license = "MIT")\n' "$version" >"$stage/usr/share/doc/$NAME/copyright"

cat >"$stage/DEBIAN/control" <<EOF
Package: $NAME
Version: $version
Architecture: amd64
Maintainer: ecommerce_ingest developers <ecommerce-ingest@localhost>
Depends: postgresql-15, libc6 (>= 2.36)
Section: database
Priority: optional
Installed-Size: $(du -sk "$stage/usr" | cut -f1)
Description: ecommerce_ingest extension for PostgreSQL 15
 Real-time ingestion of e-commerce event CSV files into PostgreSQL from a
 background worker (built with pgrx). The library must be preloaded
 (shared_preload_libraries) before CREATE EXTENSION ecommerce_ingest.
EOF

cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Says how to turn the extension on; changes no cluster's configuration by itself.
set -e
if [ "$1" = configure ]; then
  cat <<'MSG'
ecommerce_ingest is installed for PostgreSQL 15. To use it in a cluster:
  1. postgresql.conf (e.g. /etc/postgresql/15/main/conf.d/ecommerce_ingest.conf):
       shared_preload_libraries = 'ecommerce_ingest'   # add it to any libraries already listed
       ecommerce_ingest.database = 'shop'              # the database that will hold the extension
       ecommerce_ingest.input_dir = '/var/lib/ingest/in'  # readable and writable by postgres
  2. restart the cluster:  pg_ctlcluster 15 main restart
  3. in that database, as a superuser:  CREATE EXTENSION ecommerce_ingest;
MSG
fi
EOF
chmod 0755 "$stage/DEBIAN/postinst"

mkdir -p "$out"
deb=$out/${NAME}_${version}_amd64.deb
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
