import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier

from servebench.models import weights

pytestmark = pytest.mark.filterwarnings(f"ignore::{ConvergenceWarning.__module__}.{ConvergenceWarning.__name__}")


def data(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=200, n_features=6, n_informative=4, n_classes=n_classes, random_state=1)


def fitted(estimator, n_classes: int = 3):
    X, y = data(n_classes)
    return estimator.fit(X, y), X


def round_trip(model, X: np.ndarray, out: Path) -> dict:
    header = weights.write(model, out, X[:8])
    again, blob = weights.read(out / weights.HEADER_FILE)
    assert again == header
    np.testing.assert_allclose(weights.predict_proba(again, blob, X), model.predict_proba(X), atol=1e-5)
    return header


def test_multinomial_logistic_regression_is_one_softmax_layer(tmp_path: Path) -> None:
    model, X = fitted(LogisticRegression(max_iter=500))
    header = round_trip(model, X, tmp_path)
    assert header["format"] == "servebench-dense-v1" and header["dtype"] == "float32"
    assert header["n_features"] == 6 and header["classes"] == [0, 1, 2] and header["data_file"] == "model.weights.bin"
    (layer,) = header["layers"]
    assert (layer["in"], layer["out"], layer["activation"]) == (6, 3, "softmax")
    blob = (tmp_path / "model.weights.bin").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == header["data_sha256"]
    # out x in, row-major, little-endian float32: class 1's weights are the second row
    W = np.frombuffer(blob, dtype="<f4", count=18, offset=layer["weights_offset"]).reshape(3, 6)
    np.testing.assert_array_equal(W, model.coef_.astype(np.float32))
    b = np.frombuffer(blob, dtype="<f4", count=3, offset=layer["bias_offset"])
    np.testing.assert_array_equal(b, model.intercept_.astype(np.float32))
    assert layer["bias_offset"] % 64 == 0 and 0 <= header["max_abs_error"] <= 1e-5


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_mlp_layers_are_transposed_and_keep_their_activation(tmp_path: Path, activation: str) -> None:
    model, X = fitted(MLPClassifier(hidden_layer_sizes=(8, 5), activation=activation, max_iter=50, random_state=0))
    header = round_trip(model, X, tmp_path)
    shapes = [(layer["in"], layer["out"], layer["activation"]) for layer in header["layers"]]
    assert shapes == [(6, 8, activation), (8, 5, activation), (5, 3, "softmax")]
    offsets = [layer[key] for layer in header["layers"] for key in ("weights_offset", "bias_offset")]
    assert offsets == sorted(offsets) and all(o % 64 == 0 for o in offsets)


@pytest.mark.parametrize(
    "estimator", [LogisticRegression(max_iter=500), MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, random_state=0)]
)
def test_binary_models_have_one_logistic_output(tmp_path: Path, estimator) -> None:
    model, X = fitted(estimator, n_classes=2)
    header = round_trip(model, X, tmp_path)
    assert header["classes"] == [0, 1]
    assert (header["layers"][-1]["out"], header["layers"][-1]["activation"]) == (1, "logistic")
    proba = weights.predict_proba(*weights.read(tmp_path / weights.HEADER_FILE), X[:3])
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1)


def test_unsupported_estimators_are_named(tmp_path: Path) -> None:
    model, _ = fitted(DecisionTreeClassifier())
    with pytest.raises(
        ValueError, match=r"DecisionTreeClassifier cannot be exported.*LogisticRegression.*MLPClassifier"
    ):
        weights.write(model, tmp_path)
    with pytest.raises(NotFittedError):
        weights.write(LogisticRegression(), tmp_path)
    X, y = data(3)
    with pytest.raises(ValueError, match="integer class labels"):
        weights.write(LogisticRegression(max_iter=500).fit(X, np.array(["a", "b", "c"])[y]), tmp_path)
    multilabel = MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0).fit(X, np.eye(3)[y].astype(int))
    with pytest.raises(ValueError, match="multi-label MLPClassifier is not supported"):
        weights.write(multilabel, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written on failure


def test_an_export_that_does_not_reproduce_the_model_is_refused(tmp_path: Path, monkeypatch) -> None:
    model, _ = fitted(LogisticRegression(max_iter=500))
    real = weights.predict_proba
    monkeypatch.setattr(weights, "predict_proba", lambda h, d, X: real(h, d, X) + 2e-5)
    with pytest.raises(ValueError, match=r"differs from predict_proba by 2\.0"):
        weights.write(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_read_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "model.weights.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a servebench-dense-v1 header"):
        weights.read(tmp_path / "model.weights.json")
