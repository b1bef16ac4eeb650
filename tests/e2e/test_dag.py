"""The real DAG end to end under `airflow dags test`, checked from the MLflow store it wrote."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from servebench import pipeline
from servebench.results import environment
from servebench.results.records import TrialResult
from servebench.results.spool import Benchmark
from servebench.results.tracker import Tracker

from .conftest import BIN, run

FIXTURES = ("broken", "drifting")  # `broken` exits before it is healthy, `drifting` answers one input wrongly
SETTINGS = {
    "users": [8],
    "spawn_rate": 20,
    "duration": 2,
    "warmup": 0.5,
    "repeats": 2,
    "fail_on_regression": True,
    "loadgen": "locust",  # one engine, so the rows are known in advance (auto: tests/integration/test_engines.py)
}
# The default tier: one real server (fastapi, on ONNX) and the fixtures; the C++ server's trials run in the --full
# tier here and in tests/integration/test_engines.py, its dense weights are checked in tests/integration.
SMALL = {"models": ["lr"], "frameworks": ["fastapi", *FIXTURES], "workers": [1], "experiment": "e2e", **SETTINGS}
# The exhaustive tier: both models, four real servers, one and two workers (24 trials).
FULL = {
    "models": ["lr", "mlp"],
    "frameworks": ["fastapi", "flask", "bentoml", "cpp", *FIXTURES],
    "workers": [1, 2],
    "experiment": "e2e-full",
    **SETTINGS,
}
SLOWER = "lr-fastapi-w1-u8"  # its history says a million req/s: tonight's run is a regression


@pytest.fixture(scope="module", params=[SMALL, pytest.param(FULL, marks=pytest.mark.full)], ids=["small", "full"])
def dag_run(
    request: pytest.FixtureRequest, airflow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict:
    conf = request.param
    seed_history(conf, tmp_path_factory.mktemp("history"))
    before = dag_runs(airflow_env)
    proc = run([str(BIN / "airflow"), "dags", "test", "serving_benchmark", "-c", json.dumps(conf)], airflow_env)
    runs = [r for r in dag_runs(airflow_env) if r not in before]
    return {"conf": conf, "output": proc.stdout + proc.stderr, "runs": runs, "all_runs": dag_runs(airflow_env)}


def seed_history(conf: dict, folder: Path) -> None:
    """Three earlier scheduled nights on this host in which one configuration served 1,000,000 req/s."""
    spec = next(s for s in pipeline.validate(conf)[1] if s.key == SLOWER)
    tracker = Tracker()
    for night in range(3):
        bench = Benchmark(
            f"history-{conf['experiment']}-{night}",
            conf["experiment"],
            f"scheduled night {night}",
            {},
            {"trigger": "scheduled", **environment.host_tags()},
            {},
            tracker.uri,
        )
        (folder / bench.id).mkdir()
        tracker.log_trial(
            tracker.open_parent(bench), TrialResult(spec, "ok", metrics={"rps": 1e6 + night}, out_dir=folder / bench.id)
        )


def dag_runs(env: dict[str, str]) -> list[dict]:
    out = run([str(BIN / "airflow"), "dags", "list-runs", "serving_benchmark", "-o", "json"], env).stdout
    return json.loads(
        next((line for line in reversed(out.splitlines()) if line.startswith("[")), "[]")
    )  # after warnings


def serving(conf: dict) -> list[str]:
    return [f for f in conf["frameworks"] if f not in FIXTURES]


def test_every_trial_is_a_child_run_with_sound_figures(dag_run: dict, no_leftover_processes: None) -> None:
    conf = dag_run["conf"]
    tracker = Tracker()
    parent_id = tracker.latest_parent(conf["experiment"])
    assert parent_id, dag_run["output"][-3000:]
    parent = MlflowClient(tracker.uri).get_run(parent_id)
    assert parent.data.tags["trigger"] == "manual" and parent.data.tags["airflow.dag_run_id"]
    assert all(parent.data.tags[f"model.{m}.sklearn_uri"].startswith("models:/") for m in conf["models"])
    children = {
        (r.params["model"], r.params["framework"], r.params["workers"]): MlflowClient(tracker.uri).get_run(r.run_id)
        for r in tracker.trial_runs(parent_id)
    }
    assert set(children) == {
        (m, fw, str(w)) for m in conf["models"] for fw in conf["frameworks"] for w in conf["workers"]
    }
    for (model, framework, _), child in children.items():
        if framework not in serving(conf):
            continue
        m = child.data.metrics
        assert child.info.status == "FINISHED" and child.data.tags["servebench.status"] == "ok"
        assert m["rps"] > 0 and m["error_rate"] == 0 and m["requests"] > 50
        if "latency_ms_p99" not in m:  # left out, not guessed, when a repeat had under 10 responses beyond it
            per_repeat = MlflowClient(tracker.uri).get_metric_history(child.info.run_id, "repeat/rps")
            assert min(h.value * 2.0 for h in per_repeat) < 1000 + 1e-6  # rps × the 2 s window = requests
            assert "too_few_requests_for_p99" in child.data.tags["servebench.flags"]
        shown = [
            m[k]
            for k in ("latency_ms_min", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_ms_max")
            if k in m
        ]
        assert len(shown) >= 4 and shown == sorted(shown)
        if model == "lr":  # thousands of requests: every percentile up to p99 must be there
            assert m["latency_ms_p50"] <= m["latency_ms_p95"] <= m["latency_ms_p99"] <= m["latency_ms_max"]
        assert m["server_cpu_percent_avg"] > 0 and m["server_rss_mb_avg"] > 0 and m["server_rss_mb_max"] > 0
        assert child.data.params["parity"] == "pass" and m["parity_max_abs_diff"] <= 1e-5
        assert child.data.params["model"] == model and child.data.params["users"] == "8"
        assert child.data.params["duration_s"] == "2.0" and child.data.params["warmup_s"] == "0.5"
        assert len(MlflowClient(tracker.uri).get_metric_history(child.info.run_id, "series/rps")) >= 4  # both repeats
        # Repeats: median figures, the spread of throughput, each repeat's figures as steps
        assert m["repeats"] == 2 and m["rps_ci95_low"] <= m["rps_mean"] <= m["rps_ci95_high"] and m["rps_cv"] >= 0
        assert [h.step for h in MlflowClient(tracker.uri).get_metric_history(child.info.run_id, "repeat/rps")] == [1, 2]
        locust_p50 = 2 * m["locust_latency_ms_p50"]  # the median of two repeats of whole-ms figures
        assert locust_p50 == round(locust_p50) and m["loadgen_saturated"] in (0.0, 1.0)
        assert child.data.tags["servebench.loadgen_saturated"] in ("true", "false")
        assert child.data.params["load"] == "closed" and child.data.params["cpu_split"] == "auto"
        assert child.data.params["server_cpus"] and child.data.params["loadgen_cpus"]
    artifacts = {a.path for a in MlflowClient(tracker.uri).list_artifacts(parent_id, "summary")}
    assert artifacts == {
        f"summary/{name}"
        for name in (
            "index.html",
            "summary.csv",
            "summary.md",
            "throughput_vs_workers.png",
            "latency_percentiles.png",
            "pareto.png",
            "resources.png",
            "timeseries.png",
            "history.png",
        )
    }


def test_each_trial_links_to_the_registered_model_version_it_served(dag_run: dict) -> None:
    conf = dag_run["conf"]
    tracker = Tracker()
    parent = MlflowClient(tracker.uri).get_run(tracker.latest_parent(conf["experiment"]))
    for model in conf["models"]:
        name, version = parent.data.tags[f"model.{model}.version"].split("/")
        registered = MlflowClient(tracker.uri).get_model_version(name, version)
        assert (
            name == f"servebench-{model}"
            and registered.tags["servebench.export_key"] == parent.data.tags[f"model.{model}.key"]
        )
    for record in tracker.trial_runs(parent.info.run_id):
        if record.params["framework"] not in serving(conf):
            continue
        model = record.params["model"]
        assert record.tags["model.version"] == parent.data.tags[f"model.{model}.version"]
        served = MlflowClient(tracker.uri).get_run(record.run_id).inputs.model_inputs
        flavor = "onnx" if record.params["model_format"] == "onnx" else "sklearn"
        assert [m.model_id for m in served] == [
            parent.data.tags[f"model.{model}.{flavor}_uri"].removeprefix("models:/")
        ]


def test_a_regression_against_the_nights_before_turns_the_run_red_and_is_reported(
    dag_run: dict, tmp_path: Path
) -> None:
    tracker = Tracker()
    parent_id = tracker.latest_parent(dag_run["conf"]["experiment"])
    slower = next(r for r in tracker.trial_runs(parent_id) if r.tags["servebench.trial_key"] == SLOWER)
    assert slower.tags["servebench.verdict"] == "regression" and slower.metrics["baseline/rps"] == 1e6 + 1
    assert "1 regression(s): lr/fastapi/w1/u8: rps " in dag_run["output"]  # the summarize task's failure
    others = [
        r
        for r in tracker.trial_runs(parent_id)
        if r.tags.get("servebench.status") == "ok" and r.run_id != slower.run_id
    ]
    conf = dag_run["conf"]
    assert len(others) == len(serving(conf)) * len(conf["models"]) * len(conf["workers"]) - 1  # all but SLOWER
    assert all(r.tags["servebench.verdict"] == "no_baseline" for r in others)
    # `servebench report` rebuilds the page from MLflow alone; the regression is a section of it
    proc = run([str(BIN / "servebench"), "report", parent_id, "--out", str(tmp_path)], dict(os.environ))
    assert proc.returncode == 0 and proc.stdout.strip() == str(tmp_path / "index.html"), proc.stderr[-2000:]
    page = (tmp_path / "index.html").read_text()
    assert "<li class=bad><b>lr/fastapi/w1/u8</b>: rps " in page and "fastest: <b class=big>" in page
    logged = Path(MlflowClient(tracker.uri).download_artifacts(parent_id, "summary/index.html")).read_text()
    generated = re.compile(r"Generated [^<]* by servebench")
    assert generated.sub("", logged) == generated.sub("", page)  # what the DAG logged is what the command rebuilds


def runs_of(dag_run: dict, framework: str) -> tuple[Tracker, str, list]:
    """The tracker, the e2e parent run, and the trial runs of one framework in it."""
    tracker = Tracker()
    parent_id = tracker.latest_parent(dag_run["conf"]["experiment"])
    return (
        tracker,
        parent_id,
        [
            MlflowClient(tracker.uri).get_run(r.run_id)
            for r in tracker.trial_runs(parent_id)
            if r.params["framework"] == framework
        ],
    )


def test_a_failing_server_fails_only_its_configurations(dag_run: dict) -> None:
    conf = dag_run["conf"]
    tracker, parent_id, broken = runs_of(dag_run, "broken")
    assert len(broken) == len(conf["models"]) * len(conf["workers"])
    for child in broken:
        assert child.info.status == "FAILED"
        assert child.data.tags["servebench.failure_reason"] == "server exited with code 3 before becoming healthy"
        tail = MlflowClient(tracker.uri).download_artifacts(child.info.run_id, "server_log_tail.txt")
        assert "broken server: cannot load model" in Path(tail).read_text()
    assert "broken server: cannot load model" in dag_run["output"]  # the tail is in the task log too
    summary_md = Path(MlflowClient(tracker.uri).download_artifacts(parent_id, "summary/summary.md")).read_text()
    assert "|  | lr | broken | 1 | 8 | failed | - |" in summary_md and "exited with code 3" in summary_md
    # everything was logged, and then the run went red
    assert [r["state"] for r in dag_run["runs"]] == ["failed"]
    assert MlflowClient(tracker.uri).get_run(parent_id).info.status == "FAILED"


@pytest.mark.full  # the airflow CLI's trigger path; tests/unit/test_dag.py checks the same rules in-process
def test_invalid_conf_is_rejected_before_any_run(dag_run: dict, airflow_env: dict[str, str]) -> None:
    """The real trigger path (more cases, in-process, in tests/unit/test_dag.py)."""
    conf = {"workers": [0], "experiment": "never"}
    proc = run([str(BIN / "airflow"), "dags", "trigger", "serving_benchmark", "-c", json.dumps(conf)], airflow_env)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Invalid input for param workers: 0 is less than the minimum of 1" in output
    assert dag_runs(airflow_env) == dag_run["all_runs"]  # no run was created


def test_a_server_whose_answers_differ_is_not_load_tested_and_is_listed(dag_run: dict) -> None:
    conf = dag_run["conf"]
    tracker, parent_id, drifting = runs_of(dag_run, "drifting")
    assert len(drifting) == len(conf["models"]) * len(conf["workers"])
    for child in drifting:
        assert child.info.status == "FAILED" and child.data.params["parity"] == "fail"
        reason = child.data.tags["servebench.failure_reason"]
        assert reason.startswith("parity: wrong answer to a batch of 16 sample inputs: sample input 5 [")
        assert "rps" not in child.data.metrics  # never load-tested
        report = json.loads(
            Path(MlflowClient(tracker.uri).download_artifacts(child.info.run_id, "parity.json")).read_text()
        )
        assert report["passed"] is False
    summary_md = Path(MlflowClient(tracker.uri).download_artifacts(parent_id, "summary/summary.md")).read_text()
    last = f"|  | {conf['models'][-1]} | drifting | {conf['workers'][-1]} | 8 | failed | fail |"
    assert last in summary_md
    assert (
        "not load-tested, answers differ from the reference: lr/drifting/w1/u8: parity: wrong answer"
        in dag_run["output"]
    )
