"""Resource sampler: CPU, memory and threads of a server's whole process tree and of the load generator."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil

MB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    t: float  # epoch seconds
    group: str  # "server" or "loadgen"
    cpu_percent: float  # summed over the tree: 200 means two cores busy
    rss_mb: float
    threads: int
    processes: int


class ResourceSampler:
    """Samples tracked process trees every `interval_s` on a background thread.

    Process objects are kept between ticks (a new one's first cpu_percent() is always 0), and children
    are re-listed at every tick because workers come and go.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._roots: dict[str, int] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)
        self._lock = threading.Lock()

    def track(self, group: str, pid: int) -> None:
        with self._lock:
            self._roots[group] = pid

    def __enter__(self) -> "ResourceSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                roots = dict(self._roots)
            now = time.time()
            for group, pid in roots.items():
                sample = self._sample_tree(group, pid, now)
                if sample is not None:
                    self.samples.append(sample)

    def _process(self, pid: int) -> psutil.Process:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
            proc.cpu_percent()  # primes the counter; the next call measures since now
        return proc

    def _sample_tree(self, group: str, pid: int, now: float) -> Sample | None:
        try:
            root = self._process(pid)
            tree = [root] + root.children(recursive=True)
        except psutil.Error:
            return None  # the process is gone; the trial notices through its exit code
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
        return Sample(now, group, cpu, rss, threads, alive)

    def series(self, group: str, start: float, end: float) -> list[Sample]:
        """Samples of one group taken inside [start, end]."""
        return [s for s in self.samples if s.group == group and start <= s.t <= end]
