"""Resource sampler: CPU, memory and threads of a server and of the load generator, every second, read
from the probes the runner backends hand out (servers/probes.py)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psutil

from servebench.servers.probes import Probe, Usage

log = logging.getLogger(__name__)
QUIET_BELOW_PERCENT = 25.0  # of one core: the whole machine's busy CPU before a trial may start
QUIET_WAIT_S = 30.0  # at most, then the trial starts anyway (and its samples say what else was running)
QUIET_CHECK_S = 0.3  # each look at the machine: long enough to average a scheduler tick, short beside a trial


@dataclass(frozen=True)
class Sample:
    t: float  # epoch seconds
    group: str  # "server" or "loadgen"
    cpu_percent: float
    rss_mb: float
    threads: int
    processes: int | None


class MachineProbe:
    """The whole machine's busy CPU (all processes, every core: 200 = two cores busy), so that what neither
    the server nor the load generator used shows: a noisy neighbour."""

    def __init__(self) -> None:
        self._last = psutil.cpu_times()

    def read(self) -> Usage:
        now = psutil.cpu_times()
        (busy, total), (busy_before, total_before) = _busy_total(now), _busy_total(self._last)
        busy, total = busy - busy_before, total - total_before
        self._last = now
        share = busy / total if total > 0 else 0.0
        return Usage(100.0 * share * (psutil.cpu_count() or 1), 0.0, 0, None)

    def gone(self) -> list[int]:
        return []


def _busy_total(times: Any) -> tuple[float, float]:
    """CPU seconds spent running anything, and in all (time a hypervisor stole counts as neither's)."""
    busy = times.user + times.nice + times.system + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)
    return busy, busy + times.idle + getattr(times, "iowait", 0.0)


def wait_for_quiet(what: str) -> float:
    """Wait (at most QUIET_WAIT_S) until the machine's busy CPU stays under QUIET_BELOW_PERCENT for QUIET_CHECK_S;
    returns the seconds waited. A trial measured on a busy machine measures its neighbours too."""
    probe, started = MachineProbe(), time.monotonic()
    while True:
        time.sleep(QUIET_CHECK_S)
        busy = probe.read().cpu_percent
        waited = time.monotonic() - started
        if busy < QUIET_BELOW_PERCENT:
            if waited > 2 * QUIET_CHECK_S:
                log.info(
                    "%s: waited %.0f s for the machine to be quiet (now %.0f%% of a core busy)", what, waited, busy
                )
            return waited
        if waited >= QUIET_WAIT_S:
            log.warning(
                "%s: the machine stayed busy (%.0f%% of a core) for %.0f s; starting anyway", what, busy, waited
            )
            return waited


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
