#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (root, or a user with sudo).
# Installs only what is missing; a second run does nothing.
set -euo pipefail

PGRX_VERSION=0.18.0
PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config

log() { printf 'setup: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# 1. Debian packages.
# postgresql-15-partman: the partitioned user_events of sql/partition_user_events.sql (its tests).
want=("postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" "postgresql-${PG_MAJOR}-partman" libclang-dev clang sudo pkg-config)
missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

# 2. Rust toolchain must already exist (rustup); we never change it.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; else
    log "cargo not found: install Rust (rustup) first"; exit 1
  fi
fi

# 3. cargo-pgrx, pinned.
if cargo pgrx --version 2>/dev/null | grep -q "cargo-pgrx ${PGRX_VERSION}"; then
  log "cargo-pgrx ${PGRX_VERSION} present"
else
  log "installing cargo-pgrx ${PGRX_VERSION}"
  cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

# 4. pgrx init against Debian's PostgreSQL (no download).
PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if [ -f "$PGRX_HOME/config.toml" ] && grep -q "pg${PG_MAJOR} = \"${PG_CONFIG}\"" "$PGRX_HOME/config.toml"; then
  log "pgrx already initialised for pg${PG_MAJOR}"
else
  log "cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
  cargo pgrx init --pg${PG_MAJOR} "${PG_CONFIG}"
fi

# The extension itself is built and installed by scripts/install-ext.sh (sudo when not root).
log "done"
