"""Capacity search against a model of a server (the real search on a real server is an integration test)."""

import pytest

from servebench.measure import capacity


def queue_model(capacity_rps: float, slo_ms: float = 100.0):  # type: ignore[no-untyped-def]
    """p99 of an M/M/1-like server: fine far below capacity, exploding near it."""
    visited: list[float] = []

    def measure(rate: float) -> capacity.Step:
        visited.append(rate)
        load = min(rate / capacity_rps, 0.999)
        p99 = 1.0 / (1.0 - load) * 4.6  # ms
        rps = min(rate, capacity_rps)
        return capacity.judge(rate, rps, p99, 0.0, slo_ms)

    return measure, visited


@pytest.mark.parametrize("first", [50.0, 900.0, 5000.0])
def test_search_brackets_then_bisects_to_within_precision(first: float) -> None:
    measure, visited = queue_model(1000.0)
    best, steps = capacity.search(measure, first, precision=0.05)
    # p99 <= 100 ms  <=>  load <= 1 - 4.6/100 = 0.954: the true answer is 954 rps
    assert best is not None and 954 * 0.95 <= best <= 954
    assert all(s.passed == (s.p99_ms <= 100.0) for s in steps)
    assert len(steps) == len(visited) <= 12


def test_no_rate_within_slo_is_reported_as_none() -> None:
    def always_slow(rate: float) -> capacity.Step:
        return capacity.judge(rate, rate, 500.0, 0.0, 100.0)

    best, steps = capacity.search(always_slow, 8.0)
    assert best is None and steps[-1].rate < 2.0


def test_errors_or_too_few_responses_fail_a_step() -> None:
    assert not capacity.judge(100, 100, 1.0, 0.002, 100).passed
    step = capacity.judge(100, 100, None, 0.0, 100)
    assert not step.passed and "too few responses" in step.why
    assert capacity.step_seconds(10.0, 5.0) == 120 and capacity.step_seconds(1000.0, 5.0) == 5.0
