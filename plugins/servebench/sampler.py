"""Resource sampler: CPU, memory and threads of a server and of the load generator, every second.

What is measured comes from a probe: a process tree seen through psutil (local servers, Locust) or a
container seen through the Engine's stats API (container backend). A probe keeps its own state between
reads, because CPU use is a difference between two readings.
"""

from __future__ import annotations

import threading
import time
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


@dataclass(frozen=True)
class Sample:
    t: float  # epoch seconds
    group: str  # "server" or "loadgen"
    cpu_percent: float
    rss_mb: float
    threads: int
    processes: int | None


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
            tree = [root] + root.children(recursive=True)
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


class ResourceSampler:
    """Reads tracked probes every `interval_s` on a background thread."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._probes: dict[str, Probe] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)
        self._lock = threading.Lock()

    def track(self, group: str, probe: Probe) -> None:
        probe.read()  # primes it: the first sample then covers one interval
        with self._lock:
            self._probes[group] = probe

    def __enter__(self) -> "ResourceSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                probes = dict(self._probes)
            now = time.time()
            for group, probe in probes.items():
                usage = probe.read()
                if usage is not None:
                    self.samples.append(Sample(now, group, usage.cpu_percent, usage.rss_mb, usage.threads, usage.processes))

    def series(self, group: str, start: float, end: float) -> list[Sample]:
        """Samples of one group taken inside [start, end]."""
        return [s for s in self.samples if s.group == group and start <= s.t <= end]
