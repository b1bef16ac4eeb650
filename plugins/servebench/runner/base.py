"""The seam every runner backend implements: start a built server, then stop it leaving nothing behind."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

from servebench.build import BuiltServer
from servebench.models import ExportedModel

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
    leftover_pids: tuple[int, ...]  # processes of the server still alive after stopping: must be empty


class ServerHandle(abc.ABC):
    """A started server. `root_pid` is what the resource sampler watches (with its children)."""

    base_url: str
    root_pid: int
    log_path: Path
    started_at: float  # time.monotonic() just before the start command ran

    @abc.abstractmethod
    def exit_code(self) -> int | None:
        """None while the server runs."""

    @abc.abstractmethod
    def stop(self) -> StopReport:
        """Stop the server and everything it started; safe to call twice."""

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Runner(abc.ABC):
    name: str

    @abc.abstractmethod
    def start(
        self, built: BuiltServer, model: ExportedModel, workers: int, log_path: Path, port: int | None = None
    ) -> ServerHandle:
        """Start the server with `workers` workers (on `port`, else a free one); returns before it is healthy."""
