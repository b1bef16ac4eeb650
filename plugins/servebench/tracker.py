"""MLflow tracking: one parent run per benchmark run, one child run per trial, names that compare cleanly.

Uses MlflowClient with explicit run ids (no fluent "active run" state), so Airflow tasks in separate
processes can all log into the same parent run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from servebench import paths
from servebench.models import ExportedModel
from servebench.trial import TrialResult

log = logging.getLogger(__name__)

TAG_KIND = "servebench.kind"  # "benchmark" (parent) | "trial" (child)
TAG_TRIAL_KEY = "servebench.trial_key"
TAG_STATUS = "servebench.status"
TAG_REASON = "servebench.failure_reason"
TAG_FLAGS = "servebench.flags"
TAG_LOADGEN_SATURATED = "servebench.loadgen_saturated"  # "true": the figures measure Locust too
TAG_DAG_RUN = "airflow.dag_run_id"
ARTIFACT_SUFFIXES = {".csv", ".html", ".log", ".json", ".txt", ".hlog"}
_PARAM_LIMIT = 6000  # MLflow's limit on a param value


class Tracker:
    def __init__(self, uri: str | None = None) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self._mlflow = mlflow
        self.uri = uri or paths.tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)

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

    def open_parent(self, experiment: str, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """The parent run of a benchmark; reused when one with the same Airflow DAG run id exists."""
        experiment_id = self.experiment_id(experiment)
        dag_run = tags.get(TAG_DAG_RUN)
        if dag_run:
            found = self.client.search_runs(
                [experiment_id], f"tags.`{TAG_DAG_RUN}` = '{dag_run}' and tags.`{TAG_KIND}` = 'benchmark'"
            )
            if found:
                log.info("reusing parent run %s of DAG run %s", found[0].info.run_id, dag_run)
                return str(found[0].info.run_id)
        from mlflow.entities import Param

        run = self.client.create_run(experiment_id, run_name=run_name, tags={**tags, TAG_KIND: "benchmark"})
        self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in _params(params).items()])
        return str(run.info.run_id)

    def close_parent(self, run_id: str, failed: bool) -> None:
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def log_models(self, run_id: str, exports: list[ExportedModel]) -> None:
        """Log each model as an MLflow model with a signature, once per export (not once per night)."""
        import joblib
        import numpy as np
        import onnx
        import skops.io as skops_io
        from mlflow.models import infer_signature

        for export in exports:
            record = export.dir / "mlflow-models.json"
            known = json.loads(record.read_text()) if record.exists() else {}
            if self._logged_model_exists(known.get(self.uri, {}).get("sklearn")):
                uris = known[self.uri]
            else:
                inputs = np.asarray(export.meta["samples"]["inputs"])
                signature = infer_signature(inputs, np.asarray(export.meta["samples"]["probabilities"]))
                uris = {}
                model = joblib.load(export.path("joblib"))
                # skops, not pickle; the types it does not know are those of the model we just trained.
                trusted = skops_io.get_untrusted_types(data=skops_io.dumps(model))
                with self._mlflow.start_run(run_id=run_id):
                    info = self._mlflow.sklearn.log_model(
                        model, name=f"{export.name}-sklearn", signature=signature, input_example=inputs[:2],
                        serialization_format="skops", skops_trusted_types=trusted,
                        pip_requirements=[f"scikit-learn=={export.meta['versions']['scikit-learn']}", "skops"],
                    )  # fmt: skip
                    uris["sklearn"] = info.model_uri
                    info = self._mlflow.onnx.log_model(
                        onnx.load(str(export.path("onnx"))), name=f"{export.name}-onnx",
                        signature=infer_signature(inputs.astype(np.float32)), pip_requirements=["onnxruntime"],
                    )  # fmt: skip
                    uris["onnx"] = info.model_uri
                record.write_text(json.dumps({**known, self.uri: uris}, indent=1))
            self.client.set_tag(run_id, f"model.{export.name}.key", export.key)
            for flavor, uri in uris.items():
                self.client.set_tag(run_id, f"model.{export.name}.{flavor}_uri", uri)

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
        """One child run with the trial's params, metrics, per-second series, flags and artifacts."""
        from mlflow.entities import Metric, Param, RunTag

        parent = self.client.get_run(parent_id)
        spec = result.spec
        tags = {
            "mlflow.parentRunId": parent_id,
            TAG_KIND: "trial",
            TAG_TRIAL_KEY: spec.key,
            TAG_STATUS: result.status,
            TAG_FLAGS: ",".join(result.flags),
            TAG_LOADGEN_SATURATED: str("loadgen_saturated" in result.flags).lower(),
        }
        if parent.data.tags.get(TAG_DAG_RUN):
            tags[TAG_DAG_RUN] = parent.data.tags[TAG_DAG_RUN]
        if result.reason:
            tags[TAG_REASON] = result.reason[:5000]
        run = self.client.create_run(parent.info.experiment_id, run_name=spec.run_name, tags=tags)
        run_id = str(run.info.run_id)
        now = int(time.time() * 1000)
        params = {**spec.to_dict(), **result.context}
        metrics = [Metric(k, v, now, 0) for k, v in result.metrics.items()]
        metrics += [Metric(name, v, now, step) for name, points in result.series.items() for step, v in points]
        for i in range(0, max(len(metrics), 1), 1000):  # log_batch takes at most 1000 metrics
            self.client.log_batch(
                run_id,
                metrics=metrics[i : i + 1000],
                params=[Param(k, v) for k, v in _params(params).items()] if i == 0 else [],
                tags=[RunTag(k, v) for k, v in tags.items() if k != "mlflow.parentRunId"] if i == 0 else [],
            )
        for path in sorted(result.out_dir.iterdir()) if result.out_dir.is_dir() else []:
            if path.is_dir():  # one folder per load test: repeat-N, capacity-N
                self.client.log_artifacts(run_id, str(path), path.name)
            elif path.suffix in ARTIFACT_SUFFIXES:
                self.client.log_artifact(run_id, str(path))
        if result.log_tail:
            self.client.log_text(run_id, result.log_tail, "server_log_tail.txt")
        self.client.set_terminated(run_id, "FINISHED" if result.ok else "FAILED")
        return run_id

    def trial_runs(self, parent_id: str) -> list[Any]:
        parent = self.client.get_run(parent_id)
        return list(
            self.client.search_runs(
                [parent.info.experiment_id],
                f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{TAG_KIND}` = 'trial'",
                max_results=5000,
                order_by=["attributes.start_time ASC"],
            )
        )

    def capacity_curve(self, run_id: str) -> list[tuple[float, float]]:
        """(achieved rps, p99 ms) of each capacity-search step a trial logged; [] for other trials."""
        rps = {m.step: m.value for m in self.client.get_metric_history(run_id, "capacity/rps")}
        p99 = {m.step: m.value for m in self.client.get_metric_history(run_id, "capacity/p99_ms")} if rps else {}
        return [(rps[step], p99[step]) for step in sorted(rps) if step in p99]

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

    def latest_parent(self, experiment: str) -> str | None:
        experiment_obj = self.client.get_experiment_by_name(experiment)
        if experiment_obj is None:
            return None
        found = self.client.search_runs(
            [experiment_obj.experiment_id], f"tags.`{TAG_KIND}` = 'benchmark'",
            max_results=1, order_by=["attributes.start_time DESC"],
        )  # fmt: skip
        return str(found[0].info.run_id) if found else None


def _params(raw: dict[str, Any]) -> dict[str, str]:
    return {k: (json.dumps(v) if v is None or isinstance(v, (list, dict, bool)) else str(v))[:_PARAM_LIMIT] for k, v in raw.items()}
