"""
### serving_benchmark

Which way of serving each model is fastest and cheapest, and did it get worse? Nightly at 02:00 (UTC),
or triggered with parameters. Trains and exports the models, builds one isolated environment per server
framework (a venv, or a container image per model on the docker backend), load-tests every model x framework x workers x users with Locust (one at a time: pool
`servebench_load` has one slot) while sampling the server's CPU and memory, and logs each trial as an
MLflow child run of one parent run, which ends with a report (HTML with plots, Markdown, CSV) and regression
verdicts against the nights before; a scheduled night with a regression ends red. Results are written
to a local spool first and uploaded after, so an unreachable MLflow loses nothing (`servebench sync`);
a killed trial task stops its server and Locust; a re-run task replaces its MLflow run.

This file only wires tasks; the logic lives in `servebench.pipeline` (the `servebench` CLI runs the same).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from servebench.airflow_tasks import stopping_task
from servebench.params import BenchmarkParams, json_schemas

LOAD_POOL = "servebench_load"


def _params() -> dict[str, Param]:
    defaults = BenchmarkParams()
    return {name: Param(getattr(defaults, name), **schema) for name, schema in json_schemas().items()}


def _checked() -> Any:
    from servebench import pipeline

    return pipeline.validate(dict(get_current_context()["params"]))


@dag(
    dag_id="serving_benchmark",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=_params(),
    tags=["servebench", "benchmark"],
    doc_md=__doc__,
    default_args={"retries": 0},
)
def serving_benchmark() -> None:
    @task
    def plan() -> list[dict[str, Any]]:
        """Validate the parameters and plan the trials before any work starts."""
        _, specs = _checked()
        return [s.to_dict() for s in specs]

    @task
    def frameworks(specs: list[dict[str, Any]]) -> list[str]:
        return sorted({s["framework"] for s in specs})

    @task
    def train_models() -> list[str]:
        from servebench import pipeline

        checked, _ = _checked()
        return [str(export.dir) for export in pipeline.train_models(checked.models)]

    @task(map_index_template="{{ framework }}")
    def build_server(framework: str) -> list[str]:
        """The framework's venv (local backend) or its images, one per model (docker backend)."""
        from servebench import pipeline

        checked, _ = _checked()
        return pipeline.build_framework(framework, checked)

    @task
    def open_run() -> str:
        """Record the benchmark (its id names its spool folder) and open its MLflow parent run."""
        from servebench import pipeline
        from servebench.tracker import Tracker

        checked, _ = _checked()
        dag_run = get_current_context()["dag_run"]
        trigger = "scheduled" if str(dag_run.run_type).endswith("scheduled") else "manual"
        return pipeline.open_run(checked, Tracker(), trigger, dag_run.run_id)

    # all_done: a framework whose build failed fails only its own trials, each saying why.
    # stopping_task: killed by Airflow (time-out, marked failed, shutdown), it kills its server and Locust.
    @stopping_task(pool=LOAD_POOL, trigger_rule="all_done", map_index_template="{{ trial }}")
    def run_trial(spec: dict[str, Any], benchmark: str) -> dict[str, Any]:
        from servebench import pipeline
        from servebench.spec import TrialSpec
        from servebench.tracker import Tracker

        trial = TrialSpec.from_dict(spec)
        get_current_context()["trial"] = trial.key  # type: ignore[typeddict-unknown-key]
        result, child_id = pipeline.run_and_log(trial, benchmark, Tracker())
        where = f"MLflow run {child_id}" if child_id else f"kept in {result.out_dir} until MLflow answers"
        if not result.ok:
            raise pipeline.TrialFailed(f"{trial.run_name} {result.status}: {result.reason} ({where})")
        return {"mlflow_run_id": child_id, **{k: result.metrics.get(k) for k in ("rps", "latency_ms_p95")}}

    @task(trigger_rule="all_done")
    def summarize(benchmark: str, specs: list[dict[str, Any]]) -> None:
        from servebench import pipeline
        from servebench.spec import TrialSpec
        from servebench.tracker import Tracker

        result = pipeline.summarize(benchmark, [TrialSpec.from_dict(s) for s in specs], Tracker())
        print(result.text())
        print(f"report: {result.files[0]}")
        context = get_current_context()
        nightly = str(context["dag_run"].run_type).endswith("scheduled")
        # Everything is logged by now; a red run says the night needs a look (failure callbacks can alert).
        if why := pipeline.verdict(result, nightly, bool(context["params"].get("fail_on_regression"))):
            raise pipeline.TrialFailed(why)

    specs = plan()
    models = train_models()
    builds = build_server.expand(framework=frameworks(specs))
    benchmark = open_run()
    specs >> models >> [benchmark, builds]  # images hold the model: built after it
    trials = run_trial.partial(benchmark=benchmark).expand(spec=specs)
    builds >> trials
    trials >> summarize(benchmark, specs)


serving_benchmark()
