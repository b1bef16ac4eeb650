"""The real DAG on the container backend: its build stage builds the server images, its trials run them
as containers with a CPU limit, and MLflow gets the same figures as from local processes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from servebench.results.records import TAG_STATUS
from servebench.results.tracker import Tracker

from .conftest import BIN, run

# --full: the DAG builds both server images (a C++ compile among them); the backend's own tests are default.
pytestmark = [pytest.mark.container, pytest.mark.full]
CONF = {
    "models": ["lr"],
    "frameworks": ["fastapi", "cpp"],
    "workers": [1],
    "users": [5],
    "spawn_rate": 10,
    "duration": 3,
    "warmup": 1,
    "repeats": 1,
    "loadgen": "locust",
    "experiment": "e2e-containers",
    "backend": "docker",
    "cpuset": "1",
    "memory_mb": 512,
}


def test_the_dag_benchmarks_servers_in_containers(
    engine: Any, airflow_env: dict[str, str], no_leftover_containers: None
) -> None:
    proc = run([str(BIN / "airflow"), "dags", "test", "serving_benchmark", "-c", json.dumps(CONF)], airflow_env)
    output = proc.stdout + proc.stderr
    assert "building image servebench-" in output or "is up to date" in output, output[-3000:]
    tracker = Tracker()
    parent_id = tracker.latest_parent("e2e-containers")
    assert parent_id, output[-3000:]
    children = {
        r.params["framework"]: MlflowClient(tracker.uri).get_run(r.run_id) for r in tracker.trial_runs(parent_id)
    }
    assert set(children) == {"fastapi", "cpp"}
    for framework, child in children.items():
        params = child.data.params
        assert child.data.tags[TAG_STATUS] == "ok", (framework, child.data.tags, output[-3000:])
        assert params["backend"] == "docker" and params["cpuset"] == "1" and params["memory_mb"] == "512"
        assert params["image"].startswith(f"servebench-{framework}:") and params["resource_source"] == "engine-stats"
        assert child.data.metrics["rps"] > 0 and child.data.metrics["server_cpu_percent_max"] <= 115
    assert MlflowClient(tracker.uri).get_run(parent_id).data.params["backend"] == "docker"
