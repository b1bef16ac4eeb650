"""Users' models: entries, the registry (a real SQLite MLflow store), files, schemas, payloads, what each server
can serve, and how a version change is told apart from a serving regression. No server runs here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from servebench import pipeline
from servebench.config.params import ParamsError
from servebench.models import export, schema, source
from servebench.report import summary
from servebench.servers import capability, manifest

pytestmark = pytest.mark.unit


def test_entries_are_named_for_keys_and_folders(tmp_path: Path) -> None:
    assert source.entry_id("lr") == "lr"
    assert source.entry_id("models:/churn@champion") == "churn.champion"
    assert source.entry_id("models:/churn/12") == "churn.v12"
    file_id = source.entry_id(str(tmp_path / "fraud model.onnx"))
    assert file_id.startswith("fraud_model.onnx.") and ":" not in file_id and "@" not in file_id
    for bad, why in (
        ("resnet", "not a model"),
        ("models:/churn", "models:/<name>/<version> or models:/<name>@<alias>"),
        ("models:/churn/latest", "models:/<name>/<version> or models:/<name>@<alias>"),
        ("weights.h5", "not a model"),
    ):
        with pytest.raises(source.SourceError, match=why):
            source.kind(bad)


def test_a_pickle_loads_only_when_trusted_and_a_non_model_is_named(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression().fit(np.eye(4), [0, 1, 0, 1]), path)
    with pytest.raises(source.SourceError, match="loading a pickle runs whatever code it holds; set trust_pickle"):
        export.load(str(path), tmp_path)
    assert export.load(str(path), tmp_path, trust_pickle=True).schema == schema.Schema.positional(4)
    (tmp_path / "notes.pkl").write_bytes(b"not a pickle")
    with pytest.raises(source.SourceError, match="not a loadable scikit-learn model"):
        export.load(str(tmp_path / "notes.pkl"), tmp_path, trust_pickle=True)
    with pytest.raises(source.SourceError, match="no such file"):
        export.load(str(tmp_path / "gone.onnx"), tmp_path)
    (tmp_path / "broken.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(source.SourceError, match="not an ONNX model ONNX Runtime can load"):
        export.load(str(tmp_path / "broken.onnx"), tmp_path)


def _frame(rows: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "tenure": rng.gamma(2.0, 10.0, rows),
            "calls": rng.poisson(2.0, rows).astype(float),
            "plan": rng.choice(["a", "b", "c"], rows),
        }
    )
    return frame, ((frame["calls"] > 2) | (frame["plan"] == "a")).astype(int).to_numpy()


@pytest.fixture(scope="module")
def registry(servebench_home: Path) -> str:
    """A real registry (the session's SQLite store) with `tiny`: scaler + one-hot + logistic regression, logged
    with skops and a signature; version 1 has alias `champion`, version 2 (the same model) none."""
    import mlflow
    import skops.io as skops_io
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from servebench.base import paths

    paths.mlflow_dir().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(paths.tracking_uri())
    mlflow.set_registry_uri(paths.tracking_uri())  # another test's Tracker may have pointed MLflow elsewhere
    # MLflow's Default experiment keeps artifacts in ./mlruns of the working folder (the clone): not there.
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("tiny", (servebench_home / "tiny-artifacts").as_uri()))
    frame, y = _frame()
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer([("n", StandardScaler(), ["tenure", "calls"]), ("c", OneHotEncoder(), ["plan"])]),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="tiny",
            signature=infer_signature(frame, model.predict(frame)),
            serialization_format="skops",
            skops_trusted_types=skops_io.get_untrusted_types(data=skops_io.dumps(model)),
            registered_model_name="tiny",
            pip_requirements=["scikit-learn", "skops"],
        )
    client = mlflow.MlflowClient()
    client.create_model_version("tiny", info.model_uri, run_id=info.run_id)  # version 2, without an alias
    client.set_registered_model_alias("tiny", "champion", "1")
    return paths.tracking_uri()


def test_a_registered_pipeline_exports_with_its_schema_and_its_own_outputs(registry: str, tmp_path: Path) -> None:
    model = export.export_model("models:/tiny@champion", tmp_path, tracking_uri=registry)
    meta = model.meta
    assert meta["name"] == "tiny.champion" and meta["task"] == "binary" and meta["classes"] == [0, 1]
    assert meta["source"] | {"run_id": "x", "model_source": "x"} == {
        "kind": "registry",
        "registered_name": "tiny",
        "version": "1",
        "alias": "champion",
        "run_id": "x",
        "uri": "models:/tiny/1",
        "model_source": "x",
    }
    assert meta["inputs"] == {
        "named": True,
        "columns": [
            {"name": "tenure", "type": "number"},
            {"name": "calls", "type": "number"},
            {"name": "plan", "type": "string"},
        ],
    }
    assert [f["name"] for f in meta["onnx_inputs"]] == ["tenure", "calls", "plan"]  # one graph input per column
    assert meta["generator"]["columns"][2] == {"choice": ["a", "b", "c"]}  # the encoder's categories
    assert meta["unavailable"]["weights"] == (
        "Pipeline(ColumnTransformer(StandardScaler, OneHotEncoder) → LogisticRegression) has no dense-weights form "
        "(servebench-dense-v1 holds a LogisticRegression or an MLPClassifier alone)"
    )
    assert "joblib" not in meta["files"]  # a user's model is not copied as a pickle
    # the references are the registered model's own answers, loaded as MLflow loads it
    import mlflow

    loaded = mlflow.sklearn.load_model("models:/tiny/1")
    inputs = pd.DataFrame(meta["samples"]["inputs"]).astype({"tenure": np.float32, "calls": np.float32})
    np.testing.assert_allclose(
        loaded.predict_proba(inputs.astype({"tenure": float, "calls": float})), meta["samples"]["probabilities"]
    )
    # the ONNX export answers like it (within the model's tolerance), with named string inputs
    answer = export.run_onnx(
        model.path("onnx").read_bytes(), schema.Schema.from_dict(meta["inputs"]), meta["samples"]["inputs"]
    )
    assert np.max(np.abs(np.asarray(answer["probabilities"]) - meta["samples"]["probabilities"])) < 1e-5
    assert not list(tmp_path.glob(".*"))  # no download or temporary folder left beside the export


def test_a_version_and_an_alias_resolve_and_bad_ones_are_named(registry: str) -> None:
    assert source.resolve_registered("models:/tiny/2", registry).version == "2"
    assert source.resolve_registered("models:/tiny@champion", registry).version == "1"
    for entry, why in (
        ("models:/nope/1", "no registered model 'nope' in the registry at"),
        ("models:/tiny/9", "registered model 'tiny' has no version 9"),
        (
            "models:/tiny@staging",
            "registered model 'tiny' has no alias 'staging' pointing at a version (its aliases: ['champion'])",
        ),
    ):
        with pytest.raises(
            source.SourceError,
            match=f"^{entry}: {why.replace('(', '.').replace(')', '.').replace('[', '.').replace(']', '.')}",
        ):
            source.resolve_registered(entry, registry)


def test_bad_models_and_payloads_are_refused_before_anything_starts(registry: str, tmp_path: Path) -> None:
    frame, _ = _frame(50)
    good, missing, wrong_type = tmp_path / "rows.csv", tmp_path / "missing.csv", tmp_path / "typed.csv"
    frame.assign(label=1).to_csv(good, index=False)  # an extra column (a label) is left out
    frame.drop(columns=["plan"]).to_csv(missing, index=False)
    frame.assign(calls="many").to_csv(wrong_type, index=False)
    base = {"frameworks": ["fastapi"], "workers": [1], "users": [1]}
    assert pipeline.validate({**base, "models": ["models:/tiny@champion"], "payload": [str(good)]})[1]
    for raw, message in (
        ({"models": ["models:/tiny@staging"]}, "models: models:/tiny@staging: registered model 'tiny' has no alias"),
        ({"models": ["models:/tiny@champion"], "payload": [str(missing)]}, "lacks the model's column(s) ['plan']"),
        ({"models": ["models:/tiny@champion"], "payload": [str(wrong_type)]}, "column 'calls' should hold numbers"),
        ({"models": ["lr"], "payload": [str(good)]}, "has 4 columns, the model takes 30 unnamed numbers"),
        ({"models": ["models:/tiny@champion"], "payload": [str(tmp_path / "rows.xlsx")]}, "expected one of"),
        ({"models": [str(tmp_path / "model.pkl")]}, "no such file"),
    ):
        with pytest.raises(ParamsError, match=r"invalid benchmark parameters: (models|payload): ") as err:
            pipeline.validate({**base, **raw})
        assert message in str(err.value), err.value


def test_a_payload_is_replayed_as_named_rows_and_sampled_down(tmp_path: Path) -> None:
    named = schema.Schema((schema.Column("tenure", "number"), schema.Column("plan", "string")), named=True)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"plan": "abc"[i % 3], "tenure": i, "id": i}) + "\n" for i in range(5000)))
    rows = schema.read_payload(path, named, seed=1)
    assert len(rows) == schema.PAYLOAD_ROWS_KEPT and rows[0].keys() == {"tenure", "plan"}
    assert isinstance(rows[0]["tenure"], float) and rows[0]["plan"] in "abc"
    parquet = tmp_path / "rows.parquet"
    pd.DataFrame({"tenure": [1.0, 2.0], "plan": ["a", None]}).to_parquet(parquet)
    with pytest.raises(schema.SchemaError, match="column 'plan' has empty values"):
        schema.read_payload(parquet, named, seed=1)


def _meta(**changes: Any) -> dict[str, Any]:
    meta = {
        "name": "m",
        "task": "binary",
        "files": {"onnx": {}, "weights": {}},
        "unavailable": {},
        "inputs": {"named": False, "columns": [{"name": "f0", "type": "number"}]},
    }
    return meta | changes


def test_each_server_says_why_it_cannot_serve_a_model() -> None:
    cpp, fastapi, batching = manifest.get("cpp"), manifest.get("fastapi"), manifest.get("bentoml-batching")
    assert capability.unsupported(cpp, _meta()) is None and capability.unsupported(fastapi, _meta()) is None
    trees = _meta(files={"onnx": {}}, unavailable={"weights": "HistGradientBoostingClassifier cannot be exported"})
    assert capability.unsupported(cpp, trees) == (
        "cpp serves the weights format, which model m has not: HistGradientBoostingClassifier cannot be exported"
    )
    assert capability.unsupported(batching, _meta(task="regressor")) == (
        "bentoml-batching serves binary/multiclass models; m is a regressor"
    )
    strings = _meta(inputs={"named": True, "columns": [{"name": "plan", "type": "string"}]})
    assert capability.unsupported(cpp, strings) == "cpp parses number columns; m has string columns"
    assert capability.unsupported(fastapi, strings) is None
    assert (
        capability.unsupported(fastapi, _meta(), batch=2048) == "fastapi takes at most 1024 rows per request, not 2048"
    )


def test_a_regression_on_a_new_model_version_reads_model_changed() -> None:
    assert pipeline.version_change("churn/3", "churn/4") == "v3 → v4"
    assert pipeline.version_change("churn/3", "other/1") == "churn/3 → other/1"
    row = {"model": "churn.champion", "framework": "fastapi", "workers": 1, "users": 8, "batch": 16, "status": "ok"}
    regression = "rps 900 vs baseline 1000 (-10.0%): regression"
    assert summary.change_text(row, regression) == regression
    changed = row | {"model_changed": "v3 → v4", "verdicts": {"rps": regression}}
    assert summary.changes([changed]) == [
        "churn.champion/fastapi/w1/u8/b16: rps 900 vs baseline 1000 (-10.0%): model changed (v3 → v4)"
    ]
    skipped = row | {"status": "skipped", "notes": "cpp cannot"}
    result = summary.Summary([changed, skipped], [])
    assert result.regressions == [] and result.failed == [] and result.skipped == [skipped]
    assert result.model_changes == ["churn.champion: model changed (v3 → v4) since the baseline nights"]


def test_the_readme_capability_table_is_the_manifests(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from servebench import cli

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("SERVEBENCH_SERVERS_PATH", str(repo / "servers"))  # the shipped servers, no test fixtures
    assert cli.main(["servers", "--markdown"]) == 0
    marker = "<!-- capability-matrix: generated by `servebench servers --markdown` -->\n"
    section = (repo / "README.md").read_text().split(marker)[1].split("\n<!--")[0]
    assert section.splitlines() == capsys.readouterr().out.splitlines()


def test_an_onnx_file_is_its_own_reference(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    rows = np.random.default_rng(0).normal(size=(200, 4))
    model = LogisticRegression().fit(rows, np.where(rows[:, 0] > 0, "yes", "no"))
    path = tmp_path / "model.onnx"
    path.write_bytes(export.to_onnx(model, schema.Schema.positional(4)))
    meta = export.export_model(str(path), tmp_path / "exports").meta
    assert meta["source"] == {"kind": "file", "path": str(path)} and meta["task"] == "binary"
    assert meta["classes"] == ["no", "yes"]  # from the graph's classifier node, in probability-column order
    assert meta["unavailable"] == {"weights": "an ONNX model has no dense-weights export"}
    inputs = np.asarray(meta["samples"]["inputs"], dtype=np.float32)
    np.testing.assert_allclose(model.predict_proba(inputs), meta["samples"]["probabilities"], atol=1e-6)
