"""TorchServe custom handler: the servebench contract on the shared inference core, in each Python worker.

TorchServe's Java frontend owns HTTP; each backend worker process loads this class once (`initialize`) and
gets requests over a Unix socket (`handle`). The .mar holds the ONNX export as model.onnx, its metadata and
servers/_common/servebench_model.py, all extracted into the model directory TorchServe puts on sys.path.

Malformed requests are answered per request (context.set_response_status) with the core's {"error": ...}
body and status. Raising ts.utils.util.PredictionException instead would fail the whole batch and make the
frontend answer its own {"code", "type", "message"} body, turning a 413 into a 507.
"""

import logging
import os
from http import HTTPStatus

from servebench_model import BadRequest, Predictor

PHRASES = {status.value: status.phrase for status in HTTPStatus}


class ServebenchHandler:
    """Entry point TorchServe finds as the module's only class (imported names do not count)."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.initialized = False

    def initialize(self, context) -> None:
        model_dir = context.system_properties["model_dir"]
        self.predictor = Predictor(os.path.join(model_dir, "model.onnx"), os.path.join(model_dir, "metadata.json"))
        # The worker writes lines per request at INFO ("Backend received inference at", [METRICS] lines of
        # PredictionTime and HandlerTime) that the frontend reads and parses: warnings only, as the other servers
        # run. The frontend's own metrics (inference and queue latency, request counts) stay.
        logging.getLogger().setLevel(logging.WARNING)
        self.initialized = True

    def handle(self, data: list[dict], context) -> list[bytes]:
        """One answer per request of the batch, in order; each request's raw body is its "body" (or "data")
        parameter, left undecoded (config decode_input_request=false) for the core's orjson parser."""
        answers = []
        for i, request in enumerate(data):
            body = request.get("body")
            if body is None:
                body = request.get("data")
            try:
                if not isinstance(body, (bytes, bytearray)):  # e.g. a form-urlencoded body, split into fields
                    raise BadRequest(400, "expected a JSON request body (Content-Type: application/json)")
                answers.append(self.predictor.predict(self.predictor.parse(bytes(body))))
                status = 200
            except BadRequest as exc:
                answers.append(exc.body())
                status = exc.status
            # Always set: left unset, TorchServe answers "HTTP/1.1 200 " with an empty reason phrase, which
            # h2load counts as a failed request.
            context.set_response_status(status, PHRASES[status], idx=i)
            context.set_response_content_type(i, "application/json")
        return answers
