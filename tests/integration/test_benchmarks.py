"""Benchmarks print figures; CI only checks that they run (timing on shared 2-core machines is noise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from servebench.lab import why_unavailable as why_no_lab

REPO = Path(__file__).resolve().parents[2]
TINY_LOAD = ["--users", "2", "--duration", "1", "--warmup", "0"]


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("fastapi_inference_mode.py", ["--models", "lr"], ["lr     inline", "lr     threadpool", "throughput ratio"]),
        ("server_cost.py", ["--frameworks", "fastapi"], ["cpu µs/req", "fastapi                  1"]),
        pytest.param(
            "framework_overhead.py",
            ["--models", "gbdt", "--frameworks", "fastapi,cpp", "--rate", "50"],
            ["overhead %", "gbdt   fastapi", "skipped: cpp serves the weights format"],
            marks=pytest.mark.full,  # trains gbdt (300 trees) first; the other benchmarks run by default
        ),
        pytest.param(
            "loadgen_ceiling.py",
            ["--frameworks", "fastapi", "--users", "8"],  # 8: FastAPI saturates within a step or two of h2load's ramp
            ["locust, 2 process(es)", "h2load", "ceiling ratio", "fastapi"],
            marks=pytest.mark.full,  # half a minute; the engines' own tests cover both engines by default
        ),
        pytest.param(
            "load_hosts_ceiling.py",
            [],
            ["load1: ", "load2: ", "ceiling ratio, 2 load hosts / 1"],
            # --full: the lab's trial (tests/lab) covers load hosts by default; this prints the ceiling ratio
            marks=[pytest.mark.full, pytest.mark.skipif(bool(why_no_lab()), reason=why_no_lab() or "")],
        ),
    ],
)
def test_benchmark_runs(script: str, args: list[str], expected: list[str], no_leftover_processes: None) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *TINY_LOAD, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "failed" not in proc.stdout and all(text in proc.stdout for text in expected), proc.stdout
