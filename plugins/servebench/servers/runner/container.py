"""Container backend: each server runs from its image (images.py) as a container with CPU and memory
limits, published on a loopback port (or reached by name on a private network), sampled through the
Engine's stats API, and always removed afterwards.

Every container is labelled with its owner (host and pid); a container whose owner died without
removing it (a task killed with SIGKILL) is removed by the next container runner that starts.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import socket
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

from servebench.base import teardown
from servebench.models.export import ExportedModel
from servebench.servers import images
from servebench.servers.manifest import Manifest
from servebench.servers.probes import MB, Usage
from servebench.servers.runner import replicas as replicas_mod
from servebench.servers.runner.base import (
    HOST,
    Runner,
    ServerFailed,
    ServerHandle,
    StopReport,
)
from servebench.servers.runner.local import check_port_free, free_port

log = logging.getLogger(__name__)

OWNER_LABEL = "servebench.owner"  # "<hostname>:<pid>" of the process that started the container


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def reap_orphans(client: Any) -> list[str]:
    """Remove servebench containers whose owner process on this host is gone; returns their names."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": f"{images.LABEL}=true"}):
        host, _, pid = container.labels.get(OWNER_LABEL, "").partition(":")
        if host != socket.gethostname() or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its owner still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        log.warning("removing container %s left behind by process %s, which is gone", container.name, pid)
        container.remove(force=True)
        removed.append(container.name)
    return removed


class ContainerStatsProbe:
    """CPU and memory of one container from the Engine's stats API (its cgroup, not the host's psutil).

    CPU is the container's CPU time between two reads over the wall time between them (one-shot reads:
    Podman streams stats only every 5 s); memory is the cgroup's usage less inactive page cache, as
    `docker stats` shows; threads are the cgroup's tasks. Processes are not counted (None)."""

    def __init__(self, container: Any) -> None:
        self._container = container
        self._last: tuple[float, int] | None = None

    def gone(self) -> list[int]:
        return []  # the stats API counts tasks but does not name them: a crashed worker shows as errors only

    def read(self) -> Usage | None:
        try:
            stats = self._container.stats(stream=False)
            now = time.monotonic()
            cpu_ns = int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
        except Exception:  # noqa: BLE001 - gone, or stats not available: no sample, as with a dead process
            return None
        memory = stats.get("memory_stats") or {}
        inactive = (memory.get("stats") or {}).get(
            "inactive_file", (memory.get("stats") or {}).get("total_inactive_file", 0)
        )
        rss_mb = max(int(memory.get("usage", 0)) - int(inactive), 0) / MB
        threads = int((stats.get("pids_stats") or {}).get("current", 0))
        last, self._last = self._last, (now, cpu_ns)
        cpu = 0.0 if last is None else 100.0 * (cpu_ns - last[1]) / max((now - last[0]) * 1e9, 1.0)
        return Usage(cpu, rss_mb, threads, None)


PACKAGES_FILE = "/srv/packages.txt"  # written by docker/server-python.Dockerfile


def _read_file(container: Any, path: str) -> str:
    """A text file of a container, or "" where it has none (a native server's image)."""
    try:
        chunks, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            extracted = tar.extractfile(member) if member else None
            return extracted.read().decode(errors="replace") if extracted else ""
    except Exception:  # noqa: BLE001 - not there: nothing to log
        return ""


class ContainerServer(ServerHandle):
    def __init__(
        self, container: Any, base_url: str, log_path: Path, grace_s: float, started_at: float, details: dict[str, str]
    ) -> None:
        self._container = container
        self._grace_s = grace_s
        self._report: StopReport | None = None
        self.base_url = base_url
        self.log_path = log_path
        self.started_at = started_at
        self.details = details
        self.packages = _read_file(container, PACKAGES_FILE)
        self._token = teardown.register(f"container {container.name}", self.kill)

    def kill(self) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self._container.remove(force=True)

    def exit_code(self) -> int | None:
        if self._report is not None:
            return self._report.exit_code
        try:
            self._container.reload()
        except Exception:  # noqa: BLE001 - removed under us: it is not running
            return -1
        state = self._container.attrs.get("State", {})
        return None if state.get("Running") else int(state.get("ExitCode", -1))

    def probe(self) -> ContainerStatsProbe:
        return ContainerStatsProbe(self._container)

    def cpu_seconds(self) -> float:
        """The CPU the container has used since it started, from the engine's stats API."""
        stats = self._container.stats(stream=False)
        return int(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9

    def address(self, network: str) -> str:
        """The container's IP address on `network`."""
        self._container.reload()
        return str(self._container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])

    def log_tail(self, lines: int = 40) -> str:
        if self._report is not None:
            return super().log_tail(lines)
        try:
            return str(self._container.logs(tail=lines).decode(errors="replace")).rstrip()
        except Exception:  # noqa: BLE001 - gone: whatever was saved
            return super().log_tail(lines)

    def stop(self) -> StopReport:
        """SIGTERM, SIGKILL after the grace period; save the log; remove the container, always."""
        if self._report is not None:
            return self._report
        import docker.errors

        graceful, code = True, None
        try:
            began = time.monotonic()
            self._container.stop(timeout=int(self._grace_s))
            graceful = time.monotonic() - began < self._grace_s
            self._container.reload()
            code = int(self._container.attrs.get("State", {}).get("ExitCode", -1))
            with open(self.log_path, "ab") as f:
                f.write(self._container.logs())
        except docker.errors.APIError as exc:
            log.error("container %s: could not stop it cleanly: %s", self._container.name, exc)
            graceful = False
        finally:
            leftovers: tuple[str, ...] = ()
            try:
                self._container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                log.error("container %s could not be removed: %s", self._container.name, exc)
                leftovers = (f"container {self._container.name}",)
            self._report = StopReport(code, graceful, leftovers)
            teardown.unregister(self._token)
        return self._report


class ContainerRunner(Runner):
    """`cpuset` (e.g. "1" or "0-1") and `memory_mb` limit every container; `network`, when set, is a
    private network the harness shares (as in docker-compose), else ports are published on 127.0.0.1.
    `where` is a server host (images.engine): its engine builds the image and runs the container, published
    on the address the harness reaches that host at, on a port the engine picks."""

    name = "docker"

    def __init__(
        self, cpuset: str | None = None, memory_mb: int | None = None, network: str | None = None, where: str = ""
    ) -> None:
        self.cpuset = cpuset
        self.memory_mb = memory_mb
        self.network = network if network is not None else os.environ.get("SERVEBENCH_DOCKER_NETWORK") or None
        self.where = where
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = images.engine(self.where)
            reap_orphans(self._client)
        return self._client

    @functools.cached_property
    def _server_address(self) -> str:
        """Where the harness reaches containers the server host publishes (resolved once per runner)."""
        return images.server_address(self.where)

    @functools.cached_property
    def _server_host_machine(self) -> str:
        """The server host's machine in one line, from its engine (asked once per runner, not per container)."""
        info = self.client.info()
        return (
            f"{info.get('Name')}: {info.get('NCPU')} CPUs, {info.get('MemTotal', 0) / 2**30:.1f} GiB, "
            f"kernel {info.get('KernelVersion')}, {info.get('OperatingSystem')}"
        )

    def limits(self) -> dict[str, str]:
        return {
            "cpuset": self.cpuset or "all",
            "memory_mb": str(self.memory_mb) if self.memory_mb else "unlimited",
            "server_host": self.where or "local",
        }

    def build(self, manifest: Manifest, models: list[ExportedModel]) -> list[str]:
        return [images.ensure(self.client, manifest, model) for model in models]

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
        try:
            tag = images.ensure(self.client, manifest, model)
            balancer_tag = images.ensure_balancer(self.client) if replicas > 1 or cpus else ""
        except images.ImageError as exc:
            raise ServerFailed(str(exc)) from None
        options = {"environment": {"WORKERS": str(workers)}, "stop_signal": "SIGTERM"}
        log.info(
            "server %s: starting %s from %s (%s workers, %s)",
            manifest.name,
            f"{replicas} replica(s) of {cpus:g} CPUs behind a load balancer" if balancer_tag else "a container",
            tag,
            workers,
            ", ".join(f"{k} {v}" for k, v in self.limits().items()),
        )
        if not balancer_tag:
            return self._run(manifest.name, tag, options, log_path, manifest.stop_grace_s, port=port)
        network = self._set_network()
        members: list[ServerHandle] = []
        try:
            addresses = []
            for i in range(1, replicas + 1):
                replica = self._run(
                    manifest.name,
                    tag,
                    {**options, "nano_cpus": int(cpus * 1e9) if cpus else None},
                    log_path.with_name(f"{log_path.stem}-replica{i}.log"),
                    manifest.stop_grace_s,
                    network=network.name,
                    publish=False,
                )
                members.append(replica)
                addresses.append(replica.address(network.name))
            config = replicas_mod.haproxy_config(addresses, images.CONTAINER_PORT, manifest.health_path, 60.0)
            balancer = self._run(
                "balancer",
                balancer_tag,
                {"environment": {"HAPROXY_CFG": config}},
                log_path.with_name(f"{log_path.stem}-balancer.log"),
                5.0,
                port=port,
                network=network.name if not self.network else None,
                limited=False,
            )
        except BaseException:
            for member in members:
                member.kill()
            with contextlib.suppress(Exception):
                network.remove()
            raise
        details = {"replicas": str(replicas), "cpus_per_replica": f"{cpus:g}" if cpus else "unlimited"}
        details["balancer"] = "haproxy (round-robin per request, health-checked)"
        return replicas_mod.ReplicaSet(members, balancer, network, log_path, details)

    def _set_network(self) -> Any:
        """The network a replica set's members share: the harness's private one (compose), else a new one."""
        if self.network:
            return _Shared(self.client.networks.get(self.network))
        name = f"servebench-set-{uuid.uuid4().hex[:8]}"
        return self.client.networks.create(name, driver="bridge", labels={images.LABEL: "true", OWNER_LABEL: _owner()})

    def _run(
        self,
        what: str,
        tag: str,
        extra: dict[str, Any],
        log_path: Path,
        grace_s: float,
        port: int | None = None,
        network: str | None = None,
        limited: bool = True,
        publish: bool = True,
    ) -> ContainerServer:
        """Run one container of `tag` (on `network` if given), with this runner's limits unless not `limited`,
        reached where the harness can: by name on the runner's private network, or published (unless not
        `publish`) on the server host's address or on 127.0.0.1."""
        import docker.errors

        name = f"servebench-{what}-{uuid.uuid4().hex[:8]}"
        options: dict[str, Any] = {
            "name": name,
            "detach": True,
            "labels": {images.LABEL: "true", OWNER_LABEL: _owner()},
            "init": False,
            **{k: v for k, v in extra.items() if v is not None},
        }
        if limited:
            options["cpuset_cpus"] = self.cpuset
            if self.memory_mb:
                options.update(mem_limit=f"{self.memory_mb}m", memswap_limit=f"{self.memory_mb}m")  # no swap
        address, base_url = "", ""
        if network or self.network:
            options["network"] = network or self.network
            base_url = f"http://{name}:{images.CONTAINER_PORT}"  # by name, from the harness's private network
        if publish and not self.network:
            if self.where:
                address = self._server_address
                options["ports"] = {f"{images.CONTAINER_PORT}/tcp": (address, port)}  # port None: the engine picks
            else:
                if port:
                    check_port_free(port)
                port = port or free_port()
                options["ports"] = {f"{images.CONTAINER_PORT}/tcp": (HOST, port)}
                base_url = f"http://{HOST}:{port}"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started_at = time.monotonic()
        try:
            container = self.client.containers.run(tag, **options)
        except docker.errors.APIError as exc:
            with contextlib.suppress(docker.errors.APIError):
                self.client.containers.get(name).remove(force=True)
            raise ServerFailed(f"server {what}: container could not be started: {exc}") from None
        details = {"image": tag, "resource_source": "engine-stats"}
        if self.where:
            details["server_host_machine"] = self._server_host_machine
        if address:
            container.reload()
            published = container.ports.get(f"{images.CONTAINER_PORT}/tcp") or [{}]
            base_url = f"http://{address}:{published[0].get('HostPort')}"
            log.info("server %s: published by %s at %s", what, self.where, base_url)
        return ContainerServer(container, base_url, log_path, grace_s, started_at, details)


class _Shared:
    """The harness's own network, lent to a replica set: not removed with it."""

    def __init__(self, network: Any) -> None:
        self.name = network.name

    def remove(self) -> None:
        pass
