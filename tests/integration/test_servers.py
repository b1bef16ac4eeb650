"""Every shipped server, with 1 and 2 workers: healthy, right answers, 4xx on bad input, clean shutdown.

Servers of the contract are held to its exact statuses and messages; Open Inference Protocol servers (KServe,
Triton, MLServer) to a 4xx for each bad request, each framework saying it in its own words."""

from __future__ import annotations

import json

import psutil
import pytest

from servebench.base.httpclient import request
from servebench.servers import contract, manifest
from servebench.servers.runner.local import group_members

from .conftest import FRAMEWORK_PROCESSES, FRONTEND_OWNED, V2_UPSTREAM_500

OVERSIZE = b'{"instances": [' + b",".join([b"[" + b",".join([b"1.0"] * 30) + b"]"] * 9000) + b"]}"

BAD_REQUESTS = [
    (b"{not json", 400, "not valid JSON"),
    (b'"just a string"', 400, "expected a JSON object"),
    (b'{"rows": [[1]]}', 400, "expected a JSON object"),
    (b'{"instances": []}', 422, "non-empty list"),
    (b'{"instances": [[1, 2, 3]]}', 422, "instances[0] must be a list of 30 numbers"),
    (json.dumps({"instances": [["1"] * 30]}).encode(), 422, "only numbers"),
    (json.dumps({"instances": [[True] * 30]}).encode(), 422, "only numbers"),
    (b'{"instances": [[' + b",".join([b"NaN"] * 30) + b"]]}", 400, "not valid JSON"),  # NaN is not JSON
    (b'{"instances": [[' + b",".join([b"1e39"] * 30) + b"]]}", 422, "finite numbers within float32 range"),
    (OVERSIZE, 413, "exceeds the limit"),
]


V2_ROW = [0.5] * 30
V2_BAD_REQUESTS = [
    b"{not json",
    b'{"instances": [[1]]}',  # the contract's body, not the protocol's
    b'{"inputs": []}',
    json.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).encode(),
    json.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [1, 2]}]}).encode(),
    json.dumps({"inputs": [{"name": "nope", "shape": [1, 30], "datatype": "FP32", "data": V2_ROW}]}).encode(),
    json.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "BYTES", "data": ["a"] * 30}]}).encode(),
    json.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": ["1"] * 30}]}).encode(),
    json.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [1e39] * 30}]}).encode(),
    json.dumps(
        {"inputs": [{"name": "input", "shape": [5000, 30], "datatype": "FP32", "data": V2_ROW * 5000}]}
    ).encode(),
]


# The default tier: an event-loop Python server and the native one (KServe, the v2 server of the default tier, is
# held to its protocol by the hostile-input test and run end to end by tests/e2e/test_cli.py); all with --full.
@pytest.mark.default_tier_servers("fastapi", "cpp")
def test_server_answers_right_and_rejects_bad_input(start_server, exports, shipped_server: str) -> None:
    answers_right_and_rejects_bad_input(start_server, exports, shipped_server, 1)


@pytest.mark.default_tier_servers("fastapi", "cpp")  # processes and threads (flask's sync workers: --full)
def test_two_workers_answer_right(start_server, exports, shipped_server: str) -> None:
    answers_right_and_rejects_bad_input(start_server, exports, shipped_server, 2)


def answers_right_and_rejects_bad_input(start_server, exports, shipped_server: str, workers: int) -> None:
    server = start_server(shipped_server, "lr", workers)  # ready = healthy and exact on the sample inputs
    server_manifest = manifest.get(shipped_server)
    wire = server_manifest.wire
    assert request(server.base_url, "GET", server_manifest.health_path)[0] == 200
    meta = exports["lr"].meta
    status, answer = request(server.base_url, "POST", wire.predict_path, wire.encode(meta["samples"]["inputs"]))
    assert status == 200 and contract.compare_with_reference(wire.to_contract(answer), meta) is None
    if wire.protocol == contract.V2:
        for body in V2_BAD_REQUESTS:
            status, answer = request(server.base_url, "POST", wire.predict_path, body)
            upstream_500 = status == 500 and shipped_server in V2_UPSTREAM_500
            assert (400 <= status < 500 or upstream_500) and "Traceback" not in str(answer), (body[:80], status, answer)
    else:
        own_words = shipped_server in FRONTEND_OWNED
        if server_manifest.health_path == "/health":
            assert request(server.base_url, "GET", "/health")[1]["model"] == "lr"
        for body, want_status, want_message in BAD_REQUESTS:
            status, answer = request(server.base_url, "POST", wire.predict_path, body)
            worded = isinstance(answer, dict) and want_message in answer.get("error", "")
            assert status == want_status and (worded or own_words), (body[:60], status, answer)
        for method, path, want_status in (("GET", wire.predict_path, 405), ("GET", "/nope", 404)):
            status, answer = request(server.base_url, method, path)
            if own_words:  # TorchServe takes a GET on its inference path as a request without a body: 400
                assert 400 <= status < 500, (method, path, status, answer)
            else:
                assert status == want_status and answer.get("error"), (path, status, answer)
    assert server.exit_code() is None  # still up after all of that
    members = [psutil.Process(pid) for pid in group_members(server.root_pid)]
    unit = server_manifest.worker_unit
    if shipped_server in FRAMEWORK_PROCESSES:
        count, which = FRAMEWORK_PROCESSES[shipped_server]
        assert len(members) == count(workers), (len(members), which)
    elif unit == "process":  # the workers, plus a supervisor when there are several
        assert workers <= len(members) <= workers + 2, len(members)
    elif unit == "thread":  # one process, at least one thread per worker
        assert len(members) == 1 and members[0].num_threads() >= workers
    else:  # replicas beside the framework's own processes
        assert len(members) > workers
    report = server.stop()
    assert report.graceful and report.leftovers == () and group_members(server.root_pid) == []


# The default tier: FastAPI's thread-pool inference and the C++ server's threads; the others with --full.
@pytest.mark.default_tier_servers("fastapi", "cpp")
def test_heavy_model_is_served_exactly(start_server, exports, shipped_server: str) -> None:
    server = start_server(shipped_server, "mlp", 1)
    meta, wire = exports["mlp"].meta, manifest.get(shipped_server).wire
    status, answer = request(server.base_url, "POST", wire.predict_path, wire.encode(meta["samples"]["inputs"][:4]))
    assert status == 200 and contract.compare_with_reference(wire.to_contract(answer), meta, slice(0, 4)) is None
    if shipped_server.startswith("fastapi"):  # ~2 ms per prediction: must not block the event loop
        assert request(server.base_url, "GET", "/health")[1]["inference"] == "threadpool"
