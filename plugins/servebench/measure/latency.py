"""Latency with microsecond resolution: HDR histograms, one per second per load-generator process.

Locust rounds response times into buckets (whole milliseconds below 100 ms), so every sub-millisecond
server reads 0 or 1 ms. Each load-generator process records every latency in an HdrHistogram per
wall-clock second instead; the harness merges the seconds inside the measured window across processes.
Per-second histograms keep memory bounded and make the window exact, whatever the process count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # an hour: beyond any request time-out or open-loop backlog
SIGNIFICANT_DIGITS = 3  # values within 0.1%
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
# A percentile needs this many responses beyond it, or it is reported missing rather than guessed.
MIN_TAIL_RESPONSES = 10


def histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record(hist: HdrHistogram, latency_ms: float) -> None:
    hist.record_value(min(max(round(latency_ms * 1000.0), LOWEST_US), HIGHEST_US))


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram from encoded ones (HdrHistogram's compressed base64 form)."""
    total = histogram()
    for item in encoded:
        total.decode_and_add(item)
    return total


def histogram_count(encoded: str) -> int:
    return int(HdrHistogram.decode(encoded).get_total_count())


def figures_ms(hist: HdrHistogram) -> tuple[dict[str, float], list[str]]:
    """latency_ms_{min,avg,max,p50..p999} in ms with three decimals, and the percentiles left out because
    fewer than MIN_TAIL_RESPONSES responses lie beyond them."""
    count = hist.get_total_count()
    if count == 0:
        return {}, list(PERCENTILES)
    figures = {
        "latency_ms_min": _ms(hist.get_min_value()),
        "latency_ms_avg": round(hist.get_mean_value() / 1000.0, 3),
        "latency_ms_max": _ms(hist.get_max_value()),
    }
    missing = []
    for name, q in PERCENTILES.items():
        if math.floor(count * (100.0 - q) / 100.0 + 1e-9) >= MIN_TAIL_RESPONSES:
            figures[f"latency_ms_{name}"] = _ms(hist.get_value_at_percentile(q))
        else:
            missing.append(name)
    return figures, missing


def _ms(value_us: int) -> float:
    return round(value_us / 1000.0, 3)


def write_log(per_second: dict[int, HdrHistogram], path: Path) -> None:
    """The window as an HdrHistogram interval log (one interval per second; values in µs, max in ms),
    readable by HdrHistogram's HistogramLogAnalyzer and `hdrh` tools for re-plotting."""
    start = min(per_second, default=0)
    with path.open("w") as f:
        writer = HistogramLogWriter(f)
        writer.output_comment("servebench: request latency in microseconds, one interval per second")
        # (hdrh's own output_start_time fails on Python 3: written here in the same format)
        stamp = datetime.fromtimestamp(start, UTC).isoformat(" ")
        f.write(
            f"#[StartTime: {start:.3f} (seconds since epoch), {stamp}]\n#[BaseTime: {start:.3f} (seconds since epoch)]\n"
        )
        writer.output_legend()
        for second in sorted(per_second):
            writer.output_interval_histogram(
                per_second[second], second - start, second + 1 - start, max_value_unit_ratio=1000.0
            )


def write_distribution(hist: HdrHistogram, path: Path) -> None:
    """The percentile distribution in ms (HdrHistogram's text format, plottable by its tools)."""
    with path.open("wb") as f:
        hist.output_percentile_distribution(f, 1000.0)
