"""Inference core shared by the Python servers: load the model once, validate requests, predict.

Each server folder only adapts this to its HTTP framework, so frameworks differ in serving, not in
what they compute or which inputs they accept. Runs in the server's own environment (not the harness's).

Tuned as a production server would be: the ONNX export runs in ONNX Runtime (one session per worker,
one intra-op thread: the worker count is the parallelism knob), and orjson parses requests and writes
numpy results directly, without a Python list in between.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterable, Callable

import numpy as np
import onnxruntime as ort
import orjson

MAX_BODY_BYTES = int(os.environ.get("SERVEBENCH_MAX_BODY_BYTES", 1 << 20))
MAX_BATCH_ROWS = int(os.environ.get("SERVEBENCH_MAX_BATCH_ROWS", 1024))
_NUMBER = (int, float)


def log(message: str) -> None:
    print(f"servebench: {message} (pid {os.getpid()})", file=sys.stderr, flush=True)


class BadRequest(Exception):
    """A request the contract rejects; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> bytes:
        return orjson.dumps({"error": self.message})


def check_length(content_length: int | None) -> None:
    """413 for a body over the limit (known from its Content-Length, or counted while it streams)."""
    if content_length is not None and content_length > MAX_BODY_BYTES:
        raise BadRequest(413, f"body of {content_length} bytes exceeds the limit of {MAX_BODY_BYTES}")


def read_limited(read: Callable[[int], bytes]) -> bytes:
    """A request body from a WSGI stream's `read`, refused as soon as it exceeds the limit: a streamed
    (chunked) body has no Content-Length to check first, and must not be buffered whole to be refused."""
    body = bytearray()
    while chunk := read(1 << 16):
        body += chunk
        check_length(len(body))
    return bytes(body)


async def read_limited_async(chunks: AsyncIterable[bytes]) -> bytes:
    """`read_limited` for an ASGI request's body stream."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        check_length(len(body))
    return bytes(body)


# The Open Inference Protocol (KServe v2), as servebench's harness encodes rows (plugins/servebench/servers/contract.py):
# positional numbers as one FP32 tensor "input" of shape [B, n]; named columns as one tensor per column, shape [B, 1]
# (or [B]), FP32 or BYTES. Answers carry "predictions" (labels, or a regressor's values) and "probabilities" [B, k].
V2_OUTPUTS = ("predictions", "probabilities")
V2_MODEL_NAME = os.environ.get("SERVEBENCH_V2_MODEL_NAME", "model")
_V2_NUMBER_TYPES = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_V2_TYPE_OF = {
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
}


def _flat(data: list, limit: int) -> list:
    """A tensor's data, flattened row-major (the protocol allows nested lists); BadRequest past `limit` values."""
    out: list = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                if len(stack) > 8:
                    raise BadRequest(422, "tensor data nests deeper than its shape")
                stack.append(iter(value))
                break
            out.append(value)
            if len(out) > limit:
                raise BadRequest(413, f"tensor holds more than {limit} values")
        else:
            stack.pop()
    return out


def _v2_tensor(i: int, tensor: object, limit: int) -> tuple[str, np.ndarray]:
    """One request tensor as a numpy array of its shape, or BadRequest naming what is wrong."""
    if not isinstance(tensor, dict):
        raise BadRequest(422, f"inputs[{i}] must be an object with name, shape, datatype and data")
    name, shape, datatype, data = (tensor.get(k) for k in ("name", "shape", "datatype", "data"))
    if not isinstance(name, str):
        raise BadRequest(422, f"inputs[{i}].name must be a string")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequest(422, f"input {name!r}: shape must be a list of non-negative integers")
    if datatype != "BYTES" and datatype not in _V2_NUMBER_TYPES:
        raise BadRequest(422, f"input {name!r}: datatype {datatype!r} is not a number type or BYTES")
    if not isinstance(data, list):
        raise BadRequest(422, f"input {name!r}: data must be a list")
    values = _flat(data, limit)
    size = int(np.prod(shape))
    if len(values) != size:
        raise BadRequest(422, f"input {name!r}: {len(values)} values do not fill shape {shape}")
    if datatype == "BYTES":
        if not all(type(v) is str for v in values):
            raise BadRequest(422, f"input {name!r}: BYTES data must be strings")
        return name, np.asarray(values, dtype=object).reshape(shape)
    if not all(type(v) in _NUMBER for v in values):
        raise BadRequest(422, f"input {name!r}: {datatype} data must be numbers")
    return name, np.asarray(values, dtype=np.float64).reshape(shape)


def v2_tensor(name: str, array: np.ndarray) -> dict:
    if array.dtype == object or array.dtype.kind in "US":
        return {"name": name, "shape": list(array.shape), "datatype": "BYTES", "data": [str(v) for v in array.ravel()]}
    datatype = _V2_TYPE_OF.get(array.dtype, "FP64" if array.dtype.kind == "f" else "INT64")
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.ravel()}


class Predictor:
    """The model, loaded once per worker process and warmed before the server answers health checks.

    Requests carry rows as lists in column order or, for a model with named columns, as {"column": value}
    objects (the export's `inputs`); `onnx_inputs` says which columns feed which graph input. A classifier
    answers labels and probabilities, a regressor its values."""

    def __init__(self, model_path: str, meta_path: str) -> None:
        started = time.perf_counter()
        with open(meta_path) as f:
            self.meta = json.load(f)
        self.name: str = self.meta["name"]
        self.columns: list[dict] = self.meta["inputs"]["columns"]
        self.named: bool = self.meta["inputs"]["named"]
        self.n_features: int = len(self.columns)
        self.strings = {j for j, c in enumerate(self.columns) if c["type"] == "string"}
        self.regressor: bool = self.meta["task"] == "regressor"
        self.feeds: list[dict] = self.meta["onnx_inputs"]
        # The common case, and the fast path: positional numbers into one float input.
        self.matrix_only = not self.named and len(self.feeds) == 1 and self.feeds[0]["type"] == "float"
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.latency_us = self._warm_up()  # adapters with a choice (FastAPI) decide how to run it from this
        log(
            f"model {self.name} loaded in {time.perf_counter() - started:.2f}s, median predict {self.latency_us:.0f} us"
        )

    @classmethod
    def from_env(cls) -> Predictor:
        return cls(os.environ["SERVEBENCH_MODEL_PATH"], os.environ["SERVEBENCH_MODEL_META"])

    def _warm_up(self, rounds: int = 30) -> float:
        sample = self.parse(orjson.dumps({"instances": self.meta["samples"]["inputs"][:1]}))
        timings = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            self.predict(sample)
            timings.append(time.perf_counter() - t0)
        return float(np.median(timings) * 1e6)

    check_length = staticmethod(check_length)

    def parse(self, body: bytes) -> np.ndarray | dict[str, np.ndarray]:
        """The request's rows as the graph's inputs (one float matrix, or a feed per input), or BadRequest
        saying what is wrong."""
        self.check_length(len(body))
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest(400, "body is not valid JSON") from None
        return self.parse_instances(payload)

    def parse_instances(self, payload: object) -> np.ndarray | dict[str, np.ndarray]:
        """`parse` for a request already decoded from JSON (frameworks that decode it themselves)."""
        if not isinstance(payload, dict) or "instances" not in payload:
            raise BadRequest(400, 'expected a JSON object {"instances": [...]}')
        rows = payload["instances"]
        if not isinstance(rows, list) or not rows:
            raise BadRequest(422, "'instances' must be a non-empty list of rows")
        if len(rows) > MAX_BATCH_ROWS:
            raise BadRequest(413, f"batch of {len(rows)} rows exceeds the limit of {MAX_BATCH_ROWS}")
        if self.named:
            rows = [self._named_row(i, row) for i, row in enumerate(rows)]
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != self.n_features:
                kind = "values" if self.strings else "numbers"
                raise BadRequest(422, f"instances[{i}] must be a list of {self.n_features} {kind}")
            if not self.strings:  # the common case, checked as fast as Python can
                if not all(type(v) in _NUMBER for v in row):
                    raise BadRequest(422, f"instances[{i}] must contain only numbers")
                continue
            for j, (value, column) in enumerate(zip(row, self.columns, strict=True)):
                if (type(value) is str) != (j in self.strings) or (
                    j not in self.strings and type(value) not in _NUMBER
                ):
                    kind = "a string" if j in self.strings else "a number"
                    raise BadRequest(422, f"instances[{i}]: column {column['name']!r} must be {kind}")
        if self.matrix_only:
            return self._floats(rows)
        feed = {}
        for f in self.feeds:
            if f["type"] == "string":
                feed[f["name"]] = np.asarray([[row[c] for c in f["columns"]] for row in rows], dtype=object)
            else:
                feed[f["name"]] = self._floats([[row[c] for c in f["columns"]] for row in rows])
        return feed

    def _named_row(self, i: int, row: object) -> list:
        if not isinstance(row, dict):
            raise BadRequest(422, f"instances[{i}] must be an object of the model's columns")
        try:
            return [row[c["name"]] for c in self.columns]
        except KeyError as exc:
            raise BadRequest(422, f"instances[{i}] lacks column {exc.args[0]!r}") from None

    @staticmethod
    def _floats(rows: list) -> np.ndarray:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused below
            X = np.asarray(rows, dtype=np.float32)
        if not np.isfinite(X).all():
            raise BadRequest(422, "values must be finite numbers within float32 range")
        return X

    def run(self, X: np.ndarray | dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's answer: [labels, probabilities] for a classifier, [values] for a regressor."""
        outputs = self.session.run(None, {self.input_name: X} if isinstance(X, np.ndarray) else X)
        return [outputs[0].ravel()] if self.regressor else [outputs[0].ravel(), outputs[1]]

    def predict(self, X: np.ndarray | dict[str, np.ndarray]) -> bytes:
        outputs = self.run(X)
        if self.regressor:
            return orjson.dumps({"predictions": outputs[0]}, option=orjson.OPT_SERIALIZE_NUMPY)
        labels, proba = outputs[0], outputs[1]
        if labels.dtype == object:  # string class labels: orjson writes numeric arrays only
            labels = labels.tolist()
        return orjson.dumps({"predictions": labels, "probabilities": proba}, option=orjson.OPT_SERIALIZE_NUMPY)

    def parse_v2(self, body: bytes) -> np.ndarray | dict[str, np.ndarray]:
        """A v2 inference request's tensors as the graph's feeds, or BadRequest saying what is wrong."""
        self.check_length(len(body))
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest(400, "body is not valid JSON") from None
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise BadRequest(400, 'expected a JSON object {"inputs": [tensor, ...]}')
        return self.feed_from_v2(payload["inputs"])

    def feed_from_v2(self, inputs: object) -> np.ndarray | dict[str, np.ndarray]:
        """A v2 request's "inputs" (tensors as {name, shape, datatype, data}) as the graph's feeds."""
        if not isinstance(inputs, list) or not inputs:
            raise BadRequest(422, "'inputs' must be a non-empty list of tensors")
        limit = MAX_BATCH_ROWS * self.n_features
        tensors: dict[str, np.ndarray] = {}
        for i, t in enumerate(inputs):
            name, tensor = _v2_tensor(i, t, limit)
            if name in tensors:
                raise BadRequest(422, f"input {name!r} is given twice")
            tensors[name] = tensor
        return self.feed_from_tensors(tensors)

    def feed_from_tensors(self, tensors: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
        """Input tensors (by name, batch first) as the graph's feeds, checked against the model's inputs:
        "input" [B, n] for positional columns, one [B, 1] or [B] tensor per column for named ones."""
        expected = {c["name"] for c in self.columns} if self.named else {"input"}
        if set(tensors) != expected:
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise BadRequest(
                422,
                f"inputs must be {sorted(expected)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else ""),
            )
        if self.named:
            columns = [self._v2_column(c, tensors[c["name"]], j) for j, c in enumerate(self.columns)]
            rows = {len(c) for c in columns}
            if len(rows) != 1:
                raise BadRequest(422, f"column tensors disagree on the number of rows: {sorted(rows)}")
        else:
            X = tensors["input"]
            if X.dtype == object:
                raise BadRequest(422, "input 'input' must be numbers, not BYTES")
            if X.ndim != 2 or X.shape[1] != self.n_features:
                raise BadRequest(
                    422, f"input 'input' must be numbers of shape [rows, {self.n_features}], not {list(X.shape)}"
                )
            columns = list(X.T)
        n_rows = len(columns[0])
        if not 1 <= n_rows <= MAX_BATCH_ROWS:
            raise BadRequest(413 if n_rows else 422, f"a request must carry 1 to {MAX_BATCH_ROWS} rows, not {n_rows}")
        if self.matrix_only:
            return self._floats(np.stack(columns, axis=1))
        feed = {}
        for f in self.feeds:
            part = np.stack([columns[c] for c in f["columns"]], axis=1)
            feed[f["name"]] = part.astype(object) if f["type"] == "string" else self._floats(part)
        return feed

    def _v2_column(self, column: dict, tensor: np.ndarray, j: int) -> np.ndarray:
        if tensor.ndim == 2 and tensor.shape[1] == 1:
            tensor = tensor[:, 0]
        if tensor.ndim != 1:
            raise BadRequest(422, f"input {column['name']!r} must have shape [rows, 1], not {list(tensor.shape)}")
        if (tensor.dtype == object) != (j in self.strings):
            kind = "BYTES (strings)" if j in self.strings else "numbers"
            raise BadRequest(422, f"input {column['name']!r} must be {kind}")
        return tensor

    def answer_v2(self, outputs: list[np.ndarray], request_id: str | None = None) -> bytes:
        """The v2 response body for `run`'s outputs."""
        body = {
            "model_name": V2_MODEL_NAME,
            "id": request_id or "",
            "outputs": [v2_tensor(name, array) for name, array in zip(V2_OUTPUTS, outputs, strict=False)],
        }
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    def output_spec(self) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        """Name, dtype and per-row shape of each output, for frameworks that declare them (Triton)."""
        sample = self.run(self.parse(orjson.dumps({"instances": self.meta["samples"]["inputs"][:1]})))
        return [
            (name, np.asarray(a).dtype, tuple(np.asarray(a).shape[1:]) or (1,))
            for name, a in zip(V2_OUTPUTS, sample, strict=False)
        ]
