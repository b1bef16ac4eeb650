"""The load generator, whichever engine drives it: what a load test is asked (LoadSpec), what it saw inside the
measured window (LoadResult, the same for every engine), and `run`, which hands the test to its engine.

Engines: Locust (locust_engine.py), the default and the scenario the published studies use, and h2load
(h2load_engine.py), a native engine for servers faster than Locust can drive. Both end in per-second HDR
histograms of every response, so every latency figure, series and artifact comes from the same code.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from servebench.measure import latency
from servebench.servers import contract
from servebench.servers.contract import Wire

log = logging.getLogger(__name__)

ENGINES = ("locust", "h2load")


class LoadgenError(RuntimeError):
    """The engine failed or produced no results; carries the tail of its output."""


@dataclass(frozen=True)
class LoadSpec:
    host: str
    meta_path: str
    users: int  # closed loop: concurrent users; open loop: the most requests in flight (connections)
    spawn_rate: float
    duration_s: float
    warmup_s: float
    request_timeout_s: float = 10.0
    batch: int = 1  # rows per request
    wire: Wire = field(default_factory=contract.wire)  # the server's protocol
    mode: str = "closed"  # "closed" | "open"
    rate: float | None = None  # open loop: target requests per second, over all processes
    arrival: str = "poisson"  # open loop: "poisson" | "constant"
    processes: int = 1  # Locust processes (--processes), on each load host if any: one core each at most
    cpus: tuple[int, ...] = ()  # CPUs the load generator is pinned to; () = not pinned
    probe_path: str | None = None  # GET this path (closed loop) instead of predicting: the harness's own ceiling
    engine: str = "locust"  # "locust" | "h2load"
    # Locust across load hosts: the master runs here, listening on master_bind:master_port, and waits at most
    # worker_wait_s for `processes` workers from each named load host (`servebench load-worker` there).
    load_hosts: tuple[str, ...] = ()  # () = the load generator runs here alone
    master_bind: str = "127.0.0.1"
    master_port: int = 5557
    worker_wait_s: float = 20.0

    @property
    def total_processes(self) -> int:
        return self.processes * max(1, len(self.load_hosts))


@dataclass(frozen=True)
class LoadResult:
    """What the load generator saw inside the measured window (warm-up excluded)."""

    window_start: float  # epoch seconds (whole)
    window_end: float
    requests: int
    failures: int
    histogram: HdrHistogram  # every response in the window, in µs, merged over the processes
    per_second: list[dict[str, Any]]
    failure_reasons: list[tuple[str, int]]
    warmup_requests: int
    locust: dict[str, float]  # Locust's own (rounded) figures over about the same window; {} for other engines
    # Under a Locust master: each worker's host, pid, requests (merged / Locust's count), CPU % over the window
    workers: tuple[dict[str, Any], ...] = ()
    invalid: str | None = None  # why the figures cannot be trusted (a worker lost, responses missing)

    @property
    def window_s(self) -> float:
        return self.window_end - self.window_start


def run(spec: LoadSpec, out_dir: Path, on_started: Callable[[int], None] = lambda pid: None) -> LoadResult:
    """Run one load test with the spec's engine; `on_started` gets the engine's root pid (for the sampler)."""
    from servebench.measure import h2load_engine, locust_engine

    out_dir.mkdir(parents=True, exist_ok=True)
    engine = {"locust": locust_engine.run, "h2load": h2load_engine.run}[spec.engine]
    return engine(spec, out_dir, on_started)


def processes(spec: LoadSpec) -> int:
    """How many processes the spec's engine runs (each can keep at most one core busy)."""
    from servebench.measure import h2load_engine

    return h2load_engine.streams(spec.users) if spec.engine == "h2load" else spec.total_processes


def result(
    start: int,
    end: int,
    per_second: dict[int, HdrHistogram],
    failures: Counter[int],
    reasons: Counter[str],
    warmup_requests: int,
    locust: dict[str, float],
    out_dir: Path,
    workers: tuple[dict[str, Any], ...] = (),
    invalid: str | None = None,
) -> LoadResult:
    """The window [start, end) of whole seconds from an engine's per-second histograms (merged over its
    processes) and failures; writes the histogram log and percentile distribution beside the test."""
    total = latency.histogram()
    for hist in per_second.values():
        total.add(hist)
    rows = []
    for s in range(start, end):
        hist = per_second.get(s)
        count = hist.get_total_count() if hist else 0
        p95 = hist.get_value_at_percentile(95.0) / 1000.0 if hist and count else None
        rows.append({"second": s - start, "requests": count, "failures": failures[s], "latency_ms_p95": p95})
    latency.write_log(per_second, out_dir / "latency.hlog")
    latency.write_distribution(total, out_dir / "latency_percentiles.txt")
    return LoadResult(
        window_start=float(start),
        window_end=float(end),
        requests=total.get_total_count(),
        failures=sum(failures[s] for s in range(start, end)),
        histogram=total,
        per_second=rows,
        failure_reasons=reasons.most_common(10),
        warmup_requests=warmup_requests,
        locust=locust,
        workers=workers,
        invalid=invalid,
    )
