"""The Locust side of a load test; runs only inside the Locust child process started by servebench.loadgen.

It records every response's exact latency (Locust's own stats round them into buckets), measures only
after the warm-up and once every user runs, validates each answer against the contract, and ends the
test itself when the measured window is over.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path

import gevent
import numpy as np
from locust import FastHttpUser, constant, events, task

from servebench.contract import RequestGenerator, check_answer, wire

CONFIG = json.loads(Path(os.environ["SERVEBENCH_LOADGEN_CONFIG"]).read_text())
META = json.loads(Path(CONFIG["meta_path"]).read_text())
BATCH = int(META["generator"].get("batch_size", 1))
WIRE = wire(CONFIG["protocol"], CONFIG["model_name"])
BODIES_PER_USER = 128
PROGRESS_EVERY_S = 5.0


class Recorder:
    """Responses inside the measured window, by the second they completed in."""

    def __init__(self) -> None:
        self.window_start: float | None = None
        self.window_end: float | None = None
        self.latencies: list[float] = []
        self.per_second: dict[int, list[float]] = defaultdict(list)
        self.failures_per_second: Counter[int] = Counter()
        self.failure_reasons: Counter[str] = Counter()
        self.warmup_requests = 0

    def add(self, response_time_ms: float, failure: str | None) -> None:
        if self.window_start is None:
            self.warmup_requests += 1
            return
        if self.window_end is not None:
            return
        second = int(time.time() - self.window_start)
        self.latencies.append(response_time_ms)
        self.per_second[second].append(response_time_ms)
        if failure is not None:
            self.failures_per_second[second] += 1
            self.failure_reasons[failure[:200]] += 1

    def write(self, out_dir: str) -> None:
        end = self.window_end or time.time()
        seconds = range(int(end - self.window_start)) if self.window_start else range(0)
        np.save(os.path.join(out_dir, "latencies_ms.npy"), np.asarray(self.latencies, dtype=np.float64))
        summary = {
            "window_start": self.window_start,
            "window_end": end,
            "warmup_requests": self.warmup_requests,
            "requests": len(self.latencies),
            "failures": sum(self.failures_per_second.values()),
            "failure_reasons": self.failure_reasons.most_common(10),
            "per_second": [
                {
                    "second": s,
                    "requests": len(self.per_second.get(s, [])),
                    "failures": self.failures_per_second.get(s, 0),
                    "latency_ms_p95": float(np.percentile(self.per_second[s], 95)) if self.per_second.get(s) else None,
                }
                for s in seconds
            ],
        }
        with open(os.path.join(out_dir, "load.json"), "w") as f:
            json.dump(summary, f)


RECORDER = Recorder()
_streams = itertools.count()


@events.request.add_listener
def _on_request(response_time: float, exception: BaseException | None = None, **_: object) -> None:
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
    RECORDER.window_start = start = time.time()
    end = start + CONFIG["duration_s"]
    print(f"[load] measuring for {CONFIG['duration_s']:g}s with {runner.user_count} users", flush=True)
    next_report = start + PROGRESS_EVERY_S
    while next_report < end:
        _sleep_until(next_report)
        n, elapsed = len(RECORDER.latencies), time.time() - start
        failures = sum(RECORDER.failures_per_second.values())
        print(f"[load] {elapsed:4.0f}s  {n} requests  {n / elapsed:.0f} rps  {failures} failures", flush=True)
        next_report += PROGRESS_EVERY_S
    _sleep_until(end)
    RECORDER.window_end = time.time()
    runner.quit()


@events.test_start.add_listener
def _on_test_start(environment, **_: object) -> None:  # type: ignore[no-untyped-def]
    gevent.spawn(_control, environment)


@events.test_stop.add_listener
def _on_test_stop(environment, **_: object) -> None:  # type: ignore[no-untyped-def]
    RECORDER.write(CONFIG["out_dir"])


class PredictUser(FastHttpUser):
    """Closed loop: each user sends its next request as soon as the previous one is answered."""

    wait_time = constant(0)
    network_timeout = CONFIG["request_timeout_s"]
    connection_timeout = CONFIG["request_timeout_s"]

    def on_start(self) -> None:
        self.bodies = RequestGenerator(META["generator"], stream=next(_streams)).bodies(BODIES_PER_USER)
        self.sent = 0

    @task
    def predict(self) -> None:
        body = self.bodies[self.sent % BODIES_PER_USER]
        self.sent += 1
        with self.client.post(
            WIRE.predict_path, data=body, headers={"Content-Type": "application/json"}, catch_response=True
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
