"""The benchmark's stages as plain functions. The DAG's tasks and the CLI call exactly these."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servebench.base import paths
from servebench.config import params
from servebench.config.spec import TrialSpec, plan
from servebench.measure.trial import run_trial
from servebench.models import export, schema, source
from servebench.models.export import ExportedModel
from servebench.report import page as report
from servebench.report import summary
from servebench.results import environment, regression, spool
from servebench.results.records import (
    TAG_DAG_RUN,
    TAG_HOST,
    TAG_MODEL_VERSION,
    TAG_STATUS,
    TAG_TRIAL_KEY,
    Flag,
    TrialRecord,
    TrialResult,
    record_of,
)
from servebench.results.tracker import Tracker
from servebench.servers import capability, images, manifest, runner
from servebench.servers.build import BuildError

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (1.0, 4.0)  # between upload attempts while MLflow does not answer


class TrialFailed(RuntimeError):
    """Raised by the DAG's trial task so Airflow shows the configuration red; its result is already logged."""


def validate(raw: dict[str, Any]) -> tuple[params.BenchmarkParams, list[TrialSpec]]:
    """Parse parameters and plan the trials, before any work starts; raises ParamsError naming the field,
    or ImageError when the docker backend has no engine or lacks an image a server needs."""
    checked = params.parse(raw)
    servers = [manifest.get(name) for name in checked.frameworks]  # a malformed manifest fails here, not at 3 am
    elsewhere = [s.name for s in servers if checked.backend not in s.backends]
    if elsewhere:
        raise params.ParamsError(
            f"invalid benchmark parameters: framework(s) {elsewhere} do not run on backend {checked.backend!r} "
            "(see their manifests' backends)"
        )
    if checked.backend == "docker":  # no engine, or a base image it cannot get (TF Serving's): say so now
        client = images.engine(checked.server_host or "")
        for server in servers:
            images.require_base_images(client, server)
    _check_models(checked)
    specs = plan(checked)
    log.info("planned %d trials: %s", len(specs), ", ".join(s.key for s in specs))
    return checked, specs


def _check_models(checked: params.BenchmarkParams) -> None:
    """Each model resolves (registry, file) and its payload fits its schema; ParamsError naming the field."""
    for entry in checked.models:
        payload = checked.payload_for(entry)
        try:
            export.check(
                entry,
                Path(payload) if payload else None,
                trust_pickle=checked.trust_pickle,
                tracking_uri=paths.tracking_uri(),
            )
        except source.SourceError as exc:
            raise params.ParamsError(f"invalid benchmark parameters: models: {exc}") from None
        except schema.SchemaError as exc:
            field = "payload" if payload else "models"
            raise params.ParamsError(f"invalid benchmark parameters: {field}: {entry}: {exc}") from None


def train_models(checked: params.BenchmarkParams) -> list[ExportedModel]:
    """Every model of the run exported (recipes trained, registered versions downloaded), with its payload."""
    return [
        export.export_model(
            entry,
            payload=Path(p) if (p := checked.payload_for(entry)) else None,
            trust_pickle=checked.trust_pickle,
            tracking_uri=paths.tracking_uri(),
        )
        for entry in checked.models
    ]


def exported(folders: list[str]) -> list[ExportedModel]:
    """The exports `train_models` made, from their folders (as the DAG passes them between tasks)."""
    return [ExportedModel(Path(folder)) for folder in folders]


def build_framework(name: str, checked: params.BenchmarkParams, exports: list[ExportedModel]) -> list[str]:
    """Build what the backend needs to serve the exported models with this framework (venv, or one image per
    model)."""
    backend = runner.create(checked.backend, checked.cpuset, checked.memory_mb, where=checked.server_host or "")
    server = manifest.get(name)
    served = []
    for model in exports:  # a model the server cannot serve is neither prepared nor baked into an image
        if why := capability.unsupported(server, model.meta):
            log.info("server %s: not built for model %s: %s", name, model.name, why)
        else:
            served.append(model)
    return backend.build(server, served)


def open_run(
    checked: params.BenchmarkParams,
    exports: list[ExportedModel],
    tracker: Tracker,
    trigger: str,
    dag_run_id: str | None = None,
) -> str:
    """Record the benchmark in the spool and open its MLflow parent run (later, if MLflow is away);
    returns the benchmark's id, which the other stages take. A re-run of a DAG run keeps its id."""
    tags = {"trigger": trigger, **environment.host_tags()}
    if dag_run_id:
        tags[TAG_DAG_RUN] = dag_run_id
    bench = spool.create(
        spool.Benchmark(
            spool.benchmark_id(dag_run_id),
            checked.experiment,
            _run_name(checked, trigger),
            checked.model_dump(),
            tags,
            {e.name: str(e.dir) for e in exports},
            tracker.uri,
        )
    )
    log.info("benchmark %s: results are kept in %s, then logged to MLflow at %s", bench.id, bench.folder, tracker.uri)
    upload(bench, tracker, retries=0)
    return bench.id


def _run_name(checked: params.BenchmarkParams, trigger: str) -> str:
    """A parent run's name, saying when and what: `scheduled 2026-11-27 02:00 · lr,mlp × fastapi,flask × w1,2 × u20`."""
    matrix = " × ".join(
        [
            ",".join(checked.models),
            ",".join(checked.frameworks),
            "w" + ",".join(map(str, checked.worker_counts)),
            "u" + ",".join(map(str, checked.users)),
        ]
    )
    return f"{trigger} {time.strftime('%Y-%m-%d %H:%M')} · {matrix}"


def _parent(bench: spool.Benchmark, tracker: Tracker) -> str:
    """The benchmark's parent run, opened (and its models logged) when MLflow first answers."""
    parent_id = tracker.open_parent(bench)
    tracker.log_models(parent_id, exported(list(bench.exports.values())))
    return parent_id


@dataclass(frozen=True)
class Upload:
    """What one upload attempt achieved: the parent run and each trial's run, or why MLflow refused."""

    parent_id: str | None
    runs: dict[str, str]  # trial key -> MLflow run id
    error: str | None = None


def upload(bench: spool.Benchmark, tracker: Tracker, retries: int = len(RETRY_DELAYS_S)) -> Upload:
    """Upload what the spool holds and MLflow lacks, retrying after RETRY_DELAYS_S; never raises for
    MLflow's faults (unreachable, refusing, disk full): the result stays spooled and the error is returned."""
    error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(RETRY_DELAYS_S[attempt - 1])
        runs: dict[str, str] = {}
        try:
            parent_id = _parent(bench, tracker)
            for result_file in bench.pending():
                result = TrialResult.load(result_file)
                run_id = tracker.log_trial(parent_id, result)
                spool.mark_uploaded(result_file.parent, run_id, tracker.uri)
            for folder in bench.folder.iterdir():
                if (uploaded := spool.uploaded_run(folder)) and folder.name != spool.SUMMARY_DIR:
                    runs[folder.name] = uploaded
            return Upload(parent_id, runs)
        except Exception as exc:  # noqa: BLE001 - whatever MLflow's fault, the spool keeps the results
            error = _brief(exc)
            log.warning(
                "MLflow at %s: upload attempt %d of %d failed: %s", tracker.uri, attempt + 1, retries + 1, error
            )
    pending = len(bench.pending())
    log.error(
        "MLflow unreachable; %d result(s) of benchmark %s kept in %s: run `servebench sync` once it is back",
        pending,
        bench.id,
        bench.folder,
    )
    return Upload(None, {}, error)


def _brief(exc: Exception) -> str:
    """The gist of an MLflow failure: the OS error under a wrapped connection failure, else its first line."""
    text = str(exc)
    cause = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return f"{type(exc).__name__}: {cause.group(0) if cause else (text.splitlines() or [''])[0][:300]}"


def run_and_log(spec: TrialSpec, benchmark: str, tracker: Tracker) -> tuple[TrialResult, str | None]:
    """Run one trial into the spool and upload it; returns the result and its MLflow run (None while
    MLflow is unreachable: the result waits in the spool). With `loadgen: auto`, a configuration whose
    Locust saturated is measured again by h2load, as a trial of its own (key `...-h2load`) beside it."""
    bench = spool.load(benchmark)
    model = ExportedModel(Path(bench.exports[spec.model]))
    result = run_trial(spec, model, bench.trial_dir(spec.key))
    if needs_native_engine(result):
        native = spec.measured_by("h2load")
        log.info(
            "trial %s: Locust saturated, so the server may be faster: measuring it again with h2load", spec.run_name
        )
        run_trial(native, model, bench.trial_dir(native.key))
    return result, upload(bench, tracker).runs.get(spec.key)


def needs_native_engine(result: TrialResult) -> bool:
    """Whether `loadgen: auto` measures this configuration again with h2load: Locust saturated on a clean
    closed-loop measurement (h2load runs closed loop only; capacity search and soak have their own runs)."""
    s = result.spec.settings
    return (
        s.loadgen == "auto"
        and result.ok
        and Flag.LOADGEN_SATURATED in result.flags
        and s.load == "closed"
        and not s.load_hosts  # h2load would measure from this machine what the load hosts were there to spare
        and not s.capacity
        and not s.soak_minutes
    )


def serve_load(
    host: str, checked: params.BenchmarkParams, trials_done: Callable[[], bool], idle_s: float = 600.0
) -> dict[str, Any]:
    """On a load host (an Airflow task on its Celery queue): Locust workers for every trial of the run, joining each
    trial's master at `loadgen_master`, until `trials_done` says the run's trials have ended (or, failing that,
    no master has come for `idle_s`). Where it ran (the address this host reaches the master from) and how many
    load tests it served."""
    from servebench.measure import locust_engine

    address, _, port = checked.loadgen_master.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # no packet sent: the route's source address
        probe.connect((address, int(port)))
        source = str(probe.getsockname()[0])
    log.info("load host %s: this worker reaches the Locust master %s from %s", host, checked.loadgen_master, source)
    served = locust_engine.worker(checked.loadgen_master, host, checked.loadgen_processes, idle_s, idle_s, trials_done)
    return {"load_host": host, "address": source, "hostname": socket.gethostname(), "load_tests": served}


def planned_trials(parent_id: str, tracker: Tracker) -> list[TrialSpec]:
    """The matrix a parent run was opened for (not re-validated: a framework may have gone since)."""
    return plan(params.trusted(tracker.parent_params(parent_id)))


def summarize(benchmark: str, planned: list[TrialSpec], tracker: Tracker) -> summary.Summary:
    """Judge each configuration against its history, build the report from MLflow (or from the spool while
    MLflow is unreachable), log it to the parent run and close that run. Spooled results are uploaded first."""
    bench = spool.load(benchmark)
    uploaded = upload(bench, tracker)
    if uploaded.parent_id:
        _judge(bench, tracker.trial_runs(uploaded.parent_id), uploaded.parent_id, tracker)
        built = report.gather(uploaded.parent_id, tracker, planned)
    else:
        records = [record_of(TrialResult.load(p)) for p in sorted(bench.folder.glob(f"*/{spool.RESULT_FILE}"))]
        facts = report.about(
            None,
            bench.params,
            bench.tags,
            **{"benchmark id": bench.id, "tracking URI": f"{tracker.uri} (unreachable: not logged yet)"},
        )
        built = report.from_records(records, planned, bench.run_name, facts)
    (bench.summary_dir / spool.UPLOADED_FILE).unlink(missing_ok=True)
    files = report.write(built, bench.summary_dir)
    result = summary.Summary(built.rows, files, uploaded.parent_id, uploaded.error)
    if uploaded.parent_id:
        tracker.log_files(uploaded.parent_id, files, "summary")
        tracker.close_parent(uploaded.parent_id, failed=bool(result.failed))
        spool.mark_uploaded(bench.summary_dir, uploaded.parent_id, tracker.uri)
        log.info(
            "summary of %d trials (%d not ok) logged to parent run %s",
            len(result.rows),
            len(result.failed),
            uploaded.parent_id,
        )
    log.info("report: %s", files[0])
    for row in result.parity_failures:
        log.error("not load-tested, answers differ from the reference: %s: %s", summary.label(row), row["notes"])
    return result


def verdict(result: summary.Summary, nightly: bool, fail_on_regression: bool) -> str | None:
    """Why a benchmark run should end red, or None: MLflow unreachable (the morning view lacks the night),
    a regression (a nightly run, or asked for), or configurations that did not run clean."""
    if result.tracking_error:
        return (
            f"MLflow unreachable ({result.tracking_error}): results are spooled in {result.files[0].parent.parent}; "
            "run `servebench sync` once it is back"
        )
    if result.regressions and (nightly or fail_on_regression):
        return f"{len(result.regressions)} regression(s): " + "; ".join(result.regressions)
    if result.failed:
        return f"{len(result.failed)} of {len(result.rows)} configurations not ok: " + ", ".join(
            summary.label(r) for r in result.failed
        )
    return None


def _judge(bench: spool.Benchmark, records: list[TrialRecord], parent_id: str, tracker: Tracker) -> None:
    """Each ok trial against its history (same experiment, configuration and host; scheduled nights before
    this one); the verdicts are logged on the trial runs."""
    before = tracker.start_ms(parent_id)
    host = bench.tags.get(TAG_HOST, "")
    for record in records:
        if record.tags.get(TAG_STATUS) != "ok":
            continue
        history = tracker.history(bench.experiment, record.tags[TAG_TRIAL_KEY], host, before)
        verdicts = [
            regression.judge(
                figure, record.metrics[figure], [h.metrics[figure] for h in history if figure in h.metrics]
            )
            for figure in regression.JUDGED
            if figure in record.metrics
        ]
        served = record.tags.get(TAG_MODEL_VERSION, "")
        baseline = next((v for h in history if (v := h.tags.get(TAG_MODEL_VERSION))), "")
        changed = version_change(baseline, served) if served and baseline and served != baseline else ""
        if changed:
            log.warning("%s: the model changed since its baseline: %s", record.tags[TAG_TRIAL_KEY], changed)
        tracker.log_verdicts(record.run_id, verdicts, model_changed=changed)
        for judged in verdicts:
            if judged.verdict in ("regression", "improvement"):
                log.warning("%s: %s", record.tags[TAG_TRIAL_KEY], judged.text)


def version_change(before: str, now: str) -> str:
    """`v3 → v4` for two versions of one registered model (`name/3`, `name/4`), else both in full."""
    (old_name, _, old), (new_name, _, new) = before.rpartition("/"), now.rpartition("/")
    return f"v{old} → v{new}" if old_name == new_name else f"{before} → {now}"


def sync(tracker: Tracker, any_uri: bool = False) -> list[tuple[spool.Benchmark, Upload]]:
    """Upload every benchmark the spool holds that MLflow lacks in part (`servebench sync`): those meant for
    this tracking URI, or all of them with `any_uri`. One summarized offline gets its summary rebuilt
    from MLflow and its parent run closed."""
    done = []
    for bench in spool.all_benchmarks():
        if not bench.pending() and not bench.summary_pending():
            continue
        if bench.tracking_uri != tracker.uri:
            if not any_uri:
                log.info(
                    "benchmark %s is meant for MLflow at %s, not %s: left in the spool",
                    bench.id,
                    bench.tracking_uri,
                    tracker.uri,
                )
                continue
            log.info("benchmark %s was meant for %s; uploading it to %s", bench.id, bench.tracking_uri, tracker.uri)
        uploaded = upload(bench, tracker, retries=0)
        if uploaded.parent_id and bench.summary_pending():
            summarize(bench.id, planned_trials(uploaded.parent_id, tracker), tracker)
        done.append((bench, uploaded))
    return done


@dataclass(frozen=True)
class RunOutcome:
    benchmark: str
    results: list[tuple[TrialResult, str | None]]
    summary: summary.Summary


def run_all(raw: dict[str, Any], trigger: str = "cli", tracker: Tracker | None = None) -> RunOutcome:
    """The whole pipeline in one process, in the DAG's order (what `servebench run` does)."""
    checked, specs = validate(raw)
    tracker = tracker or Tracker()
    exports = train_models(checked)
    for name in checked.frameworks:
        try:
            build_framework(name, checked, exports)
        except (BuildError, images.ImageError) as exc:  # its trials fail with this reason; the others go on
            log.error("server %s: %s", name, exc)
    benchmark = open_run(checked, exports, tracker, trigger)
    results = []
    for i, spec in enumerate(specs, 1):
        log.info("=== trial %d/%d: %s", i, len(specs), spec.run_name)
        results.append(run_and_log(spec, benchmark, tracker))
    return RunOutcome(benchmark, results, summarize(benchmark, specs, tracker))
