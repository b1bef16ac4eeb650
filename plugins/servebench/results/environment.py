"""Facts about the machine and code a result was measured with, logged as tags on every parent run."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys

import psutil

from servebench import __version__
from servebench.base import paths


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(paths.REPO_ROOT), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def fingerprint(tags: dict[str, str]) -> str:
    """The machine as a baseline sees it: same host, CPU and memory (figures of another say nothing of it)."""
    stable = "|".join(tags[k] for k in ("host.name", "host.cpu_model", "host.cpu_count", "host.memory_gb"))
    return hashlib.sha256(stable.encode()).hexdigest()[:12]


def machine() -> dict[str, str]:
    """This machine's name, CPU, memory and kernel (a load host reports them to the trial's master)."""
    return {
        "host.name": socket.gethostname(),
        "host.os": platform.platform(),
        "host.cpu_model": _cpu_model(),
        "host.cpu_count": str(os.cpu_count()),
        "host.memory_gb": f"{psutil.virtual_memory().total / 2**30:.1f}",
        "host.kernel": platform.release(),
    }


def describe(tags: dict[str, str]) -> str:
    """A machine in one line, as a trial's context shows its load hosts and server host."""
    return (
        f"{tags['host.name']}: {tags['host.cpu_count']} CPUs ({tags['host.cpu_model']}), "
        f"{tags['host.memory_gb']} GiB, kernel {tags['host.kernel']}"
    )


def host_tags() -> dict[str, str]:
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    tags = {
        "git.commit": (commit + ("-dirty" if dirty else "")) or "unknown",
        **machine(),
        "host.python": sys.version.split()[0],
        # A busy or throttled machine explains a slow night: what else ran, and the CPU frequency policy.
        "host.load_avg_1m": f"{os.getloadavg()[0]:.2f}",
        "host.cpu_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "unknown",
        "servebench.version": __version__,
    }
    return {**tags, "host.fingerprint": fingerprint(tags)}
