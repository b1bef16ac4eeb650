"""Nothing outlives the harness: what a process starts (servers, Locust) is stopped when it is told to stop.

Three layers, for the three ways a task dies:
- a kill signal (SIGTERM from Airflow's supervisor or a scheduler restart, SIGINT from Ctrl-C, SIGHUP):
  `stopping_on_signals()` kills everything registered, then lets the previous handler run (Airflow's
  calls the task's `on_kill`) and raises `Aborted`, so the work unwinds through its `finally` blocks;
- Airflow's `on_kill` (execution time-out, task marked failed): `kill_all()` (see airflow_tasks.py);
- SIGKILL, which nothing can catch: every process the harness starts carries an owner mark in its
  environment, and `reap_orphans()` (run before each trial) kills the process groups whose owner is dead.
It only ever acts on what carries its mark or was registered here: never by name or pattern.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import psutil

log = logging.getLogger(__name__)

OWNER_ENV = "SERVEBENCH_OWNER"  # "<pid>:<create time>" of the harness process that started it
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_registered: dict[int, tuple[str, Callable[[], None]]] = {}
_tokens = itertools.count()
_lock = threading.Lock()


class Aborted(BaseException):
    """The process was told to stop. A BaseException, like KeyboardInterrupt: no `except Exception` in
    the harness may swallow it and carry on with the next trial."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def owner_mark() -> dict[str, str]:
    """The environment entry that marks a child process as started by this process."""
    return {OWNER_ENV: f"{os.getpid()}:{_started(os.getpid())}"}


def _started(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot (/proc/<pid>/stat, field 22): fixed for the
    process's life. psutil's create_time() adds the boot time, read anew at each call, and on these machines
    it moved between readings: a live owner looked dead, and reap_orphans killed another run's server."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except FileNotFoundError:  # not Linux: the best there is
        return f"{psutil.Process(pid).create_time():.0f}"


def register(what: str, kill: Callable[[], None]) -> int:
    """Until `unregister(token)`, a kill signal or `kill_all` calls `kill` (quick and idempotent)."""
    token = next(_tokens)
    with _lock:
        _registered[token] = (what, kill)
    return token


def unregister(token: int) -> None:
    with _lock:
        _registered.pop(token, None)


def kill_all(reason: str) -> list[str]:
    """Kill everything registered, newest first (the load generator before its server); names what."""
    with _lock:
        items = list(_registered.items())[::-1]
        _registered.clear()
    killed = []
    for _, (what, kill) in items:
        try:
            kill()
            killed.append(what)
        except Exception as exc:  # noqa: BLE001 - one failure must not spare the others
            log.error("%s: could not kill %s: %s", reason, what, exc)
    if killed:
        log.warning("%s: killed %s", reason, ", ".join(killed))
    return killed


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Kill signals kill what is registered and raise `Aborted` in the main thread; elsewhere (signals
    can only be handled there) this does nothing, and on_kill or the reaper remain."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        killed = kill_all(f"received {name}")
        earlier = previous[signal.Signals(signum)]
        if callable(earlier) and earlier is not signal.default_int_handler:
            earlier(signum, frame)  # e.g. Airflow's task runner, which calls the task's on_kill
        raise Aborted(f"stopped by {name}" + (f" (killed {', '.join(killed)})" if killed else ""), signum)

    for sig in SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)


def _marked() -> Iterator[tuple[psutil.Process, str]]:
    """Live processes of this user that carry an owner mark, with the mark."""
    for proc in psutil.process_iter(["pid", "uids", "status"]):
        try:
            if (
                proc.info["uids"] is None
                or proc.info["uids"].real != os.getuid()
                or proc.info["status"] == psutil.STATUS_ZOMBIE
            ):
                continue
            mark = proc.environ().get(OWNER_ENV)
        except psutil.Error:
            continue
        if mark:
            yield proc, mark


def started_by(pid: int) -> list[int]:
    """Pids of the live processes that harness process `pid` started (servers, their workers, Locust)."""
    return [proc.pid for proc, mark in _marked() if mark.partition(":")[0] == str(pid)]


def reap_orphans() -> list[int]:
    """Kill the process groups of marked processes whose owner is dead (it was SIGKILLed, or the machine's
    scheduler restarted); returns the group ids killed."""
    reaped = []
    for proc, mark in _marked():
        if _alive(mark):
            continue
        try:
            pgid = os.getpgid(proc.pid)
            if pgid in reaped or pgid == os.getpgrp():
                continue
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        reaped.append(pgid)
        log.warning("killed process group %d left behind by dead owner %s", pgid, mark)
    return reaped


def _alive(mark: str) -> bool:
    pid, _, created = mark.partition(":")
    try:
        return _started(int(pid)) == created
    except (OSError, psutil.Error, ValueError):
        return False
