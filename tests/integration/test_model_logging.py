"""The trained models, logged to a real MLflow store as models with signatures, load back and agree."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from servebench.models.schema import Schema
from servebench.results.spool import Benchmark
from servebench.results.tracker import Tracker


@pytest.mark.full  # the DAG test checks each trial's registered model version by default
def test_both_models_log_once_and_load_back(exports, tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = tracker.open_parent(Benchmark("first", "models", "first", {}, {}, {}, tracker.uri))
    ours = {name: exports[name] for name in ("lr", "mlp")}  # the session's exports may hold others by now
    tracker.log_models(parent, list(ours.values()))
    tags = MlflowClient(tracker.uri).get_run(parent).data.tags
    for name, export in ours.items():
        # the rows as the reference saw them (float32 columns, the wire's precision)
        inputs = Schema.from_dict(export.meta["inputs"]).frame(export.meta["samples"]["inputs"])
        sk_model = mlflow.sklearn.load_model(tags[f"model.{name}.sklearn_uri"])
        np.testing.assert_allclose(sk_model.predict_proba(inputs), export.meta["samples"]["probabilities"])
        onnx_model = mlflow.pyfunc.load_model(tags[f"model.{name}.onnx_uri"])
        assert onnx_model.metadata.get_input_schema().inputs[0].shape == (-1, 30)
        assert tags[f"model.{name}.key"] == export.key
        registered, version = tags[f"model.{name}.version"].split("/")
        found = MlflowClient(tracker.uri).get_model_version(registered, version)
        assert registered == f"servebench-{name}" and found.run_id == parent
        assert (
            found.tags["servebench.export_key"] == export.key
            and found.tags["onnx_uri"] == tags[f"model.{name}.onnx_uri"]
        )
        loaded = mlflow.sklearn.load_model(f"models:/{registered}/{version}")  # the registry serves the same model
        np.testing.assert_allclose(loaded.predict_proba(inputs), export.meta["samples"]["probabilities"])
    # a second benchmark serving the same exports links to the models instead of copying them again
    second = tracker.open_parent(Benchmark("second", "models", "second", {}, {}, {}, tracker.uri))
    tracker.log_models(second, list(ours.values()))
    again = MlflowClient(tracker.uri).get_run(second).data.tags
    assert all(again[f"model.{n}.sklearn_uri"] == tags[f"model.{n}.sklearn_uri"] for n in ours)
    assert all(again[f"model.{n}.version"] == tags[f"model.{n}.version"] for n in ours)  # one version per export
    assert [str(v.version) for v in MlflowClient(tracker.uri).search_model_versions("name = 'servebench-lr'")] == ["1"]
