"""Real trials: real Locust against real servers, and servers that fail in the ways servers fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from servebench.config.spec import TrialSpec
from servebench.measure import loadgen
from servebench.measure.trial import run_trial
from servebench.models.export import ExportedModel
from servebench.servers.readiness import wait_healthy
from servebench.servers.runner.base import ServerFailed


def test_a_trial_measures_only_the_window(
    exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_processes: None
) -> None:
    result = run_trial(
        TrialSpec.of("lr", "fastapi", 1, 8, spawn_rate=8.0, duration=3.0, warmup=1.0, repeats=1),
        exports["lr"],
        tmp_path,
    )
    assert result.ok, result.reason
    m = result.metrics
    assert m["requests"] > 100 and m["rps"] > 0 and m["error_rate"] == 0
    assert m["latency_ms_min"] <= m["latency_ms_p50"] <= m["latency_ms_p95"] <= m["latency_ms_max"]
    assert m["server_cpu_percent_avg"] > 0 and m["server_rss_mb_max"] > 20 and m["server_threads_max"] >= 1
    assert m["loadgen_cpu_percent_avg"] > 0 and 0 < m["cold_start_s"] < 60
    assert m["latency_ms_p50"] != round(m["latency_ms_p50"])  # microseconds, not Locust's whole-ms buckets
    assert m["locust_latency_ms_p50"] == round(m["locust_latency_ms_p50"])
    assert m["rps"] == pytest.approx(m["requests"] / 3.0, rel=0.05)  # the window is the asked duration
    assert 2 <= len(result.series["series/rps"]) <= 3 and len(result.series["series/server_cpu_percent"]) >= 2
    for name in (
        "server.log",
        "result.json",
        "server_packages.txt",
        *(
            f"repeat-1/{f}"
            for f in ("resources.csv", "locust_stats.csv", "locust.html", "latency.hlog", "latency_percentiles.txt")
        ),
    ):
        assert (tmp_path / name).is_file(), name
    assert result.context["stop_graceful"] == "true" and result.context["inference_threads"] == "1"


def test_a_server_that_exits_fails_its_trial_with_its_log(
    exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_processes: None
) -> None:
    result = run_trial(
        TrialSpec.of("lr", "broken", 1, 4, spawn_rate=4.0, duration=2.0, warmup=0.0, repeats=1), exports["lr"], tmp_path
    )
    assert result.status == "failed"
    assert result.reason == "server exited with code 3 before becoming healthy"
    assert "broken server: cannot load model" in result.log_tail
    assert (tmp_path / "result.json").is_file()


def test_wrong_answers_are_caught_before_and_during_load(start_server, exports, tmp_path: Path) -> None:
    with pytest.raises(ServerFailed, match=r"parity: wrong answer to a single sample input: probabilities sum to 0\.9"):
        start_server("wrong")
    server = start_server("wrong", ready=False)
    wait_healthy(server, "/health", 20)
    spec = loadgen.LoadSpec(
        server.base_url, str(exports["lr"].meta_path), users=2, spawn_rate=10, duration_s=2, warmup_s=0
    )
    load = loadgen.run(spec, tmp_path)
    assert load.requests > 0 and load.failures == load.requests
    assert "wrong answer: probabilities sum to 0.9" in load.failure_reasons[0][0]


def test_loadgen_against_nothing_counts_failures(exports, tmp_path: Path) -> None:
    from servebench.servers.runner.local import free_port

    spec = loadgen.LoadSpec(f"http://127.0.0.1:{free_port()}", str(exports["lr"].meta_path), 2, 10, 2, 0, 1.0)
    load = loadgen.run(spec, tmp_path)
    assert load.requests > 0 and load.failures == load.requests


def test_a_server_that_disagrees_with_the_reference_is_not_load_tested(
    exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_processes: None
) -> None:
    from servebench.results.spool import Benchmark
    from servebench.results.tracker import Tracker

    result = run_trial(
        TrialSpec.of("lr", "drifting", 1, 4, spawn_rate=4.0, duration=2.0, warmup=0.0, repeats=1),
        exports["lr"],
        tmp_path,
    )
    assert result.status == "failed" and result.context == {"parity": "fail"}
    assert result.reason.startswith("parity: wrong answer to a batch of 16 sample inputs: sample input 5 [")
    assert "probabilities differ by 2.00e-04 (> 1e-05)" in result.reason
    assert not (tmp_path / "locust_stats.csv").exists()  # no load was sent
    report = json.loads((tmp_path / "parity.json").read_text())
    assert report["passed"] is False and [c["problem"] is None for c in report["checks"]] == [True, False]
    assert report["checks"][1]["max_abs_diff"] == pytest.approx(2e-4, rel=1e-3)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = tracker.open_parent(Benchmark("parity", "parity-test", "parity", {"models": ["lr"]}, {}, {}, tracker.uri))
    run = MlflowClient(tracker.uri).get_run(tracker.log_trial(parent, result))
    assert run.data.params["parity"] == "fail" and run.data.tags["servebench.failure_reason"] == result.reason
    artifacts = {a.path for a in MlflowClient(tracker.uri).list_artifacts(run.info.run_id)}
    assert "parity.json" in artifacts and "server.log" in artifacts
