#!/usr/bin/env bash
# Install what is missing, then run the test suite (unit, integration, e2e). Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -m unit`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
