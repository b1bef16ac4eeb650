"""MLServer's own scikit-learn runtime (mlserver_sklearn.SKLearnModel) with strict request decoding.

The stock runtime hands whatever the request holds to the estimator, so a malformed tensor (wrong width,
strings, NaN, zero rows, a shape its data does not fill) surfaces as the estimator's ValueError and an HTTP
500, and nothing bounds the rows of a request. This subclass changes only `decode_request`, the one step
where SKLearnModel turns the request into the estimator's input: the tensors are checked against the
export's columns (servebench's metadata.json, named in the model settings) and decoded to what the stock
runtime would have passed (a float matrix, or for named columns a DataFrame as MLServer's "pd" codec reads
it), or refused with a 4xx. Loading, `predict` / `predict_proba` and the answer's encoding stay MLServer's.

`check_request` is also what serve.py runs before MLServer's adaptive batcher queues a request, so a
malformed request is answered alone instead of failing the batch it would have joined.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pandas as pd
from mlserver.errors import MLServerError
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest, RequestInput
from mlserver_sklearn import SKLearnModel

MAX_BATCH_ROWS = int(os.environ.get("SERVEBENCH_MAX_BATCH_ROWS", 1024))  # as servers/_common/servebench_model.py
META_KEY = "servebench_meta"  # model settings parameters.extra: the export's metadata.json
_NUMBER = (int, float)  # bool is neither (type(True) is bool)


class BadTensor(MLServerError):
    """A request the model cannot take; answered with `status` (422 by default) and the reason."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message, status)


def _flat(data: Any, limit: int) -> list:
    """The tensor's values in row-major order (the protocol allows nested lists), refused past `limit`."""
    if not isinstance(data, list):
        raise BadTensor("tensor data must be a list")
    if not any(isinstance(v, list) for v in data):
        if len(data) > limit:
            raise BadTensor(f"tensor holds more than {limit} values", 413)
        return data
    out: list = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
            if len(out) > limit:
                raise BadTensor(f"tensor holds more than {limit} values", 413)
        else:
            stack.pop()
    return out


def _datatype(tensor: RequestInput) -> str:
    """The tensor's datatype name (MLServer's models keep enum values as plain strings)."""
    return getattr(tensor.datatype, "value", tensor.datatype)


class RequestChecker:
    """What the export's columns allow a request to hold, and its tensors decoded for the estimator."""

    def __init__(self, meta: dict, max_rows: int = MAX_BATCH_ROWS) -> None:
        self.columns: list[dict] = meta["inputs"]["columns"]
        self.named: bool = meta["inputs"]["named"]
        self.width = len(self.columns)
        self.max_rows = max_rows
        self.expected = [c["name"] for c in self.columns] if self.named else ["input"]

    @classmethod
    def for_settings(cls, settings: ModelSettings, max_rows: int = MAX_BATCH_ROWS) -> RequestChecker:
        extra = (settings.parameters.extra if settings.parameters else None) or {}
        with open(extra[META_KEY]) as f:
            return cls(json.load(f), max_rows)

    def check(self, request: InferenceRequest) -> np.ndarray | pd.DataFrame:
        """The request's rows as the estimator takes them, or BadTensor saying what is wrong."""
        inputs = {t.name: t for t in request.inputs}
        if len(inputs) != len(request.inputs) or sorted(inputs) != sorted(self.expected):
            got = [t.name for t in request.inputs]
            raise BadTensor(f"inputs must be the tensors {self.expected}, not {got}")
        if not self.named:
            return self._matrix(inputs["input"])
        frame = {c["name"]: self._column(inputs[c["name"]], c["type"]) for c in self.columns}
        rows = {len(v) for v in frame.values()}
        if len(rows) != 1:
            raise BadTensor(f"column tensors disagree on the number of rows: {sorted(rows)}")
        self._check_rows(rows.pop())
        return pd.DataFrame(frame)  # in the export's column order, which a fitted pipeline checks

    def _check_rows(self, n: int) -> None:
        if n > self.max_rows:
            raise BadTensor(f"a request must carry 1 to {self.max_rows} rows, not {n}", 413)
        if n < 1:
            raise BadTensor(f"a request must carry 1 to {self.max_rows} rows, not {n}")

    def _values(self, tensor: RequestInput, width: int) -> tuple[int, list]:
        shape = tensor.shape
        if len(shape) != 2 or shape[1] != width or shape[0] < 0:
            raise BadTensor(f"input {tensor.name!r} must have shape [rows, {width}], not {shape}")
        self._check_rows(shape[0])
        values = _flat(tensor.data.root, self.max_rows * width)
        if len(values) != shape[0] * width:
            raise BadTensor(f"input {tensor.name!r}: {len(values)} values do not fill shape {shape}")
        return shape[0], values

    def _numbers(self, tensor: RequestInput, values: list) -> np.ndarray:
        datatype = _datatype(tensor)
        if datatype in ("BYTES", "BOOL"):
            raise BadTensor(f"input {tensor.name!r} must be numbers, not {datatype}")
        if not all(type(v) in _NUMBER for v in values):
            raise BadTensor(f"input {tensor.name!r}: {datatype} data must be numbers")
        # float32 as MLServer's numpy codec decodes the harness's FP32 tensors, and the range every
        # servebench server accepts (servers/_common/servebench_model.py): beyond it is not finite
        with np.errstate(over="ignore"):
            array = np.asarray(values, dtype=np.float32)
        if not np.isfinite(array).all():
            raise BadTensor(f"input {tensor.name!r} must be finite numbers within float32 range")
        return array

    def _matrix(self, tensor: RequestInput) -> np.ndarray:
        rows, values = self._values(tensor, self.width)
        return self._numbers(tensor, values).reshape(rows, self.width)

    def _column(self, tensor: RequestInput, kind: str) -> np.ndarray:
        if len(tensor.shape) == 1:  # [B] is as good as [B, 1] for one column
            tensor = tensor.model_copy(update={"shape": [*tensor.shape, 1]})
        _, values = self._values(tensor, 1)
        if kind != "string":
            return self._numbers(tensor, values)
        if _datatype(tensor) != "BYTES" or not all(type(v) is str for v in values):
            raise BadTensor(f"input {tensor.name!r} must be BYTES (strings)")
        return np.asarray(values, dtype=object)


class ServebenchSKLearnModel(SKLearnModel):
    """SKLearnModel whose requests are checked against the export's columns before the estimator sees them."""

    async def load(self) -> bool:
        # Under adaptive batching this model is handed merged batches of requests that serve.py has each
        # checked already (at most MAX_BATCH_ROWS rows); a batch may hold up to max_batch_size of them.
        self._checker = RequestChecker.for_settings(
            self.settings, MAX_BATCH_ROWS * max(1, self.settings.max_batch_size)
        )
        return await super().load()

    def decode_request(self, request: InferenceRequest, default_codec: Any = None) -> Any:
        return self._checker.check(request)
