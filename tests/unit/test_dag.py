"""DAG integrity: it imports without work at parse time, and its trigger form rejects what the CLI rejects."""

import copy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags["serving_benchmark"]


def test_schedule_and_shape(dag) -> None:  # type: ignore[no-untyped-def]
    assert dag.schedule == "0 2 * * *" and dag.catchup is False and dag.max_active_runs == 1
    assert set(dag.task_ids) == {"plan", "frameworks", "train_models", "build_server", "open_run", "run_trial", "summarize"}
    trial = dag.get_task("run_trial")
    assert trial.pool == "servebench_load" and trial.trigger_rule == "all_done"
    assert trial.operator_class.__name__ == "StoppingPythonOperator"  # its on_kill stops the server and Locust
    assert dag.get_task("summarize").trigger_rule == "all_done"
    assert set(dag.params.keys()) == {
        "models", "frameworks", "workers", "users", "spawn_rate", "duration", "warmup", "experiment", "backend", "cpuset",
        "memory_mb", "load", "rate", "arrival", "repeats", "max_cv", "capacity", "slo_p99_ms", "loadgen_processes", "cpu_split",
        "request_timeout", "soak_minutes", "fail_on_regression",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"workers": [0]}, "workers"),
        ({"frameworks": ["tensorflow"]}, "frameworks"),
        ({"duration": 0}, "duration"),
        ({"duration": "60"}, "duration"),
        ({"users": "50"}, "users"),
    ],
)
def test_trigger_form_rejects_bad_conf_naming_the_field(dag, conf: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {field}"):
        params.update(conf)
        params.validate()
