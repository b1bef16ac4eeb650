"""Users' models through the real DAG (`airflow dags test`): three registered models (a scaler + one-hot +
gradient-boosting pipeline, a multi-class logistic regression, a random-forest regressor) from a real SQLite
registry, each with a CSV payload, at batch sizes 1 and 16, on FastAPI and the C++ server; the champion alias
moved to a new version since the nights before, whose regression then reads "model changed"."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from mlflow.tracking import MlflowClient

from servebench import pipeline
from servebench.models import export
from servebench.results import environment
from servebench.results.records import TrialResult
from servebench.results.spool import Benchmark
from servebench.results.tracker import Tracker

from .conftest import BIN, run

pytestmark = [pytest.mark.e2e, pytest.mark.full]
REPO = Path(__file__).resolve().parents[2]
CHAMPION_KEY = "churn.champion-fastapi-w1-u8-b16"


def examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "register_example_models", REPO / "scripts" / "register_example_models.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def night(airflow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    rows = tmp_path_factory.mktemp("rows")
    registered = examples().register_all(rows, trees=40)
    conf = {
        "models": [
            "models:/churn@champion",
            f"models:/iris/{registered['iris'].split('/')[1]}",
            "models:/diabetes@prod",
        ],
        "payload": [
            f"models:/churn@champion={rows / 'churn-rows.csv'}",
            f"models:/iris/{registered['iris'].split('/')[1]}={rows / 'iris-rows.csv'}",
            f"models:/diabetes@prod={rows / 'diabetes-rows.csv'}",
        ],
        "batch_sizes": [1, 16],
        "frameworks": ["fastapi", "cpp"],
        "workers": [1],
        "users": [8],
        "duration": 2,
        "warmup": 0.5,
        "repeats": 1,
        "loadgen": "locust",
        "experiment": "e2e-user-models",
    }
    client = MlflowClient(Tracker().uri)
    client.set_registered_model_alias("diabetes", "prod", registered["diabetes"].split("/")[1])
    seed_history(conf, registered["churn"], tmp_path_factory.mktemp("history"))
    bumped = examples().register_all(rows, version_bump=True, trees=40)["churn"]  # champion moves to it
    proc = run([str(BIN / "airflow"), "dags", "test", "serving_benchmark", "-c", json.dumps(conf)], airflow_env, 900)
    return {"conf": conf, "output": proc.stdout + proc.stderr, "before": registered["churn"], "now": bumped}


def seed_history(conf: dict, version: str, folder: Path) -> None:
    """Three scheduled nights on this host in which the champion (then `version`) served a million req/s."""
    spec = next(s for s in pipeline.validate(conf)[1] if s.key == CHAMPION_KEY)
    key = export.export_model("models:/churn@champion", payload=None).key
    tracker = Tracker()
    for n in range(3):
        tags = {"trigger": "scheduled", **environment.host_tags(), "model.churn.champion.version": version}
        bench = Benchmark(
            f"user-history-{n}",
            conf["experiment"],
            f"night {n}",
            {},
            tags | {"model.churn.champion.key": key},
            {},
            tracker.uri,
        )
        (folder / bench.id).mkdir()
        result = TrialResult(
            spec, "ok", metrics={"rps": 1e6 + n}, context={"model_key": key}, out_dir=folder / bench.id
        )
        tracker.log_trial(tracker.open_parent(bench), result)


def test_each_model_is_served_where_it_can_be_and_skipped_with_the_reason_elsewhere(night: dict) -> None:
    tracker = Tracker()
    parent_id = tracker.latest_parent(night["conf"]["experiment"])
    records = {r.tags["servebench.trial_key"]: r for r in tracker.trial_runs(parent_id)}
    iris = f"iris.v{night['conf']['models'][1].rsplit('/', 1)[1]}"
    served = {f"{m}-fastapi-w1-u8{b}" for m in ("churn.champion", iris, "diabetes.prod") for b in ("", "-b16")}
    skipped = {k.replace("fastapi", "cpp") for k in served}
    assert set(records) == served | skipped, night["output"][-3000:]
    for key in served:
        record = records[key]
        assert record.tags["servebench.status"] == "ok" and record.params["parity"] == "pass", (key, record.tags)
        assert record.params["request_rows"].startswith("payload of ") and record.params["model_source"] == "registry"
        batch = 16 if key.endswith("-b16") else 1
        assert record.params["batch_size"] == str(batch)
        assert record.metrics["rows_per_s"] == pytest.approx(record.metrics["rps"] * batch)
    assert records["diabetes.prod-fastapi-w1-u8"].params["model_task"] == "regressor"
    assert records[f"{iris}-fastapi-w1-u8"].params["model_task"] == "multiclass"
    churn = records["churn.champion-fastapi-w1-u8"].params
    assert churn["model_task"] == "binary" and "HistGradientBoostingClassifier" in churn["model_estimator"]
    assert churn["model_inputs"] == "6 number, 1 string (named)"
    for key in skipped:
        assert records[key].tags["servebench.status"] == "skipped"
    assert records["churn.champion-cpp-w1-u8"].tags["servebench.failure_reason"] == (
        "cpp serves the weights format, which model churn.champion has not: Pipeline(ColumnTransformer(StandardScaler, "
        "OneHotEncoder) → HistGradientBoostingClassifier) has no dense-weights form (servebench-dense-v1 holds a "
        "LogisticRegression or an MLPClassifier alone)"
    )
    assert "RandomForestRegressor" in records["diabetes.prod-cpp-w1-u8"].tags["servebench.failure_reason"]


def test_figures_link_to_the_registry_versions_they_served(night: dict) -> None:
    tracker = Tracker()
    client = MlflowClient(tracker.uri)
    parent = client.get_run(tracker.latest_parent(night["conf"]["experiment"]))
    assert parent.data.tags["model.churn.champion.version"] == night["now"]
    assert parent.data.tags["model.churn.champion.alias"] == "champion"
    for record in tracker.trial_runs(parent.info.run_id):
        if record.tags["servebench.status"] != "ok":
            continue
        model = record.params["model"]
        name, version = record.tags["model.version"].split("/")
        assert record.params["registered_model"] == name and record.params["registered_version"] == version
        registered = client.get_model_version(name, version)
        assert record.params["registered_run_id"] == registered.run_id
        served = client.get_run(record.run_id).inputs.model_inputs  # the UI's "Logged models" link
        assert [m.model_id for m in served] == [registered.source.removeprefix("models:/")], model


def test_a_new_champion_version_is_reported_as_a_model_change_not_a_serving_regression(night: dict) -> None:
    tracker = Tracker()
    parent_id = tracker.latest_parent(night["conf"]["experiment"])
    champion = next(r for r in tracker.trial_runs(parent_id) if r.tags["servebench.trial_key"] == CHAMPION_KEY)
    change = f"v{night['before'].split('/')[1]} → v{night['now'].split('/')[1]}"
    assert champion.tags["servebench.verdict"] == "regression" and champion.tags["model.changed"] == change
    summary_md = Path(MlflowClient(tracker.uri).download_artifacts(parent_id, "summary/summary.md")).read_text()
    assert "churn.champion/fastapi/w1/u8/b16: rps " in summary_md and f": model changed ({change})" in summary_md
    page = Path(MlflowClient(tracker.uri).download_artifacts(parent_id, "summary/index.html")).read_text()
    assert f"model changed ({change}) since the baseline nights" in page
    assert "regression(s)" not in night["output"]  # a model change does not turn the night red
    assert "batch_sizes.png" in {
        a.path.rsplit("/", 1)[-1] for a in MlflowClient(tracker.uri).list_artifacts(parent_id, "summary")
    }
