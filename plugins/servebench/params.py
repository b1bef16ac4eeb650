"""Benchmark parameters: one definition, used by the CLI, the DAG's trigger form and its first task.

The Airflow `Param`s are generated from the same pydantic model, so the trigger form, `--conf`
validation and the CLI reject the same inputs, each naming the field at fault.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from servebench import manifest, models, placement

PositiveInt = Annotated[int, Field(ge=1)]
# Every shipped server that builds from PyPI and Debian alone (cpp-crow needs Crow's source: opt in).
NIGHTLY_FRAMEWORKS = ("fastapi", "fastapi-gunicorn", "flask", "bentoml", "bentoml-batching", "cpp", "ray-serve")
AUTO_WORKERS = "auto"  # gunicorn's rule of thumb: (2 x cores) + 1


def auto_workers() -> int:
    return 2 * (os.cpu_count() or 1) + 1


def default_backend() -> str:
    """SERVEBENCH_BACKEND when set (a docker-compose deployment sets "docker"), else local processes."""
    return os.environ.get("SERVEBENCH_BACKEND", "local")


class ParamsError(ValueError):
    """Invalid benchmark parameters; the message names every field at fault."""


class BenchmarkParams(BaseModel):
    """What to benchmark: the matrix models x frameworks x workers x users, and how long."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    models: list[str] = Field(default=["lr", "mlp"], min_length=1, description="Models to serve.")
    frameworks: list[str] = Field(
        default=list(NIGHTLY_FRAMEWORKS), min_length=1, description="Server frameworks (folders under servers/)."
    )
    workers: list[PositiveInt | Literal["auto"]] = Field(
        default=[1, 2], min_length=1, description='Worker counts to try; "auto" is (2 x cores) + 1.'
    )
    users: list[PositiveInt] = Field(default=[50], min_length=1, description="Concurrent Locust users to try.")
    spawn_rate: float = Field(default=50.0, gt=0, description="Users started per second.")
    duration: float = Field(default=60.0, gt=0, description="Measured seconds per trial, after warm-up.")
    warmup: float = Field(default=10.0, ge=0, description="Seconds of load before measuring; excluded from figures.")
    experiment: str = Field(default="servebench", min_length=1, description="MLflow experiment name.")
    backend: Literal["local", "docker"] = Field(
        default_factory=default_backend, validate_default=True,
        description='Where servers run: "local" processes, or "docker" containers with limits.',
    )  # fmt: skip
    cpuset: str | None = Field(
        default=None, pattern=placement.CPUSET_PATTERN,
        description='docker backend: the CPUs each server container may use, e.g. "1" or "0-1" (default: all).',
    )  # fmt: skip
    memory_mb: int | None = Field(default=None, ge=64, description="docker backend: each server container's memory limit in MiB.")
    load: Literal["closed", "open"] = Field(
        default="closed",
        description='"closed": users send back to back; "open": requests arrive at `rate`, latency counted from when each was due.',
    )
    rate: float | None = Field(default=None, gt=0, description="Open loop: target requests per second (over all load-generator processes).")
    arrival: Literal["poisson", "constant"] = Field(default="poisson", description="Open loop: Poisson arrivals or constant gaps.")
    repeats: int = Field(default=3, ge=1, le=50, description="Measured repeats per configuration: median, 95% CI and CV over them.")
    max_cv: float = Field(default=0.1, gt=0, description="A configuration whose throughput varies more than this over its repeats is flagged noisy.")
    capacity: bool = Field(default=False, description="Search each configuration's highest open-loop rate within the SLO instead of fixed load.")
    slo_p99_ms: float = Field(default=100.0, gt=0, description="Capacity search: the p99 latency a rate must stay under (errors under 0.1%).")
    loadgen_processes: int = Field(default=1, ge=1, le=64, description="Locust processes (--processes): more cores for the load generator.")
    soak_minutes: float | None = Field(
        default=None, gt=0, le=1440,
        description="Soak mode: load each configuration for this many minutes in one run (no repeats) and fit its memory growth (MB/min) and latency drift.",
    )  # fmt: skip
    fail_on_regression: bool = Field(
        default=False, description="Fail a manual run when a configuration regressed against its history (a scheduled run always fails)."
    )
    request_timeout: float = Field(
        default=10.0, gt=0, le=600, description="Seconds a request may take before it counts as failed (a hung server is bounded by it)."
    )
    cpu_split: str = Field(
        default="auto", pattern=placement.SPLIT_PATTERN,
        description='Pin server and load generator to disjoint CPUs: "auto" (halves, from 4 cores), "off", or "SERVER_CPUS:LOADGEN_CPUS" such as "0-1:2-3".',
    )  # fmt: skip

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(models.MODEL_NAMES))
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; known: {list(models.MODEL_NAMES)}")
        return value

    @field_validator("frameworks")
    @classmethod
    def _known_frameworks(cls, value: list[str]) -> list[str]:
        known = manifest.available_frameworks()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown framework(s) {unknown}; known: {known}")
        return value

    @field_validator("models", "frameworks", "workers", "users")
    @classmethod
    def _no_repeats(cls, value: list[Any]) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError(f"repeated values in {value}")
        return value

    @model_validator(mode="after")
    def _runs_on_backend(self) -> "BenchmarkParams":
        if self.backend == "local" and (self.cpuset is not None or self.memory_mb is not None):
            raise ValueError("cpuset and memory_mb limit containers: they need backend docker")
        if self.load == "open" and self.rate is None and not self.capacity:
            raise ValueError("load 'open' needs a rate (requests per second)")
        if self.rate is not None and self.load != "open" and not self.capacity:
            raise ValueError("rate applies to load 'open' (or capacity search's first step)")
        if self.soak_minutes is not None and self.capacity:
            raise ValueError("soak_minutes and capacity are two different runs: choose one")
        placement.check(self.cpu_split, self.cpuset)
        elsewhere = [f for f in self.frameworks if self.backend not in manifest.get(f).backends]
        if elsewhere:
            raise ValueError(
                f"framework(s) {elsewhere} do not run on backend {self.backend!r} (see their manifests' backends)"
            )
        return self

    @property
    def worker_counts(self) -> list[int]:
        """The worker counts with "auto" resolved on this machine (a count named twice is run once)."""
        counts = [auto_workers() if w == AUTO_WORKERS else w for w in self.workers]
        return list(dict.fromkeys(counts))


def parse(raw: dict[str, Any]) -> BenchmarkParams:
    """Validate raw parameters (DAG conf, CLI options) or raise ParamsError naming each bad field."""
    try:
        return BenchmarkParams.model_validate(raw)
    except ValidationError as exc:
        # A value that fits no member of a union (e.g. workers: int or "auto") fails once per member;
        # those errors share a field once the union tags are dropped from their location, and are merged.
        problems: dict[str, list[str]] = {}
        for err in exc.errors():
            loc = err["loc"]
            field = ".".join(str(p) for p in loc[:1] + tuple(p for p in loc[1:] if isinstance(p, int)))
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            problems.setdefault(field or "params", []).append(f"{err['msg']}{got}")
        merged = [f"{field}: {' or '.join(messages)}" for field, messages in problems.items()]
        raise ParamsError("invalid benchmark parameters: " + "; ".join(merged)) from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON schema per field, with the currently known models and frameworks as enums."""
    schema = BenchmarkParams.model_json_schema()
    fields: dict[str, dict[str, Any]] = {}
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        prop.pop("default", None)
        if name == "models":
            prop["items"] = {"type": "string", "enum": list(models.MODEL_NAMES)}
        elif name == "frameworks":
            prop["items"] = {"type": "string", "enum": manifest.available_frameworks()}
        fields[name] = prop
    return fields
