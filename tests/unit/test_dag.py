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
    assert set(dag.task_ids) == {
        "plan",
        "frameworks",
        "train_models",
        "build_server",
        "open_run",
        "run_trial",
        "summarize",
    }
    trial = dag.get_task("run_trial")
    assert trial.pool == "servebench_load" and trial.trigger_rule == "all_done"
    assert trial.operator_class.__name__ == "StoppingPythonOperator"  # its on_kill stops the server and Locust
    assert dag.get_task("summarize").trigger_rule == "all_done"
    assert set(dag.params.keys()) == {
        "models",
        "frameworks",
        "workers",
        "users",
        "spawn_rate",
        "duration",
        "warmup",
        "experiment",
        "backend",
        "cpuset",
        "memory_mb",
        "load",
        "rate",
        "arrival",
        "repeats",
        "max_cv",
        "capacity",
        "slo_p99_ms",
        "loadgen",
        "loadgen_processes",
        "cpu_split",
        "request_timeout",
        "soak_minutes",
        "fail_on_regression",
        "load_hosts",
        "loadgen_master",
        "replicas",
        "cpus_per_replica",
        "server_host",
        "batch_sizes",
        "payload",
        "trust_pickle",
    }


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
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {field}"):  # noqa: PT012 - update validates too
        params.update(conf)
        params.validate()


SPY = """
import builtins, importlib.util, io, sys
read = []
real_open = io.open
def spy(file, *args, **kwargs):
    read.append(str(file))
    return real_open(file, *args, **kwargs)
builtins.open = io.open = spy
spec = importlib.util.spec_from_file_location("serving_benchmark", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("parsed", *read, sep="\\n")
from servebench.servers import manifest
manifest.get("fastapi")
print("loaded", *read, sep="\\n")
"""


def test_parsing_the_dag_reads_no_server_folder() -> None:
    """Nothing heavy at parse time: the trigger form lists the server folders but reads none of them (the
    manifests are read by `plan`, when a run starts). The spy is shown to catch a manifest read."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SPY, str(REPO / "dags" / "serving_benchmark.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    parsed, _, loaded = done.stdout.partition("loaded\n")
    servers = str(REPO / "servers")
    assert [p for p in parsed.splitlines() if p.startswith(servers)] == []
    assert f"{servers}/fastapi/manifest.toml" in loaded.splitlines()


def test_each_load_queue_of_the_deployment_gets_a_task_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("SERVEBENCH_LOAD_QUEUES", "load1,load-2")
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    tasks = {t.task_id: t for t in bag.dags["serving_benchmark"].tasks}
    assert (tasks["load_host_load1"].queue, tasks["load_host_load_2"].queue) == ("load1", "load-2")
    assert tasks["run_trial"].queue == "default"  # trials (server, master, sampling) stay on the controller
    assert [t.task_id for t in tasks["load_host_load1"].upstream_list] == ["plan"]
