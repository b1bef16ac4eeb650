"""The vocabulary of results, in one place: metric and series names, MLflow tag names, and the two record
types, the result a trial measures (`TrialResult`, written to the spool) and what is read back of it
(`TrialRecord`, from MLflow or the spool). Measurement writes these names, the tracker logs them, the
report reads them; they are a public interface (MLflow filters, dashboards), so they change only here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from servebench.config.spec import TrialSpec
from servebench.results import spool


class Metric(StrEnum):
    """A trial's flat metrics (one value per run)."""

    REQUESTS = "requests"  # measured window, summed over repeats
    FAILURES = "failures"
    ERROR_RATE = "error_rate"
    WARMUP_REQUESTS = "warmup_requests"
    RPS = "rps"  # median over repeats
    ROWS_PER_S = "rows_per_s"  # rps x rows per request (the batch size)
    RPS_MEAN = "rps_mean"
    RPS_CI95_LOW = "rps_ci95_low"
    RPS_CI95_HIGH = "rps_ci95_high"
    RPS_CV = "rps_cv"
    REPEATS = "repeats"
    LATENCY_AVG = "latency_ms_avg"  # HDR histogram, µs resolution
    LATENCY_MIN = "latency_ms_min"
    LATENCY_P50 = "latency_ms_p50"
    LATENCY_P90 = "latency_ms_p90"
    LATENCY_P95 = "latency_ms_p95"
    LATENCY_P99 = "latency_ms_p99"
    LATENCY_P999 = "latency_ms_p999"
    LATENCY_MAX = "latency_ms_max"
    COLD_START = "cold_start_s"
    SERVER_CPU_AVG = "server_cpu_percent_avg"  # summed over the server's processes: 200 = two cores
    SERVER_CPU_MAX = "server_cpu_percent_max"
    SERVER_RSS_AVG = "server_rss_mb_avg"
    SERVER_RSS_MAX = "server_rss_mb_max"
    SERVER_THREADS_MAX = "server_threads_max"
    CPU_US_PER_REQUEST = "server_cpu_us_per_request"
    SERVER_PROCESSES_LOST = "server_processes_lost"
    RSS_GROWTH = "server_rss_growth_mb_per_min"
    RSS_GROWTH_R2 = "server_rss_growth_r2"
    P95_DRIFT = "latency_p95_drift_ms_per_min"
    P95_DRIFT_R2 = "latency_p95_drift_r2"
    LOADGEN_CPU_AVG = "loadgen_cpu_percent_avg"
    LOADGEN_SATURATED = "loadgen_saturated"  # 0/1
    LOADGEN_CEILING = "loadgen_ceiling_rps"  # what the engine could drive with all its cores, at this trial's cost
    LOADGEN_WORKERS = "loadgen_workers"  # Locust workers under a master (--processes or load hosts)
    LOADGEN_WORKER_CPU_MAX = "loadgen_worker_cpu_percent_max"  # the busiest worker's mean CPU over the window
    LOADGEN_WORKER_CPU_MIN = "loadgen_worker_cpu_percent_min"
    BALANCER_CPU_AVG = "balancer_cpu_percent_avg"  # the load balancer in front of a replica set
    PARITY_MAX_ABS_DIFF = "parity_max_abs_diff"
    MAX_RPS_AT_SLO = "max_rps_at_slo"  # capacity search
    CAPACITY_STEPS = "capacity_steps"
    HOST_OTHER_CPU = "host_other_cpu_percent"  # CPU the rest of the machine used during the window (a neighbour)
    MAX_RPS = "max_rps"  # saturation ramp (h2load): the most throughput any connection count got
    MAX_RPS_PER_CORE = "max_rps_per_core"  # ... per core the server kept busy there
    CPU_US_AT_MAX = "server_cpu_us_per_request_at_max"  # ... and its CPU per request at that load
    SATURATION_STEPS = "saturation_steps"


class Flag(StrEnum):
    """What qualifies a trial's figures (tag servebench.flags); the report says what each means."""

    LOADGEN_SATURATED = "loadgen_saturated"  # the load generator used its cores to the full
    NOISY = "noisy"  # throughput varied over the repeats beyond max_cv
    MEMORY_GROWING = "memory_growing"
    LATENCY_DRIFTING = "latency_drifting"
    SERVER_PROCESS_DIED = "server_process_died"
    NO_REQUESTS = "no_requests"
    NO_RATE_WITHIN_SLO = "no_rate_within_slo"
    LOADGEN_SATURATED_DURING_CAPACITY_SEARCH = "loadgen_saturated_during_capacity_search"
    CONTENDED = "contended"  # other processes used the machine's CPU during the window


TOO_FEW_REQUESTS_PREFIX = "too_few_requests_for_"  # + the percentiles left out: too_few_requests_for_p999
LOCUST_PREFIX = "locust_latency_ms_"  # Locust's own percentiles, rounded: locust_latency_ms_p99, ...
BASELINE_PREFIX = "baseline/"  # a judged figure's baseline: baseline/rps
CHANGE_PREFIX = "change_pct/"  # and its change against it: change_pct/rps
REPEAT_PREFIX = "repeat/"  # per-repeat values of a figure: repeat/rps, steps = repeats


class Series(StrEnum):
    """Step metrics: per second of the measured window (repeats one after another), per capacity step."""

    RPS = "series/rps"
    LATENCY_P95 = "series/latency_ms_p95"
    SERVER_CPU = "series/server_cpu_percent"
    SERVER_RSS = "series/server_rss_mb"
    CAPACITY_RATE = "capacity/rate"
    CAPACITY_RPS = "capacity/rps"
    CAPACITY_P99 = "capacity/p99_ms"
    SATURATION_CONNECTIONS = "saturation/connections"  # per ramp step
    SATURATION_RPS = "saturation/rps"
    SATURATION_CPU = "saturation/server_cpu_percent"


TAG_KIND = "servebench.kind"  # "benchmark" (parent) | "trial" (child)
TAG_BENCHMARK = "servebench.benchmark_id"  # the spool's id of the benchmark a parent run holds
TAG_TRIAL_KEY = "servebench.trial_key"
TAG_RESULT = "servebench.result_id"  # one measured result; uploaded once however often it is retried
TAG_UPLOAD = "servebench.upload"  # "complete" once every figure and artifact of the result is in
TAG_STATUS = "servebench.status"
TAG_REASON = "servebench.failure_reason"
TAG_FLAGS = "servebench.flags"
TAG_LOADGEN_SATURATED = "servebench.loadgen_saturated"  # "true": the figures measure Locust too
TAG_DAG_RUN = "airflow.dag_run_id"
TAG_TRIGGER = "trigger"  # scheduled | manual | cli
TAG_HOST = "host.fingerprint"
TAG_VERDICT = "servebench.verdict"  # regression | improvement | unchanged | no_baseline, against its history
TAG_MODEL_VERSION = "model.version"  # the Model Registry version a trial served: "<registered name>/<version>"
TAG_MODEL_CHANGED = "model.changed"  # the served version differs from its baseline's: "v3 → v4"
INHERITED_TAGS = (TAG_DAG_RUN, TAG_TRIGGER, TAG_HOST)  # copied from a parent run to its trials


@dataclass(frozen=True)
class TrialResult:
    """Everything a tracker or report needs about one trial; written to `out_dir/result.json`."""

    spec: TrialSpec
    status: str  # "ok" | "degraded" | "failed" | "skipped" (the framework cannot serve the model: reason says why)
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    context: dict[str, str] = field(default_factory=dict)  # logged as params beside the spec
    out_dir: Path = Path(".")
    log_tail: str = ""
    result_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # uploads of one result are deduplicated by it

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["spec"] = self.spec.to_dict()  # its settings are a pydantic model, which asdict leaves as is
        raw["out_dir"] = str(self.out_dir)
        return raw

    @classmethod
    def load(cls, path: Path) -> TrialResult:
        """A result back from its result.json (the spool's record of it)."""
        raw = json.loads(path.read_text())
        return cls(
            **{
                **raw,
                "spec": TrialSpec.from_dict(raw["spec"]),
                "out_dir": path.parent,
                "flags": tuple(raw["flags"]),
                "series": {k: [(int(step), float(v)) for step, v in points] for k, points in raw["series"].items()},
            },
        )

    def save(self) -> None:
        spool.write_json(self.out_dir / spool.RESULT_FILE, self.to_dict())


@dataclass(frozen=True)
class TrialRecord:
    """What the summary reads of one trial, whether from an MLflow run or from the spool."""

    run_id: str  # "" for a result MLflow does not have yet
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # step metrics (all, or those asked for)

    @property
    def capacity(self) -> list[tuple[float, float]]:
        """(achieved rps, p99 ms) of each capacity-search step; [] for other trials."""
        rps, p99 = dict(self.series.get(Series.CAPACITY_RPS, [])), dict(self.series.get(Series.CAPACITY_P99, []))
        return [(rps[step], p99[step]) for step in sorted(rps) if step in p99]


def trial_tags(result: TrialResult) -> dict[str, str]:
    tags = {
        TAG_KIND: "trial",
        TAG_TRIAL_KEY: result.spec.key,
        TAG_RESULT: result.result_id,
        TAG_STATUS: result.status,
        TAG_FLAGS: ",".join(result.flags),
        TAG_LOADGEN_SATURATED: str(Flag.LOADGEN_SATURATED in result.flags).lower(),
    }
    if result.reason:
        tags[TAG_REASON] = result.reason[:5000]
    return tags


def record_of(result: TrialResult) -> TrialRecord:
    """The record MLflow will hold of a result, built from the result itself (MLflow unreachable)."""
    return TrialRecord(
        "",
        mlflow_params({**result.spec.logged_params(), **result.context}),
        dict(result.metrics),
        trial_tags(result),
        dict(result.series),
    )


PARAM_LIMIT = 6000  # MLflow's limit on a param value


def mlflow_params(raw: dict[str, Any]) -> dict[str, str]:
    """Values as MLflow params: JSON for lists, dicts, booleans and None; at most MLflow's length."""
    return {
        k: (json.dumps(v) if v is None or isinstance(v, (list, dict, bool)) else str(v))[:PARAM_LIMIT]
        for k, v in raw.items()
    }
