"""KServe's Python model server (`kserve.ModelServer`) serving the export through a `kserve.Model` over the
shared ONNX Runtime core, with KServe's own v1 and v2 (Open Inference Protocol) endpoints.

KServe has no scikit-learn or ONNX server package on PyPI (its sklearnserver lives in its repository only), so
this is the custom `kserve.Model` its documentation describes. Two defaults are changed, both of them because
every server here listens on loopback only: the REST server binds 0.0.0.0 in KServe 0.21 (uvicorn's host is
hard-coded; the host below replaces it) and the gRPC server `[::]` (turned off: servebench speaks REST).
KServe parses and validates the request itself (pydantic); the core then checks the tensors against the
model's inputs, and a request that does not fit is answered 400 with KServe's {"error": ...}.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

import kserve
import uvicorn
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from servebench_model import V2_OUTPUTS, BadRequest, Predictor, v2_tensor

_parser = argparse.ArgumentParser(add_help=False)
_parser.add_argument("--host", required=True)
# The manifest's {host}; KServe's own parser (parse_known_args) leaves this option alone.
HOST: str = _parser.parse_known_args()[0].host


class LoopbackConfig(uvicorn.Config):
    """uvicorn's Config with the host KServe hard-codes replaced by ours."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "host": HOST})


async def invalid_request(_: Request, exc: Exception) -> Response:
    """FastAPI's own 422 repeats the offending input, and one holding a lone surrogate escape ("\\ud800") cannot
    be encoded as UTF-8: KServe then answered 500. The same 422, in ASCII-safe JSON."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else str(exc)
    body = json.dumps({"error": f"invalid inference request: {str(errors)[:1000]}"})
    return Response(body, status_code=422, media_type="application/json")


# KServe's app, imported by name in every worker process (spawned workers import this module too).
kserve.model_server.app.add_exception_handler(RequestValidationError, invalid_request)


class OnnxModel(kserve.Model):
    """With --workers N > 1, KServe pickles the registered model into N spawned worker processes: each loads
    its own ONNX Runtime session there (a session cannot be pickled)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.predictor = Predictor.from_env()
        self.ready = True
        return True

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "predictor"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: Any, headers: dict[str, str] | None = None, response_headers: Any = None) -> Any:
        if isinstance(payload, InferRequest):  # v2: /v2/models/<name>/infer
            try:
                feed = self.predictor.feed_from_v2(
                    [{"name": t.name, "shape": t.shape, "datatype": t.datatype, "data": t.data} for t in payload.inputs]
                )
            except BadRequest as exc:
                raise InvalidInput(exc.message) from None
            outputs = [
                InferOutput(name, list(array.shape), v2_tensor(name, array)["datatype"], array.tolist())
                for name, array in zip(V2_OUTPUTS, self.predictor.run(feed), strict=False)
            ]
            # the protocol's answers carry an id; KServe sends none back when the client sent none
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, outputs)
        try:  # v1: /v1/models/<name>:predict with the contract's {"instances": [...]}
            feed = self.predictor.parse_instances(payload)
        except BadRequest as exc:
            raise InvalidInput(exc.message) from None
        return dict(zip(V2_OUTPUTS, (a.tolist() for a in self.predictor.run(feed)), strict=False))


def main() -> None:
    uvicorn.Config = LoopbackConfig  # type: ignore[misc]  # read by KServe's REST server when it builds its config
    model = OnnxModel("model")
    kserve.ModelServer(enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
