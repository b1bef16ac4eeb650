"""Is a started server ready? Healthy, and answering the model's sample inputs exactly as the reference model."""

from __future__ import annotations

import time
from typing import Any

from servebench.base.httpclient import request
from servebench.servers import parity
from servebench.servers.manifest import Manifest
from servebench.servers.runner.base import ServerFailed, ServerHandle


def wait_healthy(server: ServerHandle, health_path: str, timeout_s: float) -> None:
    """Poll the health path until it answers 200; ServerFailed if the server exits or `timeout_s` passes."""
    deadline = server.started_at + timeout_s
    while True:
        code = server.exit_code()
        if code is not None:
            raise ServerFailed(f"server exited with code {code} before becoming healthy", server.log_tail())
        if time.monotonic() > deadline:
            raise ServerFailed(
                f"server not healthy after {timeout_s:.0f}s at {server.base_url}{health_path}", server.log_tail()
            )
        try:
            if request(server.base_url, "GET", health_path, timeout=2.0)[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)


class ParityFailed(ServerFailed):
    """The server is up but its answers to the sample inputs differ from the reference model's."""

    def __init__(self, report: parity.ParityReport, log_tail: str = "") -> None:
        super().__init__(f"parity: wrong answer to {report.first_problem}", log_tail)
        self.report = report


# Answers of a server that is up but still loading its model (TorchServe answers /ping ~18 s before it can
# predict; KServe and Triton answer 503 until the model is ready): readiness waits through them.
NOT_READY = frozenset({404, 500, 502, 503, 504})


def wait_ready(server: ServerHandle, manifest: Manifest, meta: dict[str, Any]) -> tuple[float, parity.ParityReport]:
    """Seconds from the start command to the first correct prediction (the cold start), and the parity report.

    Ready means a real prediction succeeded, not a ping: after the health path answers, the sample inputs are
    sent until an answer comes that is not "still loading" (NOT_READY). Raises ServerFailed when the server
    exits, or stays unhealthy or loading past its manifest's start timeout, and ParityFailed when it answers
    the sample inputs (one alone, then all as a batch) differently from the reference model.
    """
    wait_healthy(server, manifest.health_path, manifest.start_timeout_s)
    deadline = server.started_at + manifest.start_timeout_s
    while True:
        try:
            report = parity.check(server.base_url, meta, manifest.wire)
        except OSError as exc:  # the server closed the connection mid-load: still starting, or dying
            report = None
            problem = f"{type(exc).__name__}: {exc}"
        if report is not None and (report.checks[0].status not in NOT_READY or time.monotonic() > deadline):
            break
        code = server.exit_code()
        if code is not None:
            raise ServerFailed(f"server exited with code {code} before its first prediction", server.log_tail())
        if time.monotonic() > deadline:
            raise ServerFailed(f"no prediction after {manifest.start_timeout_s:.0f}s: {problem}", server.log_tail())
        time.sleep(0.2)
    if not report.passed or report.first_correct_at is None:
        raise ParityFailed(report, server.log_tail())
    return report.first_correct_at - server.started_at, report
