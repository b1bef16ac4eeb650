"""A replica set: N identical server containers, each limited to its CPUs, behind one load balancer (Debian's
HAProxy in its own container: round-robin per request, health-checked) on a network of their own. It answers
the scale-out question of the FastAPI vs TF Serving study ("8 nodes x 2 vCPU or 2 x 8?") the way a cluster
would: clients see one address, a Service-like balancer spreads requests. A shaped trial (cpus_per_replica
set, or replicas > 1) always has the balancer, one replica too, so shapes compare on equal footing; its CPU is
measured apart from the servers' (`balancer_cpu_percent_*`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from servebench.servers.probes import Probe, Usage
from servebench.servers.runner.base import ServerHandle, StopReport

BALANCER_PORT = 8000


def haproxy_config(addresses: list[str], port: int, health_path: str, timeout_s: float) -> str:
    """HAProxy's configuration: every request to the next healthy replica in turn."""
    servers = "".join(f"    server r{i} {a}:{port} check inter 1s fall 2 rise 1\n" for i, a in enumerate(addresses, 1))
    return (
        "global\n    maxconn 4096\n"
        "defaults\n    mode http\n    option http-keep-alive\n    timeout connect 5s\n"
        f"    timeout client {timeout_s:.0f}s\n    timeout server {timeout_s:.0f}s\n"
        f"frontend servebench\n    bind :{BALANCER_PORT}\n    default_backend replicas\n"
        f"backend replicas\n    balance roundrobin\n    option httpchk GET {health_path}\n"
        f"    http-check expect status 200\n{servers}"
    )


class SumProbe:
    """The replicas together: CPU, memory and threads summed over them, read at the same tick."""

    def __init__(self, probes: list[Probe]) -> None:
        self.probes = probes

    def gone(self) -> list[int]:
        return [pid for probe in self.probes for pid in probe.gone()]

    def read(self) -> Usage | None:
        usages = [u for u in (p.read() for p in self.probes) if u is not None]
        if not usages:
            return None
        return Usage(
            sum(u.cpu_percent for u in usages), sum(u.rss_mb for u in usages), sum(u.threads for u in usages), None
        )


class ReplicaSet(ServerHandle):
    """The replicas and their balancer as one server: reached at the balancer, measured over the replicas."""

    def __init__(
        self,
        replicas: list[ServerHandle],
        balancer: ServerHandle,
        network: Any,
        log_path: Path,
        details: dict[str, str],
    ) -> None:
        self.replicas = replicas
        self.balancer = balancer
        self._network = network
        self.base_url = balancer.base_url
        self.log_path = log_path
        self.started_at = min(r.started_at for r in replicas)
        self.details = {**replicas[0].details, **details}
        self.packages = replicas[0].packages
        self._report: StopReport | None = None

    def exit_code(self) -> int | None:
        for member in [*self.replicas, self.balancer]:
            code = member.exit_code()
            if code is not None:
                return code
        return None

    def probe(self) -> SumProbe:
        return SumProbe([r.probe() for r in self.replicas])

    def balancer_probe(self) -> Probe | None:
        return self.balancer.probe()

    def kill(self) -> None:
        for member in [self.balancer, *self.replicas]:
            member.kill()
        with contextlib.suppress(Exception):
            self._network.remove()

    def stop(self) -> StopReport:
        if self._report is not None:
            return self._report
        reports = [self.balancer.stop(), *(r.stop() for r in self.replicas)]
        leftovers = [item for report in reports for item in report.leftovers]
        try:
            self._network.remove()
        except Exception as exc:  # noqa: BLE001 - any failure leaves the network behind: say so
            leftovers.append(f"network {self._network.name} ({exc})")
        with self.log_path.open("a") as log:  # the replicas' and the balancer's logs, one after another
            for member in [*self.replicas, self.balancer]:
                log.write(f"--- {member.log_path.name} ---\n{member.log_tail(200)}\n")
        self._report = StopReport(reports[1].exit_code, all(r.graceful for r in reports), tuple(leftovers))
        return self._report

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"[{r.log_path.stem}] {r.log_tail(lines // len(self.replicas))}" for r in self.replicas)
