"""Locust across load hosts, on this machine: `servebench load-worker` processes named as load hosts join a
trial's Locust master on 127.0.0.1 and send it their histograms (tests/lab covers real hosts in network
namespaces). Checked: the merged histograms hold exactly the responses Locust counted, per worker; a load host
that never comes fails the test within the bounded wait, naming it; a worker killed mid-run invalidates it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servebench.measure import loadgen, locust_engine
from servebench.measure.loadgen import LoadgenError
from servebench.servers.runner.local import free_port

from .test_measurement import _started

BIN = Path(sys.executable).parent
IDLE_S = 3  # each test runs one load test: its workers may leave 3 s after its master


@pytest.fixture
def load_worker(tmp_path: Path) -> Iterator[Callable[[str, int], subprocess.Popen[bytes]]]:
    """Starts `servebench load-worker` as a load host named `name`; each is stopped when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, port: int) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{name}.log").open("wb")
        cmd = [
            str(BIN / "servebench"),
            "load-worker",
            "--master",
            f"127.0.0.1:{port}",
            "--name",
            name,
            "--idle",
            str(IDLE_S),
            "--wait",
            "30",
        ]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            proc.wait(timeout=30)  # a worker ends by itself once no master has been there for --idle seconds
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"load worker {proc.args} did not end by itself")


def _spec(base_url: str, meta: str, port: int, hosts: tuple[str, ...], **kw: float) -> loadgen.LoadSpec:
    return loadgen.LoadSpec(
        base_url,
        meta,
        users=4,
        spawn_rate=20,
        duration_s=kw.pop("duration_s", 2),
        warmup_s=0.5,
        load_hosts=hosts,
        master_port=port,
        worker_wait_s=kw.pop("worker_wait_s", 20),
    )


@pytest.mark.full  # the default tier runs the same through a trial on real hosts (tests/lab), where root allows
def test_two_load_hosts_merge_exactly_what_locust_counted(
    start_server, exports, load_worker, tmp_path: Path, no_leftover_processes: None
) -> None:
    server = _started(start_server, "instant")
    port = free_port()
    for name in ("load-a", "load-b"):
        load_worker(name, port)
    load = loadgen.run(_spec(server.base_url, str(exports["lr"].meta_path), port, ("load-a", "load-b")), tmp_path)
    print(load.workers)
    assert load.invalid is None and load.failures == 0 and load.window_s == 2
    assert sorted(w["host"] for w in load.workers) == ["load-a", "load-b"]
    for worker in load.workers:
        assert worker["complete"] and worker["requests"] == worker["locust_requests"] > 100
        assert worker["cpu_percent"] is not None and 0 < worker["cpu_percent"] <= 110
    # the window's responses are a part of everything the workers sent (warm-up before, the stop after it)
    assert load.requests + load.warmup_requests <= sum(w["requests"] for w in load.workers)
    assert load.requests > 200 and {"second", "requests"} <= set(load.per_second[0])


def test_a_load_host_that_never_comes_fails_within_the_wait(
    start_server, exports, load_worker, tmp_path: Path, no_leftover_processes: None
) -> None:
    server = _started(start_server, "instant")
    port = free_port()
    came = load_worker("load-a", port)
    began = time.monotonic()
    with pytest.raises(LoadgenError) as failed:
        loadgen.run(
            _spec(server.base_url, str(exports["lr"].meta_path), port, ("load-a", "load-b"), worker_wait_s=3),
            tmp_path,
        )
    print(failed.value)
    assert "load host(s) load-b sent no Locust worker" in str(failed.value)
    assert "connected: load-a" in str(failed.value) and time.monotonic() - began < 20
    # The master gave up without always telling its worker: the worker leaves it once it has been gone
    # MASTER_GONE_S (not after Locust's 60 s heartbeat time-out), then ends after its --idle.
    gave_up = time.monotonic()
    came.wait(timeout=locust_engine.MASTER_GONE_S + IDLE_S + 10)
    print(f"load-a ended {time.monotonic() - gave_up:.1f} s after the master gave up")


@pytest.mark.full  # 20 s, out of the default tier to keep it under 12 minutes (it keeps the merge, the host that never comes)
def test_a_worker_killed_mid_run_invalidates_the_test(
    start_server, exports, load_worker, tmp_path: Path, no_leftover_processes: None
) -> None:
    server = _started(start_server, "instant")
    port = free_port()
    load_worker("load-a", port)
    doomed = load_worker("load-b", port)
    spec = _spec(server.base_url, str(exports["lr"].meta_path), port, ("load-a", "load-b"), duration_s=4)

    class KillWhenMeasuring(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "measuring" in record.getMessage():  # the window has begun: one second into it, load-b's host dies
                subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1); os.killpg({doomed.pid}, 9)"])

    engine_log = logging.getLogger("servebench.measure.locust_engine")
    engine_log.addHandler(handler := KillWhenMeasuring())
    level, _ = engine_log.level, engine_log.setLevel(logging.INFO)
    try:
        load = loadgen.run(spec, tmp_path)
    finally:
        engine_log.removeHandler(handler)
        engine_log.setLevel(level)
    print(load.invalid)
    assert load.invalid is not None and "the load worker on load-b stopped reporting mid-run" in load.invalid
    assert [w["complete"] for w in sorted(load.workers, key=lambda w: w["host"])] == [True, False]
