import numpy as np
import pytest

from servebench.measure import aggregate, latency, metrics
from servebench.measure.loadgen import LoadResult
from servebench.measure.sampler import Sample


def hist(latencies_ms) -> latency.HdrHistogram:  # type: ignore[no-untyped-def]
    h = latency.histogram()
    for value in latencies_ms:
        latency.record(h, float(value))
    return h


def load(latencies: list[float], failures: int = 0, start: float = 1000.0, seconds: float = 10.0) -> LoadResult:
    per_second = [
        {"second": s, "requests": len(latencies) // int(seconds), "failures": 0, "latency_ms_p95": 1.0}
        for s in range(int(seconds))
    ]
    return LoadResult(
        start,
        start + seconds,
        len(latencies),
        failures,
        hist(latencies),
        per_second,
        [],
        5,
        {"p50": 1.0, "p99": 1.0, "max": 1.0},
    )


def test_percentiles_have_microsecond_resolution_not_locust_buckets() -> None:
    figures, missing = latency.figures_ms(hist(np.linspace(0.1, 1.0, 10_000)))  # Locust's buckets: 0-1 ms
    assert missing == [] and figures["latency_ms_min"] == pytest.approx(0.1)
    assert figures["latency_ms_p50"] == pytest.approx(0.55, abs=1e-3)
    assert figures["latency_ms_p99"] == pytest.approx(0.991, abs=1e-3)
    assert (
        figures["latency_ms_p50"] <= figures["latency_ms_p95"] <= figures["latency_ms_p99"] <= figures["latency_ms_max"]
    )
    assert all(round(v, 3) == v for v in figures.values())  # ms with three decimals


def test_histograms_merge_across_processes_exactly() -> None:
    a, b = hist([1.0] * 600), hist([3.0] * 400)
    merged = latency.merge([a.encode(), b.encode()])
    figures, _ = latency.figures_ms(merged)
    assert (
        merged.get_total_count() == 1000
        and figures["latency_ms_p50"] == 1.0
        and figures["latency_ms_p90"] == pytest.approx(3.0, rel=1e-3)
    )  # HDR: within 0.1%


def test_percentiles_without_enough_responses_are_missing_not_guessed() -> None:
    figures, missing = latency.figures_ms(hist(np.ones(500)))
    assert "latency_ms_p99" not in figures and "latency_ms_p999" not in figures
    assert missing == ["p99", "p999"] and "latency_ms_p95" in figures


def test_trial_metrics_rates_flags_and_locust_figures_beside() -> None:
    server = [Sample(1001.0 + i, "server", 150.0, 300.0 + i, 8, 3) for i in range(5)]
    loadgen = [Sample(1001.0 + i, "loadgen", 97.0, 50.0, 2, 1) for i in range(5)]
    figures, flags = metrics.trial_metrics(load([1.0] * 2000, failures=20), server, loadgen)
    assert figures["rps"] == pytest.approx(200.0) and figures["error_rate"] == pytest.approx(0.01)
    assert figures["server_cpu_percent_avg"] == 150.0 and figures["server_rss_mb_max"] == 304.0
    assert figures["server_threads_max"] == 8 and figures["loadgen_cpu_percent_avg"] == 97.0
    assert figures["server_cpu_us_per_request"] == pytest.approx(1.5 * 10.0 * 1e6 / 2000)  # 1.5 cores x 10 s / 2000
    assert figures["locust_latency_ms_p50"] == 1.0 and figures["loadgen_saturated"] == 1.0
    assert "loadgen_saturated" in flags and "too_few_requests_for_p999" in flags


def test_saturation_is_judged_against_the_cores_the_load_generator_may_use() -> None:
    loadgen = [Sample(1001.0 + i, "loadgen", 150.0, 50.0, 2, 3) for i in range(5)]  # 1.5 cores busy
    _, one_core = metrics.trial_metrics(load([1.0] * 2000), [], loadgen, loadgen_cores=1)
    figures, two_cores = metrics.trial_metrics(load([1.0] * 2000), [], loadgen, loadgen_cores=2)
    assert "loadgen_saturated" in one_core and "loadgen_saturated" not in two_cores
    assert figures["loadgen_saturated"] == 0.0


def test_per_second_series_count_from_the_window_start() -> None:
    server = [Sample(1000.5 + i, "server", 10.0 * i, 100.0, 4, 1) for i in range(3)]
    series = metrics.per_second_series(load([1.0] * 100), server)
    assert [s for s, _ in series["series/server_cpu_percent"]] == [0, 1, 2]
    assert len(series["series/rps"]) == 10 and series["series/rps"][0] == (0, 10.0)


def test_repeats_give_medians_a_confidence_interval_and_a_noise_flag() -> None:
    repeats = [
        {"rps": r, "requests": 100.0 * r, "failures": 1.0, "latency_ms_p99": p99, "loadgen_saturated": s}
        for r, p99, s in ((1000.0, 2.0, 0.0), (1100.0, 3.0, 1.0), (900.0, 2.5, 0.0))
    ]
    figures, flags = aggregate.combine(repeats, max_cv=0.05)
    assert figures["rps"] == 1000.0 and figures["latency_ms_p99"] == 2.5 and figures["repeats"] == 3
    assert figures["requests"] == 300_000.0 and figures["error_rate"] == pytest.approx(3 / 300_000)
    assert figures["rps_cv"] == pytest.approx(0.1) and flags == ["noisy"]
    # t(0.975, 2) = 4.303: mean 1000 +- 4.303 * 100 / sqrt(3)
    assert figures["rps_ci95_low"] == pytest.approx(1000 - 248.4, abs=0.1) and figures[
        "rps_ci95_high"
    ] == pytest.approx(1248.4, abs=0.1)
    assert figures["loadgen_saturated"] == 1.0
    _, calm = aggregate.combine(repeats, max_cv=0.2)
    assert calm == []
    wild, _ = aggregate.combine([{"rps": r} for r in (300.0, 1500.0, 1100.0)], max_cv=0.1)  # mean 967, half-width 1518
    assert wild["rps_ci95_low"] == 0.0 and wild["rps_ci95_high"] == pytest.approx(2484.5, abs=0.1)


def test_a_percentile_missing_in_any_repeat_stays_missing() -> None:
    figures, _ = aggregate.combine([{"rps": 1.0, "latency_ms_p999": 5.0}, {"rps": 1.0}], max_cv=0.1)
    assert "latency_ms_p999" not in figures
