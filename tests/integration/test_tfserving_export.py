"""TF Serving's SavedModel export runs here (TensorFlow CPU in the tfserving server's own venv), and must
answer the sample inputs as the reference model does; serving it needs the tensorflow/serving image
(tests/container)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servebench.models.export import export_model
from servebench.models.recipes import MODEL_NAMES
from servebench.servers import build, capability, manifest


@pytest.mark.full  # TensorFlow in its own venv, 20 s a model; the image it feeds is not here (tests/container)
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_the_saved_model_matches_the_reference(model: str) -> None:
    tfserving = manifest.get("tfserving")
    export = export_model(model)
    if why := capability.unsupported(tfserving, export.meta):  # gbdt: a tree ensemble has no dense weights
        pytest.skip(why)
    built = build.build(tfserving)
    build.prepare(built, export)
    prepared = Path(str(built.values(export)["prepared_dir"]))
    report = json.loads((prepared / "parity.json").read_text())
    assert report["passed"] and report["labels_equal"] and report["samples"] == len(export.meta["samples"]["inputs"])
    assert report["max_abs_diff"] <= export.meta["tolerance"]["proba"]
    assert (prepared / "savedmodel" / "1" / "saved_model.pb").is_file(), "TF Serving's version folder layout"
