"""Tracker and summary against a real MLflow SQLite store (no server, no network)."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from servebench.config.spec import TrialSpec
from servebench.report import page as report
from servebench.report import summary
from servebench.results.records import TrialResult
from servebench.results.spool import Benchmark
from servebench.results.tracker import Tracker


@pytest.fixture
def tracker(tmp_path: Path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")


def bench(benchmark_id: str, params: dict | None = None, tags: dict | None = None) -> Benchmark:
    return Benchmark(benchmark_id, "exp", f"manual {benchmark_id}", params or {}, tags or {}, {}, "sqlite://")


def result(
    framework: str, workers: int, rps: float, out_dir: Path, status: str = "ok", reason: str = ""
) -> TrialResult:
    spec = TrialSpec.of("lr", framework, workers, 10, spawn_rate=10.0, duration=5.0, warmup=1.0, repeats=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "server.log").write_text("hello from the server\n")
    figures = (
        {"rps": rps, "error_rate": 0.0, "latency_ms_p50": 1.0, "latency_ms_p95": 2.0, "latency_ms_p99": 3.0}
        if status == "ok"
        else {}
    )
    series = {"series/rps": [(0, rps), (1, rps + 1)]} if status == "ok" else {}
    return TrialResult(
        spec,
        status,
        reason,
        figures,
        series,
        ("loadgen_saturated",) if rps > 1000 else (),
        {"backend": "local"},
        out_dir,
        "tail" if reason else "",
    )


def test_trials_are_child_runs_with_public_names(tracker: Tracker, tmp_path: Path) -> None:
    parent = tracker.open_parent(
        bench("dag-r1", {"workers": [1, 2]}, {"trigger": "manual", "airflow.dag_run_id": "r1"})
    )
    assert tracker.open_parent(bench("dag-r1")) == parent  # a re-run (or a retried upload) reuses it
    assert tracker.open_parent(bench("dag-r2")) != parent
    child = tracker.log_trial(parent, result("fastapi", 2, 1500.0, tmp_path / "a"))
    run = MlflowClient(tracker.uri).get_run(child)
    assert run.data.tags["airflow.dag_run_id"] == "r1" and run.data.tags["servebench.upload"] == "complete"
    assert run.info.run_name == "lr · fastapi · w2 · u10" and run.info.status == "FINISHED"
    assert run.data.params["framework"] == "fastapi" and run.data.params["workers"] == "2"
    assert run.data.params["duration_s"] == "5.0" and run.data.params["backend"] == "local"
    assert run.data.metrics["rps"] == 1500.0 and run.data.tags["servebench.flags"] == "loadgen_saturated"
    history = MlflowClient(tracker.uri).get_metric_history(child, "series/rps")
    assert [(m.step, m.value) for m in history] == [(0, 1500.0), (1, 1501.0)]
    assert "server.log" in [a.path for a in MlflowClient(tracker.uri).list_artifacts(child)]


def test_summary_lists_failed_and_missing_trials(tracker: Tracker, tmp_path: Path) -> None:
    parent = tracker.open_parent(bench("b"))
    tracker.log_trial(parent, result("fastapi", 1, 900.0, tmp_path / "a"))
    failed = tracker.log_trial(parent, result("broken", 1, 0.0, tmp_path / "b", "failed", "server exited with code 3"))
    assert MlflowClient(tracker.uri).get_run(failed).info.status == "FAILED"
    planned = [
        TrialSpec.of("lr", fw, 1, 10, spawn_rate=10.0, duration=5.0, warmup=1.0, repeats=1)
        for fw in ("broken", "fastapi", "flask")
    ]
    rows = summary.rows_from_records(tracker.trial_runs(parent), planned)
    assert [(r["framework"], r["status"]) for r in rows] == [
        ("broken", "failed"),
        ("fastapi", "ok"),
        ("flask", "missing"),
    ]
    assert rows[0]["notes"] == "server exited with code 3" and "no result was logged" in rows[2]["notes"]
    text = summary.format_table(rows)
    assert "fastapi" in text and "900" in text and "server exited with code 3" in text
    files = report.write(report.Report("b", rows, {}, {}, {}), tmp_path / "summary")
    assert [f.name for f in files] == [
        "index.html",
        "summary.md",
        "summary.csv",
        "throughput_vs_workers.png",
        "latency_percentiles.png",
        "pareto.png",
        "resources.png",
    ]  # no series: no time plot
    assert files[3].read_bytes()[:4] == b"\x89PNG" and "| ★ | lr | fastapi | 1 |" in files[1].read_text()


def test_the_planned_matrix_is_read_back_from_the_parent_run(tracker: Tracker) -> None:
    from servebench import pipeline
    from servebench.config import params

    asked = params.parse({"models": ["lr"], "frameworks": ["fastapi", "flask"], "workers": [1, 2], "users": [5]})
    parent = tracker.open_parent(bench("b", asked.model_dump()))
    planned = pipeline.planned_trials(parent, tracker)
    assert [s.key for s in planned] == ["lr-fastapi-w1-u5", "lr-fastapi-w2-u5", "lr-flask-w1-u5", "lr-flask-w2-u5"]
    assert planned[0].settings.duration == asked.duration and planned[0].settings.spawn_rate == asked.spawn_rate


def test_the_table_shows_spread_and_capacity_columns_only_when_measured() -> None:
    from servebench.report.summary import format_table

    row = {"model": "lr", "framework": "fastapi", "workers": 1, "users": 5, "status": "ok", "rps": 100.0}
    assert "rps 95% CI" not in format_table([row]) and "max rps @SLO" not in format_table([row])
    shown = format_table([row, {**row, "workers": 2, "rps_ci95": "90-110", "rps_cv_pct": 4.0, "max_rps_at_slo": 95.0}])
    assert "rps 95% CI" in shown and "90-110" in shown and "max rps @SLO" in shown


def test_uploads_are_idempotent_and_a_rerun_replaces_its_run(tracker: Tracker, tmp_path: Path) -> None:
    parent = tracker.open_parent(bench("b"))
    first = result("fastapi", 1, 900.0, tmp_path / "a")
    run_id = tracker.log_trial(parent, first)
    assert tracker.log_trial(parent, first) == run_id  # a retried upload of the same result: nothing new
    rerun = result("fastapi", 1, 950.0, tmp_path / "a")  # the task cleared and run again: a new result
    new_id = tracker.log_trial(parent, rerun)
    runs = tracker.trial_runs(parent)
    assert [(r.run_id, r.metrics["rps"]) for r in runs] == [(new_id, 950.0)]
    assert MlflowClient(tracker.uri).get_run(run_id).info.lifecycle_stage == "deleted"


def test_a_half_finished_upload_is_replaced_on_retry(tracker: Tracker, tmp_path: Path) -> None:
    """The artifact store fails after the run was created (disk full, a broken mount): the retry uploads
    the result once more and deletes the incomplete run, so the result is in MLflow exactly once."""
    blocked = tmp_path / "artifacts"
    blocked.write_text("a file where the artifact folder should be")
    MlflowClient(tracker.uri).create_experiment("exp", artifact_location=blocked.as_uri())
    parent = tracker.open_parent(bench("b"))
    done = result("fastapi", 1, 900.0, tmp_path / "a")
    with pytest.raises(NotADirectoryError, match="Not a directory"):
        tracker.log_trial(parent, done)
    assert tracker.trial_runs(parent) == []  # the incomplete run does not count
    blocked.unlink()
    run_id = tracker.log_trial(parent, done)
    children = MlflowClient(tracker.uri).search_runs([tracker.experiment_id("exp")], "tags.`servebench.kind` = 'trial'")
    assert [r.info.run_id for r in children] == [run_id]
    history = MlflowClient(tracker.uri).get_metric_history(run_id, "series/rps")
    assert [(m.step, m.value) for m in history] == [(0, 900.0), (1, 901.0)]


def test_memory_growth_is_fitted_not_guessed() -> None:
    from servebench.measure.metrics import trend

    leak = [(t, 100.0 + 0.05 * t) for t in range(60)]  # 3 MB per minute
    slope, r2 = trend(leak)  # type: ignore[misc]
    assert slope == pytest.approx(3.0) and r2 == pytest.approx(1.0)
    flat = [(t, 100.0 + (0.5 if t % 2 else -0.5)) for t in range(60)]
    slope, r2 = trend(flat)  # type: ignore[misc]
    assert abs(slope) < 0.1 and r2 < 0.1
    assert trend(leak[:5]) is None  # too short to say


def test_a_malformed_tracking_uri_fails_the_upload_not_the_run(tmp_path: Path) -> None:
    from servebench import pipeline
    from servebench.results import spool

    typo = Tracker("htp://mlflow.example:5000")  # constructed: nothing is asked of MLflow yet
    bench = spool.create(spool.Benchmark("typo", "exp", "typo", {}, {}, {}, typo.uri))
    result("fastapi", 1, 900.0, bench.trial_dir("lr-fastapi-w1-u10")).save()
    uploaded = pipeline.upload(bench, typo, retries=0)
    assert uploaded.parent_id is None and "unsupported URI 'htp://mlflow.example:5000'" in str(uploaded.error)
    assert [p.parent.name for p in bench.pending()] == ["lr-fastapi-w1-u10"]  # kept for `servebench sync`


def test_models_log_whatever_experiment_the_calling_process_chose(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training script or notebook in the same process may have called `mlflow.set_experiment`: the run that
    the model loggers need (`Tracker._resumed`, used by `log_models`; the full tier logs real models through it)
    is still the benchmark's parent, and the caller's choice is left as it was."""
    import mlflow
    from mlflow.tracking import fluent

    monkeypatch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)  # restored after the test
    theirs = mlflow.create_experiment("their-training")
    mlflow.set_experiment(experiment_id=theirs)
    parent = tracker.open_parent(bench("b-models"))
    with tracker._resumed(parent):
        assert mlflow.active_run().info.run_id == parent
        mlflow.set_tag("logged", "here")
    assert MlflowClient(tracker.uri).get_run(parent).data.tags["logged"] == "here"
    with mlflow.start_run() as run:  # their next run goes where they said
        assert run.info.experiment_id == theirs
