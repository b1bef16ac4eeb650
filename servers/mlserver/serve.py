"""`mlserver start FOLDER`, with the two guards MLServer 1.7 has no setting for.

    python serve.py FOLDER --host H --port P --workers N

FOLDER holds settings.json and model/model-settings.json (write_settings.py). Host, port and worker count
change from start to start, so they are not in settings.json (whose values would win) but are handed to
MLServer as the MLSERVER_HOST, MLSERVER_HTTP_PORT and MLSERVER_PARALLEL_WORKERS variables it reads.

1. A request body limit: MLServer's REST server (FastAPI on uvicorn) reads a body of any size. An ASGI
   middleware refuses one over SERVEBENCH_MAX_BODY_BYTES with 413, from its Content-Length before reading
   it, or as soon as a chunked body passes the limit. A body nested too deep to parse gets 400, not 500.
2. Requests checked before adaptive batching queues them: the batcher merges the tensors of up to
   max_batch_size requests into one, so a malformed request would fail every request of its batch (and a
   request's row limit could not be told from the batch's). Each request is checked alone first, with the
   model's own checks (sklearn_runtime.RequestChecker); without batching the model checks it as it decodes it.

Everything else is MLServer's CLI as shipped: the same entry point, logging and uvloop event loop.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import mlserver.rest.server
from mlserver.batching.adaptive import AdaptiveBatcher
from mlserver.cli import main
from sklearn_runtime import RequestChecker

MAX_BODY_BYTES = int(os.environ.get("SERVEBENCH_MAX_BODY_BYTES", 1 << 20))


class BodyLimit:
    """Answers 413 to a request body over `limit` bytes instead of letting the app read it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:  # uvicorn reads no more than it says (and refuses one that is no number)
            if length.isdigit() and int(length) > self.limit:
                return await self._refuse(send, length.decode())
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True  # chunked: count it as it arrives, replay it once complete
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(send, f"more than {size}")
            more = message.get("more_body", False)
        replay = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replayed() -> dict:
            nonlocal replay
            if replay is None:
                return await receive()
            message, replay = replay, None
            return message

        return await self.app(scope, replayed, send)

    async def _refuse(self, send: Any, length: str) -> None:
        body = f'{{"error": "body of {length} bytes exceeds the limit of {self.limit}"}}'.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _too_deep(request: Any, exc: Exception) -> Any:
    """MLServer parses bodies with Python's recursive JSON decoder: one nested deeper than the interpreter's
    recursion limit raised RecursionError, answered 500. It is a malformed request: 400."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": "body is nested too deep to parse"}, status_code=400)


def _create_app(*args: Any, **kwargs: Any) -> Any:
    app = _stock_create_app(*args, **kwargs)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_exception_handler(RecursionError, _too_deep)
    return app


async def _checked_predict(self: AdaptiveBatcher, request: Any) -> Any:
    checker = getattr(self, "_servebench_checker", None)
    if checker is None:
        checker = self._servebench_checker = RequestChecker.for_settings(self._model.settings)
    checker.check(request)  # BadTensor (a 4xx) for this request alone
    return await _stock_batched_predict(self, request)


_stock_create_app = mlserver.rest.server.create_app
mlserver.rest.server.create_app = _create_app
_stock_batched_predict = AdaptiveBatcher.predict
AdaptiveBatcher.predict = _checked_predict  # type: ignore[method-assign]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--workers", required=True, type=int, help="parallel_workers: inference processes")
    args = parser.parse_args()
    os.environ.update(
        MLSERVER_HOST=args.host, MLSERVER_HTTP_PORT=str(args.port), MLSERVER_PARALLEL_WORKERS=str(args.workers)
    )
    sys.argv = ["mlserver", "start", args.folder]
    sys.exit(main())
