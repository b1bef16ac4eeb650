"""MLflow tracking: one parent run per benchmark run, one child run per trial, names that compare cleanly.

Uses MlflowClient with explicit run ids (no fluent "active run" state), so Airflow tasks in separate
processes can all log into the same parent run. Every write is idempotent, because the spool retries
uploads: a parent run is found again by its benchmark id, a trial's upload by its result id.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servebench import paths
from servebench.models import ExportedModel
from servebench.regression import Verdict, overall
from servebench.spool import Benchmark
from servebench.trial import TrialResult

log = logging.getLogger(__name__)

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
INHERITED_TAGS = (TAG_DAG_RUN, TAG_TRIGGER, TAG_HOST)  # copied from a parent run to its trials
ARTIFACT_SUFFIXES = {".csv", ".html", ".log", ".json", ".txt", ".hlog"}
REGISTERED_PREFIX = "servebench-"  # registered model of each model: servebench-<model>
CAPACITY_SERIES = ("capacity/rps", "capacity/p99_ms")
_PARAM_LIMIT = 6000  # MLflow's limit on a param value
# An unreachable tracking server should fail an upload in seconds (the spool keeps the result and
# retries later), not after MLflow's default of 7 retries with exponential back-off.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}  # fmt: skip


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
        rps, p99 = dict(self.series.get(CAPACITY_SERIES[0], [])), dict(self.series.get(CAPACITY_SERIES[1], []))
        return [(rps[step], p99[step]) for step in sorted(rps) if step in p99]


def trial_tags(result: TrialResult) -> dict[str, str]:
    tags = {
        TAG_KIND: "trial",
        TAG_TRIAL_KEY: result.spec.key,
        TAG_RESULT: result.result_id,
        TAG_STATUS: result.status,
        TAG_FLAGS: ",".join(result.flags),
        TAG_LOADGEN_SATURATED: str("loadgen_saturated" in result.flags).lower(),
    }
    if result.reason:
        tags[TAG_REASON] = result.reason[:5000]
    return tags


def record_of(result: TrialResult) -> TrialRecord:
    """The record MLflow will hold of a result, built from the result itself (MLflow unreachable)."""
    return TrialRecord("", _params({**result.spec.to_dict(), **result.context}), dict(result.metrics),
                       trial_tags(result), dict(result.series))  # fmt: skip


class Tracker:
    def __init__(self, uri: str | None = None) -> None:
        import mlflow

        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # each retry; the spool reports the outcome
        self._mlflow = mlflow
        self.uri = uri or paths.tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        self._client: Any = None

    @property
    def client(self) -> Any:
        """Made at first use: a URI MLflow rejects (a typo in the scheme) then fails an upload, which the
        spool survives, rather than the task that was to measure."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.uri)
        return self._client

    # -- experiments and the parent run ------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = None
        if self.uri.startswith("sqlite:") and self.uri == paths.tracking_uri():
            # The embedded store keeps artifacts beside it, not in ./mlruns of whatever cwd a task has.
            location = (paths.local_artifact_root() / name).as_uri()
        return str(self.client.create_experiment(name, artifact_location=location))

    def open_parent(self, bench: Benchmark) -> str:
        """The parent run of a benchmark: found by its benchmark id when it exists (a re-run, a retried
        upload), else created with the benchmark's params and tags."""
        experiment_id = self.experiment_id(bench.experiment)
        found = self.client.search_runs(
            [experiment_id], f"tags.`{TAG_BENCHMARK}` = '{bench.id}' and tags.`{TAG_KIND}` = 'benchmark'"
        )
        if found:
            return str(found[0].info.run_id)
        from mlflow.entities import Param

        tags = {**bench.tags, TAG_KIND: "benchmark", TAG_BENCHMARK: bench.id}
        run = self.client.create_run(experiment_id, run_name=bench.run_name, tags=tags)
        self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in _params(bench.params).items()])
        log.info("MLflow parent run %s opened for benchmark %s", run.info.run_id, bench.id)
        return str(run.info.run_id)

    def close_parent(self, run_id: str, failed: bool) -> None:
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def log_models(self, run_id: str, exports: list[ExportedModel]) -> None:
        """Log each model as an MLflow model with a signature and register it in the Model Registry as a
        version of `servebench-<model>`, once per export (not once per night); the parent run's tags say
        which logged models and which registered version it serves."""
        logged = self.client.get_run(run_id).data.tags
        for export in exports:
            if logged.get(f"model.{export.name}.key") == export.key and logged.get(f"model.{export.name}.version"):
                continue  # this run has it already (an upload retried, or the next trial's)
            record = export.dir / "mlflow-models.json"
            known = json.loads(record.read_text()) if record.exists() else {}
            uris = known.get(self.uri, {})
            if not (self._logged_model_exists(uris.get("sklearn_uri")) and self._version_exists(uris.get("version"))):
                uris = self._log_model(run_id, export)
                record.write_text(json.dumps({**known, self.uri: uris}, indent=1))
            for what, value in uris.items():  # sklearn_uri, onnx_uri, version
                self.client.set_tag(run_id, f"model.{export.name}.{what}", value)
            self.client.set_tag(run_id, f"model.{export.name}.key", export.key)  # last: the others are in

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
        with self._mlflow.start_run(run_id=run_id):
            info = self._mlflow.sklearn.log_model(
                model, name=f"{export.name}-sklearn", signature=signature, input_example=inputs[:2],
                serialization_format="skops", skops_trusted_types=trusted,
                pip_requirements=[f"scikit-learn=={export.meta['versions']['scikit-learn']}", "skops"],
            )  # fmt: skip
            uris["sklearn_uri"] = info.model_uri
            info = self._mlflow.onnx.log_model(
                onnx.load(str(export.path("onnx"))), name=f"{export.name}-onnx",
                signature=infer_signature(inputs.astype(np.float32)), pip_requirements=["onnxruntime"],
            )  # fmt: skip
            uris["onnx_uri"] = info.model_uri
        name = f"{REGISTERED_PREFIX}{export.name}"
        if not self.client.search_registered_models(f"name = '{name}'"):
            self.client.create_registered_model(name, description=f"servebench's {export.name} model, one version per export")
        version = self.client.create_model_version(
            name, uris["sklearn_uri"], run_id=run_id, model_id=uris["sklearn_uri"].removeprefix("models:/"),
            tags={"servebench.export_key": export.key, "onnx_uri": uris["onnx_uri"],
                  "scikit-learn": export.meta["versions"]["scikit-learn"]},
            description=f"export {export.key}: the scikit-learn model; its ONNX export is {uris['onnx_uri']}",
        )  # fmt: skip
        uris["version"] = f"{name}/{version.version}"
        log.info("model %s registered as %s version %s", export.name, name, version.version)
        return uris

    def _version_exists(self, registered: str | None) -> bool:
        if not registered:
            return False
        name, version = registered.rsplit("/", 1)
        try:
            self.client.get_model_version(name, version)
            return True
        except Exception:  # noqa: BLE001 - any lookup failure means: register it again
            return False

    def _logged_model_exists(self, model_uri: str | None) -> bool:
        if not model_uri:
            return False
        try:
            self.client.get_logged_model(model_uri.removeprefix("models:/"))
            return True
        except Exception:  # noqa: BLE001 - any lookup failure means: log it again
            return False

    # -- trials ------------------------------------------------------------------------------------
    def log_trial(self, parent_id: str, result: TrialResult) -> str:
        """The child run of a result, with its params, metrics, per-second series, flags and artifacts.

        Idempotent: a result already uploaded completely is not uploaded again, and once the new run is
        complete, the other runs of the same trial (a half-finished upload, an earlier attempt of a
        re-run task) are deleted, so each configuration has one run per benchmark."""
        from mlflow.entities import Metric, Param, RunTag

        parent = self.client.get_run(parent_id)
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
        run = self.client.create_run(parent.info.experiment_id, run_name=result.spec.run_name, tags=tags)
        run_id = str(run.info.run_id)
        now = int(time.time() * 1000)
        params = {**result.spec.to_dict(), **result.context}
        metrics = [Metric(k, v, now, 0) for k, v in result.metrics.items()]
        metrics += [Metric(name, v, now, step) for name, points in result.series.items() for step, v in points]
        for i in range(0, max(len(metrics), 1), 1000):  # log_batch takes at most 1000 metrics
            self.client.log_batch(
                run_id,
                metrics=metrics[i : i + 1000],
                params=[Param(k, v) for k, v in _params(params).items()] if i == 0 else [],
                tags=[RunTag(k, v) for k, v in tags.items() if k != "mlflow.parentRunId"] if i == 0 else [],
            )
        if served.get("logged"):  # the run's "Logged models" input in the UI: the very model it served
            from mlflow.entities import LoggedModelInput

            self.client.log_inputs(run_id, models=[LoggedModelInput(served["logged"].removeprefix("models:/"))])
        for path in sorted(result.out_dir.iterdir()) if result.out_dir.is_dir() else []:
            if path.is_dir():  # one folder per load test: repeat-N, capacity-N
                self.client.log_artifacts(run_id, str(path), path.name)
            elif path.suffix in ARTIFACT_SUFFIXES:
                self.client.log_artifact(run_id, str(path))
        if result.log_tail:
            self.client.log_text(run_id, result.log_tail, "server_log_tail.txt")
        self.client.set_tag(run_id, TAG_UPLOAD, "complete")
        self.client.set_terminated(run_id, "FINISHED" if result.ok else "FAILED")
        for older in same_trial:
            self.client.delete_run(older.info.run_id)
            log.info("trial %s: run %s of an earlier attempt replaced by %s", result.spec.key, older.info.run_id, run_id)
        return run_id

    def _children(self, parent_id: str) -> list[Any]:
        """Every trial run of a parent run (MLflow Run objects), oldest first."""
        parent = self.client.get_run(parent_id)
        return list(
            self.client.search_runs(
                [parent.info.experiment_id],
                f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{TAG_KIND}` = 'trial'",
                max_results=5000,
                order_by=["attributes.start_time ASC"],
            )
        )

    def trial_runs(self, parent_id: str) -> list[TrialRecord]:
        """The completely uploaded trial runs of a parent run, oldest first."""
        return [
            TrialRecord(str(r.info.run_id), dict(r.data.params), dict(r.data.metrics), dict(r.data.tags),
                        self.series(str(r.info.run_id), CAPACITY_SERIES) if r.data.params.get("capacity") == "true" else {})
            for r in self._children(parent_id)
            if r.data.tags.get(TAG_UPLOAD) == "complete"
        ]  # fmt: skip

    def history(self, experiment: str, key: str, host: str, before_ms: int, k: int = 7) -> list[TrialRecord]:
        """The last `k` successful runs of a configuration in scheduled benchmarks on the same host, started
        before `before_ms` (epoch ms): the baseline a night is judged against."""
        experiment_obj = self.client.get_experiment_by_name(experiment)
        if experiment_obj is None:
            return []
        runs = self.client.search_runs(
            [experiment_obj.experiment_id],
            f"tags.`{TAG_TRIAL_KEY}` = '{key}' and tags.`{TAG_STATUS}` = 'ok' and tags.`{TAG_TRIGGER}` = 'scheduled' "
            f"and tags.`{TAG_HOST}` = '{host}' and tags.`{TAG_UPLOAD}` = 'complete' and attributes.start_time < {before_ms}",
            max_results=k,
            order_by=["attributes.start_time DESC"],
        )
        return [TrialRecord(str(r.info.run_id), dict(r.data.params), dict(r.data.metrics), dict(r.data.tags)) for r in runs]

    def log_verdicts(self, run_id: str, verdicts: list[Verdict]) -> None:
        """The regression verdict of a trial run: a tag overall and per figure, the baseline and the change."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        tags = [RunTag(TAG_VERDICT, overall(verdicts))]
        tags += [RunTag(f"{TAG_VERDICT}.{v.figure}", v.text[:5000]) for v in verdicts]
        metrics = [Metric(f"baseline/{v.figure}", v.baseline, now, 0) for v in verdicts if v.baseline is not None]
        metrics += [Metric(f"change_pct/{v.figure}", 100 * v.change, now, 0) for v in verdicts if v.change is not None]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)

    def start_ms(self, run_id: str) -> int:
        return int(self.client.get_run(run_id).info.start_time)

    def series(self, run_id: str, names: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
        """The (step, value) histories of some step metrics of a run."""
        return {name: [(m.step, m.value) for m in self.client.get_metric_history(run_id, name)] for name in names}

    def log_files(self, run_id: str, files: list[Path], artifact_path: str | None = None) -> None:
        for path in files:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def parent_params(self, run_id: str) -> dict[str, Any]:
        """The benchmark parameters a parent run was opened with, decoded back from MLflow's strings."""
        decoded: dict[str, Any] = {}
        for key, value in self.client.get_run(run_id).data.params.items():
            try:
                decoded[key] = json.loads(value)
            except ValueError:
                decoded[key] = value  # plain strings, e.g. the experiment name
        return decoded

    def benchmark_of(self, parent_id: str) -> str:
        """The spool's id of the benchmark a parent run holds."""
        return str(self.client.get_run(parent_id).data.tags.get(TAG_BENCHMARK, parent_id))

    def latest_parent(self, experiment: str) -> str | None:
        experiment_obj = self.client.get_experiment_by_name(experiment)
        if experiment_obj is None:
            return None
        found = self.client.search_runs(
            [experiment_obj.experiment_id], f"tags.`{TAG_KIND}` = 'benchmark'",
            max_results=1, order_by=["attributes.start_time DESC"],
        )  # fmt: skip
        return str(found[0].info.run_id) if found else None


def _served_model(parent_tags: dict[str, str], result: TrialResult) -> dict[str, str]:
    """The registered version and the logged model (the flavor of the file the server loaded) of a trial."""
    model = result.spec.model
    if parent_tags.get(f"model.{model}.key") != result.context.get("model_key"):
        return {}  # the parent logged another export, or none: no link rather than a wrong one
    flavor = "onnx" if result.context.get("model_format") == "onnx" else "sklearn"
    return {TAG_MODEL_VERSION: parent_tags.get(f"model.{model}.version", ""), "logged": parent_tags.get(f"model.{model}.{flavor}_uri", "")}


def _params(raw: dict[str, Any]) -> dict[str, str]:
    return {k: (json.dumps(v) if v is None or isinstance(v, (list, dict, bool)) else str(v))[:_PARAM_LIMIT] for k, v in raw.items()}
