"""Benchmark parameters: one definition, used by the CLI, the DAG's trigger form and its first task.

The Airflow `Param`s are generated from the same pydantic model, so the trigger form, `--conf`
validation and the CLI reject the same inputs, each naming the field at fault.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from servebench.base import placement
from servebench.models import source
from servebench.models.recipes import RECIPES
from servebench.servers import manifest

PositiveInt = Annotated[int, Field(ge=1)]
# Every shipped server that runs as a local process (cpp-crow needs Crow's source, tfserving a container: opt
# in). torchserve needs torch's CPU wheel where the build finds it (pip's find-links, UV_FIND_LINKS).
NIGHTLY_MODELS = ("lr", "mlp", "gbdt")
NIGHTLY_FRAMEWORKS = (
    "fastapi",
    "fastapi-gunicorn",
    "flask",
    "bentoml",
    "bentoml-batching",
    "cpp",
    "ray-serve",
    "kserve",
    "triton",
    "triton-batching",
    "mlserver",
    "mlserver-batching",
    "litserve",
    "litserve-batching",
    "torchserve",
)
AUTO_WORKERS = "auto"  # gunicorn's rule of thumb: (2 x cores) + 1


def auto_workers() -> int:
    return 2 * (os.cpu_count() or 1) + 1


def default_backend() -> str:
    """SERVEBENCH_BACKEND when set (a docker-compose deployment sets "docker"), else local processes."""
    return os.environ.get("SERVEBENCH_BACKEND", "local")


# Sections of the trigger form, in the order Airflow shows them (the order of the fields). The matrix has
# none: Airflow shows unsectioned fields first, under "Run Parameters", the one section it opens by default.
LOAD, MEASURE, WHERE, RESULTS = "Load", "Measurement", "Where servers run", "Results"


# The lists a run multiplies; the other fields are its settings.
MATRIX = ("models", "frameworks", "workers", "users", "batch_sizes", "replicas", "cpus_per_replica")


def _section(name: str, logged_as: str | None = None) -> dict[str, Any]:
    """A field's form section and, where a trial run logs it under another name (MLflow's names are a public
    interface older than the field's), that name."""
    return {"section": name, **({"logged_as": logged_as} if logged_as else {})}


class ParamsError(ValueError):
    """Invalid benchmark parameters; the message names every field at fault."""


class BenchmarkParams(BaseModel):
    """What to benchmark: the matrix models x frameworks x workers x users, and how long.

    Each field's title, description and section are what the Airflow trigger form shows.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    models: list[str] = Field(
        default=list(NIGHTLY_MODELS),
        min_length=1,
        title="Models",
        description="Models to serve: built-in recipes, registered models (models:/<name>/<version> or "
        "models:/<name>@<alias>, from this run's MLflow) or model files (.onnx; .joblib/.pkl with trust_pickle).",
    )
    frameworks: list[str] = Field(
        default=list(NIGHTLY_FRAMEWORKS),
        min_length=1,
        title="Frameworks",
        description="Server frameworks to compare (folders under servers/).",
    )
    workers: list[PositiveInt | Literal["auto"]] = Field(
        default=[1, 2],
        min_length=1,
        title="Workers",
        description='Worker counts to try: each at least 1, or "auto" for (2 x cores) + 1.',
        json_schema_extra={"form_hint": 'A JSON list, e.g. [1, 4] or [1, "auto"].'},
    )
    users: list[PositiveInt] = Field(
        default=[50],
        min_length=1,
        title="Users",
        description="Concurrent Locust users to try: each at least 1.",
        json_schema_extra={"form_hint": "A JSON list, e.g. [50, 200]."},
    )
    batch_sizes: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        default=[1],
        min_length=1,
        title="Batch sizes",
        description="Rows per request to try, each 1 to 1024: figures gain rows_per_s beside rps.",
        json_schema_extra={"form_hint": "A JSON list, e.g. [1, 8, 64]."},
    )
    payload: list[Annotated[str, Field(min_length=1)]] = Field(
        default=[],
        title="Payload samples",
        description="Request rows to replay (CSV, Parquet or JSON lines), in a seeded random order: one file for "
        "every model, or <model>=<file> per model. Empty: rows generated from each model's schema.",
        json_schema_extra={
            **_section(LOAD),
            "form_hint": "One per line, e.g. rows.csv or models:/churn@champion=rows.csv.",
        },
    )
    trust_pickle: bool = Field(
        default=False,
        title="Trust pickles",
        description="Load .joblib/.pkl model files, which runs whatever code they hold: only for files you trust.",
        json_schema_extra=_section(LOAD),
    )
    duration: float = Field(
        default=60.0,
        gt=0,
        title="Duration (s)",
        description="Measured seconds per trial, after the warm-up.",
        json_schema_extra=_section(LOAD, logged_as="duration_s"),
    )
    warmup: float = Field(
        default=10.0,
        ge=0,
        title="Warm-up (s)",
        description="Seconds of load before measuring; excluded from every figure.",
        json_schema_extra=_section(LOAD, logged_as="warmup_s"),
    )
    spawn_rate: float = Field(
        default=50.0,
        gt=0,
        title="Spawn rate (users/s)",
        description="Users started per second.",
        json_schema_extra=_section(LOAD),
    )
    load: Literal["closed", "open"] = Field(
        default="closed",
        title="Load",
        description='"closed": users send back to back; "open": requests arrive at the rate below, '
        "each latency counted from when it was due.",
        json_schema_extra=_section(LOAD),
    )
    rate: float | None = Field(
        default=None,
        gt=0,
        title="Rate (req/s)",
        description="Open loop: target requests per second, over all load-generator processes.",
        json_schema_extra=_section(LOAD),
    )
    arrival: Literal["poisson", "constant"] = Field(
        default="poisson",
        title="Arrivals",
        description="Open loop: Poisson arrivals or constant gaps.",
        json_schema_extra=_section(LOAD),
    )
    loadgen: Literal["auto", "locust", "h2load"] = Field(
        default="auto",
        title="Load engine",
        description='"locust" (checks every answer), "h2load" (native, for servers faster than Locust can drive; '
        'closed loop only), or "auto": Locust, and each configuration that saturates it measured again by h2load, '
        "both kept.",
        json_schema_extra=_section(LOAD),
    )
    loadgen_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        title="Load-generator processes",
        description="Locust processes (--processes), on each load host if any: more cores for the load generator.",
        json_schema_extra=_section(LOAD),
    )
    load_hosts: list[Annotated[str, Field(pattern=r"^[\w.-]+$")]] = Field(
        default=[],
        title="Load hosts",
        description="Hosts that run the load instead of this machine: each runs `servebench load-worker --master "
        "<loadgen_master> --name <host>` (or is a Celery queue of the same name), and a trial waits for "
        "loadgen_processes Locust workers from each. Empty: the load generator runs here.",
        json_schema_extra=_section(LOAD),
    )
    loadgen_master: str = Field(
        default="127.0.0.1:5557",
        pattern=r"^[\w.-]+:\d{1,5}$",
        title="Locust master address",
        description="With load hosts: the address (host:port) where each trial's Locust master listens for their "
        "workers; it must be reachable from them.",
        json_schema_extra=_section(LOAD),
    )
    request_timeout: float = Field(
        default=10.0,
        gt=0,
        le=600,
        title="Request timeout (s)",
        description="Seconds a request may take before it counts as failed (a hung server is bounded by it).",
        json_schema_extra=_section(LOAD, logged_as="request_timeout_s"),
    )
    cpu_split: str = Field(
        default="auto",
        pattern=placement.SPLIT_PATTERN,
        title="CPU split",
        description='Pin server and load generator to disjoint CPUs: "auto" (halves, from 4 cores), "off", '
        'or "SERVER_CPUS:LOADGEN_CPUS" such as "0-1:2-3".',
        json_schema_extra={**_section(LOAD), "examples": ["auto", "off"]},
    )
    repeats: int = Field(
        default=3,
        ge=1,
        le=50,
        title="Repeats",
        description="Measured repeats per configuration: figures are medians, with a 95% CI and CV over them.",
        json_schema_extra=_section(MEASURE),
    )
    max_cv: float = Field(
        default=0.1,
        gt=0,
        title="Max CV",
        description="A configuration whose throughput varies more than this (coefficient of variation over its "
        "repeats) is flagged noisy.",
        json_schema_extra=_section(MEASURE),
    )
    capacity: bool = Field(
        default=False,
        title="Capacity search",
        description="Search each configuration's highest open-loop rate within the SLO instead of fixed load.",
        json_schema_extra=_section(MEASURE),
    )
    slo_p99_ms: float = Field(
        default=100.0,
        gt=0,
        title="SLO p99 (ms)",
        description="Capacity search: the p99 latency a rate must stay under (errors under 0.1%).",
        json_schema_extra=_section(MEASURE),
    )
    soak_minutes: float | None = Field(
        default=None,
        gt=0,
        le=1440,
        title="Soak (minutes)",
        description="Soak mode: load each configuration for this many minutes in one run (no repeats) and fit "
        "its memory growth and latency drift.",
        json_schema_extra=_section(MEASURE),
    )
    backend: Literal["local", "docker"] = Field(
        default_factory=default_backend,
        validate_default=True,
        title="Backend",
        description='Where servers run: "local" processes, or "docker" containers with limits.',
        json_schema_extra=_section(WHERE),
    )
    cpuset: str | None = Field(
        default=None,
        pattern=placement.CPUSET_PATTERN,
        title="CPU set",
        description='docker backend: the CPUs each server container may use, e.g. "1" or "0-1" (none: all).',
        json_schema_extra=_section(WHERE),
    )
    memory_mb: int | None = Field(
        default=None,
        ge=64,
        title="Memory (MiB)",
        description="docker backend: each server container's memory limit, at least 64 (none: no limit).",
        json_schema_extra=_section(WHERE),
    )
    replicas: list[PositiveInt] = Field(
        default=[1],
        title="Replicas",
        description="docker backend: identical server containers behind one load balancer (HAProxy, round-robin), "
        "a matrix dimension, e.g. [1, 2]. [1] without cpus_per_replica: one container, no balancer.",
        json_schema_extra=_section(WHERE),
    )
    cpus_per_replica: list[Annotated[float, Field(gt=0, le=256)]] = Field(
        default=[],
        title="CPUs per replica",
        description="docker backend: each replica's CPU limit (a CPU quota, as a Kubernetes limit), a matrix "
        "dimension: [2, 1] with replicas [1, 2] measures 1 x 2 CPUs and 2 x 1 (and the other shapes). Empty: no limit.",
        json_schema_extra=_section(WHERE),
    )
    # Optional (None), not "": Airflow's form takes an empty required string for a missing value and disables
    # Trigger, so an untouched form could not be sent.
    server_host: str | None = Field(
        default=None,
        pattern=r"^([\w.-]+|(tcp|ssh|unix)://\S+)$",
        title="Server host",
        description="docker backend: whose engine builds and runs the servers. Empty: this machine's (DOCKER_HOST); "
        "an Airflow connection id of type docker (the engine's docker_url and TLS files in its extra, a registry "
        "login in its fields); or, from the CLI, an engine URL (tcp://, ssh://, unix://).",
        json_schema_extra=_section(WHERE),
    )
    experiment: str = Field(
        default="servebench",
        min_length=1,
        title="MLflow experiment",
        description="Where the runs are logged.",
        json_schema_extra=_section(RESULTS),
    )
    fail_on_regression: bool = Field(
        default=False,
        title="Fail on regression",
        description="Fail a manual run when a configuration regressed against its history (a scheduled run always does).",
        json_schema_extra=_section(RESULTS),
    )

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        ids = [source.entry_id(entry) for entry in value]  # SourceError (a ValueError) names a bad entry
        if len(set(ids)) != len(ids):
            raise ValueError(f"two entries name the same model: {value}")
        return value

    @field_validator("frameworks")
    @classmethod
    def _known_frameworks(cls, value: list[str]) -> list[str]:
        known = manifest.available_frameworks()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown framework(s) {unknown}; known: {known}")
        return value

    @field_validator(
        "models", "frameworks", "workers", "users", "batch_sizes", "load_hosts", "replicas", "cpus_per_replica"
    )
    @classmethod
    def _no_repeats(cls, value: list[Any]) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError(f"repeated values in {value}")
        return value

    @model_validator(mode="after")
    def _runs_on_backend(self) -> BenchmarkParams:
        if self.backend == "local" and (self.cpuset is not None or self.memory_mb is not None):
            raise ValueError("cpuset and memory_mb limit containers: they need backend docker")
        if self.backend == "local" and (self.replicas != [1] or self.cpus_per_replica):
            raise ValueError("replicas and cpus_per_replica shape containers: they need backend docker")
        if self.backend == "local" and self.server_host:
            raise ValueError("server_host names a Docker engine elsewhere: it needs backend docker")
        if self.load == "open" and self.rate is None and not self.capacity:
            raise ValueError("load 'open' needs a rate (requests per second)")
        if self.rate is not None and self.load != "open" and not self.capacity:
            raise ValueError("rate applies to load 'open' (or capacity search's first step)")
        if self.loadgen == "h2load" and (self.load == "open" or self.capacity):
            raise ValueError(
                "loadgen h2load measures closed loop only: it times an open-loop request from when it was sent, "
                "not from when it was due, which hides a stalled server's queue; use locust or auto"
            )
        if self.load_hosts and self.loadgen == "h2load":
            raise ValueError(
                "load_hosts spread Locust over hosts; h2load runs on this machine only: use locust or auto"
            )
        if len(self.payload) > 1 or any(_payload_model(p) for p in self.payload):
            for item in self.payload:
                model = _payload_model(item)
                if model is None:
                    raise ValueError(f"payload {item!r}: with several payload files, each is <model>=<file>")
                if model not in self.models:
                    raise ValueError(f"payload {item!r}: {model} is not one of the models {self.models}")
        if self.soak_minutes is not None and self.capacity:
            raise ValueError("soak_minutes and capacity are two different runs: choose one")
        placement.check(self.cpu_split, self.cpuset)
        return self

    def payload_for(self, model: str) -> str | None:
        """The payload file of a `models` entry: its own (<model>=<file>), the one file for all, or None."""
        for item in self.payload:
            if _payload_model(item) == model:
                return item[len(model) + 1 :]
        if len(self.payload) == 1 and _payload_model(self.payload[0]) is None:
            return self.payload[0]
        return None

    @property
    def worker_counts(self) -> list[int]:
        """The worker counts with "auto" resolved on this machine (a count named twice is run once)."""
        counts = [auto_workers() if w == AUTO_WORKERS else int(w) for w in self.workers]
        return list(dict.fromkeys(counts))


def _payload_model(item: str) -> str | None:
    """The model of a `<model>=<file>` payload entry (a registry URI may hold no `=`; a file name may), or None."""
    model, sep, _ = item.rpartition("=")
    return model if sep and model else None


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


def defaults() -> dict[str, Any]:
    """Each field's default, without constructing (and so validating) the model."""
    return {name: info.get_default(call_default_factory=True) for name, info in BenchmarkParams.model_fields.items()}


def trusted(checked: dict[str, Any]) -> BenchmarkParams:
    """Settings validated before (by `parse`, in the run's first task), back from their JSON: not validated
    again, which would scan servers/ once more in every task."""
    return BenchmarkParams.model_construct(**checked)


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON schema per field, shaped for Airflow 3's trigger form, which picks a widget from the schema and
    sends what that widget holds (see `_one_type`): a multi-select for models and frameworks, a JSON list
    editor for workers and users, a number box (empty = null) for optional numbers, a switch for booleans,
    a drop-down for choices. The rules stay those of the pydantic model, which the first task applies again.
    """
    schema = BenchmarkParams.model_json_schema()
    fields: dict[str, dict[str, Any]] = {}
    for name, prop in schema["properties"].items():
        prop = _one_type(prop)
        prop.pop("default", None)
        prop.pop("logged_as", None)
        if hint := prop.pop("form_hint", None):
            prop["description"] = f"{prop['description']} {hint}"
        if "items" in prop:
            prop["items"] = _one_type(prop["items"])
            prop["uniqueItems"] = True
        fields[name] = prop
    known = manifest.available_frameworks()
    fields["frameworks"]["items"] = {"type": "string", "enum": known}
    fields["frameworks"]["examples"] = known  # what makes the form a multi-select
    # Models take registry URIs and paths besides the recipes, which a multi-select cannot (it offers its options
    # only): a text box, one entry per line, that names the recipes.
    recipes = "; ".join(f"{n}: {r.description.split(':')[0]}" for n, r in RECIPES.items())
    fields["models"]["description"] = f"{fields['models']['description']} One per line. Recipes: {recipes}."
    return fields


def _one_type(prop: dict[str, Any]) -> dict[str, Any]:
    """Merge an `anyOf` of distinct types into one schema with a list of types.

    Airflow's form chooses a widget from `type` (the first type that is not null): `anyOf` gives it none,
    so `int | None` became a text box sending "100", which the schema then refused. Merging keeps the rules,
    since JSON schema applies each keyword only to its own type (minimum to numbers, pattern to strings), and
    makes the messages name the rule ("0 is less than the minimum of 1", not "'auto' was expected"). A
    string constant becomes a pattern, which binds strings alone.
    """
    members = prop.get("anyOf")
    if members is None:
        return dict(prop)
    merged: dict[str, Any] = {k: v for k, v in prop.items() if k != "anyOf"}
    types: list[str] = []
    for member in members:
        member = dict(member)
        kind = member.pop("type")
        if kind in types:
            raise ValueError(f"cannot merge {members}: two members of type {kind}")
        types.append(kind)
        if "const" in member:
            if kind != "string":
                raise ValueError(f"cannot merge {members}: a constant of type {kind}")
            member["pattern"] = f"^{re.escape(member.pop('const'))}$"
        for key, value in member.items():
            if key in merged and merged[key] != value:
                raise ValueError(f"cannot merge {members}: {key} differs")
            merged[key] = value
    merged["type"] = types
    return merged
