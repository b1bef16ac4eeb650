"""The Locust side of a load test; runs only inside the Locust processes started by servebench.measure.loadgen.

Each process records every response's latency in microsecond HDR histograms, one per wall-clock second
(servebench.latency), and writes them at the end; the harness merges the seconds of the measured
window. The controller (the only process, or the master under --processes) decides that window: it
starts on a whole second after the warm-up once every user runs, lasts whole seconds, and ends the test.

Two kinds of load:
- closed loop (ClosedLoopUser): each user sends its next request when the previous one is answered;
- open loop (OpenLoopUser): requests are due at a target arrival rate (constant gaps, or Poisson
  arrivals as in MLPerf's Server scenario) whatever the server does; users are only the connections
  that carry them, and each latency counts from the request's due time, so time spent queued behind a
  slow server is measured instead of omitted ("coordinated omission").
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.runners import WorkerRunner

from servebench.measure import latency
from servebench.servers.contract import RequestGenerator, check_answer, wire

CONFIG = json.loads(Path(os.environ["SERVEBENCH_LOADGEN_CONFIG"]).read_text())
META = json.loads(Path(CONFIG["meta_path"]).read_text())
BATCH = int(META["generator"].get("batch_size", 1))
WIRE = wire(CONFIG["protocol"], CONFIG["model_name"])
BODIES_PER_USER = 128
PROGRESS_EVERY_S = 5.0
LOCUST_PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


class Recorder:
    """This process's responses by the wall-clock second they completed in (warm-up included: the
    harness keeps only the window's seconds)."""

    def __init__(self) -> None:
        self.histograms: dict[int, Any] = {}  # HdrHistogram, which has no type information
        self.failures: Counter[int] = Counter()
        self.reasons: dict[int, Counter[str]] = defaultdict(Counter)
        self.written = False

    def add(self, latency_ms: float, failure: str | None) -> None:
        second = int(time.time())
        hist = self.histograms.get(second)
        if hist is None:
            hist = self.histograms[second] = latency.histogram()
        latency.record(hist, latency_ms)
        if failure is not None:
            self.failures[second] += 1
            self.reasons[second][failure[:200]] += 1

    def write(self, out_dir: str) -> None:
        if self.written:
            return
        self.written = True
        seconds = {
            str(s): {
                "histogram": h.encode().decode(),
                "failures": self.failures.get(s, 0),
                "reasons": dict(self.reasons.get(s, {})),
            }
            for s, h in self.histograms.items()
        }
        with open(os.path.join(out_dir, f"loadgen-{os.getpid()}.json"), "w") as f:
            json.dump({"pid": os.getpid(), "seconds": seconds}, f)


RECORDER = Recorder()
_streams = itertools.count()


@events.request.add_listener
def _on_request(
    response_time: float,
    exception: BaseException | None = None,
    context: dict[str, Any] | None = None,
    start_time: float | None = None,
    **_: object,
) -> None:
    due = (context or {}).get("due")
    if due is not None and start_time is not None:  # open loop: from when it was due, not when it left
        response_time += max(start_time - due, 0.0) * 1000.0
    RECORDER.add(response_time, None if exception is None else str(exception))


def _sleep_until(deadline: float) -> None:
    # Real time, not gevent's cached loop time, which can lag and end a window early.
    while (left := deadline - time.time()) > 0:
        gevent.sleep(min(left, 0.2))


def _control(environment) -> None:  # type: ignore[no-untyped-def]
    runner = environment.runner
    _sleep_until(time.time() + CONFIG["warmup_s"])
    while runner.user_count < CONFIG["users"]:  # a window must not include the ramp-up
        gevent.sleep(0.1)
    start = math.ceil(time.time())
    end = start + max(1, math.ceil(CONFIG["duration_s"]))
    _sleep_until(start)
    environment.stats.reset_all()  # Locust's own figures, for comparison, over (about) the same window
    print(f"[load] measuring {end - start}s from {start} with {runner.user_count} users", flush=True)
    next_report = start + PROGRESS_EVERY_S
    while next_report < end:
        _sleep_until(next_report)
        total, elapsed = environment.stats.total, time.time() - start
        print(
            f"[load] {elapsed:4.0f}s  {total.num_requests} requests  {total.num_requests / elapsed:.0f} rps  "
            f"{total.num_failures} failures",
            flush=True,
        )
        next_report += PROGRESS_EVERY_S
    _sleep_until(end)
    total = environment.stats.total
    locust = {name: float(total.get_response_time_percentile(q)) for name, q in LOCUST_PERCENTILES.items()}
    locust.update(max=float(total.max_response_time), requests=total.num_requests)
    with open(os.path.join(CONFIG["out_dir"], "window.json"), "w") as f:
        json.dump({"start": start, "end": end, "users": runner.user_count, "locust": locust}, f)
    runner.quit()


@events.test_start.add_listener
def _on_test_start(environment, **_: object) -> None:  # type: ignore[no-untyped-def]
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_control, environment)


@events.test_stop.add_listener
def _on_test_stop(**_: object) -> None:
    RECORDER.write(CONFIG["out_dir"])  # under --processes the master's is empty, and harmless


class Schedule:
    """When this process's requests are due: every 1/rate s, or Poisson arrivals at that mean rate.
    Each process of `processes` takes an equal share of the rate (a split Poisson process is Poisson)."""

    def __init__(self, rate: float, arrival: str, seed: int) -> None:
        self.rate = rate
        self.poisson = arrival == "poisson"
        self.rng = random.Random(seed)
        self.next_due: float | None = None

    def take(self) -> float:
        if self.next_due is None:
            self.next_due = time.time()
        due = self.next_due
        self.next_due += self.rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate
        return due


SCHEDULE = (
    Schedule(CONFIG["rate"] / CONFIG["processes"], CONFIG["arrival"], seed=os.getpid())
    if CONFIG["mode"] == "open"
    else None
)


class _PredictUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)
    network_timeout = CONFIG["request_timeout_s"]
    connection_timeout = CONFIG["request_timeout_s"]

    def on_start(self) -> None:
        self.bodies = RequestGenerator(META["generator"], stream=next(_streams)).bodies(BODIES_PER_USER)
        self.sent = 0

    def send(self, context: dict[str, Any]) -> None:
        body = self.bodies[self.sent % BODIES_PER_USER]
        self.sent += 1
        with self.client.post(
            WIRE.predict_path,
            data=body,  # type: ignore[arg-type]  # bytes go through as they are; Locust's annotation is narrower
            headers={"Content-Type": "application/json"},
            catch_response=True,
            context=context,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.error or (resp.text or '')[:120]}")
                return
            try:
                problem = check_answer(WIRE.to_contract(resp.json()), BATCH, META["classes"])
            except ValueError:
                problem = "answer is not JSON"
            if problem:
                resp.failure(f"wrong answer: {problem}")


class ClosedLoopUser(_PredictUser):
    """Sends its next request as soon as the previous one is answered."""

    @task
    def predict(self) -> None:
        self.send({})


class OpenLoopUser(_PredictUser):
    """Takes the next due time from the process's schedule, waits for it, sends; when every user is
    busy, requests fall behind schedule and the delay is part of their latency."""

    @task
    def predict(self) -> None:
        assert SCHEDULE is not None
        due = SCHEDULE.take()
        _sleep_until(due)
        self.send({"due": due})


class ProbeUser(FastHttpUser):
    """GETs a cheap path (a health check) back to back: what the load generator can do at most."""

    wait_time = constant(0)
    network_timeout = CONFIG["request_timeout_s"]

    @task
    def probe(self) -> None:
        self.client.get(CONFIG["probe_path"])
