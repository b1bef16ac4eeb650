"""Train and export the benchmark models: joblib, ONNX, dense weights (weights.py, for native servers) and a
metadata file every server and test relies on.

Exports are cached by a key over the recipe and the library versions, so a nightly run re-trains only
when something that changes the model changed. Data is generated (nothing is downloaded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from functools import cached_property
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

from servebench.base import paths
from servebench.models import weights
from servebench.models.recipes import MODEL_NAMES, RECIPES, Recipe

log = logging.getLogger(__name__)

EXPORT_FORMAT = 2  # bump when the files or metadata written below change
N_SAMPLES_CHECKED = 16  # fixed inputs with reference outputs: cold-start check, parity and tests


@dataclass(frozen=True)
class ExportedModel:
    """A trained model on disk: joblib, ONNX and metadata.json in one folder named by its key."""

    dir: Path

    @cached_property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads((self.dir / "metadata.json").read_text())
        return meta

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    @property
    def meta_path(self) -> Path:
        return self.dir / "metadata.json"

    def files_for(self, fmt: str) -> list[Path]:
        """Every file a server loading `fmt` needs (a server image holds these, not the whole export)."""
        main = self.path(fmt)
        files = [self.meta_path, main]
        if fmt == "weights":  # the header names its data file
            files.append(main.with_name(json.loads(main.read_text())["data_file"]))
        return files

    def path(self, fmt: str) -> Path:
        """The file of one format ("joblib" or "onnx")."""
        try:
            return self.dir / str(self.meta["files"][fmt]["path"])
        except KeyError:
            raise ValueError(
                f"model {self.name!r} has no {fmt!r} export; it has {sorted(self.meta['files'])}"
            ) from None


def recipe_key(recipe: Recipe) -> str:
    versions = {p: pkg_metadata.version(p) for p in ("scikit-learn", "numpy", "skl2onnx", "onnx")}
    payload = json.dumps({"recipe": asdict(recipe), "versions": versions, "format": EXPORT_FORMAT}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def export_model(name: str, root: Path | None = None) -> ExportedModel:
    """Return the export of model `name`, training it first when no export with its key exists."""
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; known: {list(MODEL_NAMES)}")
    recipe = RECIPES[name]
    root = root or paths.models_dir()
    key = recipe_key(recipe)
    target = root / f"{name}-{key}"
    if (target / "metadata.json").exists():
        log.info("model %s: using cached export %s", name, target)
        return ExportedModel(target)
    root.mkdir(parents=True, exist_ok=True)
    # Write into a temporary folder and rename: a crash never leaves a half-written export behind.
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
        _train_and_write(recipe, key, Path(tmp))
        try:
            Path(tmp).rename(target)
        except OSError:
            if not (target / "metadata.json").exists():  # not a concurrent export of the same key
                raise
        else:
            Path(tmp).mkdir()  # let TemporaryDirectory clean up after the rename
    return ExportedModel(target)


def _make_estimator(recipe: Recipe) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if recipe.estimator == "logistic_regression":
        return LogisticRegression(random_state=recipe.seed, **recipe.hyper)
    if recipe.estimator == "mlp":
        hyper = dict(recipe.hyper, hidden_layer_sizes=tuple(recipe.hyper["hidden_layer_sizes"]))
        return MLPClassifier(random_state=recipe.seed, **hyper)
    raise ValueError(f"unknown estimator {recipe.estimator!r}")


def _train_and_write(recipe: Recipe, key: str, out: Path) -> None:
    import joblib
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    X, y = make_classification(
        n_samples=recipe.n_samples,
        n_features=recipe.n_features,
        n_informative=recipe.n_features * 2 // 3,
        n_classes=recipe.n_classes,
        random_state=recipe.seed,
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=recipe.seed)
    model = _make_estimator(recipe)
    log.info("model %s: training %s on %d rows", recipe.name, type(model).__name__, len(X_train))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # few MLP epochs is the recipe, not an accident
        model.fit(X_train, y_train)
    train_seconds = time.perf_counter() - started

    joblib.dump(model, out / "model.joblib")
    onnx_bytes = _to_onnx(model, X_train)
    (out / "model.onnx").write_bytes(onnx_bytes)
    samples = X_test[:N_SAMPLES_CHECKED]
    weights_header = weights.write(model, out, samples)  # for native servers; checked against the model
    reference_proba = model.predict_proba(samples)
    onnx_labels, onnx_proba = _run_onnx(onnx_bytes, samples)
    onnx_error = float(np.max(np.abs(onnx_proba - reference_proba)))
    if not np.array_equal(onnx_labels, model.predict(samples)):
        raise RuntimeError(f"model {recipe.name}: ONNX export predicts other labels than the model")

    meta = {
        "name": recipe.name,
        "key": key,
        "description": recipe.description,
        "estimator": type(model).__name__,
        "n_features": recipe.n_features,
        "classes": [int(c) for c in model.classes_],
        "accuracy": float(model.score(X_test, y_test)),
        "train_seconds": round(train_seconds, 3),
        "onnx_max_abs_error": onnx_error,
        "versions": {p: pkg_metadata.version(p) for p in ("scikit-learn", "numpy", "scipy", "joblib", "skl2onnx")},
        "weights_max_abs_error": weights_header["max_abs_error"],
        "files": {
            fmt: {"path": fname, "sha256": hashlib.sha256((out / fname).read_bytes()).hexdigest()}
            for fmt, fname in (("joblib", "model.joblib"), ("onnx", "model.onnx"), ("weights", weights.HEADER_FILE))
        },
        # Load tests draw inputs from this seeded Gaussian, fitted to the training data.
        "generator": {
            "seed": recipe.seed,
            "mean": X_train.mean(axis=0).round(6).tolist(),
            "std": X_train.std(axis=0).round(6).tolist(),
            "batch_size": 1,
        },
        "samples": {
            "inputs": samples.tolist(),
            "predictions": [int(v) for v in model.predict(samples)],
            "probabilities": reference_proba.tolist(),
        },
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=1))
    log.info(
        "model %s: trained in %.1fs, accuracy %.3f, ONNX max |dp| %.2e, files %s",
        recipe.name,
        train_seconds,
        meta["accuracy"],
        onnx_error,
        sorted(meta["files"]),
    )


def _to_onnx(model: Any, X: Any) -> bytes:
    import numpy as np
    from skl2onnx import to_onnx

    # zipmap=False: probabilities as a plain float tensor, which every runtime reads alike.
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    return bytes(onx.SerializeToString())


def _run_onnx(onnx_bytes: bytes, X: Any) -> tuple[Any, Any]:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})
    return labels, proba
