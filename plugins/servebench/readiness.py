"""Is a started server ready? Healthy, and answering the model's sample inputs exactly as the reference model."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

from servebench import contract
from servebench.runner.base import ServerFailed, ServerHandle


def request(base_url: str, method: str, path: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    """One HTTP request; returns (status, decoded JSON or raw text)."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def wait_healthy(server: ServerHandle, health_path: str, timeout_s: float) -> None:
    """Poll the health path until it answers 200; ServerFailed if the server exits or `timeout_s` passes."""
    deadline = server.started_at + timeout_s
    while True:
        code = server.exit_code()
        if code is not None:
            raise ServerFailed(f"server exited with code {code} before becoming healthy", server.log_tail())
        if time.monotonic() > deadline:
            raise ServerFailed(f"server not healthy after {timeout_s:.0f}s at {server.base_url}{health_path}", server.log_tail())
        try:
            if request(server.base_url, "GET", health_path, timeout=2.0)[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)


def wait_ready(server: ServerHandle, health_path: str, meta: dict[str, Any], timeout_s: float) -> float:
    """Seconds from the start command to the first correct prediction (the cold start).

    Raises ServerFailed when the server exits, stays unhealthy past `timeout_s`, or answers the
    sample inputs (one alone, then all as a batch) differently from the reference model.
    """
    wait_healthy(server, health_path, timeout_s)
    inputs = meta["samples"]["inputs"]
    for rows in (slice(0, 1), slice(None)):
        status, payload = request(server.base_url, "POST", contract.PREDICT_PATH, contract.encode_request(inputs[rows]))
        problem = f"HTTP {status}: {payload}" if status != 200 else contract.compare_with_reference(payload, meta, rows)
        if problem:
            which = "a single sample input" if rows.stop == 1 else f"a batch of {len(inputs)} sample inputs"
            raise ServerFailed(f"wrong answer to {which}: {problem}", server.log_tail())
        if rows.stop == 1:
            cold_start = time.monotonic() - server.started_at
    return cold_start
