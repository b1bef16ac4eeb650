"""A trial is the unit of work: one point of the matrix (a model served by a framework with N workers under U
users) with the benchmark's settings, as validated once, unchanged and unrenamed."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from servebench.config.params import MATRIX, BenchmarkParams, parse, trusted
from servebench.models.source import entry_id


@dataclass(frozen=True)
class TrialSpec:
    model: str
    framework: str
    workers: int
    users: int
    settings: BenchmarkParams
    replicas: int = 1  # server containers behind a load balancer (runner/replicas.py)
    cpus: float | None = None  # each replica's CPU limit; None: none
    batch: int = 1  # rows per request

    @classmethod
    def of(
        cls,
        model: str,
        framework: str,
        workers: int,
        users: int,
        replicas: int = 1,
        cpus: float | None = None,
        batch: int = 1,
        **settings: Any,
    ) -> TrialSpec:
        """A trial outside a planned matrix (tests, benchmarks): its settings validated like any run's; `model`
        is a `models` entry (a recipe, a registry URI, a file)."""
        shape = {"replicas": [replicas], "cpus_per_replica": [cpus] if cpus else [], "batch_sizes": [batch]}
        checked = parse({"models": [model], "frameworks": [framework], **shape, **settings})
        return cls(entry_id(model), framework, workers, users, checked, replicas, cpus, batch)

    @property
    def shape(self) -> str:
        """ "" for one container as it comes; "-r2x1cpu" for 2 replicas of 1 CPU behind a balancer."""
        if self.replicas == 1 and self.cpus is None:
            return ""
        return f"-r{self.replicas}" + (f"x{self.cpus:g}cpu" if self.cpus else "")

    @property
    def _how(self) -> str:
        s = self.settings
        if s.capacity:
            return "-capacity"
        if s.soak_minutes:
            return f"-soak{s.soak_minutes:g}m"
        return f"-open{s.rate:g}" if s.load == "open" and s.rate is not None else ""

    @property
    def engine(self) -> str:
        """The load engine that measures this trial: Locust, unless h2load is asked for ("auto" starts with
        Locust; pipeline.run_and_log adds an h2load trial where Locust saturates)."""
        return "h2load" if self.settings.loadgen == "h2load" else "locust"

    @property
    def _where(self) -> str:
        hosts = len(self.settings.load_hosts)
        server_host = self.settings.server_host  # an Airflow connection id, or an engine URL's host
        at = re.sub(r"[^\w.-]+", "_", urlsplit(server_host).hostname or server_host) if server_host else ""
        return (
            ("" if self.settings.backend == "local" else f"-{self.settings.backend}")
            + (f"-at-{at}" if at else "")
            + ("-h2load" if self.engine == "h2load" else "")
            + (f"-lh{hosts}" if hosts else "")
        )

    @property
    def _batch(self) -> str:
        return f"-b{self.batch}" if self.batch != 1 else ""

    @property
    def key(self) -> str:
        """Stable identity of a configuration across nights (baselines and re-runs use it)."""
        return f"{self.model}-{self.framework}-w{self.workers}-u{self.users}{self._batch}{self.shape}{self._where}{self._how}"

    @property
    def entry(self) -> str:
        """The `models` entry this trial's model was named by (a recipe, a registry URI, a file)."""
        return next(m for m in self.settings.models if entry_id(m) == self.model)

    @property
    def run_name(self) -> str:
        how = (self._batch + self.shape + self._where + self._how).replace("-", " · ")
        return f"{self.model} · {self.framework} · w{self.workers} · u{self.users}{how}"

    def measured_by(self, engine: str) -> TrialSpec:
        """The same configuration measured by another engine."""
        settings = self.settings.model_copy(update={"loadgen": engine})
        return TrialSpec(
            self.model, self.framework, self.workers, self.users, settings, self.replicas, self.cpus, self.batch
        )

    def logged_params(self) -> dict[str, Any]:
        """The trial's MLflow params: the matrix point and every setting but the matrix lists, each under the
        name its field gives (a new setting is logged without an edit here)."""
        fields = type(self.settings).model_fields
        settings = {}
        for name, value in self.settings.model_dump(exclude=set(MATRIX)).items():
            extra = fields[name].json_schema_extra
            settings[str(extra.get("logged_as", name)) if isinstance(extra, dict) else name] = value
        return {
            "model": self.model,
            "framework": self.framework,
            "workers": self.workers,
            "users": self.users,
            "batch_size": self.batch,
            "replicas": self.replicas,
            "cpus_per_replica": self.cpus if self.cpus is not None else "unlimited",
            **settings,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "framework": self.framework,
            "workers": self.workers,
            "users": self.users,
            "replicas": self.replicas,
            "cpus": self.cpus,
            "batch": self.batch,
            "settings": self.settings.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrialSpec:
        settings = trusted(raw["settings"])
        return cls(
            raw["model"],
            raw["framework"],
            raw["workers"],
            raw["users"],
            settings,
            raw["replicas"],
            raw["cpus"],
            raw.get("batch", 1),  # results spooled before batch sizes existed
        )


def plan(params: BenchmarkParams) -> list[TrialSpec]:
    """Every configuration of the matrix, grouped by model then framework so a night reads in order."""
    cpus: list[float | None] = list(params.cpus_per_replica) or [None]
    return [
        TrialSpec(entry_id(model), framework, workers, users, params, replicas, cpus, batch)
        for model, framework, workers, users, batch, replicas, cpus in itertools.product(
            params.models,
            params.frameworks,
            params.worker_counts,
            params.users,
            params.batch_sizes,
            params.replicas,
            cpus,
        )
    ]
