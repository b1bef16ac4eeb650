import hashlib
from pathlib import Path

import joblib
import numpy as np
import pytest

from servebench.models.export import N_SAMPLES_CHECKED, export_model


def test_lr_export_has_what_servers_and_tests_rely_on(tmp_path: Path) -> None:
    export = export_model("lr", tmp_path)
    meta = export.meta
    assert export.dir.name == f"lr-{meta['key']}" and meta["n_features"] == 30 and meta["classes"] == [0, 1, 2]
    for fmt in ("joblib", "onnx"):
        assert hashlib.sha256(export.path(fmt).read_bytes()).hexdigest() == meta["files"][fmt]["sha256"]
    assert meta["accuracy"] > 0.5 and meta["task"] == "multiclass" and meta["unavailable"] == {}
    samples = meta["samples"]
    assert len(samples["inputs"]) == N_SAMPLES_CHECKED == len(samples["predictions"])
    model = joblib.load(export.path("joblib"))
    inputs = np.asarray(samples["inputs"], dtype=np.float32).astype(np.float64)  # as servers receive them
    np.testing.assert_allclose(model.predict_proba(inputs), samples["probabilities"])
    assert len(meta["generator"]["columns"]) == 30 and meta["inputs"] == {
        "named": False,
        "columns": [{"name": f"f{i}", "type": "number"} for i in range(30)],
    }


def test_export_is_cached_by_key(tmp_path: Path) -> None:
    first = export_model("lr", tmp_path)
    stamp = first.path("joblib").stat().st_mtime_ns
    again = export_model("lr", tmp_path)
    assert again.dir == first.dir and again.path("joblib").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.dir.name]  # no temporary folders left


def test_unknown_model_and_format_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="resnet: not a model: expected a recipe \\(lr, mlp, gbdt\\)"):
        export_model("resnet", tmp_path)
    with pytest.raises(ValueError, match="has no 'savedmodel' export"):
        export_model("lr", tmp_path).path("savedmodel")
