"""Resource sampler: CPU, memory and threads of a server and of the load generator, every second, read
from the probes the runner backends hand out (servers/probes.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from servebench.servers.probes import Probe


@dataclass(frozen=True)
class Sample:
    t: float  # epoch seconds
    group: str  # "server" or "loadgen"
    cpu_percent: float
    rss_mb: float
    threads: int
    processes: int | None


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

    def __enter__(self) -> ResourceSampler:
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
                    self.samples.append(
                        Sample(now, group, usage.cpu_percent, usage.rss_mb, usage.threads, usage.processes)
                    )

    def series(self, group: str, start: float, end: float) -> list[Sample]:
        """Samples of one group taken inside [start, end]."""
        return [s for s in self.samples if s.group == group and start <= s.t <= end]
