"""Is a started server ready? Healthy, and answering the model's sample inputs exactly as the reference model."""

from __future__ import annotations

import time
from typing import Any

from servebench.base.httpclient import request
from servebench.servers import contract, parity
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


def wait_ready(server: ServerHandle, manifest: Manifest, meta: dict[str, Any]) -> tuple[float, parity.ParityReport]:
    """Seconds from the start command to the first correct prediction (the cold start), and the parity report.

    Raises ServerFailed when the server exits or stays unhealthy past its manifest's start timeout, and
    ParityFailed when it answers the sample inputs (one alone, then all as a batch) differently from the
    reference model.
    """
    wait_healthy(server, manifest.health_path, manifest.start_timeout_s)
    report = parity.check(server.base_url, meta, contract.wire(manifest.protocol, manifest.model_name))
    if not report.passed or report.first_correct_at is None:
        raise ParityFailed(report, server.log_tail())
    return report.first_correct_at - server.started_at, report
