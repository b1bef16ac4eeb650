from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servebench.servers import manifest
from servebench.servers.readiness import wait_ready
from servebench.servers.runner.base import ServerHandle
from servebench.servers.runner.local import LocalProcessRunner


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
