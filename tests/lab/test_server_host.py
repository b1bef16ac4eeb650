"""A server on a remote Docker host: the lab's server host runs a Podman engine serving the Docker API on its own
address; a trial names it through an Airflow connection (read by the Docker provider's DockerHook), builds or
finds the image there, runs the container published on that host, drives it from two load hosts, samples it
through that engine's stats API and removes it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from servebench.config.spec import TrialSpec
from servebench.lab import CONTROLLER, SERVER_HOST
from servebench.measure.trial import run_trial
from servebench.models.export import ExportedModel
from servebench.results.records import Metric
from servebench.servers.runner.local import free_port


def test_a_trial_on_a_remote_engine_driven_from_two_load_hosts(
    lab, exports: dict[str, ExportedModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not shutil.which("podman"):
        pytest.skip("no Podman here to serve the server host's engine (bash scripts/container-engine.sh start)")
    hosts = lab(2)
    url = hosts.engine()
    assert url == f"tcp://{SERVER_HOST}:2375"
    # The connection as a user would define it: the engine's URL in its extra (TLS files beside it when used)
    monkeypatch.setenv("AIRFLOW_CONN_LAB_SERVER", json.dumps({"conn_type": "docker", "extra": {"docker_url": url}}))
    master = f"{CONTROLLER}:{free_port(CONTROLLER)}"
    for name in ("load1", "load2"):
        hosts.load_worker(name, master, tmp_path / f"{name}.log")
    spec = TrialSpec.of(
        "lr",
        "fastapi",
        1,
        8,
        duration=2,
        warmup=0.5,
        repeats=1,
        loadgen="locust",
        backend="docker",
        server_host="lab_server",
        load_hosts=["load1", "load2"],
        loadgen_master=master,
    )
    result = run_trial(spec, exports["lr"], tmp_path / "trial")
    assert hosts.wait_all() == []
    assert result.ok, result.reason
    assert spec.key == "lr-fastapi-w1-u8-docker-at-lab_server-lh2"
    c = result.context
    print({k: c[k] for k in ("server_host", "server_url", "resource_source", "image")}, result.metrics[Metric.RPS])
    assert c["server_host"] == "lab_server" and c["resource_source"] == "engine-stats"
    assert c["server_url"].startswith(f"http://{SERVER_HOST}:")  # published on the server host, reached there
    assert "CPUs" in c["server_host_machine"] and c["load_host_machines"].startswith("load1 on ")
    m = result.metrics
    assert m[Metric.RPS] > 0 and m[Metric.ERROR_RATE] == 0 and m[Metric.SERVER_CPU_AVG] > 0
    assert m[Metric.LOADGEN_WORKERS] == 2
    left = subprocess.run(["podman", "--url", url, "ps", "-aq"], capture_output=True, text=True, check=True)
    assert left.stdout.strip() == "", "the server's container was removed"
