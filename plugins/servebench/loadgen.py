"""Load generator: Locust in a child process (gevent must not patch the harness or an Airflow task)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STOP_SLACK_S = 30.0  # beyond warm-up + ramp-up + duration before the harness gives up on Locust


class LoadgenError(RuntimeError):
    """Locust failed or produced no results; carries the tail of its output."""


@dataclass(frozen=True)
class LoadSpec:
    host: str
    meta_path: str
    users: int
    spawn_rate: float
    duration_s: float
    warmup_s: float
    request_timeout_s: float = 10.0
    protocol: str = "servebench-v1"  # the server's (contract.wire)
    model_name: str = "model"


@dataclass(frozen=True)
class LoadResult:
    """What the load generator saw inside the measured window (warm-up excluded)."""

    window_start: float  # epoch seconds
    window_end: float
    requests: int
    failures: int
    latencies_ms: np.ndarray  # every response in the window, exact (not Locust's buckets)
    per_second: list[dict[str, Any]]
    failure_reasons: list[tuple[str, int]]
    warmup_requests: int

    @property
    def window_s(self) -> float:
        return self.window_end - self.window_start


def run(spec: LoadSpec, out_dir: Path, on_started: Callable[[int], None] = lambda pid: None) -> LoadResult:
    """Run one closed-loop load test; `on_started` gets Locust's pid (for the resource sampler)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = out_dir / "loadgen.json"
    config.write_text(json.dumps({**asdict(spec), "out_dir": str(out_dir)}))
    limit = spec.warmup_s + spec.users / spec.spawn_rate + spec.duration_s + STOP_SLACK_S
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--host", spec.host, "--users", str(spec.users), "--spawn-rate", str(spec.spawn_rate),
        "--run-time", f"{int(limit)}s", "--stop-timeout", "5", "--exit-code-on-error", "0",
        "--csv", str(out_dir / "locust"), "--html", str(out_dir / "locust.html"), "--loglevel", "WARNING",
    ]  # fmt: skip
    env = {"SERVEBENCH_LOADGEN_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, env={**_base_env(), **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    on_started(proc.pid)
    output: list[str] = []
    reader = threading.Thread(target=_relay, args=(proc, output), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=limit + STOP_SLACK_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise LoadgenError(f"Locust did not finish within {limit + STOP_SLACK_S:.0f}s:\n" + _tail(output)) from None
    finally:
        reader.join(timeout=5)
    result_file = out_dir / "load.json"
    if code != 0:
        raise LoadgenError(f"Locust exited with code {code}:\n" + _tail(output))
    if not result_file.exists():
        raise LoadgenError("Locust wrote no results:\n" + _tail(output))
    raw = json.loads(result_file.read_text())
    if raw["window_start"] is None:
        raise LoadgenError("Locust stopped before the measured window began (all users never started):\n" + _tail(output))
    return LoadResult(
        window_start=raw["window_start"],
        window_end=raw["window_end"],
        requests=raw["requests"],
        failures=raw["failures"],
        latencies_ms=np.load(out_dir / "latencies_ms.npy"),
        per_second=raw["per_second"],
        failure_reasons=[tuple(r) for r in raw["failure_reasons"]],
        warmup_requests=raw["warmup_requests"],
    )


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW"))}


def _relay(proc: subprocess.Popen[str], output: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        output.append(line)
        if line.startswith("[load]"):
            log.info("%s", line)
        elif line:
            log.debug("locust: %s", line)


def _tail(lines: list[str], n: int = 30) -> str:
    return "\n".join(lines[-n:])
