"""BentoML 1.4 adapter of the servebench contract, served by `bentoml serve service:ServebenchModel`.

`bentoml serve` is a circus arbiter (the process the harness starts) supervising `workers` uvicorn worker
processes that share the listening socket. Each worker loads the model from the BentoML model store (put
there by store_model.py), builds the ONNX Runtime session and warms it, once.

POST /predict is a real @bentoml.api, so requests go through BentoML's own machinery: its middlewares,
request context and response handling and, with the Bento argument `batching=true` (servers/bentoml-batching),
its adaptive batching dispatcher, whose batches run in BentoML's thread pool. Unbatched, the policy is
servers/fastapi's: a model whose warm-up median is under 200 us runs inline on the event loop (a thread hop
costs more than it computes), a heavier one in a thread, one at a time per worker (as BentoML's `threads=1`),
so the event loop never waits for it.

What BentoML cannot give the contract, exact 4xx statuses and error texts, comes from ContractMiddleware:
it validates the raw body with the shared core *before* the request reaches BentoML and hands the parsed
matrix on, so a malformed request is answered alone and never enters a batch. It also answers GET /health
and turns BentoML's plain-text 404/405 into {"error": ...}.

Tuned as a production server without a tracing backend: no access log, no Prometheus middleware, and
/predict and /health excluded from OpenTelemetry (BentoML records a span for every request even at
sample rate 0, ~0.2 ms of CPU each). Bento arguments turn metrics and tracing back on.

Settings are Bento arguments (`--arg key=value` / `--arg-file`), recorded in Bentos built from this file.
"""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from typing import Any

import anyio.to_thread
import bentoml
import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict
from servebench_model import MAX_BODY_BYTES, BadRequest, Predictor, log
from starlette.responses import Response
from store_model import META_FILE, MODEL_FILE, model_tag

JSON = "application/json"
PREDICT_ROUTE = "/predict"
STATE_KEY = "servebench.instances"  # where ContractMiddleware leaves the validated matrix in the ASGI scope
INLINE_BELOW_US = float(os.environ.get("SERVEBENCH_INLINE_BELOW_US", 200))  # as servers/fastapi


class Settings(BaseModel):
    """The Bento arguments. A built Bento keeps those it was built with (`bentoml serve <bento>` ignores
    --arg); scale one with BENTOML_CONFIG_OPTIONS="services.ServebenchModel.workers=4"."""

    model_config = ConfigDict(extra="forbid")  # a mistyped --arg fails at start instead of being ignored

    workers: int = 1
    batching: bool = False  # adaptive batching of /predict across requests
    max_batch_size: int = 64  # rows per batch (a bigger request is split across batches)
    max_latency_ms: int = 1000  # a deadline, not a window: a request that would wait longer is answered 503
    model_tag: str = ""  # default: derived from SERVEBENCH_MODEL_META, as store_model.py stores it
    metrics: bool = False  # BentoML's Prometheus middleware and /metrics (off, as in the other servers)
    tracing: bool = False  # OpenTelemetry spans for /predict and /health (no exporter is configured)


settings = bentoml.use_arguments(Settings)


def resolve_model_tag() -> str:
    if settings.model_tag:
        return settings.model_tag
    meta_path = os.environ.get("SERVEBENCH_MODEL_META")
    if not meta_path:
        raise RuntimeError("no model: pass the Bento argument model_tag=... or set SERVEBENCH_MODEL_META")
    with open(meta_path) as f:
        return model_tag(json.load(f))


class Instances(bentoml.IODescriptor):
    """The request, as validated and parsed by ContractMiddleware (the schema is for BentoML's docs).

    A root input, like a `def predict(self, x: np.ndarray, /)` API: the matrix itself is the argument."""

    __root_input__ = True
    instances: list[list[float]]

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> Any:
        try:
            return request.scope["state"][STATE_KEY]  # no second parse, no pydantic pass over checked data
        except KeyError:  # only reachable if the middleware were removed
            raise RuntimeError("request reached /predict without ContractMiddleware") from None


class Predictions(bentoml.IODescriptor):
    """The answer, serialized by orjson straight from numpy."""

    predictions: list[int]
    probabilities: list[list[float]]

    @classmethod
    async def to_http_response(cls, obj: Any, serde: Any) -> Response:
        if isinstance(obj, bytes):  # unbatched: the core already wrote the JSON
            return Response(obj, media_type=JSON)
        # batched: this request's rows of the batch's record array
        body = {"predictions": np.ascontiguousarray(obj["label"]), "probabilities": np.ascontiguousarray(obj["proba"])}
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)


@bentoml.service(
    workers=settings.workers,
    threads=1,  # BentoML's thread pool per worker (batches run there): the worker count is the parallelism
    logging={"access": {"enabled": False}},  # like the other servers (uvicorn --no-access-log)
    metrics={"enabled": settings.metrics},
    tracing={"sample_rate": 0.0, **({} if settings.tracing else {"excluded_urls": [PREDICT_ROUTE, "/health"]})},
)
class ServebenchModel:
    model = bentoml.models.BentoModel(resolve_model_tag())

    def __init__(self) -> None:
        stored = self.model  # resolved from the model store once per worker
        self.predictor = Predictor(stored.path_of(MODEL_FILE), stored.path_of(META_FILE))  # loads and warms
        if settings.batching:
            self.inference = "threadpool"  # batches run in BentoML's thread pool
            mode = f"adaptive batching (at most {settings.max_batch_size} rows, {settings.max_latency_ms} ms)"
        else:
            light = self.predictor.latency_us < INLINE_BELOW_US
            self.inference = os.environ.get("SERVEBENCH_INFERENCE") or ("inline" if light else "threadpool")
            self._one_at_a_time = anyio.CapacityLimiter(1)
            mode = "unbatched"
        log(f"bentoml worker ready: model {stored.tag}, {mode}, {self.inference} inference")

    if settings.batching:

        @bentoml.api(
            route=PREDICT_ROUTE,
            input_spec=Instances,
            output_spec=Predictions,
            batchable=True,
            max_batch_size=settings.max_batch_size,
            max_latency_ms=settings.max_latency_ms,
        )
        def predict(self, instances: np.ndarray) -> np.ndarray:
            """The rows of several requests, concatenated by BentoML's dispatcher -> one record per row,
            which the dispatcher splits back per request."""
            labels, proba = self.predictor.session.run(None, {self.predictor.input_name: instances})
            rows = np.empty(len(labels), dtype=[("label", labels.dtype), ("proba", proba.dtype, proba.shape[1:])])
            rows["label"], rows["proba"] = labels, proba
            return rows

    else:

        @bentoml.api(route=PREDICT_ROUTE, input_spec=Instances, output_spec=Predictions)
        async def predict(self, instances: np.ndarray) -> bytes:
            """One request's rows -> its JSON answer."""
            if self.inference == "inline":
                return self.predictor.predict(instances)
            return await anyio.to_thread.run_sync(self.predictor.predict, instances, limiter=self._one_at_a_time)


class ContractMiddleware:
    """The servebench HTTP contract around BentoML's app: /health, request validation, JSON errors."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._service: ServebenchModel | None = None

    @property
    def service(self) -> ServebenchModel:
        if self._service is None:  # the instance exists once the worker's startup completed (before it serves)
            self._service = bentoml.get_current_service()
        return self._service

    @property
    def predictor(self) -> Predictor:
        return self.service.predictor

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == PREDICT_ROUTE and method == "POST":
            try:
                matrix = self.predictor.parse(await self._read_body(scope, receive))
            except BadRequest as exc:
                return await _respond(send, exc.status, exc.body())
            scope.setdefault("state", {})[STATE_KEY] = matrix
            return await self.app(scope, _body_consumed(receive), send)
        if path == "/health":
            if method != "GET":
                return await _respond(send, 405, BadRequest(405, "Method Not Allowed").body())
            health = {
                "status": "ok",
                "model": self.predictor.name,
                "inference": self.service.inference,
                "batching": settings.batching,
            }
            return await _respond(send, 200, orjson.dumps(health))
        await self.app(scope, receive, _JsonErrors(send))

    async def _read_body(self, scope: dict, receive: Any) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                self.predictor.check_length(int(value))  # refuse an oversized body before reading it
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                self.predictor.check_length(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _body_consumed(receive: Any) -> Any:
    """A receive for the app behind: the body was read here, then whatever the client sends next."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return replay


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _JsonErrors:
    """Rewrites Starlette's plain-text 404/405 as {"error": ...}, like every other answer (keeps Allow)."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] in (404, 405):
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if content_type.startswith(b"text/plain"):
                self.start = message
                return
        if self.start is None or message["type"] != "http.response.body":
            return await self.send(message)
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = self.start["status"]
        text = b"".join(self.chunks).decode(errors="replace").strip() or HTTPStatus(status).phrase
        body = BadRequest(status, text).body()
        headers = [
            (k, v) for k, v in self.start.get("headers", []) if k.lower() not in (b"content-type", b"content-length")
        ]
        headers += [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


ServebenchModel.add_asgi_middleware(ContractMiddleware)
