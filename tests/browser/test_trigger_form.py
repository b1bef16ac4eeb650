"""The trigger form in a real browser: Airflow's API server, scheduler and DAG processor on 127.0.0.1 (the local
Airflow the README starts, all-admins mode), Debian's Chromium driven by Selenium. Every field is set from the
form, the run Airflow creates carries exactly those values, and bad values are refused with a message naming
the field and the rule. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servebench.local_airflow import DAG_ID, LocalAirflow
from servebench.servers.runner.local import free_port
from unit.test_trigger_form import EVERY_FIELD_SET

from .trigger_form import TriggerForm, chromium, why_no_browser

# --full: two minutes of a real browser on a real Airflow; the JSON each widget sends is checked by default, in
# tests/unit/test_trigger_form.py.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.full,
    pytest.mark.skipif(bool(why_no_browser()), reason=why_no_browser() or ""),
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAirflow]:
    local = LocalAirflow(port=free_port(), home=tmp_path_factory.mktemp("airflow-ui"))
    local.prepare()
    with local:
        yield local


@pytest.fixture(scope="module")
def form(airflow: LocalAirflow, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TriggerForm]:
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield TriggerForm(driver, airflow.url, DAG_ID, SHOTS)
    finally:
        driver.quit()


def runs(airflow: LocalAirflow) -> list[dict[str, Any]]:
    _, answer = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?order_by=-run_after&limit=100")
    return list(answer["dag_runs"])


def test_every_field_set_in_the_form_is_the_runs_conf(airflow: LocalAirflow, form: TriggerForm) -> None:
    before = {r["dag_run_id"] for r in runs(airflow)}
    form.open()
    form.shot("form-untouched")
    values = EVERY_FIELD_SET
    form.lines("models", values["models"])  # recipes and registry URIs: one per line
    form.pick("frameworks", values["frameworks"])
    form.json_list("workers", "1, 4")
    form.json_list("users", "10, 20")
    form.json_list("batch_sizes", "1, 16")
    form.shot("form-set-1-matrix")
    form.section("Load")
    for name in ("duration", "warmup", "spawn_rate"):
        form.number(name, values[name])
    form.choose("load", "open")
    form.number("rate", values["rate"])
    form.choose("arrival", "constant")
    form.choose("loadgen", "locust")
    form.number("loadgen_processes", values["loadgen_processes"])
    form.lines("load_hosts", values["load_hosts"])
    form.text("loadgen_master", values["loadgen_master"])
    form.number("request_timeout", values["request_timeout"])
    form.text("cpu_split", "off")
    form.lines("payload", values["payload"])
    form.switch("trust_pickle")
    form.shot("form-set-2-load")
    form.section("Measurement")
    for name in ("repeats", "max_cv", "slo_p99_ms", "soak_minutes"):
        form.number(name, values[name])
    form.shot("form-set-3-measurement")
    form.section("Where servers run")
    form.choose("backend", "docker")
    form.text("cpuset", "1")
    form.number("memory_mb", values["memory_mb"])
    form.json_list("replicas", "1, 2")
    form.json_list_from_empty("cpus_per_replica", "1.5")
    form.text("server_host", values["server_host"])
    form.shot("form-set-4-where")
    form.section("Results")
    form.text("experiment", values["experiment"])
    form.switch("fail_on_regression")
    form.untick_unpause()
    form.shot("form-set-5-results")
    form.submit()

    deadline = time.monotonic() + 20
    while not (new := [r for r in runs(airflow) if r["dag_run_id"] not in before]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(new) == 1, "the trigger created no run"
    run = new[0]
    (SHOTS / "form-set-run-conf.json").write_text(json.dumps(run["conf"], indent=1))
    assert run["conf"] == values
    assert run["run_type"] == "manual"
    _, dag = airflow.api("GET", f"/api/v2/dags/{DAG_ID}")
    assert dag["is_paused"], "'Unpause' was unticked: the DAG must stay paused, so the run waits"
    # Stopped before it loads the machine: a paused DAG's run starts no task; then it is marked failed.
    time.sleep(3)  # a few scheduler loops
    _, tis = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances")
    assert [ti["state"] for ti in tis["task_instances"] if ti["state"] is not None] == []
    airflow.api("PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", {"state": "failed"})


REFUSED = [
    # (name, what is done to the form, the message Airflow shows)
    ("workers-zero", lambda f: f.json_list("workers", "0"), "param workers: 0 is less than the minimum of 1"),
    (
        "workers-word",
        lambda f: f.json_list("workers", '"many"'),
        "param workers: 'many' does not match '^auto$'",
    ),
    ("users-zero", lambda f: f.json_list("users", "10, 0"), "param users: 0 is less than the minimum of 1"),
    (
        "batch-zero",
        lambda f: f.json_list("batch_sizes", "0"),
        "param batch_sizes: 0 is less than the minimum of 1",
    ),
    (
        "duration-zero",
        lambda f: (f.section("Load"), f.number("duration", 0)),
        "param duration: 0 is less than or equal to the minimum of 0",
    ),
    (
        "rate-zero",
        lambda f: (f.section("Load"), f.number("rate", 0)),
        "param rate: 0 is less than or equal to the minimum of 0",
    ),
    (
        "cpu-split-word",
        lambda f: (f.section("Load"), f.text("cpu_split", "half")),
        "param cpu_split: 'half' does not match",
    ),
    (
        "cpuset-word",
        lambda f: (f.section("Where servers run"), f.text("cpuset", "one")),
        "param cpuset: 'one' does not match",
    ),
]


@pytest.mark.parametrize(("name", "edit", "message"), [pytest.param(n, e, m, id=n) for n, e, m in REFUSED])
def test_a_bad_value_is_refused_naming_the_field_and_rule(
    airflow: LocalAirflow, form: TriggerForm, name: str, edit: Any, message: str
) -> None:
    count = len(runs(airflow))
    form.open()
    form.untick_unpause()
    edit(form)
    form.submit()
    shown = form.error()
    form.shot(f"refused-{name}")
    assert f"Invalid input for {message}" in shown, shown
    assert len(runs(airflow)) == count, "a refused trigger created a run"


def test_the_form_keeps_out_what_it_can(airflow: LocalAirflow, form: TriggerForm) -> None:
    """Some bad values never leave the form: an emptied required field blocks the Trigger button (its section
    turns red), and a number below its minimum is raised to it when the box loses focus."""
    form.open()
    form.clear_choices("frameworks")
    time.sleep(0.5)
    form.shot("blocked-frameworks-empty")
    assert not form.trigger_button().is_enabled()
    form.open()
    form.section("Where servers run")
    form.number("memory_mb", 32)
    form.section("Results")  # focus leaves the box
    form.section("Where servers run")
    form.shot("clamped-memory")
    assert form.number_shown("memory_mb") == "64"
