"""Did it get worse? Each configuration against its own recent history on the same machine.

The baseline of a configuration is its last K successful runs from scheduled benchmarks on the same host
fingerprint (another machine, or another kind of night, says nothing about this one). A change counts
only when it exceeds both a relative threshold and the baseline's own noise: outside its median by more
than `k_mad` robust standard deviations (1.4826 x the median absolute deviation), so a noisy history
widens the band instead of raising false alarms. Improvements are judged the same way.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from servebench.results.records import Metric

# Figure -> +1 when higher is better, -1 when lower is better.
JUDGED = {Metric.RPS: +1, Metric.LATENCY_P99: -1}
MAD_TO_SD = 1.4826  # the MAD of normal data times this is its standard deviation


@dataclass(frozen=True)
class Verdict:
    figure: str
    value: float
    verdict: str  # "regression" | "improvement" | "unchanged" | "no_baseline"
    baseline: float | None = None  # the history's median
    band: tuple[float, float] | None = None  # what the history's noise allows
    change: float | None = None  # relative to the baseline, signed as measured (+0.2 = 20% higher)
    history: int = 0

    @property
    def text(self) -> str:
        if self.baseline is None:
            return f"{self.figure} {self.value:.4g}: no baseline ({self.history} earlier runs)"
        assert self.band is not None and self.change is not None
        return (
            f"{self.figure} {self.value:.4g} vs {self.baseline:.4g} ({100 * self.change:+.1f}%, noise band "
            f"{self.band[0]:.4g}-{self.band[1]:.4g} over {self.history} runs): {self.verdict}"
        )


def judge(
    figure: str, value: float, history: list[float], threshold: float = 0.10, k_mad: float = 3.0, min_history: int = 3
) -> Verdict:
    """The verdict on one figure of one configuration, given its earlier values (most recent K)."""
    if len(history) < min_history:
        return Verdict(figure, value, "no_baseline", history=len(history))
    median = statistics.median(history)
    spread = k_mad * MAD_TO_SD * statistics.median(abs(x - median) for x in history)
    band = (median - spread, median + spread)
    change = (value - median) / median if median else 0.0
    better = JUDGED[Metric(figure)] * change  # > 0: better than usual
    outside = value < band[0] or value > band[1]
    if outside and abs(change) > threshold:
        verdict = "improvement" if better > 0 else "regression"
    else:
        verdict = "unchanged"
    return Verdict(figure, value, verdict, median, band, change, len(history))


SEVERITY = ("regression", "improvement", "unchanged", "no_baseline")  # the worst first


def overall(verdicts: list[Verdict]) -> str:
    """A configuration's verdict: its worst figure's."""
    return min((v.verdict for v in verdicts), key=SEVERITY.index, default="no_baseline")
