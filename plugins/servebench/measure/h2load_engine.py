"""The native engine: h2load (Debian's nghttp2-client) over HTTP/1.1, for servers faster than Locust can drive.

One core of h2load sends tens of thousands of requests a second where one of Locust sends a few thousand.
h2load's `--log-file` writes one line per request (start µs since the epoch, HTTP status, µs to the end of
the response); those lines are binned by the second each response completed in, into the same per-second
HDR histograms Locust's processes write, so every figure downstream is computed by the same code.

Requests vary like Locust's, though h2load sends one body per process: the connections are spread over a
few h2load processes (at most `BODY_STREAMS`), each sending its own body drawn from the model's seeded
request generator, so the server does not answer one cached input. Answers are checked by status (any
non-2xx, a reset or a time-out is a failure); their content was checked by the parity gate before load.

h2load runs by count (`-n`, more than it could ever send) and is stopped at the end of the window, not by its
timed mode (`-D`): nghttp2 1.52's timed mode never ends against a server that closes the connection after
each response (gunicorn's sync workers do). Its log is written request by request, so stopping it loses
nothing; in count mode it keeps ~40 bytes per request in memory (about 100 MB for a minute at 50k req/s).

Closed loop only: h2load paces open-loop requests per connection (`--rps`) but times each from when it was
sent, not from when it was due, so a stalled server's backlog would be left out of every latency
(coordinated omission). The settings refuse that combination (config/params.py) and the engine refuses it
too, in case it is called directly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from hdrh.histogram import HdrHistogram

from servebench.base import teardown
from servebench.measure import latency, loadgen
from servebench.measure.loadgen import LoadgenError, LoadResult, LoadSpec
from servebench.servers.contract import RequestGenerator

H2LOAD = "h2load"
BODY_STREAMS = 4  # h2load processes, each with its own request body (and its share of the connections)
START_SLACK_S = 0.5  # connections are up within this after launch; the window starts after it and the warm-up
NEVER_REACHED = 10**9  # requests: h2load is stopped long before it sends this many


def streams(users: int) -> int:
    """How many h2load processes carry `users` connections (each sends its own body)."""
    return max(1, min(BODY_STREAMS, users))


def available() -> str | None:
    """Why h2load cannot run here, or None."""
    return None if shutil.which(H2LOAD) else "h2load is not installed (Debian package nghttp2-client)"


def run(spec: LoadSpec, out_dir: Path, on_started: Callable[[int], None]) -> LoadResult:
    """One closed-loop load test by h2load; `on_started` gets the pid of the shell that runs its processes."""
    if spec.mode != "closed":
        raise LoadgenError(
            "h2load runs closed loop only: it times open-loop requests from when they were sent, not due"
        )
    if why := available():
        raise LoadgenError(why)
    meta = json.loads(Path(spec.meta_path).read_text())
    path = spec.probe_path or spec.wire.predict_path  # a probe is a GET, no body
    url = spec.host.rstrip("/") + path
    count = streams(spec.users)
    started = time.time()
    window_start = math.ceil(started + START_SLACK_S + spec.warmup_s)
    window_end = window_start + math.ceil(spec.duration_s)
    run_for = window_end - started + 0.5  # to the end of the window's last second, and a little beyond
    commands = []
    for stream in range(count):
        body = out_dir / f"h2load-body-{stream}.json"
        body.write_bytes(RequestGenerator(meta, stream, spec.batch, spec.wire).bodies(1)[0])
        connections = spec.users // count + (1 if stream < spec.users % count else 0)
        data = [] if spec.probe_path else ["-d", str(body), "-H", "Content-Type: application/json"]
        commands.append(
            [
                H2LOAD,
                "--h1",
                "-c",
                str(connections),
                "-t",
                "1",
                "-n",
                str(NEVER_REACHED),
                "-N",
                f"{int(spec.request_timeout_s * 1000)}ms",  # a hung connection is closed: its request counts as failed
                *data,
                "--log-file",
                str(out_dir / f"h2load-{stream}.tsv"),
                url,
            ]
        )
    # One shell runs them all, so the sampler watches one process tree and a kill takes the whole group.
    script = " & ".join(
        shlex.join(c) + f" > {shlex.quote(str(out_dir / f'h2load-{i}.out'))} 2>&1" for i, c in enumerate(commands)
    )
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f"{script} & wait"],
        env={**os.environ, **teardown.owner_mark()},
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, spec.cpus)) if spec.cpus else None,
    )
    token = teardown.register(f"h2load (process group {proc.pid})", lambda: _kill(proc))
    on_started(proc.pid)
    print(f"[load] measuring {window_end - window_start}s from {window_start} with {spec.users} connections (h2load)")
    try:
        proc.wait(timeout=run_for)  # ends early only if every connection failed: its log says how
    except subprocess.TimeoutExpired:
        pass
    finally:
        _kill(proc)
        teardown.unregister(token)
        for stream in range(count):  # request rows (a user's payload): not kept beside the figures, nor uploaded
            (out_dir / f"h2load-body-{stream}.json").unlink(missing_ok=True)
    logs = [out_dir / f"h2load-{i}.tsv" for i in range(count)]
    if not any(p.exists() and p.stat().st_size for p in logs):
        outputs = "\n".join((out_dir / f"h2load-{i}.out").read_text(errors="replace")[-1500:] for i in range(count))
        raise LoadgenError(f"h2load logged no request:\n{outputs}")
    per_second, failures, reasons, warmup = bin_log(logs, window_start, window_end)
    return loadgen.result(window_start, window_end, per_second, failures, reasons, warmup, {}, out_dir)


def bin_log(
    logs: list[Path], window_start: int, window_end: int
) -> tuple[dict[int, HdrHistogram], Counter[int], Counter[str], int]:
    """h2load's per-request lines as per-second histograms of the seconds responses completed in (the window's
    and before: the warm-up is counted, not measured), the failures per second and their reasons."""
    per_second: dict[int, HdrHistogram] = {}
    failures: Counter[int] = Counter()
    reasons: Counter[str] = Counter()
    warmup = 0
    for path in logs:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) < 3:
                continue
            start_us, status, took_us = int(fields[0]), int(fields[1]), int(fields[2])
            second = (start_us + took_us) // 1_000_000
            if second < window_start:
                warmup += 1
                continue
            if second >= window_end:
                continue
            hist = per_second.get(second)
            if hist is None:
                hist = per_second[second] = latency.histogram()
            latency.record(hist, took_us / 1000.0)
            if not 200 <= status < 300:
                failures[second] += 1
                reasons["stream failed (reset, refused or timed out)" if status < 0 else f"HTTP {status}"] += 1
    return per_second, failures, reasons, warmup


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
