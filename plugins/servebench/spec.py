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

    @property
    def key(self) -> str:
        """Stable identity of a configuration across nights (baselines and re-runs use it)."""
        where = "" if self.backend == "local" else f"-{self.backend}"
        return f"{self.model}-{self.framework}-w{self.workers}-u{self.users}{where}"

    @property
    def run_name(self) -> str:
        where = "" if self.backend == "local" else f" · {self.backend}"
        return f"{self.model} · {self.framework} · w{self.workers} · u{self.users}{where}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrialSpec":
        return cls(**raw)


def plan(params: BenchmarkParams) -> list[TrialSpec]:
    """Every configuration of the matrix, grouped by model then framework so a night reads in order."""
    return [
        TrialSpec(
            model, framework, workers, users, params.spawn_rate, params.duration, params.warmup,
            params.backend, params.cpuset, params.memory_mb,
        )  # fmt: skip
        for model, framework, workers, users in itertools.product(
            params.models, params.frameworks, params.worker_counts, params.users
        )
    ]
