"""A replica set on a real engine: two containers limited to one CPU each behind HAProxy, reached through it,
answering exactly (parity through the balancer), both doing the work, and nothing left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from servebench.config.spec import TrialSpec
from servebench.measure import loadgen
from servebench.measure.trial import run_trial
from servebench.models.export import ExportedModel
from servebench.results.records import Metric
from servebench.servers import manifest
from servebench.servers.readiness import wait_ready
from servebench.servers.runner.container import ContainerRunner
from servebench.servers.runner.replicas import ReplicaSet


@pytest.mark.full  # 40 s; the lab's trial covers remote containers by default
def test_two_replicas_behind_the_balancer_share_the_load(
    engine: Any, exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_containers: None
) -> None:
    fastapi, lr = manifest.get("fastapi"), exports["lr"]
    server = ContainerRunner().start(fastapi, lr, 1, tmp_path / "server.log", replicas=2, cpus=1.0)
    try:
        assert isinstance(server, ReplicaSet) and len(server.replicas) == 2
        assert server.details["replicas"] == "2" and server.details["cpus_per_replica"] == "1"
        wait_ready(server, fastapi, lr.meta)  # the reference model's answers, through the balancer
        before = [r.cpu_seconds() for r in server.replicas]
        load = loadgen.run(loadgen.LoadSpec(server.base_url, str(lr.meta_path), 8, 20, 3, 0.5), tmp_path / "load")
        used = [r.cpu_seconds() - b for r, b in zip(server.replicas, before, strict=True)]
        print(f"{load.requests} requests, {load.failures} failed; CPU seconds per replica: {used}")
        assert load.failures == 0 and load.requests > 100
        assert min(used) > 0.3 * max(used), "round-robin: each replica did a share of the work"
    finally:
        report = server.stop()
    assert report.leftovers == ()


@pytest.mark.full  # the default tier runs shaped trials through benchmarks/replica_shapes.py (tests/container)
def test_a_shaped_trial_measures_the_replicas_and_the_balancer_apart(
    engine: Any, exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_containers: None
) -> None:
    spec = TrialSpec.of(
        "lr", "fastapi", 1, 8, replicas=2, cpus=0.5, duration=2, warmup=0.5, repeats=1, backend="docker"
    )
    result = run_trial(spec, exports["lr"], tmp_path)
    assert result.ok, result.reason
    assert spec.key == "lr-fastapi-w1-u8-r2x0.5cpu-docker"
    m = result.metrics
    print({k: round(v, 1) for k, v in m.items() if "cpu" in k})
    assert m[Metric.SERVER_CPU_AVG] <= 2 * 0.5 * 100 * 1.15  # two replicas held to half a CPU each
    assert m[Metric.BALANCER_CPU_AVG] > 0 and result.context["replicas"] == "2"
