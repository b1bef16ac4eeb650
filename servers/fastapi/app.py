"""FastAPI adapter of the servebench contract, run by uvicorn with N worker processes."""

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from servebench_model import BadRequest, Predictor

predictor = Predictor.from_env()
app = FastAPI(title="servebench fastapi", docs_url=None, redoc_url=None)
JSON = "application/json"


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "model": predictor.name, "inference": predictor.mode}


@app.post("/predict")
async def predict(request: Request) -> Response:
    try:
        length = request.headers.get("content-length")
        predictor.check_length(int(length) if length and length.isdigit() else None)
        X = predictor.parse(await request.body())
    except BadRequest as exc:
        return Response(exc.body(), status_code=exc.status, media_type=JSON)
    if predictor.inline:
        body = predictor.predict(X)
    else:  # keep the event loop free while a heavy model computes
        body = await run_in_threadpool(predictor.predict, X)
    return Response(body, media_type=JSON)
