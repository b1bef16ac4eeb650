"""The real DAG across hosts on this machine (README "Across machines"): a lab of one controller (this
machine) and two load hosts (network namespaces), Airflow with the CeleryExecutor as the compose file's celery
profile deploys it (Redis, a Celery worker per queue, the load hosts' workers in their namespaces), and one
short benchmark whose Locust workers run on the load hosts. Prints where each load-host task ran (the address it
reached the Locust master from), the run's state, and each trial's figures from MLflow. Needs root.

    .venv/bin/python scripts/lab_dag_run.py [--frameworks fastapi,cpp] [--duration 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from servebench import lab as labs
from servebench.local_airflow import DAG_ID


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frameworks", default="fastapi,cpp")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if why := labs.why_unavailable():
        print(f"lab_dag_run: {why}", file=sys.stderr)
        return 2
    conf = {
        "models": ["lr"],
        "frameworks": args.frameworks.split(","),
        "workers": [1],
        "users": [8],
        "duration": args.duration,
        "warmup": 1,
        "repeats": 1,
        "loadgen": "locust",
        "load_hosts": ["load1", "load2"],
        "loadgen_master": f"{labs.CONTROLLER}:5557",
        "experiment": "lab",
    }
    lab = labs.Lab(f"sbd{os.getpid() % 10000}").up(2)
    home = Path(tempfile.mkdtemp(prefix="servebench-lab-"))  # kept: Airflow's, Celery's and Redis's logs
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    state = "not run"
    try:
        with labs.celery_airflow(lab, home, args.port) as airflow:
            run_id = airflow.trigger(conf)
            state = airflow.follow(run_id, lambda line: print(f"  {line}", flush=True))
            print(f"\nrun {run_id}: {state}")
            for host in conf["load_hosts"]:
                _, xcom = airflow.api(
                    "GET",
                    f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/load_host_{host}/xcomEntries/return_value",
                    ok=(200, 404),
                )
                print(f"load_host_{host}: {json.dumps(xcom.get('value'))}")
            show_mlflow(os.environ["MLFLOW_TRACKING_URI"], conf["experiment"])
    finally:
        lab.down()
        print(f"\nlogs and the MLflow store in {home}")
    return 0 if state == "success" else 1


def show_mlflow(uri: str, experiment: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], "tags.`servebench.trial_key` != ''") if found else []
    print(f"\n{'trial':<34}{'rps':>8}{'p99 ms':>9}{'workers':>9}  per-worker CPU %  load hosts")
    for run in runs:
        m, p = run.data.metrics, run.data.params
        print(
            f"{run.data.tags.get('servebench.trial_key', '?'):<34}{m.get('rps', 0):>8.0f}"
            f"{m.get('latency_ms_p99', float('nan')):>9.2f}{m.get('loadgen_workers', 0):>9.0f}  "
            f"{m.get('loadgen_worker_cpu_percent_min', 0):.0f}-{m.get('loadgen_worker_cpu_percent_max', 0):.0f}"
            f"            {p.get('load_hosts')}"
        )


if __name__ == "__main__":
    sys.exit(main())
