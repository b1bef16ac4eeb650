"""A trial is the unit of work: one model served by one framework with N workers under U users."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from servebench.params import BenchmarkParams


@dataclass(frozen=True)
class TrialSpec:
    model: str
    framework: str
    workers: int
    users: int
    spawn_rate: float
    duration_s: float
    warmup_s: float
    backend: str = "local"
    cpuset: str | None = None  # container limits (backend docker)
    memory_mb: int | None = None
    load: str = "closed"  # "closed" | "open"
    rate: float | None = None  # open loop (and capacity search's first step)
    arrival: str = "poisson"
    repeats: int = 1
    max_cv: float = 0.1
    capacity: bool = False
    slo_p99_ms: float = 100.0
    loadgen_processes: int = 1
    cpu_split: str = "auto"
    request_timeout_s: float = 10.0
    soak_minutes: float | None = None  # soak mode: one long load test instead of `repeats` of `duration_s`

    @property
    def _how(self) -> str:
        if self.capacity:
            return "-capacity"
        if self.soak_minutes:
            return f"-soak{self.soak_minutes:g}m"
        return f"-open{self.rate:g}" if self.load == "open" else ""

    @property
    def key(self) -> str:
        """Stable identity of a configuration across nights (baselines and re-runs use it)."""
        where = "" if self.backend == "local" else f"-{self.backend}"
        return f"{self.model}-{self.framework}-w{self.workers}-u{self.users}{where}{self._how}"

    @property
    def run_name(self) -> str:
        where = "" if self.backend == "local" else f" · {self.backend}"
        how = self._how.replace("-", " · ")
        return f"{self.model} · {self.framework} · w{self.workers} · u{self.users}{where}{how}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrialSpec":
        return cls(**raw)


def plan(params: BenchmarkParams) -> list[TrialSpec]:
    """Every configuration of the matrix, grouped by model then framework so a night reads in order."""
    how = {
        "backend": params.backend, "cpuset": params.cpuset, "memory_mb": params.memory_mb, "load": params.load,
        "rate": params.rate, "arrival": params.arrival, "repeats": params.repeats, "max_cv": params.max_cv,
        "capacity": params.capacity, "slo_p99_ms": params.slo_p99_ms, "loadgen_processes": params.loadgen_processes,
        "cpu_split": params.cpu_split, "request_timeout_s": params.request_timeout,
        "soak_minutes": params.soak_minutes,
    }  # fmt: skip
    return [
        TrialSpec(model, framework, workers, users, params.spawn_rate, params.duration, params.warmup, **how)
        for model, framework, workers, users in itertools.product(
            params.models, params.frameworks, params.worker_counts, params.users
        )
    ]
