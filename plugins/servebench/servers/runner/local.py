"""Local-process backend: the server runs as its own process group on 127.0.0.1 (or the address load hosts
reach this machine at) and a free port."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from servebench.base import placement, teardown
from servebench.models.export import ExportedModel
from servebench.servers import build
from servebench.servers.manifest import Manifest, render
from servebench.servers.probes import ProcessTreeProbe
from servebench.servers.runner.base import (
    HOST,
    Runner,
    ServerFailed,
    ServerHandle,
    StopReport,
)

log = logging.getLogger(__name__)


def free_port(address: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, address: str = HOST) -> None:
    """ServerFailed naming who holds `port`, rather than a server that dies with "address already in use"."""
    with socket.socket() as sock:
        # As servers bind: a port whose last connections linger in TIME_WAIT is free, one listened on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
            return
        except OSError as exc:
            problem = exc.strerror
    holders = []
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            try:
                holders.append(f"pid {conn.pid} ({' '.join(psutil.Process(conn.pid).cmdline()[:3])})")
            except psutil.Error:
                holders.append(f"pid {conn.pid}")
    held = f" by {', '.join(dict.fromkeys(holders))}" if holders else ""
    raise ServerFailed(
        f"port {port} on {address} is not available ({problem}){held}: stop that process or choose another port"
    )


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


class LocalServer(ServerHandle):
    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        port: int,
        log_path: Path,
        grace_s: float,
        started_at: float,
        env_dir: Path,
        address: str,
    ) -> None:
        self._popen = popen
        # RSS summed over the process tree: shared pages of forked workers count once per worker.
        self.details = {"server_env": env_dir.name, "resource_source": "psutil"}
        freeze = env_dir / "freeze.txt"
        self.packages = freeze.read_text() if freeze.exists() else ""
        self._grace_s = grace_s
        self._report: StopReport | None = None
        self._token = teardown.register(f"server {env_dir.name} (process group {popen.pid})", self.kill)
        self.started_at = started_at
        self.root_pid = popen.pid
        self.base_url = f"http://{address}:{port}"
        self.log_path = log_path

    def exit_code(self) -> int | None:
        return self._popen.poll()

    def probe(self) -> ProcessTreeProbe:
        return ProcessTreeProbe(self.root_pid)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.root_pid, sig)

    def kill(self) -> None:
        """Abort: SIGKILL the whole group at once (a harness being killed has no time for grace)."""
        self._signal_group(signal.SIGKILL)
        self._popen.wait()

    def stop(self) -> StopReport:
        if self._report is not None:
            return self._report
        graceful = True
        if self._popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._popen.wait(self._grace_s)
            except subprocess.TimeoutExpired:
                graceful = False
                log.warning("server pid %d ignored SIGTERM for %.0fs; sending SIGKILL", self.root_pid, self._grace_s)
        deadline = time.monotonic() + self._grace_s
        while group_members(self.root_pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # workers finishing their shutdown after the leader
        if group_members(self.root_pid):
            graceful = False
            self._signal_group(signal.SIGKILL)
            time.sleep(0.5)
        if self._popen.poll() is None:
            self._popen.kill()
        self._popen.wait()
        leftovers = tuple(f"pid {pid}" for pid in group_members(self.root_pid))
        if leftovers:
            log.error("server pid %d left processes behind: %s", self.root_pid, ", ".join(leftovers))
        self._report = StopReport(self._popen.returncode, graceful, leftovers)
        teardown.unregister(self._token)
        return self._report


class LocalProcessRunner(Runner):
    name = "local"

    def __init__(self, cpuset: str | None = None, address: str = HOST) -> None:
        self.cpus = placement.cpus_of(cpuset) if cpuset else ()
        self.address = address  # where the server listens: 127.0.0.1, or an address load hosts reach

    def limits(self) -> dict[str, str]:
        return {"cpuset": placement.cpuset_of(self.cpus) or "all", "memory_mb": "unlimited"}

    def build(self, manifest: Manifest, models: list[ExportedModel]) -> list[str]:
        built = build.build(manifest)
        for model in models:
            build.prepare(built, model)
        return [built.env_dir.name]

    def start(
        self,
        manifest: Manifest,
        model: ExportedModel,
        workers: int,
        log_path: Path,
        port: int | None = None,
        replicas: int = 1,
        cpus: float | None = None,
    ) -> LocalServer:
        if replicas != 1 or cpus is not None:
            raise ServerFailed("replicas and cpus_per_replica need containers: backend docker")
        if "local" not in manifest.backends:
            raise ServerFailed(
                f"server {manifest.name} does not run as a local process (backends: {manifest.backends})"
            )
        built = build.build(manifest)  # up to date after the build stage: only checks
        build.prepare(built, model)  # once per model export: e.g. into the framework's model store
        if port:
            check_port_free(port, self.address)
        port = port or free_port(self.address)
        values = {**built.values(model), "host": self.address, "port": port, "workers": workers}
        argv = [render(part, values) for part in manifest.start]
        env = {**built.environment(values), **teardown.owner_mark()}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("server %s: starting %s", manifest.name, " ".join(argv))
        with open(log_path, "ab") as log_file:
            started_at = time.monotonic()
            try:
                popen = subprocess.Popen(
                    argv,
                    cwd=manifest.folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopped as one, workers included
                    preexec_fn=(lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None,
                )
            except OSError as exc:
                raise ServerFailed(f"server {manifest.name} could not be started: {exc}") from None
        return LocalServer(popen, port, log_path, manifest.stop_grace_s, started_at, built.env_dir, self.address)
