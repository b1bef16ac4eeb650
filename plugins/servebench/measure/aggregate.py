"""A configuration's figures from its repeated measurements: medians, a 95% interval, and how noisy it was.

One load test is one sample of a noisy machine; a figure without its spread cannot say whether two
nights differ. Each figure is the median over the repeats; throughput also gets the 95% confidence
interval of its mean (Student's t over the repeats) and its coefficient of variation.
"""

from __future__ import annotations

import math
import statistics

from scipy import stats

from servebench.results.records import Flag, Metric

COUNTS = (Metric.REQUESTS, Metric.FAILURES, Metric.WARMUP_REQUESTS)  # summed over repeats, not medians
ANY = (Metric.LOADGEN_SATURATED,)  # 1 if any repeat had it


def combine(repeats: list[dict[str, float]], max_cv: float) -> tuple[dict[str, float], list[str]]:
    """The configuration's metrics from each repeat's, and the flags the spread earns (`noisy`)."""
    if not repeats:
        return {}, []
    figures: dict[str, float] = {Metric.REPEATS: float(len(repeats))}
    # A figure some repeat could not support (a percentile with too few responses) stays missing.
    shared = set.intersection(*(set(r) for r in repeats))
    for key in sorted(shared):
        values = [r[key] for r in repeats]
        if key in COUNTS:
            figures[key] = float(sum(values))
        elif key in ANY:
            figures[key] = float(max(values))
        else:
            figures[key] = float(statistics.median(values))
    if Metric.REQUESTS in figures:
        figures[Metric.ERROR_RATE] = (
            figures.get(Metric.FAILURES, 0.0) / figures[Metric.REQUESTS] if figures[Metric.REQUESTS] else 0.0
        )
    flags: list[str] = []
    rps = [r[Metric.RPS] for r in repeats if Metric.RPS in r]
    if len(rps) >= 2:
        mean, sd = statistics.fmean(rps), statistics.stdev(rps)
        half = float(stats.t.ppf(0.975, len(rps) - 1)) * sd / math.sqrt(len(rps))
        # Throughput is never negative: a wide interval of a few noisy repeats is cut at 0, not shown below it.
        figures.update(rps_mean=mean, rps_ci95_low=max(mean - half, 0.0), rps_ci95_high=mean + half)
        figures[Metric.RPS_CV] = sd / mean if mean > 0 else 0.0
        if figures[Metric.RPS_CV] > max_cv:
            flags.append(Flag.NOISY)
    return figures, flags
