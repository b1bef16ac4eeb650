"""Several hosts on one machine (scripts/lab.sh), from Python: for the lab's tests and benchmarks, and for
anyone trying servebench across machines before they have them. This machine is the controller at CONTROLLER;
`server` and `load1..N` are network namespaces on a bridge, each process on them in a PID namespace of its own."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from servebench.base import paths

if TYPE_CHECKING:
    from servebench.local_airflow import LocalAirflow

LAB_SH = paths.REPO_ROOT / "scripts" / "lab.sh"
CONTROLLER = "198.18.0.1"
SERVER_HOST = "198.18.0.2"


REDIS_PORT = 6379


class LabError(RuntimeError):
    """The lab could not be brought up or down; the message is lab.sh's."""


def why_unavailable() -> str | None:
    """Why no lab can be made here, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces)"
    if not shutil.which("ip") or not shutil.which("unshare") or not shutil.which("nsenter"):
        return "the lab needs iproute2 and util-linux (ip, unshare, nsenter)"
    return None


class Lab:
    """A lab named `name` (at most 8 characters); `up` makes it, `down` removes it and all it ran."""

    def __init__(self, name: str = "sblab") -> None:
        self.name = name
        self.env = {**os.environ, "SERVEBENCH_LAB": name}
        self.started: list[subprocess.Popen[bytes]] = []

    def script(self, *args: str) -> str:
        """Run lab.sh; its standard output, or LabError with its message."""
        proc = subprocess.run(["bash", str(LAB_SH), *args], env=self.env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise LabError(f"lab.sh {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def up(self, load_hosts: int = 2) -> Lab:
        self.script("up", str(load_hosts))
        return self

    def engine(self) -> str:
        """Start a Docker-compatible engine on the server host; its URL."""
        return self.script("engine")

    def start(self, host: str, cmd: list[str], log: Path, cpus: str | None = None) -> subprocess.Popen[bytes]:
        """`cmd` on a lab host, in its own PID namespace, in the background, output to `log`."""
        pin = ["--cpus", cpus] if cpus else []
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["bash", str(LAB_SH), "exec", host, *pin, "--", *cmd], env=self.env, stdout=out, stderr=out
            )
        self.started.append(proc)
        return proc

    def load_worker(
        self, host: str, master: str, log: Path, cpus: str | None = None, processes: int = 1
    ) -> subprocess.Popen[bytes]:
        """`servebench load-worker` on a load host, for the trial whose Locust master listens at `master`."""
        servebench = str(Path(sys.executable).parent / "servebench")
        cmd = [servebench, "load-worker", "--master", master, "--name", host, "--idle", "8", "--wait", "300"]
        return self.start(host, [*cmd, "--processes", str(processes)], log, cpus)

    def wait_all(self, timeout: float = 30) -> list[str]:
        """Wait for every process started on the lab's hosts to end by itself (load workers end once no master
        is there); the commands that did not, which are then killed."""
        late = []
        for proc in self.started:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                late.append(str(proc.args))
                proc.kill()
                proc.wait()
        self.started.clear()
        return late

    def down(self) -> str:
        return self.script("down") or "down"


@contextlib.contextmanager
def celery_airflow(lab: Lab, home: Path, port: int = 8080) -> Iterator[LocalAirflow]:
    """Airflow across the lab's hosts, as the compose file's celery profile deploys it: Redis and the API server,
    scheduler and DAG processor on the controller with the CeleryExecutor; a Celery worker for the queue
    "default" on the controller and one per load host on its own queue (named after the host), each in its
    host's namespaces. Everything started is stopped on exit."""
    from servebench.local_airflow import LocalAirflow

    loads = [h for h in lab.script("status").split() if h.startswith("load") and h[4:].isdigit()]
    password = secrets.token_hex(16)  # Redis answers other hosts only with one (its protected mode)
    broker = f"redis://:{password}@{CONTROLLER}:{REDIS_PORT}"
    env = {
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        # Tasks run on the workers, not as local processes: the CPU-count cap of the LocalExecutor would hold a
        # load host's task back behind the controller's.
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__CELERY__BROKER_URL": f"{broker}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"{broker}/1",
        "AIRFLOW__API__HOST": CONTROLLER,
        "AIRFLOW__API__BASE_URL": f"http://{CONTROLLER}:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{CONTROLLER}:{port}/execution/",
        "SERVEBENCH_LOAD_QUEUES": ",".join(loads),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # LocalAirflow takes the environment's settings over its own
    redis = subprocess.Popen(
        ["redis-server", "--bind", CONTROLLER, "--port", str(REDIS_PORT), "--requirepass", password, "--save", ""],
        stdout=(home / "redis.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    airflow = LocalAirflow(port=port, home=home / "airflow")
    local: list[subprocess.Popen[bytes]] = []
    remote: list[subprocess.Popen[bytes]] = []
    try:
        airflow.prepare()
        airflow.start()
        lab.env.update(airflow.env)
        for queue in ["default", *loads]:
            cmd = [str(Path(sys.executable).parent / "airflow"), "celery", "worker", "-q", queue]
            cmd += ["--concurrency", "2" if queue == "default" else "1", "--skip-serve-logs"]
            cmd += ["--celery-hostname", f"{queue}@lab"]
            log = home / f"celery-{queue}.log"
            if queue == "default":  # the controller's own worker
                with log.open("ab") as out:
                    local.append(
                        subprocess.Popen(
                            cmd, env=airflow.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                        )
                    )
            else:
                remote.append(lab.start(queue, cmd, log))
        yield airflow
    finally:
        for worker in local:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in remote:
            worker.terminate()  # unshare --kill-child: its host's processes go with it
        for worker in [*local, *remote]:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        lab.started = [p for p in lab.started if p.poll() is None]
        airflow.stop()
        redis.terminate()
        redis.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
