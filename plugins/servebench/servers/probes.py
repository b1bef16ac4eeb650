"""Probes: what a server's resources look like from where it runs, read on demand.

A process tree seen through psutil (local servers, Locust) or a container seen through the Engine's stats
API (runner/container.py). A probe keeps its own state between reads, because CPU use is a difference
between two readings. The runner backends hand out probes; the sampler (measure/sampler.py) reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import psutil

MB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    cpu_percent: float  # since the probe's previous read, summed over processes: 200 means two cores busy
    rss_mb: float
    threads: int
    processes: int | None  # None where the probe cannot count them (a container's stats count tasks only)


class Probe(Protocol):
    def read(self) -> Usage | None:
        """Current usage, or None once what it watches is gone."""

    def gone(self) -> list[int]:
        """Pids of processes of the tree that died while it was watched (a crashed worker)."""


class ProcessTreeProbe:
    """A process and all its descendants. Process objects are kept between reads (a new one's first
    cpu_percent() is always 0); children are re-listed at every read because workers come and go."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._procs: dict[int, psutil.Process] = {}
        self._gone: list[int] = []

    def gone(self) -> list[int]:
        return list(self._gone)

    def _process(self, pid: int) -> psutil.Process:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
            proc.cpu_percent()  # primes the counter; the next call measures since now
        return proc

    def read(self) -> Usage | None:
        try:
            root = self._process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None  # the process is gone; the trial notices through its exit code
        current = {proc.pid for proc in tree}
        for pid in [pid for pid in self._procs if pid not in current]:
            self._procs.pop(pid)
            self._gone.append(pid)
        cpu = rss = 0.0
        threads = alive = 0
        for proc in tree:
            try:
                proc = self._process(proc.pid)
                with proc.oneshot():
                    cpu += proc.cpu_percent()
                    rss += proc.memory_info().rss / MB
                    threads += proc.num_threads()
                alive += 1
            except psutil.Error:
                continue
        return Usage(cpu, rss, threads, alive)
