"""Export a fitted scikit-learn classifier as plain dense layers: the "servebench dense v1" format.

Native servers (cpp/) read this instead of joblib or ONNX: a JSON header and one binary file of float32s,
so a server needs no Python, no protobuf and no model runtime, only a matrix library.

Format (also described in cpp/README.md):

    model.weights.json
        {"format": "servebench-dense-v1", "dtype": "float32", "byte_order": "little",
         "n_features": 30, "classes": [0, 1, 2], "data_file": "model.weights.bin",
         "data_sha256": "<hex>", "max_abs_error": 1.2e-07,
         "layers": [{"in": 30, "out": 1536, "activation": "relu",
                     "weights_offset": 0, "bias_offset": 184320}, ...,
                    {"in": 1536, "out": 3, "activation": "softmax", ...}]}
    model.weights.bin
        raw little-endian IEEE-754 float32. Layer i's weight matrix is `out` x `in`, row-major (one
        output unit's weights contiguous) at byte `weights_offset`; its bias (`out` values) at `bias_offset`.
        Offsets are multiples of 64 (zero padding between arrays), so a reader may map them aligned.

    Inference: x (n_features values) -> for each layer, x = activation(W x + b). Activations: "identity",
    "relu", "tanh", "logistic" (1 / (1 + e^-x)), elementwise; "softmax" over the layer's outputs.
    The last layer's output gives the class probabilities, in the order of "classes": "softmax" with one
    output per class, or, for two classes, "logistic" with one output p, giving [1 - p, p].
    The predicted label is classes[argmax(probabilities)].

`max_abs_error` is the largest difference between this format's float32 forward pass
(`predict_proba` below) and the estimator's own predict_proba, checked at export time (must be <= 1e-5).
Supported estimators: LogisticRegression (binary or multinomial) and MLPClassifier (single-label).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "servebench-dense-v1"
HEADER_FILE = "model.weights.json"
DATA_FILE = "model.weights.bin"
ACTIVATIONS = ("identity", "relu", "tanh", "logistic", "softmax")
TOLERANCE = 1e-5  # the contract's probability tolerance (contract.PROBA_TOLERANCE)
_ALIGN = 64


def _layers(model: Any) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(W as out x in, b, activation) per layer of a supported fitted estimator; ValueError otherwise."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.utils.validation import check_is_fitted

    if isinstance(model, LogisticRegression):
        check_is_fitted(model)
        if getattr(model, "multi_class", "auto") == "ovr" and len(model.classes_) > 2:
            raise ValueError("LogisticRegression with multi_class='ovr' is not supported: only multinomial (softmax)")
        # Binary: one decision value, probability of classes_[1] is its sigmoid (sklearn's _predict_proba_lr).
        activation = "logistic" if len(model.classes_) == 2 else "softmax"
        return [(model.coef_, model.intercept_, activation)]
    if isinstance(model, MLPClassifier):
        check_is_fitted(model)
        if model.activation not in ACTIVATIONS[:4]:
            raise ValueError(
                f"MLPClassifier activation {model.activation!r} is not supported; supported: {ACTIVATIONS[:4]}"
            )
        if model.out_activation_ == "logistic" and model.n_outputs_ > 1:
            raise ValueError("a multi-label MLPClassifier is not supported: only single-label classification")
        if model.out_activation_ not in ("softmax", "logistic"):
            raise ValueError(f"MLPClassifier output activation {model.out_activation_!r} is not supported")
        n = len(model.coefs_)
        return [
            (W.T, b, model.out_activation_ if i == n - 1 else model.activation)  # sklearn stores W as in x out
            for i, (W, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True))
        ]
    raise ValueError(
        f"{type(model).__name__} cannot be exported as {FORMAT}: supported estimators are "
        "sklearn.linear_model.LogisticRegression and sklearn.neural_network.MLPClassifier"
    )


def unsupported(model: Any) -> str | None:
    """Why a fitted estimator has no dense-weights form (a tree ensemble, a pipeline), or None."""
    try:
        _layers(model)
    except ValueError as exc:
        return str(exc)
    return None


def write(model: Any, out_dir: Path, X: Any = None) -> dict[str, Any]:
    """Write `model` as model.weights.json + model.weights.bin into `out_dir`; return the header.

    The written files are read back and run by `predict_proba` on `X` (when given, e.g. the sample inputs)
    and on seeded random rows; ValueError when they differ from model.predict_proba by more than 1e-5."""
    layers = _layers(model)
    classes = np.asarray(model.classes_)
    if classes.dtype.kind not in "iu":
        raise ValueError(f"{FORMAT} needs integer class labels; this model has {classes.dtype} labels")

    blob = bytearray()
    header_layers = []
    for W, b, activation in layers:
        offsets = {}
        for key, array in (("weights_offset", W), ("bias_offset", b)):
            blob += bytes(-len(blob) % _ALIGN)
            offsets[key] = len(blob)
            blob += np.ascontiguousarray(array, dtype="<f4").tobytes()
        header_layers.append({"in": int(W.shape[1]), "out": int(W.shape[0]), "activation": activation, **offsets})
    header: dict[str, Any] = {
        "format": FORMAT,
        "dtype": "float32",
        "byte_order": "little",
        "n_features": int(model.n_features_in_),
        "classes": [int(c) for c in classes],
        "data_file": DATA_FILE,
        "data_sha256": hashlib.sha256(blob).hexdigest(),
        "layers": header_layers,
    }
    data = np.frombuffer(bytes(blob), dtype="<f4")
    header["max_abs_error"] = _verify(model, header, data, X)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DATA_FILE).write_bytes(blob)
    (out_dir / HEADER_FILE).write_text(json.dumps(header, indent=1))
    return header


def read(header_path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """The header and the float32 data of an export (what `predict_proba` takes)."""
    header = json.loads(header_path.read_text())
    if header.get("format") != FORMAT:
        raise ValueError(f"{header_path}: not a {FORMAT} header (format {header.get('format')!r})")
    return header, np.fromfile(header_path.parent / header["data_file"], dtype="<f4")


def predict_proba(header: dict[str, Any], data: np.ndarray, X: Any) -> np.ndarray:
    """Reference forward pass of the format, in float32 as native servers compute it."""
    h = np.asarray(X, dtype=np.float32).reshape(-1, header["n_features"])
    for layer in header["layers"]:
        n_in, n_out = layer["in"], layer["out"]
        w0, b0 = layer["weights_offset"] // 4, layer["bias_offset"] // 4
        W = data[w0 : w0 + n_out * n_in].reshape(n_out, n_in)
        h = h @ W.T + data[b0 : b0 + n_out]
        h = _activate(h, layer["activation"])
    if header["layers"][-1]["activation"] == "logistic":  # binary: one output, the probability of classes[1]
        h = np.hstack([1 - h, h])
    return h


def _activate(h: Any, activation: str) -> Any:
    if activation == "identity":
        return h
    if activation == "relu":
        return np.maximum(h, 0)
    if activation == "tanh":
        return np.tanh(h)
    if activation == "logistic":
        return 1 / (1 + np.exp(-h))
    if activation == "softmax":  # minus the row maximum: exp never overflows
        e = np.exp(h - h.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown activation {activation!r}; known: {ACTIVATIONS}")


def _verify(model: Any, header: dict[str, Any], data: np.ndarray, X: Any) -> float:
    rng = np.random.default_rng(0)
    rows = [rng.normal(0.0, 2.0, size=(64, header["n_features"]))]
    if X is not None:
        rows.append(np.asarray(X, dtype=float).reshape(-1, header["n_features"]))
    # Inputs go to float32 first on both sides: servers receive float32 inputs too.
    batch = np.vstack(rows).astype(np.float32).astype(float)
    with np.errstate(over="ignore"):  # logistic of a very negative value: exp overflows to inf, 1/inf = 0
        got = predict_proba(header, data, batch)
    error = float(np.max(np.abs(got - model.predict_proba(batch))))
    if not error <= TOLERANCE:
        raise ValueError(
            f"{FORMAT} export of {type(model).__name__} differs from predict_proba by {error:.2e} (> {TOLERANCE:g})"
        )
    return error
