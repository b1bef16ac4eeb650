"""The one request contract every server speaks, and the checks the harness applies to answers.

    POST /predict  {"instances": [[f1, ..., fn], ...]}
                -> {"predictions": [label, ...], "probabilities": [[p1, ..., pk], ...]}
    GET  /health   -> 200 once the model is loaded

A server may speak another protocol (its manifest's `protocol`) when a `Wire` maps it onto this one:
TF Serving's REST API takes the same `instances` at /v1/models/<name>:predict and answers
{"predictions": [{"label": ..., "probabilities": [...]}, ...]} for a signature with those two outputs.

Kept free of heavy imports: the Locust process imports it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PROTOCOL = "servebench-v1"
PREDICT_PATH = "/predict"
PROBA_TOLERANCE = 1e-5  # servers must match the reference model's probabilities this closely


@dataclass(frozen=True)
class Wire:
    """Where a protocol takes prediction requests, and how its answers read as the contract's."""

    protocol: str
    predict_path: str

    def to_contract(self, payload: Any) -> Any:
        """The answer in the contract's shape; an answer that does not fit is returned as it came, for
        `check_answer` to say what is wrong with it."""
        if self.protocol != "tfserving-rest" or not isinstance(payload, dict):
            return payload
        rows = payload.get("predictions")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return payload
        return {"predictions": [r.get("label") for r in rows], "probabilities": [r.get("probabilities") for r in rows]}


def wire(protocol: str = PROTOCOL, model_name: str = "model") -> Wire:
    if protocol == PROTOCOL:
        return Wire(protocol, PREDICT_PATH)
    if protocol == "tfserving-rest":
        return Wire(protocol, f"/v1/models/{model_name}:predict")
    raise ValueError(f"unknown protocol {protocol!r}")


class RequestGenerator:
    """Seeded Gaussian inputs fitted to the training data; stream k gives every user its own sequence."""

    def __init__(self, spec: dict[str, Any], stream: int = 0) -> None:
        self._mean = np.asarray(spec["mean"], dtype=float)
        self._std = np.asarray(spec["std"], dtype=float)
        self._batch = int(spec.get("batch_size", 1))
        self._rng = np.random.default_rng([int(spec["seed"]), stream])

    def instances(self) -> np.ndarray:
        return self._rng.normal(self._mean, self._std, size=(self._batch, self._mean.size))

    def bodies(self, count: int) -> list[bytes]:
        """Pre-encoded request bodies, so the load generator spends its CPU on sending, not on JSON."""
        return [encode_request(self.instances()) for _ in range(count)]


def encode_request(instances: np.ndarray | Sequence[Sequence[float]]) -> bytes:
    return json.dumps({"instances": np.asarray(instances, dtype=float).tolist()}).encode()


def check_answer(payload: Any, n_rows: int, classes: Sequence[int]) -> str | None:
    """Why an answer breaks the contract, or None. Cheap enough to run on every load-test response."""
    if not isinstance(payload, dict):
        return "answer is not a JSON object"
    preds, probas = payload.get("predictions"), payload.get("probabilities")
    if not isinstance(preds, list) or len(preds) != n_rows:
        return f"'predictions' should be a list of {n_rows}"
    if not isinstance(probas, list) or len(probas) != n_rows:
        return f"'probabilities' should be a list of {n_rows}"
    for label, row in zip(preds, probas, strict=True):
        if label not in classes:
            return f"label {label!r} is not one of {list(classes)}"
        if not isinstance(row, list) or len(row) != len(classes):
            return f"a probability row should have {len(classes)} values"
        total = sum(row)
        if not math.isfinite(total) or abs(total - 1.0) > 1e-3:
            return f"probabilities sum to {total:.6g}, not 1"
        if row.index(max(row)) != list(classes).index(label):
            return f"label {label} is not the most probable class"
    return None


def describe_input(row: Sequence[float]) -> str:
    shown = ", ".join(f"{v:.4g}" for v in row[:4])
    return f"[{shown}, ... ({len(row)} features)]" if len(row) > 4 else f"[{shown}]"


def compare_with_reference(payload: Any, meta: dict[str, Any], rows: slice = slice(None)) -> str | None:
    """First difference between an answer and the model's reference outputs for its sample inputs, or None."""
    return check_answer(payload, len(meta["samples"]["predictions"][rows]), meta["classes"]) or first_difference(
        payload, meta, rows
    )


def first_difference(payload: dict[str, Any], meta: dict[str, Any], rows: slice = slice(None)) -> str | None:
    """Like `compare_with_reference`, for an answer already known to keep the contract (`check_answer`).

    A difference names the sample input (its index among all samples, and its first values)."""
    inputs = meta["samples"]["inputs"][rows]
    want_labels = meta["samples"]["predictions"][rows]
    want_proba = meta["samples"]["probabilities"][rows]
    for i, (label, got, want) in enumerate(
        zip(payload["predictions"], payload["probabilities"], want_proba, strict=True)
    ):
        where = f"sample input {i + (rows.start or 0)} {describe_input(inputs[i])}"
        if label != want_labels[i]:
            return f"{where}: label {label}, reference {want_labels[i]}"
        diff = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
        if diff > PROBA_TOLERANCE:
            return f"{where}: probabilities differ by {diff:.2e} (> {PROBA_TOLERANCE:g}): {got} vs reference {want}"
    return None
