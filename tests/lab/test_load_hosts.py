"""A trial driven from two load hosts (network namespaces, each with its own PID namespace) against a server on
the controller: the Locust workers ran on the hosts named, their histograms were merged exactly, and each
worker's CPU was judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servebench.config.spec import TrialSpec
from servebench.lab import CONTROLLER
from servebench.measure.trial import run_trial
from servebench.models.export import ExportedModel
from servebench.results.records import Metric
from servebench.servers.runner.local import free_port


@pytest.mark.full  # the default tier drives a server on the lab's server host from the same two (test_server_host)
def test_a_trial_from_two_load_hosts(lab, exports: dict[str, ExportedModel], tmp_path: Path) -> None:
    hosts = lab(2)
    master = f"{CONTROLLER}:{free_port(CONTROLLER)}"
    for name in ("load1", "load2"):
        hosts.load_worker(name, master, tmp_path / f"{name}.log")
    spec = TrialSpec.of(
        "lr",
        "fastapi",
        1,
        4,
        duration=2,
        warmup=0.5,
        repeats=1,
        loadgen="locust",
        load_hosts=["load1", "load2"],
        loadgen_master=master,
    )
    result = run_trial(spec, exports["lr"], tmp_path / "trial")
    assert hosts.wait_all() == []
    assert result.ok, result.reason
    assert spec.key == "lr-fastapi-w1-u4-lh2"
    window = json.loads((tmp_path / "trial" / "repeat-1" / "window.json").read_text())
    print(window["workers"], {k: v for k, v in result.metrics.items() if k.startswith("loadgen")})
    workers = window["workers"]
    assert [w["host"] for w in workers] == ["load1", "load2"] and window["invalid"] is None
    # each worker ran in its host's own PID namespace, where it is one of a handful of processes
    assert all(w["pid"] < 50 for w in workers)
    assert all(w["complete"] and w["requests"] == w["locust_requests"] > 0 for w in workers)
    m = result.metrics
    assert m[Metric.LOADGEN_WORKERS] == 2 and 0 < m[Metric.LOADGEN_WORKER_CPU_MIN] <= m[Metric.LOADGEN_WORKER_CPU_MAX]
    assert m[Metric.LOADGEN_CPU_AVG] == sum(w["cpu_percent"] for w in workers)
    assert m[Metric.RPS] > 0 and m[Metric.ERROR_RATE] == 0
    assert result.context["backend"] == "local"
    assert (tmp_path / "load1.log").read_text().count("joining the master") >= 1
