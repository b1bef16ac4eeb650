"""Faults injected into real servers, real Locust and a real MLflow store: each ends in a clear message,
the other configurations unharmed, nothing lost and no process left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from servebench import pipeline
from servebench.airflow_tasks import StoppingPythonOperator
from servebench.base import teardown
from servebench.config.spec import TrialSpec
from servebench.measure.trial import run_trial
from servebench.models.export import ExportedModel
from servebench.results.records import TAG_REASON, TAG_STATUS
from servebench.results.tracker import Tracker
from servebench.servers import build, manifest
from servebench.servers.runner.base import ServerFailed
from servebench.servers.runner.local import LocalProcessRunner, group_members

SHORT = {
    "models": ["lr"],
    "users": [4],
    "spawn_rate": 20,
    "duration": 4,
    "warmup": 1,
    "repeats": 1,
    "loadgen": "locust",
}


class Crasher(threading.Thread):
    """Kills, by SIGKILL, part of the n-th server this test process starts (1-based), 2.5 s after Locust
    starts loading it: "worker" kills one of its workers, "server" its whole process group."""

    def __init__(self, plan: dict[int, str]) -> None:
        super().__init__(daemon=True)
        self.plan = plan
        self.done = threading.Event()
        self.killed: dict[int, list[int]] = {}

    def run(self) -> None:
        servers: list[int] = []
        while not self.done.is_set():
            commands = {child.pid: _cmdline(child.pid) for child in psutil.Process().children()}
            servers += [
                pid
                for pid, cmd in commands.items()
                if pid not in servers and ("-m uvicorn " in cmd or "-m gunicorn " in cmd)
            ]
            n = len(servers)
            if any("locust" in cmd for cmd in commands.values()) and n in self.plan and n not in self.killed:
                time.sleep(2.5)
                root = psutil.Process(servers[-1])
                if self.plan[n] == "worker":
                    victim = root.children()[-1].pid
                    os.kill(victim, signal.SIGKILL)
                    self.killed[n] = [victim]
                else:
                    self.killed[n] = group_members(root.pid)
                    os.killpg(root.pid, signal.SIGKILL)
            time.sleep(0.1)


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:  # gone, or a zombie
        return ""


def test_a_crash_mid_load_marks_only_its_configuration(tmp_path: Path, no_leftover_processes: None) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    crasher = Crasher({1: "worker", 2: "server"})
    crasher.start()
    try:
        outcome = pipeline.run_all(
            {**SHORT, "frameworks": ["fastapi", "fastapi-gunicorn", "flask"], "workers": [2], "experiment": "crash"},
            tracker=tracker,
        )
    finally:
        crasher.done.set()
    assert set(crasher.killed) == {1, 2}
    worker_killed, server_killed, untouched = (result for result, _ in outcome.results)
    # one worker gone: measured, but degraded, saying which process died
    assert worker_killed.status == "degraded" and "server_process_died" in worker_killed.flags
    assert f"server process(es) {crasher.killed[1][0]} died during the load test" in worker_killed.reason
    assert worker_killed.metrics["rps"] > 0 and worker_killed.metrics["server_processes_lost"] >= 1
    # the whole server gone: failed, with its exit code, the failed requests and its log
    assert server_killed.status == "failed"
    assert "server exited with code -9 during the load test" in server_killed.reason
    assert server_killed.metrics["failures"] > 0 and "requests failed" in server_killed.reason
    assert server_killed.log_tail
    assert untouched.ok and untouched.metrics["failures"] == 0, untouched.reason
    # MLflow holds each, with the reason and the server's log tail
    runs = {r.params["framework"]: r for r in tracker.trial_runs(outcome.summary.parent_id)}
    assert {f: r.tags[TAG_STATUS] for f, r in runs.items()} == {
        "fastapi": "degraded",
        "fastapi-gunicorn": "failed",
        "flask": "ok",
    }
    assert runs["fastapi-gunicorn"].tags[TAG_REASON] == server_killed.reason
    artifacts = {a.path for a in MlflowClient(tracker.uri).list_artifacts(runs["fastapi-gunicorn"].run_id)}
    assert "server_log_tail.txt" in artifacts and "server.log" in artifacts
    assert [r["status"] for r in outcome.summary.rows] == ["degraded", "failed", "ok"]


def test_a_server_that_never_gets_healthy_fails_with_its_log(
    exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_processes: None
) -> None:
    result = run_trial(
        TrialSpec.of("lr", "unready", 1, 4, spawn_rate=20.0, duration=2.0, warmup=0.0, repeats=1),
        exports["lr"],
        tmp_path / "trial",
    )
    assert result.status == "failed"
    assert result.reason.startswith("server not healthy after 3s at http://127.0.0.1:")
    assert "loading a model that never finishes" in result.log_tail
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    from servebench.results.spool import Benchmark

    parent = tracker.open_parent(Benchmark("unready", "faults", "unready", {}, {}, {}, tracker.uri))
    run_id = tracker.log_trial(parent, result)
    assert MlflowClient(tracker.uri).get_run(run_id).data.tags[TAG_REASON] == result.reason
    tail = Path(MlflowClient(tracker.uri).download_artifacts(run_id, "server_log_tail.txt", str(tmp_path))).read_text()
    assert "loading a model that never finishes" in tail


def test_hung_responses_are_bounded_by_the_request_timeout(
    exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_processes: None
) -> None:
    # the whole server stalls 300 ms every second; a request may take 100 ms
    spec = TrialSpec.of(
        "lr", "stalling", 1, 4, spawn_rate=20.0, duration=4.0, warmup=1.0, request_timeout=0.1, repeats=1
    )
    result = run_trial(spec, exports["lr"], tmp_path)
    assert result.status == "degraded" and result.metrics["failures"] > 0, result.reason
    assert "requests failed" in result.reason and "timed out" in result.reason.lower(), result.reason
    assert result.metrics["latency_ms_max"] < 1000  # every answer counted came within the bound (plus Locust's slack)


def test_a_taken_port_names_its_holder(exports, tmp_path: Path, no_leftover_processes: None) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ServerFailed) as caught:
            LocalProcessRunner().start(manifest.get("paced"), exports["lr"], 1, tmp_path / "server.log", port=port)
    assert str(caught.value).startswith(f"port {port} on 127.0.0.1 is not available (Address already in use)")
    assert f"by pid {os.getpid()}" in str(caught.value) and "choose another port" in str(caught.value)


def test_a_broken_server_environment_is_rebuilt_saying_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = manifest.get("paced")
    built = build.build(server, tmp_path / "envs")
    built.python.unlink()  # someone cleaned up the wrong folder
    with caplog.at_level("WARNING"):
        again = build.build(server, tmp_path / "envs")
    assert f"its interpreter {built.python} is missing); building it again" in caplog.text
    assert again.env_dir == built.env_dir and again.python.exists()


def test_airflow_on_kill_kills_the_server_and_locust_at_once(
    exports, tmp_path: Path, no_leftover_processes: None
) -> None:
    server = LocalProcessRunner().start(manifest.get("paced"), exports["lr"], 1, tmp_path / "server.log")
    operator = StoppingPythonOperator(task_id="run_trial", python_callable=lambda: None, op_args=[], op_kwargs={})
    operator.on_kill()  # what Airflow calls on an execution time-out or when the task is marked failed
    assert group_members(server.root_pid) == [] and server.exit_code() == -signal.SIGKILL
    assert server.stop().leftovers == ()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_an_airflow_execution_timeout_stops_the_trial_and_records_it(
    exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_processes: None
) -> None:
    from airflow.sdk.exceptions import AirflowTaskTimeout
    from airflow.sdk.execution_time.timeout import timeout

    spec = TrialSpec.of("lr", "paced", 1, 4, spawn_rate=20.0, duration=60.0, warmup=1.0, repeats=1)
    began = time.monotonic()
    with pytest.raises(AirflowTaskTimeout), timeout(6):  # what Airflow wraps a task with execution_timeout in
        run_trial(spec, exports["lr"], tmp_path)
    assert time.monotonic() - began < 20  # not the 60 s of load
    saved = (tmp_path / "result.json").read_text()
    assert '"status": "failed"' in saved and '"reason": "aborted: AirflowTaskTimeout: Timeout' in saved


def test_sigterm_stops_a_run_and_everything_it_started(tmp_path: Path, no_leftover_processes: None) -> None:
    """What Airflow's supervisor, a scheduler restart or Ctrl-C does to the process running trials."""
    cli = [
        sys.executable,
        "-m",
        "servebench.cli",
        "run",
        "--models",
        "lr",
        "--frameworks",
        "fastapi",
        "--workers",
        "2",
        "--users",
        "4",
        "--duration",
        "30",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--experiment",
        "sigterm",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # loading: the server (leader and workers) and Locust all carry the CLI's mark
        assert _wait_for(lambda: any("locust" in _cmdline(p) for p in teardown.started_by(proc.pid)), 90)
        assert len(teardown.started_by(proc.pid)) >= 3
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "servebench: stopped by SIGTERM (killed Locust" in err and "server fastapi-" in err
    assert teardown.started_by(proc.pid) == []
    # the aborted trial is recorded in the spool, saying why
    results = list(Path(os.environ["SERVEBENCH_HOME"], "runs").glob("cli-*/lr-fastapi-w2-u4/result.json"))
    assert any('"reason": "aborted: stopped by SIGTERM' in p.read_text() for p in results)


def test_orphans_of_a_sigkilled_harness_are_reaped(tmp_path: Path, no_leftover_processes: None) -> None:
    """SIGKILL cannot be caught: the next trial's reaper stops what the dead harness left behind."""
    serve = subprocess.Popen(
        [sys.executable, "-m", "servebench.cli", "serve", "--framework", "paced", "--model", "lr", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert _wait_for(lambda: bool(teardown.started_by(serve.pid)), 60)
        orphans = teardown.started_by(serve.pid)
        groups = {os.getpgid(pid) for pid in orphans}
        serve.kill()
        serve.wait()
        time.sleep(0.5)
        assert all(psutil.pid_exists(pid) for pid in orphans)  # the server outlived its harness
        assert groups <= set(teardown.reap_orphans())
        assert _wait_for(lambda: not any(_alive(pid) for pid in orphans), 5)
    finally:
        serve.kill()
