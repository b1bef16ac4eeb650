"""The container backend on a real engine (Podman's Docker API here): images built from the server folders,
trials in containers with CPU and memory limits, stats from the Engine, and nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from servebench import pipeline
from servebench.models.export import export_model
from servebench.results.records import TAG_REASON, TAG_STATUS
from servebench.results.tracker import Tracker
from servebench.servers import images, manifest
from servebench.servers.readiness import wait_ready
from servebench.servers.runner.container import ContainerRunner, reap_orphans

SERVING = ("fastapi", "cpp")
MATRIX = {
    "models": ["lr"],
    "frameworks": [*SERVING, "broken"],
    "workers": [1],
    "users": [10],
    "spawn_rate": 20,
    "duration": 4,
    "warmup": 1,
    "repeats": 1,
    "loadgen": "locust",
}
LIMITS = {"cpuset": "1", "memory_mb": 1024}


@pytest.fixture(scope="module")
def both_backends(engine: Any) -> dict[str, dict[str, Any]]:
    """One short benchmark per backend, same matrix; their MLflow child runs by framework."""
    runs: dict[str, dict[str, Any]] = {}
    for backend, extra in (("docker", LIMITS), ("local", {})):
        outcome = pipeline.run_all(
            {**MATRIX, **extra, "backend": backend, "experiment": f"containers-{backend}"}, trigger="test"
        )
        tracker = Tracker()
        runs[backend] = {
            r.params["framework"]: MlflowClient(tracker.uri).get_run(r.run_id)
            for r in tracker.trial_runs(outcome.summary.parent_id)
        }
    return runs


@pytest.mark.full  # a benchmark on each backend; by default the DAG runs one on the docker backend (tests/e2e)
def test_a_benchmark_in_containers_logs_the_same_figures_as_local_processes(
    both_backends: dict, no_leftover_containers: None
) -> None:
    docker, local = both_backends["docker"], both_backends["local"]
    for framework in SERVING:
        run, twin = docker[framework], local[framework]
        params = run.data.params
        assert run.data.tags[TAG_STATUS] == "ok", (framework, run.data.tags)
        assert params["backend"] == "docker" and twin.data.params["backend"] == "local"
        assert params["cpuset"] == "1" and params["memory_mb"] == "1024" and params["parity"] == "pass"
        assert params["image"].startswith(f"servebench-{framework}:")
        # the same figures, but for a high percentile one side had too few responses to report (not guessed)
        unsupported = {
            f"latency_ms_{p}"
            for r in (run, twin)
            for flag in r.data.tags["servebench.flags"].split(",")
            if flag.startswith("too_few_requests_for_")
            for p in flag.removeprefix("too_few_requests_for_").split("_")
        }
        assert set(run.data.metrics) - unsupported == set(twin.data.metrics) - unsupported
        figures = run.data.metrics
        assert figures["rps"] > 0 and figures["requests"] >= 4 * 10 and figures["error_rate"] == 0
        assert figures["server_cpu_percent_avg"] > 0 and figures["server_rss_mb_max"] > 0
        # cpuset "1" is one CPU: the Engine's own accounting cannot show much more than 100 %.
        assert figures["server_cpu_percent_max"] <= 115, figures["server_cpu_percent_max"]


@pytest.mark.full  # shares the two benchmarks above
def test_a_server_that_crashes_in_its_container_fails_alone_with_its_log(both_backends: dict) -> None:
    broken = both_backends["docker"]["broken"]
    assert broken.data.tags[TAG_STATUS] == "failed"
    assert "exited with code 3" in broken.data.tags[TAG_REASON]


@pytest.mark.full  # 31 s: moved out of the default tier to keep it under 12 minutes
def test_a_container_has_its_limits_its_log_and_is_removed(
    engine: Any, tmp_path: Path, no_leftover_containers: None
) -> None:
    fastapi, lr = manifest.get("fastapi"), export_model("lr")
    server = ContainerRunner(cpuset="0", memory_mb=256).start(fastapi, lr, 2, tmp_path / "server.log")
    try:
        wait_ready(server, fastapi, lr.meta)
        attrs = engine.api.inspect_container(server._container.id)
        host = attrs["HostConfig"]
        assert host["CpusetCpus"] == "0" and host["Memory"] == 256 * 1024 * 1024
        bound = host["PortBindings"][f"{images.CONTAINER_PORT}/tcp"][0]
        assert bound["HostIp"] == "127.0.0.1" and server.base_url.endswith(f":{bound['HostPort']}")
        probe = server.probe()
        probe.read()
        time.sleep(0.5)
        usage = probe.read()
        assert usage is not None and usage.cpu_percent >= 0 and usage.rss_mb > 10 and usage.threads >= 2
        assert "fastapi==" in server.packages  # the image's environment, logged with each trial
    finally:
        report = server.stop()
    assert report.graceful and report.exit_code == 0 and report.leftovers == ()
    assert not engine.containers.list(all=True, filters={"name": server._container.name})
    assert "Uvicorn running" in (tmp_path / "server.log").read_text() or (tmp_path / "server.log").stat().st_size > 0


KILLED_OWNER = """
import os, sys
from pathlib import Path
from servebench.servers import manifest
from servebench.models.export import export_model
from servebench.servers.runner.container import ContainerRunner
server = ContainerRunner().start(manifest.get("fastapi"), export_model("lr"), 1, Path(sys.argv[1]))
print(server._container.name, flush=True)
os._exit(0)  # dies like a SIGKILLed task: no finally, no stop()
"""


def test_a_container_whose_owner_died_is_removed_by_the_next_runner(
    engine: Any, tmp_path: Path, no_leftover_containers: None
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_OWNER, str(tmp_path / "log")], capture_output=True, text=True, timeout=300
    )
    name = proc.stdout.strip().splitlines()[-1]
    assert engine.containers.list(all=True, filters={"name": name}), proc.stderr[-2000:]
    assert name in reap_orphans(engine)
    assert not engine.containers.list(all=True, filters={"name": name})


def _has_serving_image(engine: Any) -> bool:
    tfserving = manifest.get("tfserving")
    text = images.dockerfile(tfserving).read_text()
    serving = next(
        i for i, arg in images.base_images(text, images.build_args(tfserving, text)).items() if arg == "SERVING_IMAGE"
    )
    return bool(engine.images.list(name=serving))


def test_selecting_tf_serving_without_its_image_fails_at_once_saying_how_to_provide_it(engine: Any) -> None:
    if _has_serving_image(engine):
        pytest.skip("the tensorflow/serving image is present: test_tf_serving_serves_the_model_exactly runs instead")
    began = time.monotonic()
    with pytest.raises(images.ImageError) as err:
        pipeline.validate({"backend": "docker", "frameworks": ["fastapi", "tfserving"], "models": ["lr"]})
    assert time.monotonic() - began < 60
    message = str(err.value)
    assert (
        "tensorflow/serving" in message and "docker pull" in message and "SERVEBENCH_BUILD_ARG_SERVING_IMAGE" in message
    )


def test_tf_serving_serves_the_model_exactly(engine: Any, tmp_path: Path, no_leftover_containers: None) -> None:
    if not _has_serving_image(engine):
        pytest.skip(
            "no tensorflow/serving image on this engine and no registry to pull it from "
            "(docker pull tensorflow/serving:2.18.0, or SERVEBENCH_BUILD_ARG_SERVING_IMAGE)"
        )
    outcome = pipeline.run_all(
        {**MATRIX, "frameworks": ["tfserving"], "backend": "docker", "experiment": "tfserving"}, trigger="test"
    )
    ((result, _),) = outcome.results
    assert result.ok and result.context["parity"] == "pass", result.reason
    assert json.loads((result.out_dir / "parity.json").read_text())["passed"]
