#!/usr/bin/env bash
# Install what is missing, then run the test suite (unit, integration, e2e, container). Extra arguments go
# to pytest, e.g. `bash scripts/test.sh -m unit`. The container tests need a Docker-compatible engine:
# with DOCKER_HOST unset, a Podman one is set up and started for the run (scripts/container-engine.sh)
# and stopped afterwards; where that cannot be done, those tests are skipped and say why.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh --test
if [[ -z "${DOCKER_HOST:-}" && "${SERVEBENCH_NO_ENGINE:-}" != 1 ]]; then
  if engine_env="$(bash scripts/container-engine.sh start)"; then
    eval "$engine_env"
    [[ "${SERVEBENCH_ENGINE_STARTED:-}" == 1 ]] && trap 'bash scripts/container-engine.sh stop' EXIT
  else
    echo "[test] no container engine: the container tests will be skipped" >&2
  fi
fi
.venv/bin/python -m pytest "$@"
