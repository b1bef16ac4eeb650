#!/usr/bin/env bash
# The main job: install what is missing, then run a short real benchmark through the real Airflow DAG
# on embedded defaults (Airflow on SQLite, MLflow in a local SQLite store, servers as local processes).
# Override the matrix with SERVEBENCH_DEMO_CONF='{"models": ["lr"], ...}' (same names as the DAG params).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh
log() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

DEFAULT_CONF='{"models": ["lr", "mlp"], "frameworks": ["fastapi", "flask", "bentoml", "cpp"], "workers": [1, 2], "users": [20], "duration": 5, "warmup": 2, "repeats": 3, "experiment": "servebench-demo"}'
CONF="${SERVEBENCH_DEMO_CONF:-$DEFAULT_CONF}"
EXPERIMENT="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("experiment", "servebench"))' "$CONF")"
mkdir -p "$SERVEBENCH_HOME/logs"

log "Airflow metadata database (SQLite) in $AIRFLOW_HOME"
airflow db migrate > "$SERVEBENCH_HOME/logs/airflow-db-migrate.log" 2>&1 \
  || { tail -20 "$SERVEBENCH_HOME/logs/airflow-db-migrate.log"; exit 1; }
airflow pools set servebench_load 1 "servebench: one load test at a time" > /dev/null 2>&1

DAG_LOG="$SERVEBENCH_HOME/logs/demo-dag-$(date +%Y%m%d-%H%M%S).log"
log "airflow dags test serving_benchmark -c '$CONF'"
log "progress below; the full Airflow log is in $DAG_LOG"
set +e
airflow dags test serving_benchmark -c "$CONF" 2>&1 | tee "$DAG_LOG" \
  | grep --line-buffered -E '\[servebench\.|\[DAG TEST\] start task|^[A-Za-z_.]+(Error|Exception|Failed): ' \
  | sed -u -E 's/^[0-9T:.-]+Z \[[a-z ]+\] //; s/ +\[servebench\.[a-z.]+\].*$//; s/ +\[airflow[^]]*\].*$//'
set -e

echo
log "comparison (from MLflow):"
servebench summary --experiment "$EXPERIMENT" && status=0 || status=$?
cat <<EOM

Airflow UI:  AIRFLOW_HOME=$AIRFLOW_HOME AIRFLOW__CORE__DAGS_FOLDER=$AIRFLOW__CORE__DAGS_FOLDER \\
             AIRFLOW__CORE__LOAD_EXAMPLES=False .venv/bin/airflow standalone     -> http://127.0.0.1:8080
             (user admin; password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)
Full DAG log: $DAG_LOG
EOM
exit $status
