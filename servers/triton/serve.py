"""NVIDIA Triton Inference Server through PyTriton, predicting with the shared core's Predictor.

Run as `python serve.py --host H --port P --workers N --workspace DIR [--max-queue-delay-us D]`.

PyTriton starts `tritonserver` (2.51, shipped in the wheel with its Python backend only) as a child and
binds a Python callable to the model "model": Triton parses the Open Inference Protocol request, checks
input names, datatypes, shapes and the batch size against the declared config, and hands the tensors to a
Python-backend stub process, which passes them over ZeroMQ to an inference thread in this process.
`--workers N` is Triton's instance count: N callables bound, so N stub processes and N inference threads
here (one GIL between them; ONNX Runtime releases it while it computes), each with its own ONNX Runtime
session. With `--max-queue-delay-us` Triton's dynamic batcher hands an instance several requests at once,
and their rows go through ONNX Runtime in one call.

Everything PyTriton writes goes in the workspace (tritonserver's copy, the model store, the sockets); the
model is loaded from that store when tritonserver starts, not through the load API, which would have
Triton write the model's files to /tmp/folderXXXXXX. Only HTTP is on, on the given host: gRPC and
metrics are off. SIGTERM (the harness signals the whole process group) stops tritonserver and its stubs
and removes the workspace (Lifecycle and _end_leftovers say how).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shutil
import signal
import sys
import sysconfig
import tempfile
import threading
import time

# The stub links libpython3.11.so and, through the default search path, may find another 3.11 than this
# interpreter's (Debian's /usr/lib next to pyenv's): tritonserver and its stubs inherit this environment.
_LIBDIR = sysconfig.get_config_var("LIBDIR") or ""
if _LIBDIR and os.path.exists(os.path.join(_LIBDIR, sysconfig.get_config_var("LDLIBRARY") or "")):
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [_LIBDIR, os.environ.get("LD_LIBRARY_PATH")]))

# PyTriton passes tensors between the stubs and this process either through a shared-memory store (a
# multiprocessing manager process, started by the first stub) or base64 in the ZeroMQ messages. Base64 is
# as fast or faster for these small tensors (lr, 1 row: ~300 vs ~250 requests/s here), and without the
# store's process the group's SIGTERM cannot kill it under the stubs while Triton unloads the model.
os.environ.setdefault("PYTRITON_NO_TENSORSTORE", "1")

import numpy as np  # noqa: E402
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # noqa: E402
from pytriton.proxy.types import Request  # noqa: E402
from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy  # noqa: E402
from pytriton.utils.workspace import Workspace  # noqa: E402
from servebench_model import MAX_BATCH_ROWS, BadRequest, Predictor, log  # noqa: E402

MODEL = "model"
OUTPUTS = ("label", "probabilities")  # the manifest's output_names: labels (a regressor's values), probabilities
ERROR = "__servebench_error__"  # a response carrying this answers its request alone with the error (see below)
STOP_TIMEOUT_S = 8.0  # past this a stop kills the process group (the harness SIGKILLs it at stop_grace_s)
SHM_PREFIX = "pytrtion"  # (sic) PyTriton's name for the Python backend's shared-memory regions: pytrtion<pid>-...

# Appended to PyTriton's proxy model.py in the workspace's model store (the file the stubs run). PyTriton
# answers an exception of the callable with one error for every request of the call: Triton's HTTP status
# 500 with a traceback, and under dynamic batching the well-formed requests batched with a bad one fail
# too. With this, a response dict holding ERROR ("<status> <message>") answers its request alone: a request
# the Predictor refuses with INVALID_ARG (HTTP 400), one the model fails on with INTERNAL (500).
PROXY_PATCH = f'''

# --- servebench (servers/triton/serve.py): answer a request that failed alone, with its own status ---
_pytriton_wrap_response = _wrap_response


def _wrap_response(response, requested_outputs_names, model_outputs_dict):
    if response.data is not None and "{ERROR}" in response.data:
        status, message = bytes(response.data["{ERROR}"].ravel()[0]).decode("utf-8", "replace").split(" ", 1)
        code = pb_utils.TritonError.INVALID_ARG if status.startswith("4") else pb_utils.TritonError.INTERNAL
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
    return _pytriton_wrap_response(response, requested_outputs_names, model_outputs_dict)
'''


def tensor_specs(predictor: Predictor) -> tuple[list[Tensor], list[Tensor]]:
    """Inputs and outputs as Triton declares them, per row (max_batch_size makes the batch dimension implicit)."""
    if predictor.named:
        inputs = [
            Tensor(name=c["name"], dtype=bytes if j in predictor.strings else np.float32, shape=(1,))
            for j, c in enumerate(predictor.columns)
        ]
    else:
        inputs = [Tensor(name="input", dtype=np.float32, shape=(predictor.n_features,))]
    outputs = []
    for name, (_, dtype, shape) in zip(OUTPUTS, predictor.output_spec(), strict=False):
        if dtype.kind in "OUS":  # string labels
            dtype = np.dtype(bytes)
        elif dtype.kind == "f":
            dtype = np.dtype(np.float32)
        outputs.append(Tensor(name=name, dtype=dtype.type, shape=shape))
    return inputs, outputs


class Instance:
    """One Triton model instance's callable: Triton's requests (several under dynamic batching) in, one
    response dict per request out. Each request is checked alone; the rows of those that pass go through
    ONNX Runtime in one call."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.strings = [c["name"] for j, c in enumerate(predictor.columns) if j in predictor.strings]

    def _feed(self, request: Request) -> np.ndarray | dict[str, np.ndarray]:
        tensors = dict(request.items())
        for name in self.strings:  # BYTES arrive as bytes objects; the graph takes str
            try:
                tensors[name] = np.array([v.decode() for v in tensors[name].ravel()], dtype=object).reshape(
                    tensors[name].shape
                )
            except UnicodeDecodeError:
                raise BadRequest(400, f"input {name!r} is not UTF-8") from None
        return self.predictor.feed_from_tensors(tensors)

    def __call__(self, requests: list[Request]) -> list[dict[str, np.ndarray]]:
        feeds: list[np.ndarray | dict[str, np.ndarray] | None] = []
        errors: dict[int, str] = {}
        for i, request in enumerate(requests):
            try:
                feeds.append(self._feed(request))
            except BadRequest as exc:
                feeds.append(None)
                errors[i] = f"{exc.status} {exc.message}"
        good = [i for i, f in enumerate(feeds) if f is not None]
        answers: dict[int, list[np.ndarray]] = {}
        if len(good) > 1:
            try:
                outputs = self.predictor.run(_concatenate([feeds[i] for i in good]))
                rows = np.cumsum([_rows(feeds[i]) for i in good])[:-1]
                parts = [np.split(output, rows) for output in outputs]
                answers = {i: [part[k] for part in parts] for k, i in enumerate(good)}
            except Exception:  # noqa: BLE001 - the model fails on some row (an unknown category): find whose, alone
                answers = {}
        for i in good:
            if i not in answers:
                try:
                    answers[i] = self.predictor.run(feeds[i])
                except Exception as exc:  # noqa: BLE001 - answered 500, alone, as the other servers would
                    log(f"the model failed on a request: {type(exc).__name__}: {exc}")
                    errors[i] = f"500 the model failed on this request: {type(exc).__name__}"
        return [
            {ERROR: np.array([errors[i].encode()])}
            if i in errors
            else {name: _as_output(output) for name, output in zip(OUTPUTS, answers[i], strict=False)}
            for i in range(len(requests))
        ]


def _rows(feed: np.ndarray | dict[str, np.ndarray]) -> int:
    return len(feed) if isinstance(feed, np.ndarray) else len(next(iter(feed.values())))


def _concatenate(feeds: list) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(feeds[0], np.ndarray):
        return np.concatenate(feeds)
    return {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}


def _as_output(array: np.ndarray) -> np.ndarray:
    """Labels and values as [rows, 1] (their declared per-row shape), strings as bytes (PyTriton's BYTES)."""
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.dtype == object or array.dtype.kind == "U":
        return np.char.encode(array.astype(str), "utf-8")
    return array.astype(np.float32, copy=False) if array.dtype.kind == "f" else array


def _pid_gone(pid: str) -> bool:
    return pid.isdigit() and not os.path.exists(f"/proc/{pid}")


def writable(parent: pathlib.Path) -> pathlib.Path:
    """`parent`, or the system's temporary folder where `parent` cannot be made: in the container image the
    venv ({env_dir}) is read-only to the server's non-root user, and the container's /tmp is its own."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if os.access(parent, os.W_OK):
            return parent
    except OSError:
        pass
    fallback = pathlib.Path(tempfile.gettempdir()) / "pytriton"
    log(f"{parent} is not writable: PyTriton's workspace goes to {fallback}")
    return fallback


def fresh_workspace(parent: pathlib.Path) -> pathlib.Path:
    """A workspace of this process's own under `parent`, after removing what servers no longer running
    left behind when they were killed: their workspaces and the Python backend's shared-memory regions
    (/dev/shm/pytrtion<pid>-..., 4 MiB per instance, named after the PyTriton process)."""
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob("ws-*"):
        if _pid_gone(old.name[3:]):
            shutil.rmtree(old, ignore_errors=True)
    for region in pathlib.Path("/dev/shm").glob(f"{SHM_PREFIX}*-*"):
        if _pid_gone(region.name[len(SHM_PREFIX) :].split("-", 1)[0]):
            region.unlink(missing_ok=True)
    # PyTriton's Unix sockets live in the workspace, and a socket's path holds at most 107 bytes: a clone in a
    # deep folder (a test session's) overflowed it. The workspace is reached through this process's working
    # directory instead, /proc/<pid>/cwd, the same folder under a short name, valid while this process lives
    # (it outlives tritonserver and its stubs: Lifecycle).
    os.chdir(parent)
    workspace = pathlib.Path(f"/proc/{os.getpid()}/cwd/ws-{os.getpid()}")
    longest = workspace / f"{MODEL}_0_99-server.sock"
    if len(str(longest)) > 100:  # Unix socket paths hold 107 bytes
        raise SystemExit(f"workspace path {workspace} is too long for the Unix sockets PyTriton puts in it")
    return workspace


class ShortWorkspace(Workspace):
    """PyTriton's Workspace, kept at the short path it is given: its own resolve() expands /proc/<pid>/cwd."""

    def __init__(self, path: pathlib.Path) -> None:
        super().__init__(path)
        self._workspace_path = path
        self.model_store_path = path / "model-store"


def _end_leftovers(workspace: pathlib.Path, grace_s: float = 1.0) -> None:
    """End what tritonserver started and left running. Its stubs notice its exit within a second or two,
    except one still loading the model (a stop during the start), which waits forever. They all run from the
    workspace's copy of Triton, so they are found by their command line, wherever they were reparented."""
    prefix = f"{workspace}/".encode()

    def running() -> list[int]:
        pids = []
        for entry in os.scandir("/proc"):
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:  # a zombie's is empty
                    if entry.name.isdigit() and f.read().startswith(prefix):
                        pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    deadline = time.monotonic() + grace_s
    while (pids := running()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        log(f"killed what tritonserver left running: pids {pids}")


def _remove_own(workspace: pathlib.Path) -> None:
    shutil.rmtree(workspace, ignore_errors=True)
    for region in pathlib.Path("/dev/shm").glob(f"{SHM_PREFIX}{os.getpid()}-*"):
        region.unlink(missing_ok=True)


class Stop(Exception):
    """SIGTERM or SIGINT arrived while starting."""


class Lifecycle:
    """Signals and the bound on stopping.

    While starting, SIGTERM or SIGINT interrupts the start (Stop); once serving, it only sets `stop`, which
    the main loop waits on, so the signal never lands inside PyTriton's or `sh`'s locks and the stop after it
    can take them. A watchdog bounds the stop: Triton waits for in-flight requests and tries to unload the
    model, which PyTriton's stubs do not finish (its exit timeout ends it); if all that has not ended in
    STOP_TIMEOUT_S, the watchdog removes the workspace and kills the process group (the harness starts the
    server as a group leader, and everything PyTriton starts stays in the group).
    """

    def __init__(self, workspace: pathlib.Path) -> None:
        self.workspace = workspace
        self.starting = True
        self.stop = threading.Event()
        self.stopping = threading.Event()
        threading.Thread(target=self._watchdog, daemon=True).start()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop.set()
        if self.starting:
            raise Stop(signal.Signals(signum).name)

    def stopping_now(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not interrupt the cleanup
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.stopping.set()

    def _watchdog(self) -> None:
        self.stopping.wait()
        time.sleep(STOP_TIMEOUT_S)
        log(f"not stopped in {STOP_TIMEOUT_S:.0f}s: killing the process group")
        _remove_own(self.workspace)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="Triton model instances (inference threads here)")
    parser.add_argument("--workspace", type=pathlib.Path, required=True, help="folder for PyTriton's workspaces")
    parser.add_argument(
        "--max-queue-delay-us", type=int, default=None, help="turn Triton's dynamic batcher on with this delay"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    workspace_path = fresh_workspace(writable(args.workspace))
    lifecycle = Lifecycle(workspace_path)
    triton = None
    try:
        instances = [Instance(Predictor.from_env()) for _ in range(args.workers)]
        inputs, outputs = tensor_specs(instances[0].predictor)
        batcher = None if args.max_queue_delay_us is None else DynamicBatcher(args.max_queue_delay_us)
        config = TritonConfig(
            http_address=args.host,
            http_port=args.port,
            allow_grpc=False,
            allow_metrics=False,
            exit_timeout_secs=2,  # how long a stop waits for in-flight requests and the model's unload
            log_verbose=0,
        )
        workspace = ShortWorkspace(workspace_path)
        triton = Triton(
            config=config,
            workspace=workspace,
            # the model goes into the workspace's model store and tritonserver loads it from there at start
            triton_lifecycle_policy=TritonLifecyclePolicy(launch_triton_on_startup=True, local_model_store=True),
        )
        triton.bind(
            MODEL,
            instances,
            inputs=inputs,
            outputs=outputs,
            config=ModelConfig(batching=True, max_batch_size=MAX_BATCH_ROWS, batcher=batcher),
        )
        proxy = workspace.model_store_path / MODEL / "1" / "model.py"
        source = proxy.read_text()
        if "\ndef _wrap_response(" not in source:  # a PyTriton other than 0.7.0: the patch would not apply
            raise SystemExit(f"{proxy}: PyTriton's proxy has no _wrap_response to extend")
        proxy.write_text(source + PROXY_PATCH)
        triton.run()  # starts tritonserver, waits for the model and connects the inference threads to its stubs
        lifecycle.starting = False
        if lifecycle.stop.is_set():  # a signal just as the start ended
            raise Stop("signal")
        batching = "off" if batcher is None else f"max queue delay {args.max_queue_delay_us} us"
        log(
            f"triton ready on {args.host}:{args.port} with {args.workers} instance(s), dynamic batching {batching}, "
            f"in {time.perf_counter() - started:.1f}s"
        )
        while not lifecycle.stop.wait(1.0):
            if not triton.is_alive():
                log("tritonserver or an inference thread ended")
                return 1
        log("stopping triton")
        return 0
    except Stop as stop:
        log(f"{stop} while starting: stopping triton")
        return 0
    finally:
        lifecycle.stopping_now()
        t0 = time.perf_counter()
        if triton is not None:
            triton.stop()  # SIGINT to tritonserver, waits for it; then the inference threads and the workspace
        _end_leftovers(workspace_path)
        _remove_own(workspace_path)
        log(f"stopped in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
