"""Benchmarks print figures; CI only checks that they run (timing on shared 2-core machines is noise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_fastapi_inference_mode_benchmark_runs(no_leftover_processes: None) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "fastapi_inference_mode.py"), "--models", "lr",
         "--users", "2", "--duration", "1", "--warmup", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lr     inline" in proc.stdout and "lr     threadpool" in proc.stdout
    assert "threadpool/inline throughput ratio" in proc.stdout


def test_server_cost_benchmark_runs(no_leftover_processes: None) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "server_cost.py"), "--frameworks", "fastapi",
         "--users", "2", "--duration", "1", "--warmup", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("fastapi"))
    assert "failed" not in row and len(row.split()) >= 8, row
