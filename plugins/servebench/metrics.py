"""Figures of a trial from raw measurements. The names here are a public interface (dashboards rely on them)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from servebench import latency
from servebench.loadgen import LoadResult
from servebench.sampler import Sample

# Above this share of the cores it may use, the load generator, not the server, may set the pace.
LOADGEN_SATURATED_SHARE = 0.9
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
    x, y = (np.asarray(v, dtype=float) for v in zip(*points))
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
    load: LoadResult, server: list[Sample], loadgen: list[Sample], loadgen_cores: int = 1
) -> tuple[dict[str, float], list[str]]:
    """The flat metrics of one trial and the flags that qualify them. `loadgen_cores` is how many cores
    the load generator can use (its processes, at most the CPUs it may run on)."""
    figures: dict[str, float] = {
        "requests": float(load.requests),
        "rps": load.requests / load.window_s if load.window_s > 0 else 0.0,
        "failures": float(load.failures),
        "error_rate": load.failures / load.requests if load.requests else 0.0,
    }
    hdr, missing = latency.figures_ms(load.histogram)
    figures.update(hdr)
    figures.update({f"locust_latency_ms_{k}": v for k, v in load.locust.items() if k != "requests" and v is not None})
    figures.update(_stats((s.cpu_percent for s in server), "server_cpu_percent"))
    figures.update(_stats((s.rss_mb for s in server), "server_rss_mb"))
    if server:
        figures["server_threads_max"] = float(max(s.threads for s in server))
        if load.requests:
            # CPU per request does not depend on how fast the load generator is: the fairest cost figure.
            cpu_seconds = figures["server_cpu_percent_avg"] / 100.0 * load.window_s
            figures["server_cpu_us_per_request"] = cpu_seconds * 1e6 / load.requests
    flags = []
    growth = trend([(s.t, s.rss_mb) for s in server])
    if growth:
        figures["server_rss_growth_mb_per_min"], figures["server_rss_growth_r2"] = growth
        if growth[0] > GROWTH_FLAG_MB_PER_MIN and growth[1] >= GROWTH_MIN_R2:
            flags.append("memory_growing")
    drift = trend([(p["second"], p["latency_ms_p95"]) for p in load.per_second if p["latency_ms_p95"] is not None])
    if drift and "latency_ms_p95" in figures:
        figures["latency_p95_drift_ms_per_min"], figures["latency_p95_drift_r2"] = drift
        if drift[0] * load.window_s / 60.0 > DRIFT_FLAG_SHARE * figures["latency_ms_p95"] and drift[1] >= DRIFT_MIN_R2:
            flags.append("latency_drifting")
    loadgen_cpu = _stats((s.cpu_percent for s in loadgen), "loadgen_cpu_percent")
    saturated = False
    if loadgen_cpu:
        figures["loadgen_cpu_percent_avg"] = loadgen_cpu["loadgen_cpu_percent_avg"]
        saturated = figures["loadgen_cpu_percent_avg"] > LOADGEN_SATURATED_SHARE * 100.0 * loadgen_cores
    figures["loadgen_saturated"] = float(saturated)
    if missing:
        flags.append("too_few_requests_for_" + "_".join(missing))
    if saturated:
        flags.append("loadgen_saturated")
    if load.requests == 0:
        flags.append("no_requests")
    return figures, flags


def per_second_series(load: LoadResult, server: list[Sample]) -> dict[str, list[tuple[int, float]]]:
    """(second, value) series for MLflow step metrics, seconds counted from the window's start."""
    series: dict[str, list[tuple[int, float]]] = {
        "series/rps": [(p["second"], float(p["requests"])) for p in load.per_second],
        "series/latency_ms_p95": [
            (p["second"], p["latency_ms_p95"]) for p in load.per_second if p["latency_ms_p95"] is not None
        ],
        "series/server_cpu_percent": [],
        "series/server_rss_mb": [],
    }
    for s in server:
        second = int(s.t - load.window_start)
        series["series/server_cpu_percent"].append((second, s.cpu_percent))
        series["series/server_rss_mb"].append((second, s.rss_mb))
    return series
