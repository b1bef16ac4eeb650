"""The harness's own small HTTP client: health checks, parity requests and tests (not the load generator)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


def request(base_url: str, method: str, path: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    """One HTTP request; returns (status, decoded JSON or raw text)."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
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
