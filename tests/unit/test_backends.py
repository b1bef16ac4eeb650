"""Choosing a backend: parameters, trial identity, protocols, and the docker-compose deployment's file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from servebench import pipeline
from servebench.config import params
from servebench.config.spec import plan
from servebench.servers import contract

REPO = Path(__file__).resolve().parents[2]


def test_the_backend_defaults_to_the_environment_then_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVEBENCH_BACKEND", raising=False)
    assert params.parse({}).backend == "local"
    monkeypatch.setenv("SERVEBENCH_BACKEND", "docker")
    assert params.parse({"frameworks": ["fastapi"]}).backend == "docker"
    monkeypatch.setenv("SERVEBENCH_BACKEND", "k8s")
    with pytest.raises(params.ParamsError, match="backend: Input should be 'local' or 'docker'"):
        params.parse({})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"backend": "local", "memory_mb": 512}, "cpuset and memory_mb limit containers: they need backend docker"),
        ({"backend": "docker", "cpuset": "0,99"}, "cpuset '0,99': this machine has no CPU [99]"),
        ({"backend": "docker", "cpuset": "one"}, "cpuset: String should match pattern"),
        ({"backend": "docker", "memory_mb": 10}, "memory_mb: Input should be greater than or equal to 64"),
        (
            {"backend": "local", "frameworks": ["fastapi", "tfserving"]},
            "framework(s) ['tfserving'] do not run on backend 'local'",
        ),
    ],
)
def test_bad_backend_params_name_the_problem(raw: dict, message: str) -> None:
    with pytest.raises(params.ParamsError) as err:
        pipeline.validate(raw)  # the field rules, then what the servers' manifests allow
    assert message in str(err.value)


def test_container_trials_carry_their_backend_and_limits() -> None:
    checked = params.parse(
        {
            "backend": "docker",
            "frameworks": ["fastapi"],
            "models": ["lr"],
            "workers": [1],
            "cpuset": "0",
            "memory_mb": 512,
        }
    )
    (spec,) = plan(checked)
    assert (spec.settings.backend, spec.settings.cpuset, spec.settings.memory_mb) == ("docker", "0", 512)
    assert spec.key == "lr-fastapi-w1-u50-docker" and spec.run_name.endswith("· docker")
    (local,) = plan(params.parse({"backend": "local", "frameworks": ["fastapi"], "models": ["lr"], "workers": [1]}))
    assert local.key == "lr-fastapi-w1-u50", "local keys are unchanged: earlier nights still compare"


def test_tf_serving_answers_read_as_the_contract() -> None:
    wire = contract.wire("tfserving-rest", "model")
    assert wire.predict_path == "/v1/models/model:predict"
    answer = {"predictions": [{"label": 1, "probabilities": [0.25, 0.75]}]}
    assert wire.to_contract(answer) == {"predictions": [1], "probabilities": [[0.25, 0.75]]}
    assert contract.check_answer(wire.to_contract(answer), 1, [0, 1]) is None
    error = {"error": "Failed to process element: 0"}  # passed through for check_answer to describe
    assert wire.to_contract(error) == error and contract.check_answer(error, 1, [0, 1])
    assert contract.wire().predict_path == "/predict"


def _compose(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (scripts/container-engine.sh installs Debian's)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "AIRFLOW_"))}
    return subprocess.run(
        [compose, "--env-file", str(env_file), "-f", str(REPO / "docker-compose.yaml"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_the_compose_file_is_valid_with_the_documented_env() -> None:
    proc = _compose("config", "-q", env_file=REPO / ".env.example")
    assert proc.returncode == 0, proc.stderr
    services = _compose("config", "--services", env_file=REPO / ".env.example").stdout.split()
    assert {
        "postgres",
        "mlflow",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    } <= set(services)


def test_the_compose_file_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "".join(
            line + "\n"
            for line in (REPO / ".env.example").read_text().splitlines()
            if not line.startswith("POSTGRES_PASSWORD=")
        )
    )
    proc = _compose("config", "-q", env_file=env)
    assert proc.returncode != 0 and "set POSTGRES_PASSWORD in .env" in proc.stderr


def test_the_celery_profile_adds_redis_and_a_worker_per_queue() -> None:
    import yaml

    proc = _compose("--profile", "celery", "config", env_file=REPO / ".env.example")
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    assert {name for name, s in services.items() if "celery" in s.get("profiles", [])} == {
        "redis",
        "airflow-worker",
        "load-worker",
    }
    assert services["load-worker"]["command"][-3:] == ["load1", "--concurrency", "1"]
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"  # the single-machine default, unless the .env says
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"


def test_an_owner_stays_alive_when_the_boot_time_reading_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/stat's btime is the wall clock minus the uptime: a clock step moves it, and with it psutil's
    create_time(). An owner mark compared by create_time then read a live harness as dead, and another run's
    reap_orphans killed its server; the mark holds the start in clock ticks since boot instead."""
    import psutil

    from servebench.base import teardown

    mark = teardown.owner_mark()[teardown.OWNER_ENV]
    monkeypatch.setattr(psutil, "boot_time", lambda: 1.0)
    assert teardown._alive(mark)
    assert not teardown._alive(f"{os.getpid()}:1") and not teardown._alive("999999999:1")
