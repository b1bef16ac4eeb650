"""Regression verdicts against a history of runs with known figures, in a real MLflow store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from servebench.config.spec import TrialSpec
from servebench.results import regression
from servebench.results.records import TrialResult
from servebench.results.spool import Benchmark
from servebench.results.tracker import Tracker

SPEC = TrialSpec.of("lr", "fastapi", 2, 50, spawn_rate=50.0, duration=60.0, warmup=10.0, repeats=1)


@pytest.fixture
def tracker(tmp_path: Path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")


def nights(tracker: Tracker, tmp_path: Path, rps: list[float], host: str = "h1", trigger: str = "scheduled") -> None:
    """One benchmark per night, each with one run of SPEC measuring `rps`."""
    for i, value in enumerate(rps):
        bench = Benchmark(
            f"{host}-{trigger}-{i}",
            "nightly",
            f"night {i}",
            {},
            {"trigger": trigger, "host.fingerprint": host},
            {},
            tracker.uri,
        )
        parent = tracker.open_parent(bench)
        out = tmp_path / bench.id
        out.mkdir()
        tracker.log_trial(parent, TrialResult(SPEC, "ok", metrics={"rps": value, "latency_ms_p99": 10.0}, out_dir=out))


def baseline(tracker: Tracker, host: str = "h1") -> list[float]:
    runs = tracker.history("nightly", SPEC.key, host, int(time.time() * 1000) + 1)
    return [r.metrics["rps"] for r in runs]


def test_a_drop_is_flagged_a_wobble_is_not_and_noise_widens_the_band(tracker: Tracker, tmp_path: Path) -> None:
    nights(tracker, tmp_path, [1000, 1010, 990, 1005, 995, 1002, 998, 1500])  # oldest first; 1000 falls out of K = 7
    nights(tracker, tmp_path, [500, 500, 500], host="h2")  # another machine
    nights(tracker, tmp_path, [500, 500, 500], trigger="manual")  # hand-triggered runs are not a baseline
    quiet = baseline(tracker)
    assert quiet == [1500, 998, 1002, 995, 1005, 990, 1010]  # K = 7, newest first, this host, scheduled only
    drop = regression.judge("rps", 0.8 * 1000, quiet)  # the median (1002) shrugs off the 1500 outlier
    assert drop.verdict == "regression" and drop.change == pytest.approx(-0.2, abs=0.01), drop.text
    assert regression.judge("rps", 0.97 * 1000, quiet).verdict == "unchanged"
    assert regression.judge("rps", 1200, quiet).verdict == "improvement"
    noisy = [1000, 1300, 750, 1150, 820, 1250, 700]
    widened = regression.judge("rps", 800, noisy)
    assert widened.verdict == "unchanged" and widened.band[0] < 800, widened.text  # type: ignore[index]
    # p99: higher is worse
    assert regression.judge("latency_ms_p99", 13.0, [10.0, 10.1, 9.9, 10.0]).verdict == "regression"
    assert regression.judge("rps", 800, quiet[:2]).verdict == "no_baseline"


def test_the_summary_judges_each_configuration_and_logs_the_verdict(tracker: Tracker, tmp_path: Path) -> None:
    from servebench import pipeline
    from servebench.results import spool

    nights(tracker, tmp_path, [1000, 1010, 990, 1005, 995])
    tonight = spool.create(
        Benchmark(
            f"tonight-{tmp_path.name}",
            "nightly",
            "tonight",
            {},
            {"trigger": "scheduled", "host.fingerprint": "h1"},
            {},
            tracker.uri,
        )
    )
    tonight.trial_dir(SPEC.key).mkdir(parents=True, exist_ok=True)
    TrialResult(SPEC, "ok", metrics={"rps": 780.0, "latency_ms_p99": 10.1}, out_dir=tonight.trial_dir(SPEC.key)).save()
    done = pipeline.summarize(tonight.id, [SPEC], tracker)
    assert done.regressions == [
        f"lr/fastapi/w2/u50: {regression.judge('rps', 780.0, [1000, 1010, 990, 1005, 995]).text}"
    ]
    assert "rps 780 vs 1000 (-22.0%" in done.text() and done.rows[0]["verdict"] == "regression"
    run = MlflowClient(tracker.uri).get_run(done.rows[0]["run_id"])
    assert run.data.tags["servebench.verdict"] == "regression" and run.data.metrics["baseline/rps"] == 1000.0
    assert run.data.tags["servebench.verdict.latency_ms_p99"].endswith(": unchanged")
