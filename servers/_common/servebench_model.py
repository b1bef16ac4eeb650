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
        X = np.asarray(rows, dtype=np.float32)
        if not np.isfinite(X).all():
            raise BadRequest(422, "instances must be finite numbers within float32 range")
        return X

    def predict(self, X: np.ndarray | dict[str, np.ndarray]) -> bytes:
        outputs = self.session.run(None, {self.input_name: X} if isinstance(X, np.ndarray) else X)
        if self.regressor:
            return orjson.dumps({"predictions": outputs[0].ravel()}, option=orjson.OPT_SERIALIZE_NUMPY)
        labels, proba = outputs[0], outputs[1]
        if labels.dtype == object:  # string class labels: orjson writes numeric arrays only
            labels = labels.tolist()
        return orjson.dumps({"predictions": labels, "probabilities": proba}, option=orjson.OPT_SERIALIZE_NUMPY)
