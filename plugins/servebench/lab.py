"""Several hosts on one machine (scripts/lab.sh), from Python: for the lab's tests and benchmarks, and for
anyone trying servebench across machines before they have them. This machine is the controller at CONTROLLER;
`server` and `load1..N` are network namespaces on a bridge, each process on them in a PID namespace of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from servebench.base import paths

LAB_SH = paths.REPO_ROOT / "scripts" / "lab.sh"
CONTROLLER = "198.18.0.1"
SERVER_HOST = "198.18.0.2"


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
