"""MLflow tracking: one parent run per benchmark run, one child run per trial, names that compare cleanly.

Uses MlflowClient with explicit run ids (no fluent "active run" state), so Airflow tasks in separate
processes can all log into the same parent run. Every write is idempotent, because the spool retries
uploads: a parent run is found again by its benchmark id, a trial's upload by its result id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servebench.base import paths
from servebench.models.export import ExportedModel
from servebench.results.records import (
    BASELINE_PREFIX,
    CHANGE_PREFIX,
    INHERITED_TAGS,
    TAG_BENCHMARK,
    TAG_HOST,
    TAG_KIND,
    TAG_MODEL_CHANGED,
    TAG_MODEL_VERSION,
    TAG_RESULT,
    TAG_STATUS,
    TAG_TRIAL_KEY,
    TAG_TRIGGER,
    TAG_UPLOAD,
    TAG_VERDICT,
    Series,
    TrialRecord,
    TrialResult,
    mlflow_params,
    trial_tags,
)
from servebench.results.regression import Verdict, overall
from servebench.results.spool import Benchmark

log = logging.getLogger(__name__)

EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
ARTIFACT_SUFFIXES = {".csv", ".html", ".log", ".json", ".txt", ".hlog"}
REGISTERED_PREFIX = "servebench-"  # registered model of each model: servebench-<model>
# An unreachable tracking server should fail an upload in seconds (the spool keeps the result and
# retries later), not after MLflow's default of 7 retries with exponential back-off.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class RunMissing(LookupError):
    """No run of that id in the tracking store."""


@dataclass(frozen=True)
class RunFacts:
    run_id: str
    name: str
    experiment: str
    start_ms: int
    params: dict[str, str]
    tags: dict[str, str]


class Tracker:
    def __init__(self, uri: str | None = None) -> None:
        import mlflow

        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # each retry; the spool reports the outcome
        self._mlflow = mlflow
        self.uri = uri or paths.tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        self._made_client: Any = None

    @property
    def _client(self) -> Any:
        """Made at first use: a URI MLflow rejects (a typo in the scheme) then fails an upload, which the
        spool survives, rather than the task that was to measure."""
        if self._made_client is None:
            from mlflow.tracking import MlflowClient

            self._made_client = MlflowClient(self.uri)
        return self._made_client

    # -- experiments and the parent run ------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        """The experiment's id, created if need be, and tagged as model development: the MLflow UI then opens
        it on its runs table, not on its GenAI overview (traces and tokens, empty here)."""
        experiment = self._client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if self.uri.startswith("sqlite:") and self.uri == paths.tracking_uri():
                # The embedded store keeps artifacts beside it, not in ./mlruns of whatever cwd a task has.
                location = (paths.local_artifact_root() / name).as_uri()
            experiment_id = str(self._client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS))
        else:
            experiment_id = str(experiment.experiment_id)
            for key, value in EXPERIMENT_TAGS.items():
                if experiment.tags.get(key) != value:  # an experiment made before, or by someone else
                    self._client.set_experiment_tag(experiment_id, key, value)
        return experiment_id

    def open_parent(self, bench: Benchmark) -> str:
        """The parent run of a benchmark: found by its benchmark id when it exists (a re-run, a retried
        upload), else created with the benchmark's params and tags."""
        experiment_id = self.experiment_id(bench.experiment)
        found = self._client.search_runs(
            [experiment_id], f"tags.`{TAG_BENCHMARK}` = '{bench.id}' and tags.`{TAG_KIND}` = 'benchmark'"
        )
        if found:
            return str(found[0].info.run_id)
        from mlflow.entities import Param

        tags = {**bench.tags, TAG_KIND: "benchmark", TAG_BENCHMARK: bench.id}
        run = self._client.create_run(experiment_id, run_name=bench.run_name, tags=tags)
        self._client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in mlflow_params(bench.params).items()])
        log.info("MLflow parent run %s opened for benchmark %s", run.info.run_id, bench.id)
        return str(run.info.run_id)

    def close_parent(self, run_id: str, failed: bool) -> None:
        self._client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def log_models(self, run_id: str, exports: list[ExportedModel]) -> None:
        """Log each model as an MLflow model with a signature and register it in the Model Registry as a
        version of `servebench-<model>`, once per export (not once per night); the parent run's tags say
        which logged models and which registered version it serves."""
        logged = self._client.get_run(run_id).data.tags
        for export in exports:
            if logged.get(f"model.{export.name}.key") == export.key:
                continue  # this run has it already (an upload retried, or the next trial's)
            if export.meta["source"]["kind"] != "recipe":  # the user's model: linked where it is, never re-logged
                for what, value in _user_model_tags(export.meta["source"]).items():
                    self._client.set_tag(run_id, f"model.{export.name}.{what}", value)
                self._client.set_tag(run_id, f"model.{export.name}.key", export.key)
                continue
            record = export.dir / "mlflow-models.json"
            known = json.loads(record.read_text()) if record.exists() else {}
            uris = known.get(self.uri, {})
            if not (self._logged_model_exists(uris.get("sklearn_uri")) and self._version_exists(uris.get("version"))):
                uris = self._log_model(run_id, export)
                record.write_text(json.dumps({**known, self.uri: uris}, indent=1))
            for what, value in uris.items():  # sklearn_uri, onnx_uri, version
                self._client.set_tag(run_id, f"model.{export.name}.{what}", value)
            self._client.set_tag(run_id, f"model.{export.name}.key", export.key)  # last: the others are in

    @contextlib.contextmanager
    def _resumed(self, run_id: str) -> Iterator[None]:
        """`run_id` as MLflow's active run, for its model loggers, whatever experiment the calling process chose:
        `start_run(run_id=...)` refuses a run outside the experiment of an earlier `mlflow.set_experiment` (a
        training script or a notebook in the same process). Their choice is put back afterwards."""
        from mlflow.tracking import fluent

        chosen = getattr(fluent, "_active_experiment_id", None)
        fluent._active_experiment_id = None
        try:
            with self._mlflow.start_run(run_id=run_id):
                yield
        finally:
            fluent._active_experiment_id = chosen

    def _log_model(self, run_id: str, export: ExportedModel) -> dict[str, str]:
        import joblib
        import numpy as np
        import onnx
        import skops.io as skops_io
        from mlflow.models import infer_signature

        inputs = np.asarray(export.meta["samples"]["inputs"])
        signature = infer_signature(inputs, np.asarray(export.meta["samples"]["probabilities"]))
        uris: dict[str, str] = {}
        model = joblib.load(export.path("joblib"))
        # skops, not pickle; the types it does not know are those of the model we just trained.
        trusted = skops_io.get_untrusted_types(data=skops_io.dumps(model))
        with self._resumed(run_id):
            info = self._mlflow.sklearn.log_model(
                model,
                name=f"{export.name}-sklearn",
                signature=signature,
                input_example=inputs[:2],
                serialization_format="skops",
                skops_trusted_types=trusted,
                pip_requirements=[f"scikit-learn=={export.meta['versions']['scikit-learn']}", "skops"],
            )
            uris["sklearn_uri"] = info.model_uri
            info = self._mlflow.onnx.log_model(
                onnx.load(str(export.path("onnx"))),
                name=f"{export.name}-onnx",
                signature=infer_signature(inputs.astype(np.float32)),
                pip_requirements=["onnxruntime"],
            )
            uris["onnx_uri"] = info.model_uri
        name = f"{REGISTERED_PREFIX}{export.name}"
        if not self._client.search_registered_models(f"name = '{name}'"):
            self._client.create_registered_model(
                name, description=f"servebench's {export.name} model, one version per export"
            )
        version = self._client.create_model_version(
            name,
            uris["sklearn_uri"],
            run_id=run_id,
            model_id=uris["sklearn_uri"].removeprefix("models:/"),
            tags={
                "servebench.export_key": export.key,
                "onnx_uri": uris["onnx_uri"],
                "scikit-learn": export.meta["versions"]["scikit-learn"],
            },
            description=f"export {export.key}: the scikit-learn model; its ONNX export is {uris['onnx_uri']}",
        )
        uris["version"] = f"{name}/{version.version}"
        log.info("model %s registered as %s version %s", export.name, name, version.version)
        return uris

    def _version_exists(self, registered: str | None) -> bool:
        if not registered:
            return False
        name, version = registered.rsplit("/", 1)
        try:
            self._client.get_model_version(name, version)
            return True
        except Exception:  # noqa: BLE001 - any lookup failure means: register it again
            return False

    def _logged_model_exists(self, model_uri: str | None) -> bool:
        if not model_uri:
            return False
        try:
            self._client.get_logged_model(model_uri.removeprefix("models:/"))
            return True
        except Exception:  # noqa: BLE001 - any lookup failure means: log it again
            return False

    # -- trials ------------------------------------------------------------------------------------
    def log_trial(self, parent_id: str, result: TrialResult) -> str:
        """The child run of a result, with its params, metrics, per-second series, flags and artifacts.

        Idempotent: a result already uploaded completely is not uploaded again, and once the new run is
        complete, the other runs of the same trial (a half-finished upload, an earlier attempt of a
        re-run task) are deleted, so each configuration has one run per benchmark."""
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import Param, RunTag

        parent = self._client.get_run(parent_id)
        same_trial = [r for r in self._children(parent_id) if r.data.tags.get(TAG_TRIAL_KEY) == result.spec.key]
        for run in same_trial:
            if run.data.tags.get(TAG_RESULT) == result.result_id and run.data.tags.get(TAG_UPLOAD) == "complete":
                return str(run.info.run_id)
        tags = {"mlflow.parentRunId": parent_id, **trial_tags(result)}
        for inherited in INHERITED_TAGS:  # so a trial's baseline is one search away
            if parent.data.tags.get(inherited):
                tags[inherited] = parent.data.tags[inherited]
        served = _served_model(parent.data.tags, result)
        if served.get(TAG_MODEL_VERSION):
            tags[TAG_MODEL_VERSION] = served[TAG_MODEL_VERSION]
        run = self._client.create_run(parent.info.experiment_id, run_name=result.spec.run_name, tags=tags)
        run_id = str(run.info.run_id)
        now = int(time.time() * 1000)
        params = {**result.spec.logged_params(), **result.context}
        metrics = [MlflowMetric(k, v, now, 0) for k, v in result.metrics.items()]
        metrics += [MlflowMetric(name, v, now, step) for name, points in result.series.items() for step, v in points]
        for i in range(0, max(len(metrics), 1), 1000):  # log_batch takes at most 1000 metrics
            self._client.log_batch(
                run_id,
                metrics=metrics[i : i + 1000],
                params=[Param(k, v) for k, v in mlflow_params(params).items()] if i == 0 else [],
                tags=[RunTag(k, v) for k, v in tags.items() if k != "mlflow.parentRunId"] if i == 0 else [],
            )
        if served.get("logged"):  # the run's "Logged models" input in the UI: the very model it served
            from mlflow.entities import LoggedModelInput

            self._client.log_inputs(run_id, models=[LoggedModelInput(served["logged"].removeprefix("models:/"))])
        for path in sorted(result.out_dir.iterdir()) if result.out_dir.is_dir() else []:
            if path.is_dir():  # one folder per load test: repeat-N, capacity-N
                self._client.log_artifacts(run_id, str(path), path.name)
            elif path.suffix in ARTIFACT_SUFFIXES:
                self._client.log_artifact(run_id, str(path))
        if result.log_tail:
            self._client.log_text(run_id, result.log_tail, "server_log_tail.txt")
        self._client.set_tag(run_id, TAG_UPLOAD, "complete")
        self._client.set_terminated(run_id, "FINISHED" if result.ok else "FAILED")
        for older in same_trial:
            self._client.delete_run(older.info.run_id)
            log.info(
                "trial %s: run %s of an earlier attempt replaced by %s", result.spec.key, older.info.run_id, run_id
            )
        return run_id

    def _children(self, parent_id: str) -> list[Any]:
        """Every trial run of a parent run (MLflow Run objects), oldest first."""
        parent = self._client.get_run(parent_id)
        return list(
            self._client.search_runs(
                [parent.info.experiment_id],
                f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{TAG_KIND}` = 'trial'",
                max_results=5000,
                order_by=["attributes.start_time ASC"],
            )
        )

    def trial_runs(self, parent_id: str) -> list[TrialRecord]:
        """The completely uploaded trial runs of a parent run, oldest first."""
        return [
            TrialRecord(
                str(r.info.run_id),
                dict(r.data.params),
                dict(r.data.metrics),
                dict(r.data.tags),
                self.series(str(r.info.run_id), (Series.CAPACITY_RPS, Series.CAPACITY_P99))
                if r.data.params.get("capacity") == "true"
                else {},
            )
            for r in self._children(parent_id)
            if r.data.tags.get(TAG_UPLOAD) == "complete"
        ]

    def history(self, experiment: str, key: str, host: str, before_ms: int, k: int = 7) -> list[TrialRecord]:
        """The last `k` successful runs of a configuration in scheduled benchmarks on the same host, started
        before `before_ms` (epoch ms): the baseline a night is judged against."""
        experiment_obj = self._client.get_experiment_by_name(experiment)
        if experiment_obj is None:
            return []
        runs = self._client.search_runs(
            [experiment_obj.experiment_id],
            f"tags.`{TAG_TRIAL_KEY}` = '{key}' and tags.`{TAG_STATUS}` = 'ok' and tags.`{TAG_TRIGGER}` = 'scheduled' "
            f"and tags.`{TAG_HOST}` = '{host}' and tags.`{TAG_UPLOAD}` = 'complete' and attributes.start_time < {before_ms}",
            max_results=k,
            order_by=["attributes.start_time DESC"],
        )
        return [
            TrialRecord(str(r.info.run_id), dict(r.data.params), dict(r.data.metrics), dict(r.data.tags)) for r in runs
        ]

    def log_verdicts(self, run_id: str, verdicts: list[Verdict], model_changed: str = "") -> None:
        """The regression verdict of a trial run: a tag overall and per figure, the baseline and the change;
        and, when the model it served is another version than its baseline's, which (`v3 → v4`)."""
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import RunTag

        now = int(time.time() * 1000)
        tags = [RunTag(TAG_VERDICT, overall(verdicts))]
        if model_changed:
            tags.append(RunTag(TAG_MODEL_CHANGED, model_changed))
        tags += [RunTag(f"{TAG_VERDICT}.{v.figure}", v.text[:5000]) for v in verdicts]
        metrics = [
            MlflowMetric(BASELINE_PREFIX + v.figure, v.baseline, now, 0) for v in verdicts if v.baseline is not None
        ]
        metrics += [
            MlflowMetric(CHANGE_PREFIX + v.figure, 100 * v.change, now, 0) for v in verdicts if v.change is not None
        ]
        self._client.log_batch(run_id, metrics=metrics, tags=tags)

    def run(self, run_id: str) -> RunFacts:
        """What a report needs of a run; RunMissing (with MLflow's reason) when the store has no such run."""
        try:
            run = self._client.get_run(run_id)
        except Exception as exc:  # noqa: BLE001 - MLflow's error says whether the run or the store is missing
            raise RunMissing(
                f"no run {run_id!r} at {self.uri}: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
            ) from None
        experiment = self._client.get_experiment(run.info.experiment_id).name
        return RunFacts(
            run_id, run.info.run_name, experiment, int(run.info.start_time), dict(run.data.params), dict(run.data.tags)
        )

    def start_ms(self, run_id: str) -> int:
        return int(self._client.get_run(run_id).info.start_time)

    def series(self, run_id: str, names: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
        """The (step, value) histories of some step metrics of a run."""
        return {name: [(m.step, m.value) for m in self._client.get_metric_history(run_id, name)] for name in names}

    def log_files(self, run_id: str, files: list[Path], artifact_path: str | None = None) -> None:
        for path in files:
            self._client.log_artifact(run_id, str(path), artifact_path)

    def parent_params(self, run_id: str) -> dict[str, Any]:
        """The benchmark parameters a parent run was opened with, decoded back from MLflow's strings."""
        decoded: dict[str, Any] = {}
        for key, value in self._client.get_run(run_id).data.params.items():
            try:
                decoded[key] = json.loads(value)
            except ValueError:
                decoded[key] = value  # plain strings, e.g. the experiment name
        return decoded

    def benchmark_of(self, parent_id: str) -> str:
        """The spool's id of the benchmark a parent run holds."""
        return str(self._client.get_run(parent_id).data.tags.get(TAG_BENCHMARK, parent_id))

    def latest_parent(self, experiment: str) -> str | None:
        experiment_obj = self._client.get_experiment_by_name(experiment)
        if experiment_obj is None:
            return None
        found = self._client.search_runs(
            [experiment_obj.experiment_id],
            f"tags.`{TAG_KIND}` = 'benchmark'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return str(found[0].info.run_id) if found else None


def _served_model(parent_tags: dict[str, str], result: TrialResult) -> dict[str, str]:
    """The registered version and the logged model (the flavor of the file the server loaded) of a trial."""
    model = result.spec.model
    if parent_tags.get(f"model.{model}.key") != result.context.get("model_key"):
        return {}  # the parent logged another export, or none: no link rather than a wrong one
    flavor = "onnx" if result.context.get("model_format") == "onnx" else "sklearn"
    return {
        TAG_MODEL_VERSION: parent_tags.get(f"model.{model}.version", ""),
        "logged": parent_tags.get(f"model.{model}.{flavor}_uri") or parent_tags.get(f"model.{model}.source_uri", ""),
    }


def _user_model_tags(source: dict[str, str]) -> dict[str, str]:
    """A parent run's tags for a user's model: its registered version and alias, the run that logged it, and
    the logged model the version points at (the trials' "Logged models" link); a file's path."""
    if source["kind"] == "file":
        return {"path": source["path"]}
    tags = {"version": f"{source['registered_name']}/{source['version']}", "run_id": source["run_id"]}
    if source["alias"]:
        tags["alias"] = source["alias"]
    if source.get("model_source", "").startswith("models:/m-"):
        tags["source_uri"] = source["model_source"]
    return tags
