"""The seam every runner backend implements: build what a server needs, start it, stop it leaving nothing behind."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

from servebench.models.export import ExportedModel
from servebench.servers.manifest import Manifest
from servebench.servers.probes import Probe

HOST = "127.0.0.1"


class ServerFailed(RuntimeError):
    """The server exited, never became healthy, or answered wrongly; carries the tail of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n--- server log (tail) ---\n{log_tail}" if log_tail else ""))
        self.reason = message
        self.log_tail = log_tail


@dataclass(frozen=True)
class StopReport:
    exit_code: int | None
    graceful: bool  # stopped by SIGTERM within the grace period
    leftovers: tuple[
        str, ...
    ]  # what of the server still exists after stopping ("pid 12", "container ab12"): must be empty


class ServerHandle(abc.ABC):
    base_url: str
    log_path: Path
    started_at: float  # time.monotonic() just before the server was started
    # What the trial logs about where the server ran: its build (venv folder or image) and limits.
    details: dict[str, str]
    packages: str = ""  # the server environment's package versions (pip freeze), where the backend knows them

    @abc.abstractmethod
    def exit_code(self) -> int | None:
        """None while the server runs."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Abort at once, everything the server started included (the harness is being killed)."""

    @abc.abstractmethod
    def stop(self) -> StopReport:
        """Stop the server and everything it started; safe to call twice."""

    @abc.abstractmethod
    def probe(self) -> Probe:
        """What the resource sampler reads for this server."""

    def balancer_probe(self) -> Probe | None:
        """What the sampler reads for the load balancer in front of the server, where there is one."""
        return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Runner(abc.ABC):
    name: str

    @abc.abstractmethod
    def build(self, manifest: Manifest, models: list[ExportedModel]) -> list[str]:
        """Build (or find up to date) what the server needs to serve each model; names what was built."""

    @abc.abstractmethod
    def start(
        self,
        manifest: Manifest,
        model: ExportedModel,
        workers: int,
        log_path: Path,
        port: int | None = None,
        replicas: int = 1,
        cpus: float | None = None,
    ) -> ServerHandle:
        """Start the server with `workers` workers (published on `port`, else a free one); returns before
        it is healthy. Builds what is missing first. `replicas` copies limited to `cpus` CPUs each behind a
        load balancer where the backend can (runner/replicas.py)."""

    def limits(self) -> dict[str, str]:
        """The resource limits every server of this runner gets, as logged params."""
        return {"cpuset": "all", "memory_mb": "unlimited"}
