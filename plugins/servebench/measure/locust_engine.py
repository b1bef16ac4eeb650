"""The Locust engine: Locust in child processes (gevent must not patch the harness or an Airflow task), running
locustfile.py, which records every response in per-second HDR histograms and checks every answer.

Alone, or as Locust's master: with `--processes` its workers are local; with load hosts, they are
`servebench load-worker` processes there (`worker` below), which connect to this master, take the test's
settings from it, and send it their histograms."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
from hdrh.histogram import HdrHistogram

from servebench.base import teardown
from servebench.measure import latency, loadgen
from servebench.measure.loadgen import LoadgenError, LoadResult, LoadSpec

log = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STOP_SLACK_S = 30.0  # beyond warm-up + ramp-up + duration before the harness gives up on Locust
DONE_CHECK_S = 5.0  # how often an idle load worker asks whether the run's trials have ended
MASTER_GONE_S = 3.0  # how long a load worker's master may be unreachable mid-test before the worker leaves it


def run(spec: LoadSpec, out_dir: Path, on_started: Callable[[int], None]) -> LoadResult:
    """One load test by Locust; `on_started` gets its pid (for the resource sampler)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("loadgen-*.json"):
        stale.unlink()
    (out_dir / "window.json").unlink(missing_ok=True)
    (out_dir / "workers.json").unlink(missing_ok=True)
    meta = json.loads(Path(spec.meta_path).read_text())
    config = {**asdict(spec), "meta": meta, "out_dir": str(out_dir), "load_processes": spec.total_processes}
    # The record of the test's settings names the model; the model's request rows (a user's payload) go only to
    # Locust, in a file removed when it ends, so they are neither kept beside the figures nor uploaded with them.
    (out_dir / "loadgen.json").write_text(json.dumps({**config, "meta": {"name": meta["name"], "key": meta["key"]}}))
    settings_file = out_dir / "locust-settings.json"
    settings_file.write_text(json.dumps(config))
    limit = spec.warmup_s + spec.users / spec.spawn_rate + spec.duration_s + STOP_SLACK_S
    if spec.load_hosts:
        limit += spec.worker_wait_s
    user_class = "ProbeUser" if spec.probe_path else "OpenLoopUser" if spec.mode == "open" else "ClosedLoopUser"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        user_class,
        "--headless",
        "--only-summary",
        "--host",
        spec.host,
        "--users",
        str(spec.users),
        "--spawn-rate",
        str(spec.spawn_rate),
        "--run-time",
        f"{int(limit)}s",
        "--stop-timeout",
        "5",
        "--exit-code-on-error",
        "0",
        "--csv",
        str(out_dir / "locust"),
        "--html",
        str(out_dir / "locust.html"),
        "--loglevel",
        "WARNING",
        "--servebench-config",
        f"@{settings_file}",
    ]
    if spec.load_hosts:
        cmd += [
            "--master",
            "--master-bind-host",
            spec.master_bind,
            "--master-bind-port",
            str(spec.master_port),
            "--expect-workers",
            str(spec.total_processes),
            "--expect-workers-max-wait",
            str(int(spec.worker_wait_s)),
        ]
    elif spec.processes > 1:
        cmd += ["--processes", str(spec.processes)]
    env = {"PYTHONUNBUFFERED": "1", **teardown.owner_mark()}
    proc = subprocess.Popen(
        cmd,
        env={**_base_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, spec.cpus)) if spec.cpus else None,
    )
    token = teardown.register(f"Locust (process group {proc.pid})", lambda: _kill(proc))
    on_started(proc.pid)
    output: list[str] = []
    reader = threading.Thread(target=_relay, args=(proc, output), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=limit + STOP_SLACK_S)
    except subprocess.TimeoutExpired:
        raise LoadgenError(f"Locust did not finish within {limit + STOP_SLACK_S:.0f}s:\n" + _tail(output)) from None
    finally:
        _kill(proc)  # its whole group, whatever ended the wait (a time-out, a signal, an exception)
        teardown.unregister(token)
        reader.join(timeout=5)
        settings_file.unlink(missing_ok=True)
    if code != 0 and spec.load_hosts and any("Gave up waiting for workers" in line for line in output):
        raise LoadgenError(_missing_workers(spec, out_dir))
    if code != 0:
        raise LoadgenError(f"Locust exited with code {code}:\n" + _tail(output))
    window_file = out_dir / "window.json"
    if not window_file.exists():
        raise LoadgenError(
            "Locust stopped before the measured window ended (all users never started?):\n" + _tail(output)
        )
    window = json.loads(window_file.read_text())
    parts = [json.loads(p.read_text()) for p in sorted(out_dir.glob("loadgen-*.json"))]
    if not parts:
        raise LoadgenError("Locust wrote no results:\n" + _tail(output))
    per_second = _window_seconds(window, parts)
    failures: Counter[int] = Counter()
    reasons: Counter[str] = Counter()
    warmup = 0
    for part in parts:
        for key, second in part["seconds"].items():
            if int(key) < window["start"]:
                warmup += latency.histogram_count(second["histogram"])
            elif int(key) < window["end"]:
                failures[int(key)] += second["failures"]
                reasons.update(second["reasons"])
    if window.get("invalid"):
        log.error("load test invalid: %s", window["invalid"])
    return loadgen.result(
        window["start"],
        window["end"],
        per_second,
        failures,
        reasons,
        warmup,
        window["locust"],
        out_dir,
        workers=tuple(window.get("workers", ())),
        invalid=window.get("invalid"),
    )


def _missing_workers(spec: LoadSpec, out_dir: Path) -> str:
    """Which load hosts' workers never connected, from the hosts the master heard from."""
    listed = out_dir / "workers.json"
    connected = json.loads(listed.read_text())["connected"] if listed.exists() else []
    missing = Counter(dict.fromkeys(spec.load_hosts, spec.processes))
    missing.subtract(Counter(connected))
    absent = sorted(host for host, n in missing.items() if n > 0)
    return (
        f"load host(s) {', '.join(absent)} sent no Locust worker to {spec.master_bind}:{spec.master_port} within "
        f"{spec.worker_wait_s:.0f} s ({spec.processes} expected from each of {', '.join(spec.load_hosts)}; "
        f"connected: {', '.join(connected) or 'none'}); start `servebench load-worker` there"
    )


def worker(
    master: str,
    host: str,
    processes: int = 1,
    idle_s: float = 60.0,
    first_wait_s: float = 900.0,
    done: Callable[[], bool] = lambda: False,
) -> int:
    """Serve load tests as Locust workers for the master at `master` (host:port), one test after another, until
    `done` says no more will come (checked every few seconds between tests), or no master has been reachable for
    `idle_s` since it last joined one (a trial's masters come and go between its load tests) or for `first_wait_s`
    before the first (its server may be building). Returns the number of tests served. `host` names this load
    host in the results."""
    address, _, port = master.rpartition(":")
    served, joined, idle_since, checked = 0, 0, time.monotonic(), 0.0
    while time.monotonic() - idle_since < (idle_s if joined else first_wait_s):
        if not _reachable(address, int(port)):
            if time.monotonic() - checked > DONE_CHECK_S:
                checked = time.monotonic()
                if done():
                    log.info("load worker %s: the run's trials have ended", host)
                    break
            time.sleep(0.5)
            continue
        cmd = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--worker",
            "--master-host",
            address,
            "--master-port",
            port,
            "--servebench-host",
            host,
            "--loglevel",
            "WARNING",
        ]
        if processes > 1:
            cmd += ["--processes", str(processes)]
        log.info("load worker %s: joining the master at %s", host, master)
        code = _serve_one_test(cmd, address, int(port), host)
        joined += 1
        if code == 0:
            served += 1
        elif code is not None:
            log.warning("load worker %s: Locust exited with code %d", host, code)
        idle_since = time.monotonic()
        while _reachable(address, int(port)) and time.monotonic() - idle_since < idle_s:
            time.sleep(0.2)  # the test's master is still closing: the next test needs a new one
    log.info("load worker %s: done after %d load test(s)", host, served)
    return served


def _serve_one_test(cmd: list[str], address: str, port: int, host: str) -> int | None:
    """Run Locust's worker until it ends, or until its master has been gone for MASTER_GONE_S: a master that
    ended without telling its workers (it gave up waiting for another load host, or was killed at a time-out)
    would otherwise hold this worker for Locust's 60 s heartbeat time-out, and the next test's master with it.
    Locust stays in this process's group, so a load host that kills `servebench load-worker`'s group kills it
    too. Returns Locust's exit code, None where the worker left a gone master."""
    proc = subprocess.Popen(cmd, env={**_base_env(), "PYTHONUNBUFFERED": "1"})
    gone_since: float | None = None
    try:
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return proc.wait(timeout=1.0)  # at once when Locust ends
            if _reachable(address, port):
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since > MASTER_GONE_S:
                log.warning(
                    "load worker %s: the master at %s:%d went away without a word; leaving it", host, address, port
                )
                return None
    finally:
        _end_tree(proc)


def _end_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a Locust worker and its --processes children, SIGKILL what is left after 10 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(proc.pid)
        tree = [root, *root.children(recursive=True)]
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.terminate()
        _, alive = psutil.wait_procs(tree, timeout=10)
        for member in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
    proc.wait()


def _reachable(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
        return True
    return False


def _window_seconds(window: dict[str, Any], parts: list[dict[str, Any]]) -> dict[int, HdrHistogram]:
    """The window's per-second histograms, merged over the processes."""
    encoded: dict[int, list[str]] = {}
    for part in parts:
        for key, second in part["seconds"].items():
            if window["start"] <= int(key) < window["end"]:
                encoded.setdefault(int(key), []).append(second["histogram"])
    return {second: latency.merge(items) for second, items in encoded.items()}


def _kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL Locust's process group (its --processes workers too); nothing to do once it has exited."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW"))}


def _relay(proc: subprocess.Popen[str], output: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        output.append(line)
        if line.startswith("[load]"):
            log.info("%s", line)
        elif line:
            log.debug("locust: %s", line)


def _tail(lines: list[str], n: int = 30) -> str:
    return "\n".join(lines[-n:])
