"""The local spool: every result is written here first, durably, and uploaded to MLflow after.

    runs/<benchmark id>/benchmark.json          how its parent run is to be opened (experiment, params, tags)
    runs/<benchmark id>/<trial key>/result.json  one trial and its artifacts beside it (TrialResult.save)
    runs/<benchmark id>/<trial key>/uploaded.json  the MLflow run holding it, once the upload completed
    runs/<benchmark id>/summary/                 the comparison, once summarized; uploaded.json when logged

A record without its uploaded.json is pending: every later stage of the run retries it, and
`servebench sync` uploads whatever an unreachable MLflow left behind. Plain files, no MLflow import.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from servebench.base import paths

BENCHMARK_FILE = "benchmark.json"
RESULT_FILE = "result.json"
UPLOADED_FILE = "uploaded.json"
SUMMARY_DIR = "summary"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark run: what its MLflow parent run is opened with, wherever and whenever that happens."""

    id: str
    experiment: str
    run_name: str
    params: dict[str, Any]
    tags: dict[str, str]
    exports: dict[str, str]  # model name -> its export folder (what train_models made), for trials and uploads
    tracking_uri: str

    @property
    def folder(self) -> Path:
        return paths.runs_dir() / self.id

    def trial_dir(self, key: str) -> Path:
        return self.folder / key

    @property
    def summary_dir(self) -> Path:
        return self.folder / SUMMARY_DIR

    def pending(self) -> list[Path]:
        """Result files of this benchmark not yet (completely) uploaded, oldest first."""
        found = [p for p in self.folder.glob(f"*/{RESULT_FILE}") if not (p.parent / UPLOADED_FILE).exists()]
        return sorted(found, key=lambda p: p.stat().st_mtime)

    def summary_pending(self) -> bool:
        return self.summary_dir.is_dir() and not (self.summary_dir / UPLOADED_FILE).exists()


def benchmark_id(dag_run_id: str | None = None) -> str:
    """Stable for an Airflow DAG run (a cleared and re-run task finds the same benchmark), else new."""
    if dag_run_id:
        return "dag-" + re.sub(r"[^A-Za-z0-9._-]+", "_", dag_run_id)
    return f"cli-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def create(bench: Benchmark) -> Benchmark:
    """Record a benchmark, or return the one already recorded under its id (a re-run keeps its first record)."""
    path = bench.folder / BENCHMARK_FILE
    if path.exists():
        return load(bench.id)
    bench.folder.mkdir(parents=True, exist_ok=True)
    write_json(path, asdict(bench))
    return bench


def load(benchmark_id: str) -> Benchmark:
    path = paths.runs_dir() / benchmark_id / BENCHMARK_FILE
    if not path.exists():
        raise FileNotFoundError(f"no benchmark {benchmark_id!r} in the spool ({path} is missing)")
    return Benchmark(**json.loads(path.read_text()))


def all_benchmarks() -> list[Benchmark]:
    return [load(p.parent.name) for p in sorted(paths.runs_dir().glob(f"*/{BENCHMARK_FILE}"))]


def mark_uploaded(folder: Path, run_id: str, tracking_uri: str) -> None:
    write_json(folder / UPLOADED_FILE, {"run_id": run_id, "tracking_uri": tracking_uri, "at": time.time()})


def uploaded_run(folder: Path) -> str | None:
    path = folder / UPLOADED_FILE
    return str(json.loads(path.read_text())["run_id"]) if path.exists() else None


def write_json(path: Path, value: Any) -> None:
    """Written whole, then renamed into place: a crash never leaves half a record."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)
