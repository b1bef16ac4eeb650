import numpy as np
import pytest

from servebench import metrics
from servebench.loadgen import LoadResult
from servebench.sampler import Sample


def load(latencies: list[float], failures: int = 0, start: float = 1000.0, seconds: float = 10.0) -> LoadResult:
    per_second = [{"second": s, "requests": len(latencies) // int(seconds), "failures": 0, "latency_ms_p95": 1.0} for s in range(int(seconds))]
    return LoadResult(start, start + seconds, len(latencies), failures, np.asarray(latencies), per_second, [], 5)


def test_percentiles_are_exact_not_bucketed() -> None:
    latencies = np.linspace(0.1, 1.0, 10_000)  # a sub-millisecond server: Locust's buckets would say 0-1 ms
    figures, missing = metrics.latency_metrics(latencies)
    assert missing == [] and figures["latency_ms_min"] == pytest.approx(0.1)
    assert figures["latency_ms_p50"] == pytest.approx(0.55, abs=1e-3)
    assert figures["latency_ms_p99"] == pytest.approx(0.991, abs=1e-3)
    assert figures["latency_ms_p50"] <= figures["latency_ms_p95"] <= figures["latency_ms_p99"] <= figures["latency_ms_max"]


def test_percentiles_without_enough_responses_are_missing_not_guessed() -> None:
    figures, missing = metrics.latency_metrics(np.ones(500))
    assert "latency_ms_p99" not in figures and "latency_ms_p999" not in figures
    assert missing == ["p99", "p999"] and "latency_ms_p95" in figures


def test_trial_metrics_rates_and_flags() -> None:
    server = [Sample(1001.0 + i, "server", 150.0, 300.0 + i, 8, 3) for i in range(5)]
    loadgen = [Sample(1001.0 + i, "loadgen", 97.0, 50.0, 2, 1) for i in range(5)]
    figures, flags = metrics.trial_metrics(load([1.0] * 2000, failures=20), server, loadgen)
    assert figures["rps"] == pytest.approx(200.0) and figures["error_rate"] == pytest.approx(0.01)
    assert figures["server_cpu_percent_avg"] == 150.0 and figures["server_rss_mb_max"] == 304.0
    assert figures["server_threads_max"] == 8 and figures["loadgen_cpu_percent_avg"] == 97.0
    assert figures["server_cpu_us_per_request"] == pytest.approx(1.5 * 10.0 * 1e6 / 2000)  # 1.5 cores x 10 s / 2000
    assert "loadgen_saturated" in flags and "too_few_requests_for_p999" in flags


def test_per_second_series_count_from_the_window_start() -> None:
    server = [Sample(1000.5 + i, "server", 10.0 * i, 100.0, 4, 1) for i in range(3)]
    series = metrics.per_second_series(load([1.0] * 100), server)
    assert [s for s, _ in series["series/server_cpu_percent"]] == [0, 1, 2]
    assert len(series["series/rps"]) == 10 and series["series/rps"][0] == (0, 10.0)
