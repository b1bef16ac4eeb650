"""Parity: before any load, a server must answer the model's fixed sample inputs as the reference model does.

Labels must be identical and probabilities within the model's tolerance (a regressor's values within its
relative tolerance: export.py), for one input alone and
for all samples in one batch (batching bugs show only there). A server that disagrees is not load-tested;
the report says which input differed first, and is logged with the trial.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from servebench.base.httpclient import request
from servebench.servers import contract


@dataclass(frozen=True)
class ParityCheck:
    """One request of sample inputs and how its answer compared with the reference."""

    request: str  # "a single sample input" | "a batch of N sample inputs"
    status: int
    max_abs_diff: float | None  # over all probabilities; None when the answer could not be compared
    problem: str | None  # the first difference, None when the answer matched


@dataclass(frozen=True)
class ParityReport:
    checks: tuple[ParityCheck, ...]
    first_correct_at: float | None  # time.monotonic() of the first correct answer (cold start's end)
    tolerance: dict[str, float]  # the model's (export.py)

    @property
    def passed(self) -> bool:
        return all(check.problem is None for check in self.checks)

    @property
    def max_abs_diff(self) -> float | None:
        diffs = [c.max_abs_diff for c in self.checks if c.max_abs_diff is not None]
        return max(diffs) if diffs else None

    @property
    def first_problem(self) -> str:
        return next((f"{c.request}: {c.problem}" for c in self.checks if c.problem), "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "max_abs_diff": self.max_abs_diff,
            "checks": [asdict(c) for c in self.checks],
        }


def _compare(status: int, payload: Any, meta: dict[str, Any], rows: slice) -> tuple[float | None, str | None]:
    if status != 200:
        return None, f"HTTP {status}: {str(payload)[:300]}"
    broken = contract.check_answer(payload, len(meta["samples"]["inputs"][rows]), meta["classes"])
    if broken:
        return None, broken  # broke the contract itself: there is no difference to measure
    return contract.max_difference(payload, meta, rows), contract.first_difference(payload, meta, rows)


def check(base_url: str, meta: dict[str, Any], wire: contract.Wire | None = None) -> ParityReport:
    """Send the sample inputs, one alone then all in a batch, and compare each answer with the reference;
    stops at the first answer that differs."""
    wire = wire or contract.wire()
    inputs = meta["samples"]["inputs"]
    checks: list[ParityCheck] = []
    first_correct_at = None
    for name, rows in (
        ("a single sample input", slice(0, 1)),
        (f"a batch of {len(inputs)} sample inputs", slice(None)),
    ):
        status, payload = request(base_url, "POST", wire.predict_path, wire.encode(inputs[rows], bool(meta["classes"])))
        diff, problem = _compare(status, wire.to_contract(payload), meta, rows)
        checks.append(ParityCheck(name, status, diff, problem))
        if problem is None and first_correct_at is None:
            first_correct_at = time.monotonic()
        if problem:
            break
    return ParityReport(tuple(checks), first_correct_at, meta["tolerance"])
