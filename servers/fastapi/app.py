"""FastAPI adapter of the servebench contract, run by uvicorn with N worker processes."""

import os

from fastapi import FastAPI, Request
from fastapi.responses import Response
from servebench_model import BadRequest, Predictor, log, read_limited_async
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

# Below this median latency a prediction runs on the event loop: a thread hop would cost more than it saves.
# Measured (benchmarks/fastapi_inference_mode.py): lr at ~25 us loses 45% throughput in the thread pool,
# mlp at ~1 ms gains a better tail there; 200 us sits far from both, so the choice never flips between runs.
INLINE_BELOW_US = float(os.environ.get("SERVEBENCH_INLINE_BELOW_US", 200))

predictor = Predictor.from_env()
MODE = os.environ.get("SERVEBENCH_INFERENCE") or ("inline" if predictor.latency_us < INLINE_BELOW_US else "threadpool")
log(f"{MODE} inference")
app = FastAPI(title="servebench fastapi", docs_url=None, redoc_url=None)
JSON = "application/json"


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "model": predictor.name, "inference": MODE}


async def predict(request: Request) -> Response:
    try:
        length = request.headers.get("content-length")
        predictor.check_length(int(length) if length and length.isdigit() else None)
        # a body without a length (chunked) is counted as it arrives; one with a length is bounded by it
        X = predictor.parse(await request.body() if length else await read_limited_async(request.stream()))
    except BadRequest as exc:
        return Response(exc.body(), status_code=exc.status, media_type=JSON)
    if MODE == "inline":
        body = predictor.predict(X)
    else:  # keep the event loop free while a heavy model computes
        body = await run_in_threadpool(predictor.predict, X)
    return Response(body, media_type=JSON)


# A plain Starlette route: the handler takes the raw request and returns bytes, so FastAPI's per-request
# dependency and body machinery has nothing to do, and skipping it saves ~12% of the server's CPU per lr
# request (239-248 -> 208-211 us, alternating runs of benchmarks/server_cost.py). Errors still pass
# through the app's exception handler below.
app.router.add_route("/predict", predict, methods=["POST"])


@app.exception_handler(HTTPException)
async def http_error(request: Request, exc: HTTPException) -> Response:
    """Errors as {"error": ...}, like every other answer (FastAPI's default says "detail")."""
    error = BadRequest(exc.status_code, str(exc.detail))
    return Response(error.body(), status_code=error.status, media_type=JSON)
