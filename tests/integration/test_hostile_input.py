"""Every shipped server under hostile input, through one shared test: one server start per framework.

Hypothesis generates the request bodies (arbitrary JSON, malformed instances, non-finite and out-of-range
numbers, empty and oversized batches, raw, truncated and corrupted bytes) under arbitrary Content-Types,
and `expected_status`, written from the contract (README, "The contract"), says what each must be
answered, so every framework is held to the same statuses. Then the body limit from the manifest, slow
clients, memory over many oversized requests, and the listening sockets. After each part the server must
still be up and answer a valid request exactly as the reference model does.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servebench.servers import contract, manifest
from servebench.servers.manifest import Manifest
from servebench.servers.runner.base import HOST, ServerHandle
from servebench.servers.runner.local import group_members

from .conftest import FRONTEND_OWNED, V2_UPSTREAM_500

N_FEATURES = 30  # the `lr` model's
MAX_BATCH_ROWS = 1024  # servers/_common/servebench_model.py, cpp/src/contract.h
MAX_DEPTH = 1024  # orjson's nesting limit, and so cpp/src/contract.cpp's
EXAMPLES = 100  # bodies per server, a few seconds, a fixed seed (derandomize) so every run tries the same
MEMORY_REQUESTS = 200
MEMORY_GROWTH_MB = 40  # bound on RSS growth of the server's process group over MEMORY_REQUESTS big requests
SLOW_CLIENTS = 3
SLOW_FOR_S = 3.0  # how long the slow clients trickle before they give up and close
ANSWER_WHILE_SLOW_S = 1.5  # a concurrent server answers a normal request this fast while they trickle
# Servers whose memory the test measures but cannot hold to MEMORY_GROWTH_MB, and why (README, "Security").
MEMORY_NOT_BOUNDED = {
    "ray-serve": "Ray Serve's HTTP proxy takes in a body and forwards it to the replica before the replica can "
    "refuse it; proxy and replica each grew ~75 MB over 150 chunked 1.5 MiB requests, still growing",
}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x")
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "application/json; charset=latin-1",
    None,
]


# --- the oracle: what the contract says a body must get ---------------------------------------------------


class _Invalid(ValueError):
    """Not JSON by RFC 8259 (what orjson and RapidJSON reject), though Python's json module may accept it."""


def _strict_number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows a double: both parsers reject it
        raise _Invalid(text)
    return value


def _strict_int(text: str) -> int | float:
    value = int(text)
    return value if -(2**63) <= value < 2**64 else _strict_number(text)  # beyond 64 bits: read as a double


def _reject_constant(text: str) -> None:
    raise _Invalid(text)  # NaN, Infinity, -Infinity: Python writes them, JSON has no such tokens


def _check_strings(value: Any) -> None:
    """A lone surrogate escape ("\\ud800") is not valid Unicode: the servers' parsers reject it."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)


def _depth(text: str) -> int:
    """How deep arrays and objects nest, outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            in_string, escaped = (escaped or char != '"'), (not escaped and char == "\\")
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def strict_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeError as exc:
        raise _Invalid(str(exc)) from None
    if _depth(text) > MAX_DEPTH:
        raise _Invalid("nested too deep")
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(max(saved, 4 * MAX_DEPTH))  # Python's json recurses once per level
    try:
        value = json.loads(text, parse_float=_strict_number, parse_int=_strict_int, parse_constant=_reject_constant)
        _check_strings(value)
    except UnicodeError as exc:
        raise _Invalid(str(exc)) from None
    finally:
        sys.setrecursionlimit(saved)
    return value


def expected_status(body: bytes, max_body_bytes: int) -> int:
    """The contract's answer to `body`, check for check in the servers' order."""
    if len(body) > max_body_bytes:
        return 413
    try:
        payload = strict_json(body)
    except ValueError:
        return 400
    if not isinstance(payload, dict) or "instances" not in payload:
        return 400
    rows = payload["instances"]
    if not isinstance(rows, list) or not rows:
        return 422
    if len(rows) > MAX_BATCH_ROWS:
        return 413
    for row in rows:
        if not isinstance(row, list) or len(row) != N_FEATURES or not all(type(v) in (int, float) for v in row):
            return 422
    with np.errstate(over="ignore"):
        return 200 if np.isfinite(np.asarray(rows, dtype=np.float32)).all() else 422


# --- hostile bodies ---------------------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=6) | st.sampled_from(["\ud800", "\x00", "instances"])
number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
    st.sampled_from([1e39, -1e39, 3.4028235e38, 3.5e38, 1e308, 5e-324, -0.0, 2**64, 10**400]),
)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])  # json.dumps writes NaN / Infinity tokens
scalar = st.none() | st.booleans() | number | text
json_value = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=20
)
good_row = st.lists(st.floats(-1e6, 1e6), min_size=N_FEATURES, max_size=N_FEATURES)


@st.composite
def spoiled_row(draw: st.DrawFn) -> Any:
    """A row of the right width with one cell replaced, or of the wrong width, or not a row."""
    row = draw(good_row)
    kind = draw(st.sampled_from(["cell", "width", "not_a_row"]))
    if kind == "cell":
        row[draw(st.integers(0, N_FEATURES - 1))] = draw(non_finite | scalar | st.lists(number, max_size=2))
        return row
    if kind == "width":
        return draw(st.lists(number, max_size=2 * N_FEATURES).filter(lambda r: len(r) != N_FEATURES))
    return draw(json_value.filter(lambda v: not isinstance(v, list)))


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # allow_nan: NaN and Infinity come out as (invalid) tokens


valid_body = st.lists(good_row, min_size=1, max_size=3).map(lambda rows: dumps({"instances": rows}))


@st.composite
def spoiled_instances(draw: st.DrawFn) -> bytes:
    """Rows of which one (at least) is spoiled, or instances that are no list of rows at all."""
    if draw(st.integers(0, 4)) == 0:
        return dumps({"instances": draw(json_value.filter(lambda v: not isinstance(v, list) or not v))})
    rows = draw(st.lists(good_row | spoiled_row(), max_size=3))
    rows.insert(draw(st.integers(0, len(rows))), draw(spoiled_row()))
    return dumps({"instances": rows})


extra_keys_body = st.tuples(
    st.lists(good_row, min_size=1, max_size=2), st.dictionaries(text, json_value, max_size=3)
).map(lambda t: dumps({**t[1], "instances": t[0]}))  # served: the contract reads only "instances"
batch_body = st.sampled_from([MAX_BATCH_ROWS, MAX_BATCH_ROWS + 1, 5000]).map(
    lambda n: dumps({"instances": [[0.5] * N_FEATURES] * n})
)


@st.composite
def damaged_body(draw: st.DrawFn) -> bytes:
    """A valid body cut short, with a byte replaced (often invalid UTF-8), or with bytes after it."""
    body = draw(valid_body)
    at = draw(st.integers(0, len(body) - 1))
    how = draw(st.sampled_from(["cut", "replace", "append"]))
    if how == "cut":
        return body[:at]
    if how == "append":
        return body + draw(st.sampled_from([b"\x00", b"\x00junk", b"{}", b" \n", b"\xef\xbb\xbf"]))
    return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]


nested_body = st.sampled_from([b"", b'{"instances": ']).flatmap(
    lambda prefix: st.sampled_from([10, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 200_000]).map(
        lambda depth: prefix + b"[" * depth + b"]" * depth + b"}" * bool(prefix)
    )
)  # deeper than a recursive parser's stack
bodies = st.one_of(
    json_value.map(dumps),
    spoiled_instances(),
    damaged_body(),
    st.binary(max_size=64),
    extra_keys_body,
    batch_body,
    nested_body,
)


# --- HTTP ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A started server and where it takes predictions (its protocol's path: TorchServe's is its own)."""

    server: ServerHandle
    name: str  # the framework's
    path: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def error(self) -> str:
        """The answer's error message; fails unless it is a JSON object holding "error", with no traceback."""
        assert "Traceback" not in self.body.decode(errors="replace"), self.body[:500]
        assert self.content_type.startswith("application/json"), (self.status, self.content_type, self.body[:200])
        payload = json.loads(self.body)
        assert isinstance(payload, dict) and isinstance(payload.get("error"), str), payload
        return payload["error"]


def post(
    server: Target,
    body: bytes | Iterable[bytes],
    content_type: str | None = "application/json",
    length: int | None = None,
    timeout: float = 10.0,
) -> Answer:
    """POST to the server's prediction path. `body` as bytes goes with a Content-Length (`length` overrides
    it), an iterable chunked. A server may answer before it read the whole body and stop reading: the answer is still read."""
    conn = http.client.HTTPConnection(HOST, int(server.base_url.rsplit(":", 1)[1]), timeout=timeout)
    try:
        conn.putrequest("POST", server.path, skip_accept_encoding=True)
        if content_type is not None:
            conn.putheader("Content-Type", content_type)
        chunked = not isinstance(body, bytes)
        conn.putheader(
            *(
                ("Transfer-Encoding", "chunked")
                if chunked
                else ("Content-Length", str(length if length is not None else len(body)))
            )
        )
        conn.endheaders()
        try:
            for chunk in body if chunked else [body]:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered early and closed: read the answer
        response = conn.getresponse()
        return Answer(response.status, response.getheader("Content-Type") or "", response.read())
    finally:
        conn.close()


def assert_answers_right(server: Target, meta: dict[str, Any], after: str) -> None:
    assert server.exit_code() is None, f"server exited after {after}:\n{server.log_tail()}"
    wire = manifest.get(server.name).wire
    answer = post(server, wire.encode(meta["samples"]["inputs"]))
    assert answer.status == 200, (after, answer)
    assert contract.compare_with_reference(wire.to_contract(json.loads(answer.body)), meta) is None, after


def group_rss_mb(server: ServerHandle) -> float:
    total = 0
    for pid in group_members(server.root_pid):
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


# --- the parts --------------------------------------------------------------------------------------------


# Every fuzzing run: EXAMPLES bodies, the same ones each run (derandomized), no example database.
FUZZED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def fuzzed_bodies(server: Target, limit: int) -> None:
    """Every generated body gets the contract's status; every rejection is a JSON error."""

    @FUZZED
    @given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
    def probe(body: bytes, content_type: str | None) -> None:
        answer = post(server, body, content_type)
        if server.name in FRONTEND_OWNED and content_type in FORM_TYPES:
            assert answer.status in (expected_status(body, limit), 400), (body[:200], content_type, answer)
            return
        assert answer.status == expected_status(body, limit), (body[:200], content_type, answer)
        if answer.status != 200 and not (server.name in FRONTEND_OWNED and answer.status == 413):
            answer.error()

    probe()


def body_limit(server: Target, meta: dict[str, Any], limit: int) -> None:
    """The manifest's limit, exactly: at it a request is served, one byte over it is 413, whether the size
    is announced (Content-Length, also a huge one with no body following) or only streamed (chunked)."""
    valid = contract.encode_request(meta["samples"]["inputs"][:1])
    at_limit = valid[:-1] + b" " * (limit - len(valid)) + b"}"
    assert len(at_limit) == limit and post(server, at_limit).status == 200
    over = at_limit + b" "
    for how, answer in (
        ("content-length", post(server, over)),
        ("chunked", post(server, (over[i : i + 65536] for i in range(0, len(over), 65536)))),
        ("announced only", post(server, b"", length=10**12, timeout=5)),
    ):
        worded = server.name in FRONTEND_OWNED or "exceeds the limit" in answer.error()
        assert answer.status == 413 and worded, (how, answer)


def slow_clients(server: Target, meta: dict[str, Any], one_request_at_a_time: bool) -> dict[str, float]:
    """Clients that trickle their headers or body a byte at a time, or stall mid-body, then give up.

    A concurrent server answers others meanwhile. A server whose worker takes one connection at a time
    (gunicorn's sync worker) is held by them by design, until they give up; it must then recover at once."""
    port = int(server.base_url.rsplit(":", 1)[1])
    body = contract.encode_request(meta["samples"]["inputs"][:1])
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        server.path.encode(),
        len(body),
    )
    plans = [head + body, head + body, head + body[: len(body) // 2]]  # headers slowly, body slowly, a stall
    skip = [0, len(head), len(head) + len(body) // 2]  # sent at once: what comes before the slow part
    stop = threading.Event()
    closed_by_server = []

    def trickle(data: bytes, fast: int) -> None:
        with socket.create_connection((HOST, port), timeout=SLOW_FOR_S + 5) as sock:
            try:
                sock.sendall(data[:fast])
                for i in range(fast, len(data)):
                    if stop.wait(0.05):
                        return
                    sock.sendall(data[i : i + 1])
                stop.wait()
            except OSError:
                closed_by_server.append(True)

    threads = [threading.Thread(target=trickle, args=(p, s), daemon=True) for p, s in zip(plans, skip, strict=True)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # they are connected and trickling
    t0 = time.monotonic()
    timer = threading.Timer(SLOW_FOR_S, stop.set)
    timer.start()
    try:
        answer = post(server, body, timeout=SLOW_FOR_S + 30)
        waited = time.monotonic() - t0
    finally:
        stop.set()
        timer.cancel()
        for t in threads:
            t.join(10)
    assert answer.status == 200
    if one_request_at_a_time:
        assert waited < SLOW_FOR_S + 10, f"a normal request waited {waited:.1f}s after the slow clients left"
    else:
        assert waited < ANSWER_WHILE_SLOW_S, f"a normal request waited {waited:.1f}s behind {SLOW_CLIENTS} slow clients"
    return {"normal_request_s": round(waited, 2)}


class PeakRss:
    """The largest RSS of the server's process group, sampled every 20 ms while in the `with` block."""

    def __init__(self, server: ServerHandle) -> None:
        self._server = server
        self._done = threading.Event()
        self.mb = 0.0

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.mb = max(self.mb, group_rss_mb(self._server))

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def memory_stays_bounded(server: Target, meta: dict[str, Any], limit: int) -> dict[str, float]:
    """RSS of the whole process group, at its peak and after many big requests: oversized ones, announced
    and streamed (some 32 times the limit: a server must not buffer what it will refuse), and requests of a
    full batch near the limit, served."""
    near_limit = dumps({"instances": [meta["samples"]["inputs"][0]] * MAX_BATCH_ROWS})
    assert len(near_limit) <= limit
    over, chunk = b" " * (limit + limit // 2), b" " * (1 << 20)
    for _ in range(10):  # the allocators' steady state first
        post(server, near_limit)
    before = group_rss_mb(server)
    kinds: list[tuple[int, Callable[[], Answer]]] = [
        (413, lambda: post(server, over)),
        (413, lambda: post(server, (over[i : i + 262144] for i in range(0, len(over), 262144)))),
        (200, lambda: post(server, near_limit)),
    ]
    with PeakRss(server) as peak:
        for i in range(MEMORY_REQUESTS):
            want, send = kinds[i % len(kinds)]
            answer = send()
            assert answer.status == want, (i, answer)
        for _ in range(3):
            answer = post(server, (chunk for _ in range(32 * limit // len(chunk))))
            assert answer.status == 413, answer
    after = group_rss_mb(server)
    figures = {"rss_before_mb": round(before), "rss_peak_mb": round(peak.mb), "rss_after_mb": round(after)}
    assert peak.mb - before < MEMORY_GROWTH_MB and after - before < MEMORY_GROWTH_MB, figures
    return figures


def listening_addresses(server: ServerHandle) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    members = set(group_members(server.root_pid))
    return {
        ipaddress.ip_address(c.laddr.ip)
        for c in psutil.net_connections(kind="inet")
        if c.pid in members and c.status == psutil.CONN_LISTEN
    }


def loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """127.0.0.1, also as an IPv6 socket's ::ffff:127.0.0.1."""
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address) == ipaddress.ip_address(HOST)


def one_request_at_a_time(server_manifest: Manifest) -> bool:
    """gunicorn's sync worker: each worker process reads and answers one connection at a time."""
    start = server_manifest.start
    return "gunicorn" in start and "--worker-class" in start and start[start.index("--worker-class") + 1] == "sync"


# --- the tests ------------------------------------------------------------------------------------------


@pytest.mark.shipped_protocols("servebench-v1")
@pytest.mark.default_tier_servers("fastapi", "cpp")  # an event-loop Python server and the native one; all with --full
def test_server_survives_hostile_input(start_server, exports, shipped_server: str) -> None:
    server_manifest = manifest.get(shipped_server)
    limit, meta = server_manifest.max_body_bytes, exports["lr"].meta
    server = Target(start_server(shipped_server, "lr", 1), shipped_server, server_manifest.wire.predict_path)
    addresses = listening_addresses(server)
    assert addresses and all(map(loopback, addresses)), sorted(map(str, addresses))
    fuzzed_bodies(server, limit)
    assert_answers_right(server, meta, "fuzzed bodies")
    body_limit(server, meta, limit)
    assert_answers_right(server, meta, "bodies at and over the limit")
    figures = slow_clients(server, meta, one_request_at_a_time(server_manifest))
    assert_answers_right(server, meta, "slow clients")
    try:
        figures |= memory_stays_bounded(server, meta, limit)
    except AssertionError as exc:
        if shipped_server not in MEMORY_NOT_BOUNDED:
            raise
        assert_answers_right(server, meta, f"{MEMORY_REQUESTS} big requests")
        pytest.xfail(f"{MEMORY_NOT_BOUNDED[shipped_server]}: {exc}")
    assert_answers_right(server, meta, f"{MEMORY_REQUESTS} big requests")
    print(f"{shipped_server}: {figures}")


@pytest.mark.parametrize("flag", ["--reload", "--debug", "debug=True", "FLASK_DEBUG", "--log-level=debug"])
def test_no_debug_mode(shipped_server: str, flag: str) -> None:
    """Servers run as in production: no auto-reload, no debugger, no tracebacks in answers."""
    server_manifest = manifest.get(shipped_server)
    assert flag not in " ".join([*server_manifest.start, *server_manifest.env, *server_manifest.env.values()])
    for source in server_manifest.folder.glob("*.py"):
        assert flag not in source.read_text(), source


# --- the Open Inference Protocol (KServe v2) ------------------------------------------------------------------

V2_ROW_WIDTH = N_FEATURES


def v2_valid(body: bytes) -> bool:
    """Whether `body` is a request the `lr` model must answer: one FP32 tensor "input" of shape [B, 30],
    1 <= B <= 1024, its data B x 30 finite float32 numbers, flat (the protocol's row-major form)."""
    try:
        payload = strict_json(body)
    except ValueError:
        return False
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or len(payload["inputs"]) != 1:
        return False
    tensor = payload["inputs"][0]
    if not isinstance(tensor, dict) or tensor.get("name") != "input" or tensor.get("datatype") != "FP32":
        return False
    shape, data = tensor.get("shape"), tensor.get("data")
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(d) is int for d in shape)):
        return False
    if shape[1] != V2_ROW_WIDTH or not 1 <= shape[0] <= MAX_BATCH_ROWS or not isinstance(data, list):
        return False
    if len(data) != shape[0] * shape[1] or not all(type(v) in (int, float) for v in data):
        return False
    with np.errstate(over="ignore"):
        return bool(np.isfinite(np.asarray(data, dtype=np.float32)).all())


def v2_tensor(rows: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "name": "input",
        "shape": [rows, V2_ROW_WIDTH],
        "datatype": "FP32",
        "data": [0.5] * rows * V2_ROW_WIDTH,
    } | fields


@st.composite
def spoiled_v2_tensor(draw: st.DrawFn) -> dict[str, Any]:
    """A valid tensor with one field replaced: a wrong name, shape, datatype, or data (wrong length, strings,
    booleans, non-finite or out-of-range numbers, nesting), or the field left out."""
    rows = draw(st.integers(1, 3))
    tensor = v2_tensor(
        rows, data=draw(st.lists(st.floats(-1e6, 1e6), min_size=rows * N_FEATURES, max_size=rows * N_FEATURES))
    )
    field = draw(st.sampled_from(["name", "shape", "datatype", "data", "drop"]))
    if field == "drop":
        del tensor[draw(st.sampled_from(sorted(tensor)))]
    elif field == "name":
        tensor["name"] = draw(text.filter(lambda t: t != "input") | json_value.filter(lambda v: not isinstance(v, str)))
    elif field == "shape":
        tensor["shape"] = draw(
            st.lists(st.integers(-3, 2000), max_size=3).filter(lambda s: s != [rows, N_FEATURES]) | json_value
        )
    elif field == "datatype":
        tensor["datatype"] = draw(st.sampled_from(["BYTES", "FP8", "STRING", "", "float32"]) | json_value)
    else:
        data = tensor["data"]
        kind = draw(st.sampled_from(["cell", "length", "not_a_list"]))
        if kind == "cell":
            data[draw(st.integers(0, len(data) - 1))] = draw(non_finite | scalar | st.lists(number, max_size=2))
        elif kind == "length":
            tensor["data"] = draw(st.lists(number, max_size=3 * N_FEATURES).filter(lambda d: len(d) != len(data)))
        else:
            tensor["data"] = draw(json_value.filter(lambda v: not isinstance(v, list)))
    return tensor


v2_bodies = st.one_of(
    st.lists(st.floats(-1e6, 1e6), min_size=N_FEATURES, max_size=N_FEATURES).map(
        lambda row: dumps({"inputs": [v2_tensor(data=row)]})
    ),
    spoiled_v2_tensor().map(lambda t: dumps({"inputs": [t]})),
    st.lists(spoiled_v2_tensor() | st.just(v2_tensor()), min_size=2, max_size=3).map(lambda ts: dumps({"inputs": ts})),
    json_value.map(lambda v: dumps({"inputs": v})),
    json_value.map(dumps),
    st.sampled_from([MAX_BATCH_ROWS, MAX_BATCH_ROWS + 1, 5000]).map(lambda n: dumps({"inputs": [v2_tensor(n)]})),
    damaged_body(),
    st.binary(max_size=64),
    nested_body,
)


@pytest.mark.shipped_protocols("open-inference-v2")
@pytest.mark.default_tier_servers("kserve")  # one v2 server by default; Triton and MLServer with --full
def test_v2_server_survives_hostile_input(start_server, exports, shipped_server: str) -> None:
    """Each body gets 200 and the right answer when it is a valid request of the protocol, else a 4xx (each
    framework words its errors its own way, so only the status class is held), and never a traceback; the
    server stays up and right."""
    meta = exports["lr"].meta
    server_manifest = manifest.get(shipped_server)
    server = Target(start_server(shipped_server, "lr", 1), shipped_server, server_manifest.wire.predict_path)
    addresses = listening_addresses(server)
    assert addresses and all(map(loopback, addresses)), sorted(map(str, addresses))
    seen: Counter[int] = Counter()

    @FUZZED
    @given(body=v2_bodies)
    def probe(body: bytes) -> None:
        answer = post(server, body)
        seen[answer.status] += 1
        assert "Traceback" not in answer.body.decode(errors="replace"), answer.body[:500]
        if v2_valid(body):  # labels for each row (the body asks for no outputs: some servers then send labels only)
            assert answer.status == 200, (body[:200], answer)
            labels = server_manifest.wire.to_contract(json.loads(answer.body)).get("predictions")
            assert isinstance(labels, list) and len(labels) == len(json.loads(body)["inputs"][0]["data"]) // N_FEATURES
            assert set(labels) <= set(meta["classes"]), labels
        elif answer.status == 500 and shipped_server in V2_UPSTREAM_500:
            upstream_500s.append(body[:80])
        else:
            assert 400 <= answer.status < 500, (body[:200], answer)

    upstream_500s: list[bytes] = []
    probe()
    if upstream_500s:
        print(f"{shipped_server}: {len(upstream_500s)} bodies got 500 ({V2_UPSTREAM_500[shipped_server]})")
    assert_answers_right(server, meta, "fuzzed v2 bodies")
    print(f"{shipped_server}: statuses {dict(seen)}")
