"""Capacity search: the highest open-loop request rate a configuration sustains within its SLO.

"How many replicas for 2,000 rps under 100 ms p99?" needs each server's rate at the SLO, not its
throughput under an arbitrary number of users. Each step offers a fixed arrival rate (open loop, so
queueing shows in the latency), long enough for its p99 to rest on at least MIN_TAIL_RESPONSES
responses; rates are bracketed by doubling or halving, then bisected (geometrically) until the
bracket is within `precision`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from servebench.measure import latency

log = logging.getLogger(__name__)

MAX_ERROR_RATE = 0.001  # a step with more failures than this fails the SLO
# Enough responses for p99 to mean something, with a margin for a rate not quite reached.
MIN_STEP_REQUESTS = latency.MIN_TAIL_RESPONSES * 100 * 1.2
LOWEST_RATE = 1.0


@dataclass(frozen=True)
class Step:
    rate: float  # offered, requests per second
    rps: float  # achieved
    p99_ms: float | None  # None: too few responses to tell
    error_rate: float
    passed: bool
    why: str  # what failed, or "" when it passed
    loadgen_saturated: bool = False  # the step measured the load generator too: its rate may be understated

    def to_dict(self) -> dict[str, float | bool | str | None]:
        return asdict(self)


def judge(
    rate: float, rps: float, p99_ms: float | None, error_rate: float, slo_p99_ms: float, loadgen_saturated: bool = False
) -> Step:
    why = []
    if p99_ms is None:
        why.append("too few responses for p99")
    elif p99_ms > slo_p99_ms:
        why.append(f"p99 {p99_ms:.1f} ms > {slo_p99_ms:g} ms")
    if error_rate > MAX_ERROR_RATE:
        why.append(f"errors {100 * error_rate:.2f}% > {100 * MAX_ERROR_RATE:g}%")
    return Step(rate, rps, p99_ms, error_rate, not why, "; ".join(why), loadgen_saturated)


def step_seconds(rate: float, duration_s: float) -> float:
    """A step lasts the trial's duration, longer at low rates so that p99 is supported."""
    return max(duration_s, math.ceil(MIN_STEP_REQUESTS / rate))


def search(
    measure: Callable[[float], Step], first_rate: float, precision: float = 0.1, max_steps: int = 12
) -> tuple[float | None, list[Step]]:
    """(achieved rps at the highest passing rate, or None if none passed; every step visited)."""
    steps: list[Step] = []

    def visit(rate: float) -> Step:
        step = measure(rate)
        steps.append(step)
        log.info(
            "capacity step %d: %.0f rps offered, %.0f achieved, p99 %s ms, errors %.2f%%: %s",
            len(steps),
            rate,
            step.rps,
            "n/a" if step.p99_ms is None else f"{step.p99_ms:.2f}",
            100 * step.error_rate,
            "within SLO" if step.passed else step.why,
        )
        return step

    best: Step | None = None
    failing: float | None = None
    rate = first_rate
    while len(steps) < max_steps:  # bracket: double while passing, halve while failing
        step = visit(rate)
        if step.passed:
            best = step
            if failing is not None:
                break
            rate *= 2
        else:
            failing = rate
            if best is not None:
                break
            if rate / 2 < LOWEST_RATE:
                return None, steps
            rate /= 2
    while best is not None and failing is not None and failing / best.rate > 1 + precision and len(steps) < max_steps:
        step = visit(math.sqrt(best.rate * failing))
        if step.passed:
            best = step
        else:
            failing = step.rate
    return (best.rps if best else None), steps
