from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servebench.servers import manifest
from servebench.servers.readiness import wait_ready
from servebench.servers.runner.base import ServerHandle
from servebench.servers.runner.local import LocalProcessRunner

# What some frameworks' own frontends answer before servebench's code sees a request: the tests hold these
# servers to everything else, and say what they let pass.
FRONTEND_OWNED = {
    "torchserve": "TorchServe's Java frontend decodes form and multipart bodies into fields (a valid body sent "
    "as a form gets 400), answers an oversized body 413 with an empty body, and unknown paths and methods in its "
    "own words (a GET of its inference path is a request without a body there: 400)",
}
V2_UPSTREAM_500 = dict.fromkeys(
    ("triton", "triton-batching"),
    "Triton 2.51's HTTP frontend answers a body it cannot read as a v2 request (not JSON, no inputs, data "
    "not filling the shape, strings as FP32) with 500: triton-inference-server/server#8762",
)
# Processes a server runs for N workers where its framework runs its own beside the workers, and which.
FRAMEWORK_PROCESSES: dict[str, tuple[Callable[[int], int], str]] = {
    **{
        name: (lambda n: 2 * n + 3, "main, queue manager, resource tracker, N API servers, N inference workers")
        for name in ("litserve", "litserve-batching")
    },
    **{
        name: (lambda n: n + 2, "serve.py, tritonserver, a backend stub per instance")
        for name in ("triton", "triton-batching")
    },
}


@pytest.fixture
def start_server(exports, tmp_path: Path, no_leftover_processes: None) -> Iterator[Callable[..., ServerHandle]]:
    """Start a built server and wait until it is ready; every server is stopped when the test ends."""
    started: list[ServerHandle] = []

    def start(
        framework: str, model: str = "lr", workers: int = 1, ready: bool = True, cpuset: str | None = None
    ) -> ServerHandle:
        server_manifest = manifest.get(framework)
        server = LocalProcessRunner(cpuset).start(
            server_manifest, exports[model], workers, tmp_path / f"{framework}-{len(started)}.log"
        )
        started.append(server)
        if ready:
            wait_ready(server, server_manifest, exports[model].meta)
        return server

    yield start
    for server in started:
        assert server.stop().leftovers == ()
