"""The Locust side of a load test; runs only inside the Locust processes started by servebench.measure.loadgen
(locust_engine.py) and by `servebench load-worker` on load hosts.

Each process that runs users records every response's latency in microsecond HDR histograms, one per
wall-clock second (servebench.latency). A lone process writes them at the end; under a master (`--processes`
or workers on other hosts) each worker sends every completed second to the master with Locust's message
API as it goes, and a final delta at stop; the master merges them exactly, checks the merged count against
Locust's own, and writes them where a lone process would. The controller (the only process, or the master)
decides the measured window: it starts on a whole second after the warm-up once every user runs, lasts
whole seconds, and ends the test.

The test's settings travel as one custom argument (`--servebench-config`: `@file` here, JSON read from it), which
Locust's master sends to its workers, as JSON, with every spawn message, so a worker on another host needs only
servebench installed.

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
import socket
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import gevent
import psutil
from locust import FastHttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

from servebench.measure import latency
from servebench.results.environment import describe, machine
from servebench.servers.contract import RequestGenerator, Wire, check_answer

BODIES_PER_USER = 128
PROGRESS_EVERY_S = 5.0
REPORT_EVERY_S = 1.0  # a worker sends its completed seconds this often
FINAL_REPORT_WAIT_S = 10.0  # after stopping, how long the master waits for the last histograms of its live workers
LOCUST_PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}
HISTOGRAMS_MESSAGE = "servebench_histograms"
HELLO_MESSAGE = "servebench_hello"
FINISH_MESSAGE = "servebench_finish"


class Settings:
    """The test's settings, known once Locust has parsed (master, lone process) or received (worker) them."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.meta: dict[str, Any] = config["meta"]
        self.batch = int(config["batch"])
        self.wire = Wire(**{**config["wire"], "output_names": tuple(config["wire"]["output_names"])})
        share = max(1, config["load_processes"])  # each process of the test takes an equal share of the rate
        self.schedule = (
            Schedule(config["rate"] / share, config["arrival"], seed=random.getrandbits(32))
            if config["mode"] == "open"
            else None
        )


SETTINGS: Settings | None = None


def settings() -> Settings:
    assert SETTINGS is not None, "the test's settings arrive before its first user starts"
    return SETTINGS


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--servebench-config", default="", help="servebench's settings for this test (JSON)")
    parser.add_argument("--servebench-host", default="", help="this load host's name (workers)")


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

    def take(self, complete_before: float) -> dict[str, Any]:
        """The seconds before `complete_before`, encoded, and forgotten here: each second is sent once."""
        done = [s for s in self.histograms if s < complete_before]
        seconds = {
            str(s): {
                "histogram": self.histograms.pop(s).encode().decode(),
                "failures": self.failures.pop(s, 0),
                "reasons": dict(self.reasons.pop(s, {})),
            }
            for s in done
        }
        return seconds

    def write(self, out_dir: str) -> None:
        """A lone process: everything it recorded, where the harness reads it."""
        if self.written:
            return
        self.written = True
        write_part(out_dir, str(os.getpid()), {"pid": os.getpid(), "seconds": self.take(math.inf)})


def write_part(out_dir: str, name: str, part: dict[str, Any]) -> None:
    with open(os.path.join(out_dir, f"loadgen-{name}.json"), "w") as f:
        json.dump(part, f)


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


class Workers:
    """The master's view of its workers: the histograms each has sent, whether its last one came, its CPU over
    time, and Locust's own request count from its stats reports (to check that nothing was lost)."""

    def __init__(self) -> None:
        self.hosts: dict[str, str] = {}  # client id -> the load host it runs on
        self.seconds: dict[str, dict[str, Any]] = defaultdict(dict)
        self.final: set[str] = set()
        self.cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (time, CPU seconds so far)
        self.pids: dict[str, int] = {}
        self.machines: dict[str, str] = {}
        self.locust_requests: Counter[str] = Counter()

    def hello(self, client_id: str, data: dict[str, Any]) -> None:
        self.hosts[client_id] = data["host"]
        self.pids[client_id] = data["pid"]
        self.machines[client_id] = data["machine"]
        write_json("workers.json", {"connected": sorted(self.hosts.values())})

    def histograms(self, client_id: str, data: dict[str, Any]) -> None:
        self.seconds[client_id].update(data["seconds"])
        self.cpu[client_id].append((data["t"], data["cpu_s"]))
        if data["final"]:
            self.final.add(client_id)

    def report(self, client_id: str, data: dict[str, Any]) -> None:
        self.locust_requests[client_id] += data["stats_total"]["num_requests"]

    def wait_for_final(self, runner: MasterRunner) -> None:
        """Until every worker Locust does not count as lost (no heartbeat for 3 s) has sent its last histograms."""
        deadline = time.time() + FINAL_REPORT_WAIT_S
        while time.time() < deadline:
            if {c.id for c in runner.clients.all if c.state != "missing"} <= self.final:
                return
            gevent.sleep(0.05)

    def summary(self, start: float, end: float) -> tuple[list[dict[str, Any]], str | None]:
        """Each worker's host, requests and mean CPU (% of one core) over the window, and why the
        measurement is invalid if it is: a worker lost mid-run, or fewer merged responses than Locust counted."""
        rows, problems = [], []
        for client_id, host in sorted(self.hosts.items(), key=lambda kv: kv[1]):
            count = sum(latency.histogram_count(sec["histogram"]) for sec in self.seconds[client_id].values())
            rows.append(
                {
                    "host": host,
                    "pid": self.pids[client_id],
                    "machine": self.machines[client_id],
                    "requests": count,
                    "locust_requests": self.locust_requests[client_id],
                    "cpu_percent": _cpu_percent(self.cpu[client_id], start, end),
                    "complete": client_id in self.final,
                }
            )
            if client_id not in self.final:
                problems.append(f"the load worker on {host} stopped reporting mid-run (lost: killed, or its host down)")
            elif count != self.locust_requests[client_id]:
                problems.append(
                    f"the load worker on {host} reported {count} responses in its histograms but Locust counted "
                    f"{self.locust_requests[client_id]}"
                )
        return rows, "; ".join(problems) or None


def _cpu_percent(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Mean CPU over [start, end] from cumulative samples, between the samples nearest each edge."""
    if len(samples) < 2:
        return None
    first = min(samples, key=lambda s: abs(s[0] - start))
    last = min(samples, key=lambda s: abs(s[0] - end))
    if last[0] - first[0] < 0.5:
        return None
    return round(100.0 * (last[1] - first[1]) / (last[0] - first[0]), 1)


WORKERS = Workers()


def write_json(name: str, data: dict[str, Any]) -> None:
    with open(os.path.join(settings().config["out_dir"], name), "w") as f:
        json.dump(data, f)


def _control(environment) -> None:  # type: ignore[no-untyped-def]
    runner, config = environment.runner, settings().config
    _sleep_until(time.time() + config["warmup_s"])
    while runner.user_count < config["users"]:  # a window must not include the ramp-up
        gevent.sleep(0.1)
    start = math.ceil(time.time())
    end = start + max(1, math.ceil(config["duration_s"]))
    _sleep_until(start)
    environment.stats.reset_all()  # Locust's own figures, for comparison, over (about) the same window
    print(f"[load] measuring {end - start}s from {start} with {runner.user_count} users", flush=True)
    next_report = start + PROGRESS_EVERY_S
    while next_report < end:
        _sleep_until(next_report)
        total, elapsed = environment.stats.total, time.time() - start
        lost = [WORKERS.hosts.get(c.id, c.id) for c in getattr(runner, "clients", {}).values() if c.state == "missing"]
        print(
            f"[load] {elapsed:4.0f}s  {total.num_requests} requests  {total.num_requests / elapsed:.0f} rps  "
            f"{total.num_failures} failures" + (f"  workers lost: {', '.join(lost)}" if lost else ""),
            flush=True,
        )
        next_report += PROGRESS_EVERY_S
    _sleep_until(end)
    total = environment.stats.total
    locust = {name: float(total.get_response_time_percentile(q)) for name, q in LOCUST_PERCENTILES.items()}
    locust.update(max=float(total.max_response_time), requests=total.num_requests)
    window: dict[str, Any] = {"start": start, "end": end, "users": runner.user_count, "locust": locust}
    if isinstance(runner, MasterRunner):
        # Not Locust's own stop, after which a worker waits and re-announces itself to a master that may be gone
        # (its socket then blocks for ever): the workers stop their users and send their last histograms.
        runner.send_message(FINISH_MESSAGE)
        WORKERS.wait_for_final(runner)
        window["workers"], window["invalid"] = WORKERS.summary(start, end)
        for i, seconds in enumerate(WORKERS.seconds.values()):
            write_part(config["out_dir"], f"worker{i}", {"seconds": seconds})
    write_json("window.json", window)
    runner.quit()


@events.init.add_listener
def _on_init(environment, **_: object) -> None:  # type: ignore[no-untyped-def]
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        _configure(environment)  # a worker's settings come with the master's first spawn message
    if isinstance(runner, MasterRunner):
        runner.register_message(HELLO_MESSAGE, lambda msg, **_: WORKERS.hello(msg.node_id, msg.data))
        runner.register_message(HISTOGRAMS_MESSAGE, lambda msg, **_: WORKERS.histograms(msg.node_id, msg.data))
        environment.events.worker_report.add_listener(lambda client_id, data: WORKERS.report(client_id, data))
    elif isinstance(runner, WorkerRunner):
        host = environment.parsed_options.servebench_host or socket.gethostname()
        runner.register_message(FINISH_MESSAGE, lambda msg, **_: runner.stop())
        runner.send_message(HELLO_MESSAGE, {"host": host, "pid": os.getpid(), "machine": describe(machine())})


def _configure(environment) -> None:  # type: ignore[no-untyped-def]
    global SETTINGS
    options = environment.parsed_options
    if options.servebench_config.startswith("@"):  # a file here (a payload sample outgrows a command line) ...
        options.servebench_config = Path(options.servebench_config[1:]).read_text()  # ... sent on to workers as JSON
    SETTINGS = Settings(json.loads(options.servebench_config))
    timeout = SETTINGS.config["request_timeout_s"]
    for user_class in (ClosedLoopUser, OpenLoopUser, ProbeUser):
        user_class.network_timeout = user_class.connection_timeout = timeout


def _send_histograms(runner: WorkerRunner, final: bool) -> None:
    cpu = PROCESS.cpu_times()
    runner.send_message(
        HISTOGRAMS_MESSAGE,
        {
            "seconds": RECORDER.take(math.inf if final else math.floor(time.time())),
            "t": time.time(),
            "cpu_s": cpu.user + cpu.system,
            "final": final,
        },
    )


def _report_while_running(runner: WorkerRunner) -> None:
    while True:
        gevent.sleep(REPORT_EVERY_S)
        _send_histograms(runner, final=False)


PROCESS = psutil.Process()
_REPORTER: list[Any] = []  # the worker's reporting greenlet, while a test runs


@events.test_start.add_listener
def _on_test_start(environment, **_: object) -> None:  # type: ignore[no-untyped-def]
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        _configure(environment)  # the settings came with the master's spawn message
        _REPORTER.append(gevent.spawn(_report_while_running, runner))
    else:
        gevent.spawn(_control, environment)


@events.test_stop.add_listener
def _on_test_stop(environment, **_: object) -> None:  # type: ignore[no-untyped-def]
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        while _REPORTER:
            _REPORTER.pop().kill(block=True)
        # Locust's own count of this worker's last requests first, then the last histograms: the master reads
        # them in that order from one connection, so once the histograms are in, so is Locust's count.
        stats: dict[str, Any] = {}
        environment.events.report_to_master.fire(client_id=runner.client_id, data=stats)
        runner.send_message("stats", stats)  # what Locust's own report sends, through its public API
        _send_histograms(runner, final=True)
    elif not isinstance(runner, MasterRunner):
        RECORDER.write(settings().config["out_dir"])


class Schedule:
    """When this process's requests are due: every 1/rate s, or Poisson arrivals at that mean rate.
    Each process of the test takes an equal share of the rate (a split Poisson process is Poisson)."""

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


class _PredictUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        setup = settings()
        self.bodies = RequestGenerator(setup.meta, next(_streams), setup.batch, setup.wire).bodies(BODIES_PER_USER)
        self.sent = 0

    def send(self, context: dict[str, Any]) -> None:
        setup = settings()
        body = self.bodies[self.sent % BODIES_PER_USER]
        self.sent += 1
        with self.client.post(
            setup.wire.predict_path,
            data=body,  # type: ignore[arg-type]  # bytes go through as they are; Locust's annotation is narrower
            headers={"Content-Type": "application/json"},
            catch_response=True,
            context=context,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.error or (resp.text or '')[:120]}")
                return
            try:
                problem = check_answer(setup.wire.to_contract(resp.json()), setup.batch, setup.meta["classes"])
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
        schedule = settings().schedule
        assert schedule is not None
        due = schedule.take()
        _sleep_until(due)
        self.send({"due": due})


class ProbeUser(FastHttpUser):
    """GETs a cheap path (a health check) back to back: what the load generator can do at most."""

    wait_time = constant(0)

    @task
    def probe(self) -> None:
        self.client.get(settings().config["probe_path"])
