"""The one request contract every server speaks, and the checks the harness applies to answers.

    POST /predict  {"instances": [[v1, ..., vn], ...]}  or, for named columns, {"instances": [{"col": v, ...}, ...]}
                -> {"predictions": [label, ...], "probabilities": [[p1, ..., pk], ...]}   (a classifier)
                -> {"predictions": [value, ...]}                                          (a regressor)
    GET  /health   -> 200 once the model is loaded

A server may speak another protocol (its manifest's `protocol`) when a `Wire` maps it onto this one:
- `tfserving-rest`: TF Serving's REST API takes the same `instances` at /v1/models/<name>:predict and answers
  {"predictions": [{"label": ..., "probabilities": [...]}, ...]} for a signature with those two outputs.
- `open-inference-v2`: the Open Inference Protocol (KServe v2; Triton, MLServer, KServe) at
  /v2/models/<name>/infer. Positional rows travel as one FP32 tensor "input" of shape [B, n]; named rows as one
  tensor per column, shape [B, 1], FP32 or BYTES (with parameters.content_type "pd", which MLServer reads as a
  table). The request names the outputs it wants (the manifest's `output_names`: labels or a regressor's values,
  then probabilities); the answer's tensors of those names are read back as the contract's two lists.

Kept free of heavy imports: the Locust process imports it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servebench.models.schema import RowSource, Schema

PROTOCOL = "servebench-v1"
PREDICT_PATH = "/predict"
V2 = "open-inference-v2"
V2_OUTPUTS = ("predictions", "probabilities")


@dataclass(frozen=True)
class Wire:
    """Where a protocol takes prediction requests, how rows are encoded for it, and how its answers read as
    the contract's."""

    protocol: str
    predict_path: str
    output_names: tuple[str, ...] = V2_OUTPUTS  # open-inference-v2: labels (or values), then probabilities

    def encode(self, instances: Sequence[Any], classifier: bool = True) -> bytes:
        """Rows (lists of values, or {column: value} objects) as a request body of this protocol."""
        if self.protocol != V2:
            return encode_request(instances)
        wanted = self.output_names if classifier else self.output_names[:1]
        body: dict[str, Any] = {"inputs": _v2_tensors(instances), "outputs": [{"name": n} for n in wanted]}
        if instances and isinstance(instances[0], dict):
            body["parameters"] = {"content_type": "pd"}
        return json.dumps(body).encode()

    def to_contract(self, payload: Any) -> Any:
        """The answer in the contract's shape; an answer that does not fit is returned as it came (or with the
        parts that could be read), for `check_answer` to say what is wrong with it."""
        if self.protocol == V2:
            return _v2_answer(payload, self.output_names)
        if self.protocol != "tfserving-rest" or not isinstance(payload, dict):
            return payload
        rows = payload.get("predictions")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return payload
        return {"predictions": [r.get("label") for r in rows], "probabilities": [r.get("probabilities") for r in rows]}


def wire(
    protocol: str = PROTOCOL,
    model_name: str = "model",
    output_names: Sequence[str] = V2_OUTPUTS,
    predict_path: str | None = None,
) -> Wire:
    """The wire of a protocol; `predict_path` overrides where its predictions are posted (e.g. TorchServe's
    /predictions/<model> for the contract's own bodies)."""
    paths = {
        PROTOCOL: PREDICT_PATH,
        "tfserving-rest": f"/v1/models/{model_name}:predict",
        V2: f"/v2/models/{model_name}/infer",
    }
    if protocol not in paths:
        raise ValueError(f"unknown protocol {protocol!r}")
    return Wire(protocol, predict_path or paths[protocol], tuple(output_names))


def _v2_tensors(instances: Sequence[Any]) -> list[dict[str, Any]]:
    n = len(instances)
    if instances and isinstance(instances[0], dict):
        return [
            {
                "name": column,
                "shape": [n, 1],
                "datatype": "BYTES" if isinstance(value, str) else "FP32",
                "data": [row[column] for row in instances],
            }
            for column, value in instances[0].items()
        ]
    width = len(instances[0]) if instances else 0
    return [{"name": "input", "shape": [n, width], "datatype": "FP32", "data": [v for row in instances for v in row]}]


def _v2_answer(payload: Any, output_names: Sequence[str]) -> Any:
    """A v2 answer's labels (or values) and probabilities tensors as the contract's lists; what is missing or
    malformed stays missing, for `check_answer` to name."""
    if not isinstance(payload, dict) or not isinstance(payload.get("outputs"), list):
        return payload
    tensors = {t.get("name"): t for t in payload["outputs"] if isinstance(t, dict)}
    answer: dict[str, Any] = {}
    labels = tensors.get(output_names[0])
    probabilities = tensors.get(output_names[1]) if len(output_names) > 1 else None
    if labels is not None and isinstance(labels.get("data"), list):
        answer["predictions"] = list(_flatten(labels["data"]))
    if probabilities is not None and isinstance(probabilities.get("data"), list):
        shape, data = probabilities.get("shape"), list(_flatten(probabilities["data"]))
        width = shape[-1] if isinstance(shape, list) and shape and isinstance(shape[-1], int) and shape[-1] > 0 else 0
        if width and len(data) % width == 0:
            answer["probabilities"] = [data[i : i + width] for i in range(0, len(data), width)]
    return answer


def _flatten(data: list[Any]) -> Iterator[Any]:
    for value in data:
        if isinstance(value, list):
            yield from _flatten(value)
        else:
            yield value


class RequestGenerator:
    """Request bodies of `batch` rows each, from the model's rows (schema.RowSource): replayed from its payload
    sample or generated, seeded; stream k gives every user (or h2load process) its own sequence."""

    def __init__(self, meta: dict[str, Any], stream: int = 0, batch: int = 1, on: Wire | None = None) -> None:
        self._rows = RowSource(Schema.from_dict(meta["inputs"]), meta["generator"], stream)
        self._batch = batch
        self._wire = on or wire()
        self._classifier = bool(meta.get("classes"))

    def instances(self) -> list[Any]:
        return self._rows.take(self._batch)

    def bodies(self, count: int) -> list[bytes]:
        """Pre-encoded request bodies, so the load generator spends its CPU on sending, not on JSON; their rows
        taken in one go."""
        rows = self._rows.take(count * self._batch)
        return [
            self._wire.encode(rows[i : i + self._batch], self._classifier) for i in range(0, len(rows), self._batch)
        ]


def encode_request(instances: Sequence[Any]) -> bytes:
    """Rows (lists of values, or {column: value} objects) as a request body."""
    return json.dumps({"instances": [r if isinstance(r, dict) else list(r) for r in instances]}).encode()


def check_answer(payload: Any, n_rows: int, classes: Sequence[Any]) -> str | None:
    """Why an answer breaks the contract, or None. Cheap enough to run on every load-test response.
    A classifier (classes given) answers labels and probabilities; a regressor (no classes) numbers alone."""
    if not isinstance(payload, dict):
        return "answer is not a JSON object"
    preds = payload.get("predictions")
    if not isinstance(preds, list) or len(preds) != n_rows:
        return f"'predictions' should be a list of {n_rows}"
    if not classes:
        bad = next((v for v in preds if not isinstance(v, (int, float)) or not math.isfinite(v)), None)
        return (
            None
            if bad is None and all(isinstance(v, (int, float)) for v in preds)
            else f"prediction {bad!r} is not a finite number"
        )
    probas = payload.get("probabilities")
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


def describe_input(row: Any) -> str:
    items = [f"{k}={_short(v)}" for k, v in row.items()] if isinstance(row, dict) else [_short(v) for v in row]
    shown = ", ".join(items[:4])
    return f"[{shown}, ... ({len(items)} columns)]" if len(items) > 4 else f"[{shown}]"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def compare_with_reference(payload: Any, meta: dict[str, Any], rows: slice = slice(None)) -> str | None:
    """First difference between an answer and the model's reference outputs for its sample inputs, or None."""
    return check_answer(payload, len(meta["samples"]["predictions"][rows]), meta["classes"]) or first_difference(
        payload, meta, rows
    )


def max_difference(payload: dict[str, Any], meta: dict[str, Any], rows: slice = slice(None)) -> float:
    """The largest difference between an answer keeping the contract and the reference: of probabilities for
    a classifier, of values relative to the tolerance's scale for a regressor."""
    if meta["classes"]:
        got, want = payload["probabilities"], meta["samples"]["probabilities"][rows]
    else:
        got, want = payload["predictions"], meta["samples"]["predictions"][rows]
    return float(np.max(np.abs(np.asarray(got, dtype=float) - np.asarray(want, dtype=float))))


def first_difference(payload: dict[str, Any], meta: dict[str, Any], rows: slice = slice(None)) -> str | None:
    """Like `compare_with_reference`, for an answer already known to keep the contract (`check_answer`).

    Classifiers: labels identical and probabilities within the model's tolerance; regressors: values within
    its relative tolerance. A difference names the sample input (its index among all samples, and its values)."""
    inputs = meta["samples"]["inputs"][rows]
    want_labels = meta["samples"]["predictions"][rows]
    tolerance = meta["tolerance"]
    for i, (label, want) in enumerate(zip(payload["predictions"], want_labels, strict=True)):
        where = f"sample input {i + (rows.start or 0)} {describe_input(inputs[i])}"
        if not meta["classes"]:
            bound = tolerance["rtol"] * max(abs(want), tolerance["scale"])
            if abs(label - want) > bound:
                return f"{where}: value {label}, reference {want} (differs by more than {bound:.3g})"
            continue
        if label != want_labels[i]:
            return f"{where}: label {label}, reference {want_labels[i]}"
        got, want_proba = payload["probabilities"][i], meta["samples"]["probabilities"][rows][i]
        diff = float(np.max(np.abs(np.asarray(got) - np.asarray(want_proba))))
        if diff > tolerance["proba"]:
            return f"{where}: probabilities differ by {diff:.2e} (> {tolerance['proba']:g}): {got} vs reference {want_proba}"
    return None
