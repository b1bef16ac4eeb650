"""LitServe adapter of the servebench contract: a `ls.LitAPI` over the shared inference core.

Run as `python server.py --host H --port P --workers N [--max-batch-size B --batch-timeout S]`.

LitServe splits HTTP from inference. This process (`LitServer.run`) starts a multiprocessing manager that
holds the request and response queues, N inference workers (spawned processes: each runs `setup`, i.e.
loads and warms the model, then takes requests from the shared queue) and the API servers (uvicorn
processes forked from this one, sharing the listening socket; LitServe's default, one per worker). An API
server reads the request's body and puts it on the queue; a worker decodes, predicts and encodes it, and
the answer travels back the same way.

How the contract is met inside LitServe's machinery:
- The body reaches `decode_request` as raw bytes: LitServe would otherwise parse it with `request.json()`
  in the API server, answering 500 to a body that is not JSON (and accepting NaN tokens). Annotating the
  `request` parameter with a FastAPI dependency (`RawBody`) makes LitServe hand the bytes on, read under
  the body limit: a size over it is refused there with 413 before anything is queued.
- A malformed request raises fastapi.HTTPException in `decode_request`, which LitServe carries back to the
  API server and answers with its status; the app's exception handler writes it as {"error": ...}.
- With batching (servers/litserve-batching), LitServe decodes each request of a batch, then calls `batch`,
  `predict` and `unbatch` once for all, and an exception anywhere fails every request of the batch. So a
  malformed request is not raised but kept as its BadRequest: refused before `batch` joins the others' rows,
  answered alone with its status by `encode_response`, while the rest are predicted together.
- GET /health is LitServe's readiness check (200 once every worker's setup has run), answered as the
  contract's JSON naming the model rather than LitServe's plain "ok".

Stopping: the harness signals the process group, so manager, workers and API servers get SIGTERM with this
process. Signalled alone (by hand), this process turns SIGTERM into LitServe's own shutdown, which stops
the API servers and workers; without that they would outlive it, still answering.
"""

import argparse
import contextlib
import os
import signal
import sys
import time
import uuid
from typing import Annotated

# ONNX Runtime's telemetry SDK writes a session file (.ses) into the temporary folder when it is imported
# (below, by the core): the manifest points TMPDIR into the server's environment, made here first. Where
# that is read-only (the container image's venv), ONNX Runtime writes nothing and Python falls back to /tmp.
if os.environ.get("TMPDIR"):
    with contextlib.suppress(OSError):
        os.makedirs(os.environ["TMPDIR"], exist_ok=True)

import litserve as ls
import numpy as np
import onnxruntime
import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response
from servebench_model import BadRequest, Predictor, check_length, log, read_limited_async
from starlette.exceptions import HTTPException as StarletteHTTPException

JSON = "application/json"
# uvicorn's graceful shutdown waits this long for requests in flight (LitServe's default is 30 s, beyond
# the harness's stop grace); LitServe's own shutdown then waits up to 5 s for each inference worker.
GRACEFUL_SHUTDOWN_S = 3
MAIN_PID = os.getpid()


async def read_body(request: Request) -> bytes:
    """The request's body, in the API server: 413 for one over the limit, announced or streamed."""
    try:
        length = request.headers.get("content-length")
        check_length(int(length) if length and length.isdigit() else None)
        # a body without a length (chunked) is counted as it arrives; one with a length is bounded by it
        return await request.body() if length else await read_limited_async(request.stream())
    except BadRequest as exc:
        raise HTTPException(exc.status, exc.message) from None


RawBody = Annotated[bytes, Depends(read_body)]


class ServebenchAPI(ls.LitAPI):
    """One request at a time: rows -> ONNX Runtime -> the core's JSON answer."""

    def setup(self, device: str) -> None:
        onnxruntime.disable_telemetry_events()  # none were seen leaving the machine; off all the same
        self.predictor = Predictor.from_env()  # loads and warms the model, once per inference worker
        log(f"litserve inference worker ready on {device}")

    def decode_request(self, request: RawBody) -> object:
        try:
            return self.predictor.parse(request)
        except BadRequest as exc:
            raise HTTPException(exc.status, exc.message) from None

    def predict(self, x: object) -> bytes:
        return self.predictor.predict(x)

    def encode_response(self, output: bytes) -> Response:
        # A Response, not a dict: FastAPI would otherwise run the answer through its JSON encoder.
        return Response(output, media_type=JSON)


class BatchedServebenchAPI(ServebenchAPI):
    """Several requests per ONNX Runtime call: their rows concatenated, the answers split back per request."""

    def decode_request(self, request: RawBody) -> object:
        try:
            return self.predictor.parse(request)
        except BadRequest as exc:
            return exc  # refused alone, below: raised here it would fail the whole batch

    def batch(self, inputs: list) -> list:
        return inputs  # requests of different row counts: joined in predict (LitServe's default stacks them)

    def predict(self, requests: list) -> list:
        valid = [x for x in requests if not isinstance(x, BadRequest)]
        if not valid:
            return requests
        outputs = self.predictor.run(_concatenate(valid))
        ends = np.cumsum([_rows(x) for x in valid])
        answers = iter(
            _answer([out[end - _rows(x) : end] for out in outputs]) for x, end in zip(valid, ends, strict=True)
        )
        return [x if isinstance(x, BadRequest) else next(answers) for x in requests]

    def encode_response(self, output: bytes | BadRequest) -> Response:
        if isinstance(output, BadRequest):
            return Response(output.body(), status_code=output.status, media_type=JSON)
        return Response(output, media_type=JSON)


def _concatenate(feeds: list) -> object:
    """Requests' feeds as one: a float matrix, or one array per graph input."""
    if not isinstance(feeds[0], dict):
        return feeds[0] if len(feeds) == 1 else np.concatenate(feeds)
    return {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}


def _rows(feed: object) -> int:
    return len(feed) if not isinstance(feed, dict) else len(next(iter(feed.values())))


def _answer(outputs: list) -> bytes:
    """One request's answer from its slice of `Predictor.run`'s outputs, as `Predictor.predict` writes it."""
    if len(outputs) == 1:  # a regressor
        return orjson.dumps({"predictions": outputs[0]}, option=orjson.OPT_SERIALIZE_NUMPY)
    labels, proba = outputs
    if labels.dtype == object:  # string class labels: orjson writes numeric arrays only
        labels = labels.tolist()
    return orjson.dumps({"predictions": labels, "probabilities": proba}, option=orjson.OPT_SERIALIZE_NUMPY)


def _health_in_contract_form(server: ls.LitServer, body: dict) -> None:
    """The contract's GET /health: LitServe's own check (200 once every inference worker's setup has run,
    503 before), answered as JSON naming the model instead of LitServe's plain "ok"."""
    routes = server.app.router.routes
    route = next(r for r in routes if getattr(r, "path", None) == server.healthcheck_path)
    litserve_health = route.endpoint
    routes.remove(route)
    ready = orjson.dumps(body)
    starting = BadRequest(503, "inference workers still starting").body()

    @server.app.get(server.healthcheck_path)
    async def health(request: Request) -> Response:
        if (await litserve_health(request)).status_code != 200:
            return Response(starting, status_code=503, media_type=JSON)
        return Response(ready, media_type=JSON)


async def _error_as_json(request: Request, exc: StarletteHTTPException) -> Response:
    """Errors as {"error": ...}, like every other answer (FastAPI's default says "detail")."""
    return Response(BadRequest(exc.status_code, str(exc.detail)).body(), status_code=exc.status_code, media_type=JSON)


def _manager_socket_off_the_filesystem() -> None:
    """LitServe's queues live in a multiprocessing manager listening on a Unix socket, by default a file in
    a pymp-* folder of the temporary folder, left behind when the process group is killed and limited to
    107 bytes of path. Linux's abstract socket namespace gives it an address that is no file at all; the
    manager still authenticates every connection with its random authkey."""
    import multiprocessing.connection

    arbitrary_address = multiprocessing.connection.arbitrary_address

    def abstract_address(family: str) -> object:
        if family == "AF_UNIX":
            return f"\0servebench-litserve-{os.getpid()}-{uuid.uuid4().hex}"
        return arbitrary_address(family)

    multiprocessing.connection.arbitrary_address = abstract_address


def _on_signal(signum: int, frame: object) -> None:
    if os.getpid() != MAIN_PID:  # a process LitServe forked (its manager) inherited this handler: die as usual
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one shutdown: a second signal must not interrupt it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log(f"{signal.Signals(signum).name}: stopping litserve")
    raise KeyboardInterrupt  # LitServer.run's own shutdown path: API servers, then workers, then manager


def _stop_children(deadline_s: float = 3.0) -> None:
    """Whatever LitServe's shutdown left (a signal during start-up skips it): terminate, then kill."""
    import multiprocessing

    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    end = time.monotonic() + deadline_s
    for child in children:
        child.join(max(0.0, end - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="inference worker processes (workers_per_device)")
    parser.add_argument(
        "--api-servers",
        type=int,
        help="uvicorn processes taking HTTP (num_api_servers); default: LitServe's, one per worker",
    )
    parser.add_argument("--max-batch-size", type=int, default=1, help="requests per batch; 1: no batching")
    parser.add_argument("--batch-timeout", type=float, default=0.0, help="seconds a batch waits to fill")
    args = parser.parse_args()
    started = time.perf_counter()
    _manager_socket_off_the_filesystem()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    batching = args.max_batch_size > 1
    if batching:
        api = BatchedServebenchAPI(max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    else:
        api = ServebenchAPI()
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=args.workers,
        healthcheck_path="/health",  # 200 once every worker's setup (model loaded and warmed) has run
        disable_openapi_url=True,  # no /openapi.json, and so no /docs
    )
    # LitServe gzips answers over 1000 bytes for clients that accept it (Locust does): no other server
    # here compresses, and on loopback it only costs CPU.
    server.app.user_middleware = [m for m in server.app.user_middleware if m.cls.__name__ != "GZipMiddleware"]
    server.app.add_exception_handler(StarletteHTTPException, _error_as_json)
    with open(os.environ["SERVEBENCH_MODEL_META"]) as f:
        model = orjson.loads(f.read())["name"]
    _health_in_contract_form(server, {"status": "ok", "model": model, "workers": args.workers, "batching": batching})
    server.uvicorn_graceful_timeout = GRACEFUL_SHUTDOWN_S
    mode = "unbatched"
    if batching:
        mode = f"batches of up to {args.max_batch_size} requests within {args.batch_timeout * 1000:g} ms"
    api_servers = args.api_servers or args.workers  # what LitServe's run() picks for None
    log(f"litserve: {args.workers} inference worker(s), {api_servers} API server(s), {mode}")
    try:
        server.run(
            host=args.host,
            port=args.port,
            num_api_servers=api_servers,
            log_level="warning",
            generate_client_file=False,  # else it writes client.py into the working folder
            access_log=False,
        )
    except KeyboardInterrupt:  # a signal before LitServe's run loop was entered
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_children()
        log(f"litserve stopped after {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":  # inference workers are spawned: they import this file, and must not run this
    sys.exit(main())
