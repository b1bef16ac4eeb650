"""A local Airflow sized for this machine: its scheduler, DAG processor and API server as child process groups
on 127.0.0.1, for the demo (a real scheduled run, whose task logs the UI shows), the UI and the browser tests.

Sizing: the LocalExecutor starts `parallelism` worker processes (Airflow's default, 32, on a 2-core machine
is 32 idle Pythons), so it is capped to the CPU count; one API-server worker and one parsing process. The
scheduler's log server (which listens on every interface, with no setting to bind it) is not started: with
the LocalExecutor the API server reads task logs from the local files directly. No triggerer (nothing here
defers). The UI runs in Airflow's simple auth manager's all-admins mode, which is why it binds loopback only.
Every setting already in the environment wins, so a user's own Airflow configuration is respected.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servebench.base import httpclient, paths, teardown
from servebench.servers.runner.base import HOST
from servebench.servers.runner.local import check_port_free, group_members

log = logging.getLogger(__name__)

DAG_ID = "serving_benchmark"
LOAD_POOL = "servebench_load"
COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}
FINISHED = {"success", "failed"}


class AirflowFailed(RuntimeError):
    """The local Airflow did not start, or a request to it failed; the message says which and where its log is."""


def settings(port: int, schedule: bool) -> dict[str, str]:
    """Airflow's configuration for a local deployment (as environment variables); the caller's win."""
    return {
        "AIRFLOW_HOME": str(paths.state_dir() / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(os.cpu_count() or 1),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{port}/execution/",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://{HOST}:{port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # Off: only triggered runs run. On: the scheduler also starts the nightly 02:00 run of an unpaused DAG
        # (with catchup=False, the latest one at once).
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedule),
    }


@dataclass
class LocalAirflow:
    """Start with `start()` (or `with`), stop with `stop()`: every process it started goes with it."""

    port: int = 8080
    schedule: bool = False
    home: Path | None = None  # AIRFLOW_HOME; default: $AIRFLOW_HOME, else <state folder>/airflow
    env: dict[str, str] = field(init=False)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.env = {**settings(self.port, self.schedule), **os.environ}
        if self.home is not None:
            self.env["AIRFLOW_HOME"] = str(self.home)
        bin_dir = str(Path(sys.executable).parent)
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
        self.env.update(teardown.owner_mark())  # reaped by the next trial if this process dies by SIGKILL

    @property
    def airflow_home(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"])

    @property
    def url(self) -> str:
        return f"http://{self.env['AIRFLOW__API__HOST']}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.airflow_home / "local"

    def _airflow(self, *args: str, timeout: float = 300) -> str:
        """One `airflow` CLI command (3-5 s of start-up each); AirflowFailed with its output when it fails."""
        done = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise AirflowFailed(f"`airflow {' '.join(args)}` failed (exit {done.returncode}):\n{tail}")
        return done.stdout

    def prepare(self) -> None:
        """The metadata database (SQLite unless configured otherwise) and the pool that serializes load tests."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        log.info("Airflow metadata database in %s", self.airflow_home)
        self._airflow("db", "migrate")
        self._airflow("pools", "set", LOAD_POOL, "1", "servebench: one load test at a time")

    def start(self, timeout: float = 240) -> None:
        check_port_free(self.port, self.env["AIRFLOW__API__HOST"])
        self.log_dir.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).parent / "airflow")
        for name, args in COMPONENTS.items():
            with open(self.log_dir / f"{name}.log", "ab") as out:
                self._procs[name] = subprocess.Popen(
                    [airflow, *args],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        log.info("Airflow starting on %s (logs in %s)", self.url, self.log_dir)
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        """Until the API answers, the scheduler and DAG processor heartbeat and the DAG is parsed."""
        deadline = time.monotonic() + timeout
        waiting_for = "the API server"
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise AirflowFailed(f"Airflow's {name} exited with code {proc.returncode}:\n{self._tail(name)}")
            try:
                status, health = httpclient.request(self.url, "GET", "/api/v2/monitor/health", timeout=5)
                if status == 200 and isinstance(health, dict):
                    sick = [
                        k for k in ("metadatabase", "scheduler", "dag_processor") if health[k]["status"] != "healthy"
                    ]
                    waiting_for = f"Airflow's {', '.join(sick)}" if sick else f"the DAG {DAG_ID} to be parsed"
                    if not sick and self.api("GET", f"/api/v2/dags/{DAG_ID}", ok=(200, 404))[0] == 200:
                        log.info("Airflow ready at %s", self.url)
                        return
            except OSError:
                pass
            time.sleep(1)
        raise AirflowFailed(
            f"Airflow not ready after {timeout:.0f}s: waiting for {waiting_for} (logs in {self.log_dir})"
        )

    def _tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        """A REST call (no token: all-admins mode); AirflowFailed naming Airflow's answer unless its status is ok."""
        data = json.dumps(body).encode() if body is not None else None
        status, answer = httpclient.request(self.url, method, path, data, timeout=30)
        if status not in ok:
            detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
            raise AirflowFailed(f"{method} {path}: {status} {detail}")
        return status, answer

    def trigger(self, conf: dict[str, Any]) -> str:
        """A manual run of the DAG with `conf` (validated by Airflow against the DAG's params); returns its id."""
        self.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        _, run = self.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def follow(self, run_id: str, say: Callable[[str], None], poll_s: float = 2.0) -> str:
        """Report the run's progress (task states, servebench's log lines) until it ends; returns its state."""
        seen: dict[str, str] = {}
        tails = LogTails(self.airflow_home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}")
        while True:
            _, run = self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
            for line in tails.new_lines():
                say(line)
            _, tis = self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=1000")
            for ti in tis["task_instances"]:
                name = ti["task_id"] + (
                    f"[{ti['rendered_map_index'] or ti['map_index']}]" if ti["map_index"] >= 0 else ""
                )
                state = ti["state"] or "none"
                if seen.get(name) != state and state in {"running", "success", "failed", "upstream_failed", "skipped"}:
                    took = f" in {ti['duration']:.0f} s" if ti.get("duration") and state != "running" else ""
                    say(f"task {name}: {state}{took}")
                seen[name] = state
            if run["state"] in FINISHED:
                for line in tails.new_lines():
                    say(line)
                return str(run["state"])
            time.sleep(poll_s)

    def stop(self) -> None:
        """SIGTERM each component's process group (the scheduler stops its running tasks, which stop their
        servers and Locust), SIGKILL what is left after 30 s."""
        for proc in self._procs.values():
            _signal(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, proc in self._procs.items():
            while group_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if group_members(proc.pid):
                log.warning("Airflow's %s ignored SIGTERM for 30 s: killing it", name)
                _signal(proc.pid, signal.SIGKILL)
            proc.wait()
        self._procs.clear()

    def __enter__(self) -> LocalAirflow:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class LogTails:
    """The servebench lines that tasks of one run add to their log files (Airflow 3 writes JSON lines)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._offsets: dict[Path, int] = {}

    def new_lines(self) -> list[str]:
        lines = []
        for path in sorted(self.run_dir.glob("task_id=*/**/attempt=*.log")):
            with path.open("rb") as f:
                f.seek(self._offsets.get(path, 0))
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            for raw in complete.decode(errors="replace").splitlines():
                line = _servebench_line(raw)
                if line:
                    lines.append(line)
        return lines


def _servebench_line(raw: str) -> str | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or not str(record.get("logger", "")).startswith("servebench"):
        return None
    return re.sub(r"\s+", " ", str(record.get("event", ""))).strip() or None
