"""The container benchmark prints figures; CI only checks that it runs (timing on 2 shared cores is noise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.full  # two minutes of a benchmark whose figures CI does not judge; the backend's tests are default
def test_backend_overhead_runs(engine: Any, no_leftover_containers: None) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "backend_overhead.py"),
            "--frameworks",
            "cpp",
            "--users",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cpu µs/req ratio" in proc.stdout and "\ncpp " in proc.stdout and "failed" not in proc.stdout, proc.stdout


SHAPES_ARGS = ["--frameworks", "fastapi", "--users", "4", "--duration", "2", "--warmup", "0.5"]


@pytest.mark.full  # a minute of figures CI does not judge; tests/container/test_replicas.py covers the balancer
def test_replica_shapes_runs(engine: Any, no_leftover_containers: None) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "replica_shapes.py"), *SHAPES_ARGS],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fastapi     1 x 2 CPU" in proc.stdout and "fastapi     2 x 1 CPU" in proc.stdout, proc.stdout
    assert "failed" not in proc.stdout, proc.stdout
