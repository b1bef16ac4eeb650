"""The real DAG across hosts (scripts/lab_dag_run.py): Airflow with the CeleryExecutor on the controller, a
Celery worker on each load host's queue in its namespaces, one short benchmark whose load-host tasks ran on those
hosts (each reports the address it reached the Locust master from) and whose trials' figures are in MLflow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servebench.lab import why_unavailable

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.full  # a whole Airflow deployment across namespaces: about three minutes
@pytest.mark.skipif(bool(why_unavailable()), reason=why_unavailable() or "")
@pytest.mark.skipif(not shutil.which("redis-server"), reason="no redis-server (apt-get install redis-server)")
def test_the_dag_runs_its_load_on_the_load_hosts_queues() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lab_dag_run.py"), "--frameworks", "fastapi", "--duration", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert ": success" in out
    assert '"load_host": "load1", "address": "198.18.0.11"' in out and '"address": "198.18.0.12"' in out
    row = next(line for line in out.splitlines() if line.startswith("lr-fastapi-w1-u8-lh2"))
    assert row.split()[3] == "2"  # two Locust workers, one per load host, in the trial's MLflow run
