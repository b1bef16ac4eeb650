"""
### serving_benchmark

Which way of serving each model is fastest and cheapest, and did it get worse? Nightly at 02:00 (UTC),
or triggered with parameters. Trains and exports the models, builds one isolated environment per server
framework (a venv, or a container image per model on the docker backend), load-tests every model x framework
x workers x users with Locust (one at a time: pool `servebench_load` has one slot) while sampling the server's
CPU and memory, and logs each trial as an MLflow child run of one parent run, which ends with a report (HTML
with plots, Markdown, CSV) and regression
verdicts against the nights before; a scheduled night with a regression ends red. Results are written
to a local spool first and uploaded after, so an unreachable MLflow loses nothing (`servebench sync`);
a killed trial task stops its server and Locust; a re-run task replaces its MLflow run.

Across machines (README "Across machines"): on a CeleryExecutor deployment whose load hosts are Celery queues,
listed in SERVEBENCH_LOAD_QUEUES, one `load_host_<queue>` task per queue runs Locust workers on that host for
every trial of a run that names it in `load_hosts` (skipped otherwise); servers run on the engine `server_host`
names.

This file only wires tasks; the logic lives in `servebench.pipeline` (the `servebench` CLI runs the same).
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from servebench.airflow_tasks import stopping_task
from servebench.config.params import defaults, json_schemas

LOAD_POOL = "servebench_load"
Settings = dict[str, Any]  # the validated parameters, as `plan` hands them on
# The deployment's load hosts: Celery queues with a worker on each (read here, as the queue of a task is fixed
# when the DAG is parsed; a run uses those its `load_hosts` names).
LOAD_QUEUES = [q for q in os.environ.get("SERVEBENCH_LOAD_QUEUES", "").split(",") if q.strip()]


def _params() -> dict[str, Param]:
    """The trigger form: one Param per setting, typed by its JSON schema."""
    schemas = json_schemas()
    return {name: Param(default, **schemas[name]) for name, default in defaults().items()}


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
        """Validate the parameters and plan the trials before any work starts. The settings, validated once
        here, go to the other tasks as this task's XCom "settings"; the trials are its return value (what
        `run_trial` is mapped over)."""
        from servebench import pipeline

        context = get_current_context()
        checked, specs = pipeline.validate(dict(context["params"]))
        context["ti"].xcom_push(key="settings", value=checked.model_dump(mode="json"))
        return [spec.to_dict() for spec in specs]

    @task
    def frameworks(settings: Settings) -> list[str]:
        return list(settings["frameworks"])

    @task
    def train_models(settings: Settings) -> list[str]:
        """The models' export folders (trained only when no export of the same recipe and libraries exists)."""
        from servebench import pipeline
        from servebench.config.params import trusted

        return [str(export.dir) for export in pipeline.train_models(trusted(settings))]

    @task(map_index_template="{{ framework }}")
    def build_server(framework: str, settings: Settings, exports: list[str]) -> list[str]:
        """The framework's venv (local backend) or its images, one per model (docker backend)."""
        from servebench import pipeline
        from servebench.config.params import trusted

        return pipeline.build_framework(framework, trusted(settings), pipeline.exported(exports))

    @task
    def open_run(settings: Settings, exports: list[str]) -> str:
        """Record the benchmark (its id names its spool folder) and open its MLflow parent run."""
        from servebench import pipeline
        from servebench.config.params import trusted
        from servebench.results.tracker import Tracker

        dag_run = get_current_context()["dag_run"]
        trigger = "scheduled" if str(dag_run.run_type).endswith("scheduled") else "manual"
        return pipeline.open_run(trusted(settings), pipeline.exported(exports), Tracker(), trigger, dag_run.run_id)

    # all_done: a framework whose build failed fails only its own trials, each saying why.
    # stopping_task: killed by Airflow (time-out, marked failed, shutdown), it kills its server and Locust.
    @stopping_task(pool=LOAD_POOL, trigger_rule="all_done", map_index_template="{{ trial }}")
    def run_trial(spec: dict[str, Any], benchmark: str) -> dict[str, Any]:
        from servebench import pipeline
        from servebench.config.spec import TrialSpec
        from servebench.results.records import Metric
        from servebench.results.tracker import Tracker

        trial = TrialSpec.from_dict(spec)
        get_current_context()["trial"] = trial.key  # type: ignore[typeddict-unknown-key]
        result, child_id = pipeline.run_and_log(trial, benchmark, Tracker())
        where = f"MLflow run {child_id}" if child_id else f"kept in {result.out_dir} until MLflow answers"
        if not result.ok:
            raise pipeline.TrialFailed(f"{trial.run_name} {result.status}: {result.reason} ({where})")
        return {"mlflow_run_id": child_id, **{k: result.metrics.get(k) for k in (Metric.RPS, Metric.LATENCY_P95)}}

    @task(trigger_rule="all_done")
    def summarize(benchmark: str, trials: list[dict[str, Any]], settings: Settings) -> None:
        from servebench import pipeline
        from servebench.config.spec import TrialSpec
        from servebench.results.tracker import Tracker

        result = pipeline.summarize(benchmark, [TrialSpec.from_dict(t) for t in trials], Tracker())
        print(result.text())
        print(f"report: {result.files[0]}")
        nightly = str(get_current_context()["dag_run"].run_type).endswith("scheduled")
        # Everything is logged by now; a red run says the night needs a look (failure callbacks can alert).
        if why := pipeline.verdict(result, nightly, bool(settings["fail_on_regression"])):
            raise pipeline.TrialFailed(why)

    def load_host(queue: str) -> Any:
        # First in line: its workers must be up before the first trial's master waits for them.
        @task(task_id=f"load_host_{queue.replace('.', '_').replace('-', '_')}", queue=queue, priority_weight=100)
        def serve_load(settings: Settings) -> dict[str, Any]:
            """Locust workers on this load host for the run's trials, if the run names it."""
            from airflow.sdk.exceptions import AirflowSkipException

            from servebench import pipeline
            from servebench.config.params import trusted

            checked = trusted(settings)
            if queue not in checked.load_hosts:
                raise AirflowSkipException(f"this run's load_hosts {checked.load_hosts} do not name {queue}")
            context = get_current_context()
            ti, run_id = context["ti"], context["dag_run"].run_id

            def trials_done() -> bool:  # summarize is scheduled once every trial has ended
                states = ti.get_task_states(dag_id=ti.dag_id, task_ids=["summarize"], run_ids=[run_id])
                return any(states.get(run_id, {}).values())

            return pipeline.serve_load(queue, checked, trials_done)

        return serve_load

    planned = plan()
    settings = planned["settings"]
    for queue in LOAD_QUEUES:
        load_host(queue.strip())(settings)
    exports = train_models(settings)
    builds = build_server.partial(settings=settings, exports=exports).expand(framework=frameworks(settings))
    benchmark = open_run(settings, exports)
    trials = run_trial.partial(benchmark=benchmark).expand(spec=planned)
    builds >> trials
    trials >> summarize(benchmark, planned, settings)


serving_benchmark()
