"""Figures of a trial from raw measurements. The names here are a public interface (dashboards rely on them)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from servebench.loadgen import LoadResult
from servebench.sampler import Sample

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
# A percentile needs this many responses beyond it, or it is reported missing rather than guessed.
MIN_TAIL_RESPONSES = 10
# Above this share of one core the load generator, not the server, may set the pace.
LOADGEN_SATURATED_CPU_PERCENT = 90.0


def latency_metrics(latencies_ms: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """Latency figures in ms, and the percentiles left out for want of responses."""
    if latencies_ms.size == 0:
        return {}, list(PERCENTILES)
    figures = {
        "latency_ms_avg": float(latencies_ms.mean()),
        "latency_ms_min": float(latencies_ms.min()),
        "latency_ms_max": float(latencies_ms.max()),
    }
    missing = []
    for name, q in PERCENTILES.items():
        if round(latencies_ms.size * (100.0 - q) / 100.0, 6) >= MIN_TAIL_RESPONSES:
            figures[f"latency_ms_{name}"] = float(np.percentile(latencies_ms, q))
        else:
            missing.append(name)
    return figures, missing


def _stats(values: Iterable[float], prefix: str) -> dict[str, float]:
    arr = np.fromiter(values, dtype=float)
    if arr.size == 0:
        return {}
    return {f"{prefix}_avg": float(arr.mean()), f"{prefix}_max": float(arr.max())}


def trial_metrics(load: LoadResult, server: list[Sample], loadgen: list[Sample]) -> tuple[dict[str, float], list[str]]:
    """The flat metrics of one trial and the flags that qualify them."""
    figures: dict[str, float] = {
        "requests": float(load.requests),
        "rps": load.requests / load.window_s if load.window_s > 0 else 0.0,
        "failures": float(load.failures),
        "error_rate": load.failures / load.requests if load.requests else 0.0,
    }
    latency, missing = latency_metrics(load.latencies_ms)
    figures.update(latency)
    figures.update(_stats((s.cpu_percent for s in server), "server_cpu_percent"))
    figures.update(_stats((s.rss_mb for s in server), "server_rss_mb"))
    if server:
        figures["server_threads_max"] = float(max(s.threads for s in server))
        if load.requests:
            # CPU per request does not depend on how fast the load generator is: the fairest cost figure.
            cpu_seconds = figures["server_cpu_percent_avg"] / 100.0 * load.window_s
            figures["server_cpu_us_per_request"] = cpu_seconds * 1e6 / load.requests
    loadgen_cpu = _stats((s.cpu_percent for s in loadgen), "loadgen_cpu_percent")
    if loadgen_cpu:
        figures["loadgen_cpu_percent_avg"] = loadgen_cpu["loadgen_cpu_percent_avg"]
    flags = []
    if missing:
        flags.append("too_few_requests_for_" + "_".join(missing))
    if figures.get("loadgen_cpu_percent_avg", 0.0) > LOADGEN_SATURATED_CPU_PERCENT:
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
