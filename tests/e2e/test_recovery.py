"""Recovery end to end: Airflow killing a trial task, re-running it, and MLflow down for a whole run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from servebench.base import teardown
from servebench.results import spool
from servebench.results.records import TAG_REASON, TAG_STATUS
from servebench.results.tracker import Tracker

from .conftest import BIN, run

KILLED = {
    "models": ["lr"],
    "frameworks": ["fastapi", "flask"],
    "workers": [1],
    "users": [4],
    "spawn_rate": 20,
    "duration": 8,
    "warmup": 1,
    "repeats": 1,
    "loadgen": "locust",
    "experiment": "e2e-kill",
}


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


@pytest.fixture(scope="module")
def killed_run(airflow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A DAG run whose first trial task gets SIGTERM mid-load, as Airflow's supervisor sends it when the
    task is marked failed, times out or its worker shuts down (`dags test` runs every task in one process)."""
    log_path = tmp_path_factory.mktemp("killed") / "dags-test.log"
    with open(log_path, "w") as log_file:  # a file, not a pipe nobody reads while it runs
        proc = subprocess.Popen(
            [str(BIN / "airflow"), "dags", "test", "serving_benchmark", "-c", json.dumps(KILLED)],
            env=airflow_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any("locust" in _cmdline(p) for p in teardown.started_by(proc.pid)):
            time.sleep(0.2)
        time.sleep(2)  # inside the measured window
        started = {pid: _cmdline(pid)[:120] for pid in teardown.started_by(proc.pid)}
        proc.send_signal(signal.SIGTERM)
        time.sleep(3)
        left_after_signal = [cmd for pid, cmd in started.items() if pid in teardown.started_by(proc.pid)]
        proc.wait(timeout=300)
    finally:
        proc.kill()
    output = log_path.read_text()
    run_id = re.search(r"run_id=(manual__[^,\s]+)", output)
    # `dags test` picks the order of mapped tasks: whichever trial ran first was killed
    killed = next((fw for fw in KILLED["frameworks"] if any(f"/envs/{fw}-" in c for c in started.values())), None)
    return {
        "output": output,
        "run_id": run_id.group(1) if run_id else None,
        "started": list(started.values()),
        "killed": killed,
        "left_after_signal": left_after_signal,
        "left_at_end": teardown.started_by(proc.pid),
    }


@pytest.mark.full  # a DAG run killed mid-trial; SIGTERM to a run and Airflow's on_kill are tested by default
def test_a_killed_trial_task_stops_its_server_and_locust_and_the_run_goes_on(killed_run: dict) -> None:
    out, killed = killed_run["output"], killed_run["killed"]
    assert killed and any("locust" in c for c in killed_run["started"]), killed_run["started"]
    assert killed_run["left_after_signal"] == [] and killed_run["left_at_end"] == [], killed_run
    assert "received SIGTERM: killed Locust (process group" in out and f"server {killed}-" in out, out[-3000:]
    tracker = Tracker()
    runs = {r.params["framework"]: r for r in tracker.trial_runs(tracker.latest_parent("e2e-kill"))}  # type: ignore[arg-type]
    assert runs[killed].tags[TAG_STATUS] == "failed"
    assert runs[killed].tags[TAG_REASON].startswith("aborted: stopped by SIGTERM (killed Locust")
    (other,) = set(KILLED["frameworks"]) - {killed}
    assert runs[other].tags[TAG_STATUS] == "ok" and runs[other].metrics["rps"] > 0  # the next task ran normally


@pytest.mark.full  # `airflow tasks test` again; replacing a run on re-upload is unit-tested by default
def test_rerunning_a_trial_task_replaces_its_mlflow_run(killed_run: dict, airflow_env: dict[str, str]) -> None:
    assert killed_run["run_id"], killed_run["output"][-3000:]
    killed = killed_run["killed"]
    (other,) = set(KILLED["frameworks"]) - {killed}
    tracker = Tracker()
    parent_id = tracker.latest_parent("e2e-kill")
    before = {r.params["framework"]: r.run_id for r in tracker.trial_runs(parent_id)}  # type: ignore[arg-type]
    # the killed task, cleared and run again in the same DAG run (map index = its place in the plan)
    index = str(KILLED["frameworks"].index(killed))
    proc = run(
        [
            str(BIN / "airflow"),
            "tasks",
            "test",
            "serving_benchmark",
            "run_trial",
            killed_run["run_id"],
            "--map-index",
            index,
        ],
        airflow_env,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert tracker.latest_parent("e2e-kill") == parent_id  # the same benchmark, found by its DAG run
    after = {r.params["framework"]: r for r in tracker.trial_runs(parent_id)}  # type: ignore[arg-type]
    assert set(after) == {killed, other} and after[other].run_id == before[other]
    assert after[killed].run_id != before[killed] and after[killed].tags[TAG_STATUS] == "ok"
    assert (
        MlflowClient(tracker.uri).get_run(before[killed]).info.lifecycle_stage == "deleted"
    )  # one run per configuration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mlflow_server_later(tmp_path: Path) -> Iterator[tuple[str, callable]]:  # type: ignore[valid-type]
    """A tracking URI nothing answers at yet, and a function that starts a real MLflow server there."""
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{tmp_path / 'server.db'}",
                    "--artifacts-destination",
                    str(tmp_path / "artifacts"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("the MLflow server did not come up in 120 s")

    yield uri, start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.full  # three minutes (retries, then an MLflow server); the spool's logic is unit-tested by default
def test_a_run_against_a_dead_mlflow_loses_nothing_and_syncs_exactly_once(
    no_leftover_processes: None, mlflow_server_later
) -> None:  # type: ignore[no-untyped-def]
    uri, start_mlflow = mlflow_server_later
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cli = [
        str(BIN / "servebench"),
        "run",
        "--models",
        "lr",
        "--frameworks",
        "fastapi,flask",
        "--workers",
        "1",
        "--users",
        "4",
        "--duration",
        "3",
        "--warmup",
        "1",
        "--repeats",
        "2",
        "--loadgen",
        "locust",
        "--experiment",
        "offline",
        "--json",
    ]
    proc = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (
        f"MLflow at {uri}: upload attempt 1 of 3 failed: MlflowException: [Errno 111] Connection refused" in proc.stderr
    )
    assert "the results are kept in" in proc.stderr and "run `servebench sync` once it is back" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["parent_run_id"] is None and "Connection refused" in report["tracking_error"]
    assert [t["status"] for t in report["trials"]] == ["ok", "ok"] and all(
        t["mlflow_run_id"] is None for t in report["trials"]
    )
    bench = spool.load(report["benchmark"])
    assert len(bench.pending()) == 2 and bench.summary_pending()  # the summary was built from the spool
    offline_page = (bench.summary_dir / "index.html").read_text()  # so was the report: the morning view exists
    assert f"{uri} (unreachable: not logged yet)" in offline_page and "fastest: <b class=big>" in offline_page

    start_mlflow()
    synced = subprocess.run([str(BIN / "servebench"), "sync"], env=env, capture_output=True, text=True, timeout=300)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert f"{bench.id}: parent run " in synced.stdout and "2 trial runs" in synced.stdout
    assert bench.pending() == [] and not bench.summary_pending()

    tracker = Tracker(uri)
    parent_id = tracker.latest_parent("offline")
    parent = MlflowClient(tracker.uri).get_run(parent_id)  # type: ignore[arg-type]
    assert parent.info.status == "FINISHED" and parent.data.tags["servebench.benchmark_id"] == bench.id
    assert {a.path for a in MlflowClient(tracker.uri).list_artifacts(parent_id, "summary")} >= {
        "summary/index.html",
        "summary/summary.csv",
        "summary/summary.md",
    }
    assert parent_id in (bench.summary_dir / "index.html").read_text()  # rebuilt from MLflow by sync
    runs = {r.params["framework"]: r for r in tracker.trial_runs(parent_id)}  # type: ignore[arg-type]
    for trial in report["trials"]:
        run = runs[trial["framework"]]
        assert {k: run.metrics[k] for k in trial["metrics"]} == trial["metrics"]  # every figure, exactly as measured
        spooled = json.loads((bench.trial_dir(f"lr-{trial['framework']}-w1-u4") / "result.json").read_text())
        for name, points in spooled["series"].items():
            history = MlflowClient(tracker.uri).get_metric_history(run.run_id, name)
            assert sorted((m.step, m.value) for m in history) == sorted((s, v) for s, v in points), name  # once each
    again = subprocess.run([str(BIN / "servebench"), "sync"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to sync" in again.stdout
    everything = MlflowClient(tracker.uri).search_runs([parent.info.experiment_id])
    assert len(everything) == 3  # one parent, one run per configuration: nothing twice
