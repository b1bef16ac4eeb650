"""The native engine on real servers: its latencies checked against a server of known service time, a trial it
measures (with capacity per core at saturation), `loadgen: auto` through the pipeline, and a neighbour that
burns CPU during a trial."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from servebench import pipeline
from servebench.config.spec import TrialSpec
from servebench.measure import h2load_engine, trial
from servebench.measure.trial import run_trial
from servebench.models.export import ExportedModel
from servebench.results.records import Flag, Metric
from servebench.results.tracker import Tracker

from .test_measurement import known_service_time

pytestmark = pytest.mark.skipif(bool(h2load_engine.available()), reason=h2load_engine.available() or "")


@pytest.mark.full  # Locust's known-service check runs by default, and an h2load trial
def test_h2load_reads_a_known_service_time_to_a_tenth_of_a_millisecond(
    start_server, exports: dict[str, ExportedModel], tmp_path: Path
) -> None:
    """The same check as Locust's (test_measurement.py), through the native engine."""
    differences, _ = known_service_time(start_server, exports, tmp_path, "h2load", warmup_s=0.3)
    # Within 0.03 ms of the truth on a quiet host (2.016, 1.991, 1.973 in one run); on a busy shared one the idle
    # client's wake-ups add up to 0.2 ms to the paced server's round trip alone, so CI holds it to Locust's bound.
    assert statistics.median(differences) == pytest.approx(2.0, abs=0.3)


def test_a_trial_measured_by_h2load_finds_capacity_per_core_at_saturation(
    exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_processes: None
) -> None:
    spec = TrialSpec.of("lr", "fastapi", 1, 4, duration=2, warmup=0.5, repeats=1, loadgen="h2load")
    result = run_trial(spec, exports["lr"], tmp_path)
    assert result.ok, result.reason
    m = result.metrics
    print({k: round(v, 1) for k, v in m.items() if k.startswith(("rps", "max_rps", "server_cpu"))})
    assert result.context["loadgen_engine"] == "h2load" and "locust_latency_ms_p50" not in m
    assert m[Metric.RPS] > 0 and m[Metric.ERROR_RATE] == 0 and m[Metric.LATENCY_P50] < m[Metric.LATENCY_P99]
    steps = [int(c) for _, c in result.series["saturation/connections"]]
    assert steps[:2] == [4, 8] and m[Metric.SATURATION_STEPS] == len(steps) >= 2
    assert m[Metric.MAX_RPS] >= max(rps for _, rps in result.series["saturation/rps"]) * 0.999
    assert m[Metric.MAX_RPS_PER_CORE] > 0 and m[Metric.CPU_US_AT_MAX] > 0
    assert (tmp_path / "saturation-1" / "latency.hlog").is_file() and (tmp_path / "repeat-1" / "h2load-0.tsv").is_file()


@pytest.mark.full  # the whole pipeline on the C++ server, twice measured: 80 s; its rules are unit-tested
def test_auto_measures_a_configuration_again_where_locust_saturates(
    tmp_path: Path, no_leftover_processes: None
) -> None:
    """Whether Locust saturates on the C++ server depends on the machine; what follows from either outcome
    does not: a saturated Locust trial gets an h2load twin that is faster, an unsaturated one gets none."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    raw = {"models": ["lr"], "frameworks": ["cpp"], "workers": [1], "users": [20], "duration": 2, "warmup": 0.5}
    outcome = pipeline.run_all({**raw, "repeats": 1, "loadgen": "auto", "experiment": "auto"}, tracker=tracker)
    runs = {r.tags["servebench.trial_key"]: r for r in tracker.trial_runs(outcome.summary.parent_id or "")}
    (locust,) = [r for k, r in runs.items() if k == "lr-cpp-w1-u20"]
    saturated = locust.tags["servebench.loadgen_saturated"] == "true"
    print("Locust", locust.metrics["rps"], "saturated" if saturated else "not saturated", sorted(runs))
    if saturated:
        native = runs["lr-cpp-w1-u20-h2load"]
        assert native.params["loadgen_engine"] == "h2load" and native.tags["servebench.status"] == "ok"
        assert native.metrics["rps"] > locust.metrics["rps"]
        assert native.metrics[Metric.MAX_RPS_PER_CORE] > 0
        row = next(r for r in outcome.summary.rows if r["key"] == "lr-cpp-w1-u20")
        assert row.get("superseded")
    else:
        assert sorted(runs) == ["lr-cpp-w1-u20"]
    assert MlflowClient(tracker.uri).get_experiment_by_name("auto").tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )


def test_a_trial_next_to_a_cpu_burning_neighbour_is_flagged_contended(
    exports: dict[str, ExportedModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_leftover_processes: Any
) -> None:
    """The neighbour starts where the trial would wait for a quiet machine (that wait would otherwise outlast
    it): a real process burning a core for the whole trial, which neither the server nor Locust is."""
    burner: list[subprocess.Popen[bytes]] = []

    def start_neighbour(what: str) -> float:
        burner.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        return 0.0

    monkeypatch.setattr(trial, "wait_for_quiet", start_neighbour)
    try:
        spec = TrialSpec.of("lr", "paced", 1, 1, duration=3, warmup=0.5, repeats=1, loadgen="locust")
        result = run_trial(spec, exports["lr"], tmp_path)
    finally:
        for proc in burner:
            proc.kill()
            proc.wait()
    assert result.ok, result.reason
    print("other CPU", result.metrics[Metric.HOST_OTHER_CPU])
    assert result.metrics[Metric.HOST_OTHER_CPU] > 60.0 and Flag.CONTENDED in result.flags


def test_a_trial_waits_for_a_busy_machine_to_quiet_down_bounded() -> None:
    from servebench.measure.sampler import QUIET_BELOW_PERCENT, MachineProbe, wait_for_quiet

    probe = MachineProbe()
    time.sleep(1.0)
    if (before := probe.read().cpu_percent) >= QUIET_BELOW_PERCENT:  # a CI run saw a core busy for 30 s here
        pytest.skip(f"the machine was busy before the test ({before:.0f}% of a core): the wait cannot be judged")
    neighbour = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 2.5\nwhile time.time() < end: pass"]
    )
    try:
        waited = wait_for_quiet("a test")
    finally:
        neighbour.kill()
        neighbour.wait()
    assert 2.0 <= waited < 10.0
