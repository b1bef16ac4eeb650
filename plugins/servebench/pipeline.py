"""The benchmark's stages as plain functions. The DAG's tasks and the CLI call exactly these."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from servebench import environment, images, manifest, models, params, paths, runner, summary
from servebench.build import BuildError
from servebench.spec import TrialSpec, plan
from servebench.tracker import TAG_DAG_RUN, Tracker
from servebench.trial import TrialResult, run_trial

log = logging.getLogger(__name__)


class TrialFailed(RuntimeError):
    """Raised by the DAG's trial task so Airflow shows the configuration red; its result is already logged."""


def validate(raw: dict[str, Any]) -> tuple[params.BenchmarkParams, list[TrialSpec]]:
    """Parse parameters and plan the trials, before any work starts; raises ParamsError naming the field,
    or ImageError when the docker backend has no engine or lacks an image a server needs."""
    checked = params.parse(raw)
    servers = [manifest.get(name) for name in checked.frameworks]  # a malformed manifest fails here, not at 3 am
    if checked.backend == "docker":  # no engine, or a base image it cannot get (TF Serving's): say so now
        client = images.engine()
        for server in servers:
            images.require_base_images(client, server)
    specs = plan(checked)
    log.info("planned %d trials: %s", len(specs), ", ".join(s.key for s in specs))
    return checked, specs


def train_models(names: list[str]) -> list[models.ExportedModel]:
    return [models.export(name) for name in names]


def build_framework(name: str, checked: params.BenchmarkParams) -> list[str]:
    """Build what the backend needs to serve the models with this framework (venv, or one image per model)."""
    backend = runner.create(checked.backend, checked.cpuset, checked.memory_mb)
    return backend.build(manifest.get(name), train_models(checked.models))


def open_run(
    checked: params.BenchmarkParams, tracker: Tracker, trigger: str, dag_run_id: str | None = None
) -> str:
    """The parent MLflow run of a benchmark, with what was asked, on what, and the models served."""
    tags = {"trigger": trigger, **environment.host_tags()}
    if dag_run_id:
        tags[TAG_DAG_RUN] = dag_run_id
    run_name = f"{trigger} {time.strftime('%Y-%m-%d %H:%M')}"
    parent_id = tracker.open_parent(checked.experiment, run_name, checked.model_dump(), tags)
    tracker.log_models(parent_id, train_models(checked.models))
    log.info("MLflow parent run %s in experiment %r at %s", parent_id, checked.experiment, tracker.uri)
    return parent_id


def run_and_log(spec: TrialSpec, parent_id: str, tracker: Tracker) -> tuple[TrialResult, str]:
    """Run one trial and log it as a child run; returns the result and the child run's id."""
    result = run_trial(spec, paths.runs_dir() / parent_id / spec.key)
    child_id = tracker.log_trial(parent_id, result)
    return result, child_id


def planned_trials(parent_id: str, tracker: Tracker) -> list[TrialSpec]:
    """The matrix a parent run was opened for (not re-validated: a framework may have gone since)."""
    return plan(params.BenchmarkParams.model_construct(**tracker.parent_params(parent_id)))


def summarize(parent_id: str, planned: list[TrialSpec], tracker: Tracker) -> summary.Summary:
    """Build the comparison from the tracker, log it to the parent run and close that run."""
    runs = tracker.trial_runs(parent_id)
    rows = summary.rows_from_runs(runs, planned)
    curves = {
        f"{r.data.params.get('model')} {r.data.params.get('framework')} w{r.data.params.get('workers')}": points
        for r in runs
        if (points := tracker.capacity_curve(r.info.run_id))
    }
    files = summary.write_files(rows, paths.runs_dir() / parent_id / "summary", curves)
    tracker.log_files(parent_id, files, "summary")
    result = summary.Summary(rows, files)
    tracker.close_parent(parent_id, failed=bool(result.failed))
    log.info("summary of %d trials (%d not ok) logged to parent run %s", len(rows), len(result.failed), parent_id)
    for row in result.parity_failures:
        log.error("not load-tested, answers differ from the reference: %s/%s/w%s: %s",
                  row["model"], row["framework"], row["workers"], row["notes"])  # fmt: skip
    return result


@dataclass(frozen=True)
class RunOutcome:
    parent_id: str
    results: list[tuple[TrialResult, str]]
    summary: summary.Summary


def run_all(raw: dict[str, Any], trigger: str = "cli", tracker: Tracker | None = None) -> RunOutcome:
    """The whole pipeline in one process, in the DAG's order (what `servebench run` does)."""
    checked, specs = validate(raw)
    tracker = tracker or Tracker()
    train_models(checked.models)
    for name in checked.frameworks:
        try:
            build_framework(name, checked)
        except (BuildError, images.ImageError) as exc:  # its trials fail with this reason; the others go on
            log.error("server %s: %s", name, exc)
    parent_id = open_run(checked, tracker, trigger)
    results = []
    for i, spec in enumerate(specs, 1):
        log.info("=== trial %d/%d: %s", i, len(specs), spec.run_name)
        results.append(run_and_log(spec, parent_id, tracker))
    return RunOutcome(parent_id, results, summarize(parent_id, specs, tracker))
