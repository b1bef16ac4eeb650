"""A user's own model file served by a real server: a scikit-learn pipeline with a string column, pickled by the
user (loaded only with trust_pickle), its schema from the pipeline itself; named rows, batches, hostile rows."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from servebench.base.httpclient import request
from servebench.models.export import ExportedModel, export_model
from servebench.servers import manifest, parity
from servebench.servers.readiness import wait_ready
from servebench.servers.runner.local import LocalProcessRunner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "tenure": rng.gamma(2.0, 10.0, 600),
            "calls": rng.poisson(2.0, 600).astype(float),
            "plan": rng.choice(["a", "b", "c"], 600),
        }
    )
    labels = np.where(frame["plan"] == "a", "churned", np.where(frame["calls"] > 2, "at-risk", "loyal"))
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer([("n", StandardScaler(), ["tenure", "calls"]), ("c", OneHotEncoder(), ["plan"])]),
            ),
            ("forest", RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)),
        ]
    ).fit(frame, labels)
    path = tmp_path_factory.mktemp("user") / "churn.joblib"
    joblib.dump(model, path)
    return export_model(str(path), trust_pickle=True)


def test_a_pickled_pipeline_with_string_labels_is_served_as_it_answers(
    pipeline_file: ExportedModel, tmp_path: Path, no_leftover_processes: None
) -> None:
    meta = pipeline_file.meta
    assert meta["task"] == "multiclass" and meta["classes"] == ["at-risk", "churned", "loyal"]
    assert [c["type"] for c in meta["inputs"]["columns"]] == ["number", "number", "string"]  # from its encoder
    server = LocalProcessRunner().start(manifest.get("fastapi"), pipeline_file, 1, tmp_path / "server.log")
    try:
        _, report = wait_ready(server, manifest.get("fastapi"), meta)
        assert report.passed and report.tolerance["proba"] == 1e-3  # a forest: float32 sums of its trees
        rows = meta["samples"]["inputs"]
        status, answer = request(server.base_url, "POST", "/predict", json.dumps({"instances": rows * 4}).encode())
        assert status == 200 and answer["predictions"] == meta["samples"]["predictions"] * 4  # a batch of 64 rows
        good = rows[0]
        for bad, why in (
            ({**good, "calls": "three"}, "column 'calls' must be a number"),
            ({**good, "plan": 1.0}, "column 'plan' must be a string"),
            ({k: v for k, v in good.items() if k != "plan"}, "lacks column 'plan'"),
            (list(good.values()), "must be an object of the model's columns"),
        ):
            status, answer = request(
                server.base_url, "POST", "/predict", json.dumps({"instances": [good, bad]}).encode()
            )
            assert status == 422 and why in answer["error"], (bad, answer)
        assert parity.check(server.base_url, meta).passed  # still up, still right
    finally:
        server.stop()
