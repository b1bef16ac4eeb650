"""Several hosts on this machine (scripts/lab.sh): each test module gets a lab of its own, taken down after it,
and checked to leave no namespace, interface or process behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB_SH = REPO / "scripts" / "lab.sh"
BIN = Path(sys.executable).parent
CONTROLLER = "198.18.0.1"


class Lab:
    def __init__(self, name: str) -> None:
        self.name = name
        self.env = {**os.environ, "SERVEBENCH_LAB": name}
        self.started: list[subprocess.Popen[bytes]] = []

    def script(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(LAB_SH), *args], env=self.env, capture_output=True, text=True, timeout=60)

    def start(self, host: str, cmd: list[str], log: Path, cpus: str | None = None) -> subprocess.Popen[bytes]:
        """`cmd` on a lab host, in its own PID namespace, in the background."""
        pin = ["--cpus", cpus] if cpus else []
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["bash", str(LAB_SH), "exec", host, *pin, "--", *cmd], env=self.env, stdout=out, stderr=out
            )
        self.started.append(proc)
        return proc

    def load_worker(self, host: str, master: str, log: Path, cpus: str | None = None) -> subprocess.Popen[bytes]:
        cmd = [str(BIN / "servebench"), "load-worker", "--master", master, "--name", host, "--idle", "8", "--wait", "300"]
        return self.start(host, cmd, log, cpus)

    def wait_all(self, timeout: float = 30) -> None:
        """Every process started on the lab's hosts ends by itself (load workers: once no master is there)."""
        for proc in self.started:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{proc.args} did not end by itself within {timeout:.0f} s")
        self.started.clear()


def why_no_lab() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces)"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "the lab needs iproute2 and util-linux (ip, unshare)"
    return None


@pytest.fixture(scope="module")
def lab() -> Iterator[Callable[[int], Lab]]:
    """Brings up a lab with N load hosts (once per module) and takes it down afterwards, checking it is gone."""
    if why := why_no_lab():
        pytest.skip(why)
    made: list[Lab] = []

    def up(load_hosts: int = 2) -> Lab:
        if made:
            return made[0]
        lab = Lab(f"sb{os.getpid() % 100000}")
        made.append(lab)
        result = lab.script("up", str(load_hosts))
        assert result.returncode == 0, result.stderr
        return lab

    yield up
    for lab in made:
        down = lab.script("down")
        assert down.returncode == 0, down.stderr
        assert "nothing left" in down.stderr or "no namespace, interface or process left" in down.stderr
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert lab.name + "-" not in listed
