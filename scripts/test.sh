#!/usr/bin/env bash
# Install what is missing, check lint, format and types, then run the default test tier (what CI runs:
# unit, integration, e2e, container and lab tests, under 12 minutes on 2 cores; the unit tests two at a time,
# then everything that measures one at a time). `--full` runs the
# exhaustive tier too (the whole e2e matrix, soak, the compose stack, every hostile-input class against
# every server). Other arguments go to pytest, e.g. `bash scripts/test.sh -m unit`.
# The container tests need a Docker-compatible engine: with DOCKER_HOST unset, a Podman one is set up and
# started for the run (scripts/container-engine.sh) and stopped afterwards; where that cannot be done,
# those tests are skipped and say why.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }

tier=(-m "not full")
args=()
for arg in "$@"; do
  if [[ "$arg" == --full ]]; then tier=(); else args+=("$arg"); fi
done

bash scripts/setup.sh --test
log "ruff check, ruff format --check, mypy (strict on plugins/servebench)"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy

if [[ -z "${DOCKER_HOST:-}" && "${SERVEBENCH_NO_ENGINE:-}" != 1 ]]; then
  if engine_env="$(bash scripts/container-engine.sh start)"; then
    eval "$engine_env"
    [[ "${SERVEBENCH_ENGINE_STARTED:-}" == 1 ]] && trap 'bash scripts/container-engine.sh stop' EXIT
  else
    log "no container engine: the container tests will be skipped"
  fi
fi
started=$SECONDS
if ((${#args[@]})); then
  .venv/bin/python -m pytest --durations=25 "${tier[@]}" "${args[@]}" && status=0 || status=$?
else
  # The unit tests measure nothing and start no server: two at a time. Then everything else, one at a time, so
  # that no test's measurement shares the machine with another test.
  unit="unit${tier:+ and not full}"
  other="not unit${tier:+ and not full}"
  .venv/bin/python -m pytest -n 2 -m "$unit" && status=0 || status=$?
  .venv/bin/python -m pytest --durations=25 -m "$other" || status=$?
fi
log "tests took $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s${tier:+ (default tier; --full for all)}"
exit $status
