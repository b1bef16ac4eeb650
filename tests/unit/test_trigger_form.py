"""Guard for the Airflow trigger form: the JSON its widgets send validates against the DAG's params as the API
server holds them (serialized, then deserialized) and plans the intended trials.

Each payload below is what Airflow 3.3's form sent in a real browser (tests/browser): multi-selects send lists
of strings, the JSON list editor sends JSON values, number boxes numbers or null when emptied, text boxes
strings or null, switches booleans, drop-downs strings. The form always sends every field.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from servebench.config import params, spec

REPO = Path(__file__).resolve().parents[2]

# The untouched form: every default, the empty optional fields as null.
UNTOUCHED: dict[str, Any] = {
    "models": list(params.NIGHTLY_MODELS),
    "frameworks": list(params.NIGHTLY_FRAMEWORKS),
    "workers": [1, 2],
    "users": [50],
    "batch_sizes": [1],
    "payload": [],
    "trust_pickle": False,
    "duration": 60,
    "warmup": 10,
    "spawn_rate": 50,
    "load": "closed",
    "rate": None,
    "arrival": "poisson",
    "loadgen": "auto",
    "loadgen_processes": 1,
    "load_hosts": [],
    "loadgen_master": "127.0.0.1:5557",
    "request_timeout": 10,
    "cpu_split": "auto",
    "repeats": 3,
    "max_cv": 0.1,
    "capacity": False,
    "slo_p99_ms": 100,
    "soak_minutes": None,
    "backend": "local",
    "cpuset": None,
    "memory_mb": None,
    "replicas": [1],
    "cpus_per_replica": [],
    "server_host": None,
    "experiment": "servebench",
    "fail_on_regression": False,
}
# Every field changed in the browser (tests/browser/test_trigger_form.py fills the form with these values).
EVERY_FIELD_SET: dict[str, Any] = {
    "models": ["mlp", "models:/churn@champion"],
    "frameworks": ["fastapi", "cpp"],
    "workers": [1, 4],
    "users": [10, 20],
    "batch_sizes": [1, 16],
    "payload": ["models:/churn@champion=/srv/rows.csv"],
    "trust_pickle": True,
    "duration": 5,
    "warmup": 1,
    "spawn_rate": 20,
    "load": "open",
    "rate": 100,
    "arrival": "constant",
    "loadgen": "locust",
    "loadgen_processes": 2,
    "load_hosts": ["load1", "load2"],
    "loadgen_master": "198.18.0.1:5557",
    "request_timeout": 5,
    "cpu_split": "off",
    "repeats": 2,
    "max_cv": 0.2,
    "capacity": False,
    "slo_p99_ms": 50,
    "soak_minutes": 2,
    "backend": "docker",
    "cpuset": "1",
    "memory_mb": 1024,
    "replicas": [1, 2],
    "cpus_per_replica": [1.5],
    "server_host": "lab_server",
    "experiment": "form-test",
    "fail_on_regression": True,
}


@pytest.fixture(scope="module")
def served_params() -> Any:
    """The DAG's params as the API server validates a trigger against them: after a serialization round trip."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["serving_benchmark"]
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).params


def submit(served_params: Any, changes: dict[str, Any]) -> dict[str, Any]:
    """What a trigger with the form's payload (the untouched form with `changes`) leaves in the run's params."""
    return dict(copy.deepcopy(served_params).deep_merge({**UNTOUCHED, **changes}).validate())


def test_the_untouched_form_plans_the_nightly_matrix(served_params: Any) -> None:
    conf = submit(served_params, {})
    assert conf == UNTOUCHED
    # Airflow's form takes an empty string in a field whose type has no null for a missing required value and
    # disables Trigger: no default may be one, or the untouched form could not be sent (it could, for server_host).
    schemas = params.json_schemas()
    assert [n for n, v in UNTOUCHED.items() if v == "" and "null" not in schemas[n]["type"]] == []
    planned = spec.plan(params.parse(conf))
    assert len(planned) == 3 * len(params.NIGHTLY_FRAMEWORKS) * 2
    assert {(t.model, t.workers, t.users) for t in planned} == {
        (m, w, 50) for m in ("lr", "mlp", "gbdt") for w in (1, 2)
    }


def test_every_field_set_in_the_form_reaches_the_trials(served_params: Any) -> None:
    conf = submit(served_params, EVERY_FIELD_SET)
    checked = params.parse(conf)
    planned = spec.plan(checked)
    assert [t.key for t in planned] == [
        f"{m}-{fw}-w{w}-u{u}{b}-r{r}x1.5cpu-docker-at-lab_server-lh2-soak2m"
        for m in ("mlp", "churn.champion")
        for fw in ("fastapi", "cpp")
        for w in (1, 4)
        for u in (10, 20)
        for b in ("", "-b16")
        for r in (1, 2)
    ]
    assert checked.payload_for("models:/churn@champion") == "/srv/rows.csv" and checked.payload_for("mlp") is None
    assert checked.trust_pickle is True
    settings = planned[0].settings
    assert (settings.duration, settings.warmup, settings.spawn_rate, settings.rate, settings.arrival) == (
        5,
        1,
        20,
        100,
        "constant",
    )
    assert (settings.loadgen_processes, settings.request_timeout, settings.cpu_split) == (2, 5, "off")
    assert (settings.repeats, settings.max_cv, settings.slo_p99_ms, settings.soak_minutes) == (2, 0.2, 50, 2)
    assert (settings.backend, settings.cpuset, settings.memory_mb) == ("docker", "1", 1024)
    assert (settings.load_hosts, settings.loadgen_master, settings.server_host) == (
        ["load1", "load2"],
        "198.18.0.1:5557",
        "lab_server",
    )
    assert (checked.experiment, checked.fail_on_regression) == ("form-test", True)


@pytest.mark.parametrize(
    ("changes", "keys"),
    [
        # JSON list editor: integers, and "auto" spelled as a string
        (
            {"models": ["lr"], "frameworks": ["cpp"], "workers": [1, "auto"], "users": [8]},
            ["lr-cpp-w1-u8", "lr-cpp-w5-u8"],
        ),
        # multi-select (frameworks) and one entry per line (models): strings, in the order given
        ({"models": ["mlp", "lr"], "frameworks": ["flask"], "workers": [2]}, ["mlp-flask-w2-u50", "lr-flask-w2-u50"]),
        (
            {"models": ["models:/churn@champion"], "frameworks": ["flask"], "workers": [1], "batch_sizes": [1, 16]},
            ["churn.champion-flask-w1-u50", "churn.champion-flask-w1-u50-b16"],
        ),
        # number boxes: a rate for open loop; emptied optional numbers are null
        (
            {"models": ["lr"], "frameworks": ["cpp"], "workers": [1], "load": "open", "rate": 250.5},
            ["lr-cpp-w1-u50-open250.5"],
        ),
        ({"models": ["lr"], "frameworks": ["cpp"], "workers": [1], "soak_minutes": 0.5}, ["lr-cpp-w1-u50-soak0.5m"]),
        (
            {"models": ["lr"], "frameworks": ["cpp"], "workers": [1], "capacity": True, "slo_p99_ms": 20},
            ["lr-cpp-w1-u50-capacity"],
        ),
    ],
)
def test_each_widget_kind_plans_the_intended_trials(
    served_params: Any, changes: dict[str, Any], keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # "auto" = 2 x 2 + 1
    assert [t.key for t in spec.plan(params.parse(submit(served_params, changes)))] == keys


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workers": [0]}, "param workers: 0 is less than the minimum of 1"),
        ({"workers": ["many"]}, "param workers: 'many' does not match '^auto$'"),
        ({"workers": [1.5]}, "param workers: 1.5 is not of type 'integer', 'string'"),
        ({"workers": []}, "param workers: [] should be non-empty"),
        ({"workers": [2, 2]}, "param workers: [2, 2] has non-unique elements"),
        ({"users": [0]}, "param users: 0 is less than the minimum of 1"),
        ({"models": None}, "param models: None is not of type 'array'"),
        ({"batch_sizes": [0]}, "param batch_sizes: 0 is less than the minimum of 1"),
        ({"batch_sizes": [2048]}, "param batch_sizes: 2048 is greater than the maximum of 1024"),
        ({"frameworks": ["tensorflow"]}, "param frameworks: 'tensorflow' is not one of"),
        ({"duration": 0}, "param duration: 0 is less than or equal to the minimum of 0"),
        ({"rate": 0}, "param rate: 0 is less than or equal to the minimum of 0"),
        ({"memory_mb": 32}, "param memory_mb: 32 is less than the minimum of 64"),
        ({"repeats": 51}, "param repeats: 51 is greater than the maximum of 50"),
        ({"cpuset": "one"}, "param cpuset: 'one' does not match"),
        ({"experiment": ""}, "param experiment: '' should be non-empty"),
        # what the form sent before its schemas were reshaped (issue 16): refused, naming the type
        ({"workers": ["1", "4"]}, "param workers: '4' does not match '^auto$'"),
        ({"rate": "100"}, "param rate: '100' is not of type 'number', 'null'"),
    ],
)
def test_a_bad_value_is_refused_naming_field_and_rule(
    served_params: Any, changes: dict[str, Any], message: str
) -> None:
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError) as err:
        submit(served_params, changes)
    assert f"Invalid input for {message}" in str(err.value), str(err.value)


def test_rules_across_fields_are_checked_by_the_first_task(served_params: Any) -> None:
    """A param's schema sees only its own value: a memory limit on the local backend passes the form and is
    refused by `plan` (pipeline.validate), before anything is built, with the reason."""
    conf = submit(served_params, {"memory_mb": 1024})
    with pytest.raises(params.ParamsError, match="cpuset and memory_mb limit containers: they need backend docker"):
        params.parse(conf)


def test_the_cli_and_conf_accept_what_they_accepted() -> None:
    """The form's shapes changed; what `--conf` and the CLI accept did not (strict types, "auto" as a string)."""
    assert params.parse({"workers": [1, "auto"], "rate": None, "load": "closed"}).workers == [1, "auto"]
    for bad in ({"workers": ["2"]}, {"rate": "100", "load": "open"}, {"users": [1.0]}):
        with pytest.raises(params.ParamsError):
            params.parse(bad)
