#!/usr/bin/env bash
# The team deployment, for real: brings docker-compose.yaml up (Postgres, MLflow, Airflow api-server,
# scheduler, dag-processor, triggerer), runs one tiny serving_benchmark DAG run inside it on the container
# backend, checks its figures in the stack's MLflow, and takes everything down again.
#
#   bash scripts/compose-smoke.sh          # about 10 minutes the first time (image builds), as root
#
# On a machine with a Docker Engine and registry access it uses them (DOCKER_HOST as usual). Without, it
# uses scripts/container-engine.sh (Podman) and these stand-ins, all of them local images:
#   - postgres: tests/fixtures/images/postgres (Debian's PostgreSQL 15 with the official image's entrypoint
#     subset), since postgres:16 cannot be pulled;
#   - base images: the engine script's Debian and Python 3.11 images, through the compose file's build args;
#   - health checks: Podman runs HEALTHCHECKs from systemd timers, and there is no systemd here, so a loop
#     runs `podman healthcheck run` for the project's containers; depends_on conditions then work as on Docker.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROJECT="${SMOKE_PROJECT:-sbsmoke}"
AIRFLOW_PORT="${SMOKE_AIRFLOW_PORT:-18080}"
MLFLOW_PORT="${SMOKE_MLFLOW_PORT:-15000}"
WORK="$(mktemp -d)"
START=$SECONDS
log() { printf '\033[1m[smoke %3ds]\033[0m %s\n' "$((SECONDS - START))" "$*" >&2; }

PODMAN=0
if [[ -z "${DOCKER_HOST:-}" || "$DOCKER_HOST" == *servebench-engine* ]]; then  # start is idempotent
  eval "$(bash "$ROOT/scripts/container-engine.sh" start)"
  PODMAN=1
fi
compose() { docker-compose -p "$PROJECT" --env-file "$WORK/.env" -f "$ROOT/docker-compose.yaml" "$@"; }

PUMP=""
CA_COPY="$ROOT/docker/certs/compose-smoke-extra-ca.crt"
cleanup() {
  local rc=$?
  set +e  # take everything down, whatever fails on the way
  if ((rc)); then
    log "FAILED (exit $rc); last log lines of each service:"
    compose logs --no-color --tail=25 >&2 || true
  fi
  [[ -n "$PUMP" ]] && kill "$PUMP" 2>/dev/null
  log "taking the stack down (containers, volumes, network)"
  local ids
  ids=$( ((PODMAN)) && podman ps -aq --no-trunc --filter "label=com.docker.compose.project=$PROJECT")
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  for id in $ids; do  # `podman healthcheck run` leaves its exec sessions' conmon behind
    pkill -f "conmon .*-c $id" || true
  done
  rm -f "$CA_COPY"
  rm -rf "$WORK"
  if [[ "${SERVEBENCH_ENGINE_STARTED:-}" == 1 ]]; then bash "$ROOT/scripts/container-engine.sh" stop; fi
  exit $rc
}
trap cleanup EXIT
trap "exit 130" INT TERM

secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
fernet() { python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'; }
{
  echo "POSTGRES_USER=servebench"
  echo "POSTGRES_PASSWORD=$(secret)"
  echo "AIRFLOW_FERNET_KEY=$(fernet)"
  echo "AIRFLOW_JWT_SECRET=$(secret)"
  echo "AIRFLOW_API_SECRET_KEY=$(secret)"
  echo "AIRFLOW_ADMIN_PASSWORD=$(secret)"
  echo "DOCKER_SOCKET=${DOCKER_HOST#unix://}"
  echo "DOCKER_GID=$(stat -c %g "${DOCKER_HOST#unix://}")"
  echo "AIRFLOW_PORT=$AIRFLOW_PORT"
  echo "MLFLOW_PORT=$MLFLOW_PORT"
  echo "SERVEBENCH_AIRFLOW_IMAGE=localhost/servebench-airflow:smoke"
  if ((PODMAN)); then
    echo "PYTHON_IMAGE=$SERVEBENCH_BUILD_ARG_PYTHON_IMAGE"
    echo "POSTGRES_IMAGE=localhost/servebench-postgres-standin:15"
    echo "SERVEBENCH_BUILD_ARG_PYTHON_IMAGE=$SERVEBENCH_BUILD_ARG_PYTHON_IMAGE"
    echo "SERVEBENCH_BUILD_ARG_DEBIAN_IMAGE=$SERVEBENCH_BUILD_ARG_DEBIAN_IMAGE"
    echo "SERVEBENCH_BUILD_ARG_RUNTIME_IMAGE=$SERVEBENCH_BUILD_ARG_RUNTIME_IMAGE"
  fi
} > "$WORK/.env"

if ((PODMAN)); then
  # Airflow's tasks run as uid 50000 in group DOCKER_GID; Podman's socket is root-only by default.
  chmod 660 "${DOCKER_HOST#unix://}"
  if ! podman image exists localhost/servebench-postgres-standin:15; then
    log "building the Postgres stand-in image"
    docker build -q --build-arg "BASE_IMAGE=$SERVEBENCH_BUILD_ARG_DEBIAN_IMAGE" \
      -t localhost/servebench-postgres-standin:15 "$ROOT/tests/fixtures/images/postgres" >/dev/null
  fi
  ( while sleep 3; do
      for id in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT"); do
        podman healthcheck run "$id" >/dev/null 2>&1 || true
      done
    done ) &
  PUMP=$!
fi
[[ -n "${SERVEBENCH_EXTRA_CA_CERT:-}" ]] && cp "$SERVEBENCH_EXTRA_CA_CERT" "$CA_COPY"

log "building the Airflow image (docker/airflow.Dockerfile)"
compose build mlflow  # one build: every Airflow service and MLflow share the image
log "docker-compose up: postgres -> mlflow, airflow-init -> api-server, scheduler, dag-processor, triggerer"
compose up -d

wait_for() {  # wait_for WHAT SECONDS COMMAND...
  local what=$1 limit=$2; shift 2
  local until=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < until)) || { log "$what not ready after ${limit}s"; return 1; }
    sleep 3
  done
  log "$what ready"
}
healthy() { [[ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$1")")" == healthy ]]; }
wait_for "MLflow (http://127.0.0.1:$MLFLOW_PORT)" 300 curl -fsS "http://127.0.0.1:$MLFLOW_PORT/health"
wait_for "Airflow api-server (http://127.0.0.1:$AIRFLOW_PORT)" 300 \
  curl -fsS "http://127.0.0.1:$AIRFLOW_PORT/api/v2/monitor/health"
wait_for "Airflow scheduler" 300 healthy airflow-scheduler
wait_for "the DAG in the dag-processor" 300 \
  compose exec -T airflow-scheduler airflow dags details serving_benchmark

CONF='{"models": ["lr"], "frameworks": ["fastapi"], "workers": [1], "users": [5], "duration": 5, "warmup": 1,
       "cpuset": "1", "memory_mb": 1024}'
RUN_ID="smoke-$(date +%s)"
runs() {  # the DAG's runs as JSON (the CLI prints warnings before it)
  compose exec -T airflow-scheduler airflow dags list-runs serving_benchmark -o json 2>/dev/null | grep '^\[' | tail -1
}
state() {
  runs | python3 -c "import json, sys; print(next((r['state'] for r in json.load(sys.stdin) if r['run_id'] == '$RUN_ID'), 'none'))"
}
api() {  # api METHOD PATH [JSON]: Airflow's REST API as admin
  local token
  token=$(curl -fsS -X POST "http://127.0.0.1:$AIRFLOW_PORT/auth/token" -H 'Content-Type: application/json' \
    -d "{\"username\": \"admin\", \"password\": \"$(grep ^AIRFLOW_ADMIN_PASSWORD= "$WORK/.env" | cut -d= -f2)\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  curl -fsS -X "$1" "http://127.0.0.1:$AIRFLOW_PORT$2" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' ${3:+-d "$3"}
}
log "triggering serving_benchmark ($RUN_ID) with $CONF"
compose exec -T airflow-scheduler airflow dags trigger serving_benchmark --run-id "$RUN_ID" --conf "$CONF" >/dev/null
compose exec -T airflow-scheduler airflow dags unpause serving_benchmark >/dev/null
# Unpausing also starts the latest nightly interval (catchup=False still runs it) with the full default
# matrix; one run at a time, so it would go first. It is not this test's: mark it failed.
until=$((SECONDS + 120))
until runs | grep -q scheduled__ || ((SECONDS > until)); do sleep 3; done
for id in $(runs | python3 -c "import json, sys; print(' '.join(r['run_id'] for r in json.load(sys.stdin) if r['run_id'].startswith('scheduled__')))"); do
  api PATCH "/api/v2/dags/serving_benchmark/dagRuns/$id" '{"state": "failed"}' >/dev/null
  log "marked $id failed (not this test's run)"
done
until=$((SECONDS + 900)); last=""
while :; do
  now=$(state || echo unknown)
  [[ "$now" != "$last" ]] && log "DAG run $RUN_ID: $now"
  last=$now
  [[ "$now" == success ]] && break
  [[ "$now" == failed ]] && { compose exec -T airflow-scheduler airflow tasks states-for-dag-run serving_benchmark "$RUN_ID" >&2; exit 1; }
  ((SECONDS < until)) || { log "DAG run did not finish in 900 s"; exit 1; }
  sleep 10
done

log "checking the run's figures in the stack's MLflow"
curl -fsS -X POST "http://127.0.0.1:$MLFLOW_PORT/api/2.0/mlflow/experiments/search" \
  -H 'Content-Type: application/json' -d '{"max_results": 100}' > "$WORK/experiments.json"
python3 - "$WORK/experiments.json" "$MLFLOW_PORT" <<'EOF'
import json, sys, urllib.request
experiments = [e["experiment_id"] for e in json.load(open(sys.argv[1])).get("experiments", [])]
body = json.dumps({"experiment_ids": experiments, "max_results": 1000}).encode()
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[2]}/api/2.0/mlflow/runs/search", body,
                                 {"Content-Type": "application/json"})
runs = json.load(urllib.request.urlopen(request)).get("runs", [])
trials = [r for r in runs if any(m["key"] == "rps" for m in r["data"].get("metrics", []))]
if not trials:
    sys.exit(f"no trial run with an rps metric among {len(runs)} MLflow runs")
for run in trials:
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    print(f"trial {run['info']['run_name']}: backend={params.get('backend')} cpuset={params.get('cpuset')} "
          f"rps={metrics['rps']:.0f} p50={metrics.get('latency_ms_p50', float('nan')):.2f} ms "
          f"errors={metrics.get('error_rate', float('nan'))}")
    if metrics["rps"] <= 0 or params.get("backend") != "docker":
        sys.exit("a trial has no throughput or did not run on the docker backend")
EOF
log "OK: the stack came up and ran a DAG run end to end in $((SECONDS - START)) s"
