"""Flask adapter of the servebench contract, run by gunicorn with N sync worker processes."""

import json

from flask import Flask, Response, request
from servebench_model import BadRequest, Predictor, read_limited
from werkzeug.exceptions import HTTPException

predictor = Predictor.from_env()
app = Flask(__name__)
JSON = "application/json"


@app.get("/health")
def health() -> Response:
    # sync workers: every prediction runs inline, one request at a time per worker
    return Response(json.dumps({"status": "ok", "model": predictor.name, "inference": "inline"}), mimetype=JSON)


@app.post("/predict")
def predict() -> Response:
    try:
        predictor.check_length(request.content_length)
        # a body without a length (chunked) is counted as it arrives; one with a length is bounded by it
        body = (
            request.get_data(cache=False) if request.content_length is not None else read_limited(request.stream.read)
        )
        X = predictor.parse(body)
    except BadRequest as exc:
        return Response(exc.body(), status=exc.status, mimetype=JSON)
    return Response(predictor.predict(X), mimetype=JSON)


@app.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    """Errors as JSON, like every other answer (Flask's default is an HTML page)."""
    error = BadRequest(exc.code or 500, exc.description or exc.name)
    return Response(error.body(), status=error.status, mimetype=JSON)
