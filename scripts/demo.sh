#!/usr/bin/env bash
# The main job: install what is missing, then run a short real benchmark through the real Airflow DAG under a
# real scheduler, on embedded defaults (Airflow on SQLite, MLflow in a local SQLite store, servers as local
# processes). Airflow is stopped when the run ends; `servebench airflow` starts it again to look at the run.
# Override the matrix with SERVEBENCH_DEMO_CONF='{"models": ["lr"], ...}' (same names as the DAG params).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
log() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

DEFAULT_CONF='{"models": ["lr", "mlp"], "frameworks": ["fastapi", "flask", "bentoml", "cpp"], "workers": [1, 2], "users": [20], "duration": 5, "warmup": 2, "repeats": 3, "experiment": "servebench-demo"}'
CONF="${SERVEBENCH_DEMO_CONF:-$DEFAULT_CONF}"
EXPERIMENT="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("experiment", "servebench"))' "$CONF")"

PORT="${SERVEBENCH_AIRFLOW_PORT:-8080}"
log "a local Airflow (scheduler, DAG processor, API server on 127.0.0.1:$PORT) runs one serving_benchmark with:"
log "  $CONF"
log "progress below; watch it at http://127.0.0.1:$PORT while it runs"
set +e
.venv/bin/servebench airflow --port "$PORT" --run "$CONF"
run_status=$?
set -e

echo
log "comparison (from MLflow):"
.venv/bin/servebench summary --experiment "$EXPERIMENT" && status=0 || status=$?
cat <<EOM

Airflow UI (the demo's run, each task's log):  .venv/bin/servebench airflow --port $PORT   -> http://127.0.0.1:$PORT
EOM
((run_status != 0)) && exit "$run_status"
exit $status
