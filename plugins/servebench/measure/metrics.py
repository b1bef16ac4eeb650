"""Figures of a trial from raw measurements. The names here are a public interface (dashboards rely on them)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from servebench.measure import latency
from servebench.measure.loadgen import LoadResult
from servebench.measure.sampler import Sample
from servebench.results.records import LOCUST_PREFIX, TOO_FEW_REQUESTS_PREFIX, Flag, Metric, Series

# Above this share of the cores it may use, the load generator, not the server, may set the pace.
LOADGEN_SATURATED_SHARE = 0.9
# Other processes using more than this (% of one core) during the window make the trial `contended`.
CONTENDED_PERCENT = 30.0
# Trends (a soak's point): memory "grows" when RSS rises faster than this along a line that explains
# most of its variation (a leak, not an allocator settling); latency "drifts" when its p95 rises by this
# share of its median over the window along a fitted line. Below MIN_FIT_POINTS seconds, no trend is fitted.
GROWTH_FLAG_MB_PER_MIN = 1.0
GROWTH_MIN_R2 = 0.8
DRIFT_FLAG_SHARE = 0.2
DRIFT_MIN_R2 = 0.5
MIN_FIT_POINTS = 10


def trend(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares slope per minute and R² of (seconds, value) points; None with too few to fit."""
    if len(points) < MIN_FIT_POINTS:
        return None
    x, y = (np.asarray(v, dtype=float) for v in zip(*points, strict=True))
    if np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - (slope * x + intercept)) ** 2).sum()) / total if total > 0 else 0.0
    return float(slope) * 60.0, r2


def _stats(values: Iterable[float], prefix: str) -> dict[str, float]:
    arr = np.fromiter(values, dtype=float)
    if arr.size == 0:
        return {}
    return {f"{prefix}_avg": float(arr.mean()), f"{prefix}_max": float(arr.max())}


def trial_metrics(
    load: LoadResult,
    server: list[Sample],
    loadgen: list[Sample],
    loadgen_cores: int = 1,
    machine: list[Sample] | None = None,
    remote_load: bool = False,
    balancer: list[Sample] | None = None,
) -> tuple[dict[str, float], list[str]]:
    """The flat metrics of one trial and the flags that qualify them. `loadgen_cores` is how many cores
    the load generator can use (its processes, at most the CPUs it may run on); `machine`, the whole
    machine's CPU over the same ticks, tells what other processes took; `balancer`, the load balancer in front
    of a replica set, is measured apart from the servers. Under a Locust master each worker's
    own CPU is judged too (one worker is one process: at most one core); with `remote_load` (workers on load
    hosts, where this machine's sampler cannot see them) the workers' CPU is the load generator's."""
    figures: dict[str, float] = {
        Metric.REQUESTS: float(load.requests),
        Metric.RPS: load.requests / load.window_s if load.window_s > 0 else 0.0,
        Metric.FAILURES: float(load.failures),
        Metric.ERROR_RATE: load.failures / load.requests if load.requests else 0.0,
    }
    hdr, missing = latency.figures_ms(load.histogram)
    figures.update(hdr)
    figures.update({f"{LOCUST_PREFIX}{k}": v for k, v in load.locust.items() if k != "requests" and v is not None})
    figures.update(_stats((s.cpu_percent for s in server), "server_cpu_percent"))
    figures.update(_stats((s.rss_mb for s in server), "server_rss_mb"))
    if server:
        figures[Metric.SERVER_THREADS_MAX] = float(max(s.threads for s in server))
        if load.requests:
            # CPU per request does not depend on how fast the load generator is: the fairest cost figure.
            cpu_seconds = figures[Metric.SERVER_CPU_AVG] / 100.0 * load.window_s
            figures[Metric.CPU_US_PER_REQUEST] = cpu_seconds * 1e6 / load.requests
    flags: list[str] = []
    growth = trend([(s.t, s.rss_mb) for s in server])
    if growth:
        figures[Metric.RSS_GROWTH], figures[Metric.RSS_GROWTH_R2] = growth
        if growth[0] > GROWTH_FLAG_MB_PER_MIN and growth[1] >= GROWTH_MIN_R2:
            flags.append(Flag.MEMORY_GROWING)
    drift = trend([(p["second"], p[Metric.LATENCY_P95]) for p in load.per_second if p[Metric.LATENCY_P95] is not None])
    if drift and Metric.LATENCY_P95 in figures:
        figures[Metric.P95_DRIFT], figures[Metric.P95_DRIFT_R2] = drift
        if (
            drift[0] * load.window_s / 60.0 > DRIFT_FLAG_SHARE * figures[Metric.LATENCY_P95]
            and drift[1] >= DRIFT_MIN_R2
        ):
            flags.append(Flag.LATENCY_DRIFTING)
    loadgen_cpu = _stats((s.cpu_percent for s in loadgen), "loadgen_cpu_percent")
    worker_cpu = [w["cpu_percent"] for w in load.workers if w.get("cpu_percent") is not None]
    if load.workers:
        figures[Metric.LOADGEN_WORKERS] = float(len(load.workers))
    if worker_cpu:
        figures[Metric.LOADGEN_WORKER_CPU_MAX] = max(worker_cpu)
        figures[Metric.LOADGEN_WORKER_CPU_MIN] = min(worker_cpu)
        if remote_load:
            loadgen_cpu, loadgen_cores = {Metric.LOADGEN_CPU_AVG: float(sum(worker_cpu))}, len(worker_cpu)
    saturated = any(c > LOADGEN_SATURATED_SHARE * 100.0 for c in worker_cpu)
    if loadgen_cpu:
        figures[Metric.LOADGEN_CPU_AVG] = loadgen_cpu[Metric.LOADGEN_CPU_AVG]
        saturated |= figures[Metric.LOADGEN_CPU_AVG] > LOADGEN_SATURATED_SHARE * 100.0 * loadgen_cores
        if figures[Metric.LOADGEN_CPU_AVG] > 0 and load.requests:
            # The engine's own ceiling, measured in this very trial: its CPU per request, over all its cores.
            figures[Metric.LOADGEN_CEILING] = (
                figures[Metric.RPS] * loadgen_cores * 100.0 / figures[Metric.LOADGEN_CPU_AVG]
            )
    figures[Metric.LOADGEN_SATURATED] = float(saturated)
    figures.update(_stats((s.cpu_percent for s in balancer or []), "balancer_cpu_percent"))
    if machine:
        other = host_other_cpu(machine, [*server, *(balancer or [])], loadgen)
        figures[Metric.HOST_OTHER_CPU] = other
        if other > CONTENDED_PERCENT:
            flags.append(Flag.CONTENDED)
    if missing:
        flags.append(TOO_FEW_REQUESTS_PREFIX + "_".join(missing))
    if saturated:
        flags.append(Flag.LOADGEN_SATURATED)
    if load.requests == 0:
        flags.append(Flag.NO_REQUESTS)
    return figures, flags


def host_other_cpu(machine: list[Sample], server: list[Sample], loadgen: list[Sample]) -> float:
    """Mean CPU (% of one core) used by neither the server nor the load generator, tick by tick (the sampler
    reads every probe at the same tick)."""
    mine: dict[float, float] = {}
    for s in [*server, *loadgen]:
        mine[s.t] = mine.get(s.t, 0.0) + s.cpu_percent
    others = [max(0.0, m.cpu_percent - mine.get(m.t, 0.0)) for m in machine]
    return float(np.mean(others)) if others else 0.0


def per_second_series(load: LoadResult, server: list[Sample]) -> dict[str, list[tuple[int, float]]]:
    """(second, value) series for MLflow step metrics, seconds counted from the window's start."""
    series: dict[str, list[tuple[int, float]]] = {
        Series.RPS: [(p["second"], float(p["requests"])) for p in load.per_second],
        Series.LATENCY_P95: [
            (p["second"], p[Metric.LATENCY_P95]) for p in load.per_second if p[Metric.LATENCY_P95] is not None
        ],
        Series.SERVER_CPU: [],
        Series.SERVER_RSS: [],
    }
    for s in server:
        second = int(s.t - load.window_start)
        series[Series.SERVER_CPU].append((second, s.cpu_percent))
        series[Series.SERVER_RSS].append((second, s.rss_mb))
    return series
