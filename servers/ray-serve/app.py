"""Ray Serve adapter of the servebench contract: one deployment of N replicas behind Ray's HTTP proxy.

Run as `python app.py --host H --port P --workers N`. This process is the Ray driver: it starts a private
single-node Ray instance (GCS, raylet, agents, Serve controller, HTTP proxy, N replica actors), deploys the
FastAPI ingress below and waits for SIGTERM. Each replica loads the model once through the shared Predictor.

Stopping: the harness signals the whole process group. Ray by default moves each worker process into a
process group of its own, which would escape that; `RAY_process_group_cleanup_enabled=0` keeps every Ray
process (10 + N of them) in the driver's group, and the driver answers SIGTERM with ray.shutdown(), which
ends the rest in ~4 s. A watchdog thread kills the group if that has not happened in time (a SIGTERM while
ray.init waits on a GCS that the same signal stopped would otherwise hang for a minute).
"""

import os
import secrets
import shutil
import tempfile

# Ray reads these when it is imported or starts its processes, which inherit them.
os.environ["RAY_process_group_cleanup_enabled"] = "0"  # noqa: SIM112 - Ray spells it so; workers stay in our group
os.environ.setdefault("RAY_worker_niceness", "0")  # Ray runs workers at nice 15: replicas would yield to anything
# On SIGTERM the driver would wait ~5 s to flush task events to a GCS the same signal already stopped.
os.environ.setdefault("RAY_task_events_shutdown_flush_timeout_ms", "500")
# A SIGTERM during ray.init reaches Ray's own handler, which would first "drain" the node for up to 30 s.
os.environ.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
# Ray Serve's documented throughput switch (gRPC from proxy to replica, user code on the replica's loop,
# buffered request logs): ~7.2 ms instead of ~8-10 ms of CPU per request here, and a lower p99.
os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report (and no network attempt)
os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # plain "(ServeReplica pid=...)" prefixes in the log
# Token auth as Ray's default, but with a per-run token in the environment, not saved to ~/.ray/auth_token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

import argparse
import signal
import sys
import threading
import time

import orjson
import ray
import ray._private.services
import ray.serve._private.replica
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from ray.serve.schema import LoggingConfig
from servebench_model import BadRequest, Predictor, log, read_limited_async
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

# As in servers/fastapi/app.py: light models predict on the replica's event loop, heavy ones in a thread.
INLINE_BELOW_US = float(os.environ.get("SERVEBENCH_INLINE_BELOW_US", 200))
# Ray's default of 5 requests in flight per replica makes its router queue and poll the rest with backoff:
# under 50 users that collapsed throughput. Uvicorn takes every request onto its event loop; so do replicas here.
MAX_ONGOING_REQUESTS = int(os.environ.get("SERVEBENCH_RAY_MAX_ONGOING_REQUESTS", 1000))
READY_FILE = "SERVEBENCH_RAY_READY_FILE"  # created by the driver once all N replicas are up
JSON = "application/json"
STOP_DEADLINE_S = 12.0  # ray.shutdown() takes ~4 s: past this, the watchdog kills the process group
STARTING_STOP_DEADLINE_S = 3.0  # a stop inside ray.init: nothing to shut down in order, only to kill
app = FastAPI(title="servebench ray-serve", docs_url=None, redoc_url=None)


def _replica_grpc_on_loopback() -> None:
    """A replica's gRPC server (the proxy's way in under RAY_SERVE_THROUGHPUT_OPTIMIZED) binds every
    interface ("[::]:0" in Ray Serve's replica.py); run in the replica before it starts, it binds loopback."""
    add_port = ray.serve._private.replica.add_port_to_grpc_server
    ray.serve._private.replica.add_port_to_grpc_server = lambda server, address: add_port(
        server, address.replace("[::]", "127.0.0.1", 1)
    )


@app.exception_handler(HTTPException)
async def http_error(request: Request, exc: HTTPException) -> Response:
    """Errors as {"error": ...}, like every other answer (FastAPI's default says "detail")."""
    error = BadRequest(exc.status_code, str(exc.detail))
    return Response(error.body(), status_code=error.status, media_type=JSON)


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=MAX_ONGOING_REQUESTS)
@serve.ingress(app)
class Model:
    def __init__(self) -> None:
        _replica_grpc_on_loopback()
        self.predictor = Predictor.from_env()
        self.mode = os.environ.get("SERVEBENCH_INFERENCE") or (
            "inline" if self.predictor.latency_us < INLINE_BELOW_US else "threadpool"
        )
        self.ready_file = os.environ.get(READY_FILE)
        log(f"{self.mode} inference")

    @app.get("/health")
    async def health(self) -> Response:
        # Healthy only once every replica is: the proxy routes to the first one while the others still start.
        if self.ready_file and not os.path.exists(self.ready_file):
            return Response(BadRequest(503, "replicas still starting").body(), status_code=503, media_type=JSON)
        self.ready_file = None
        body = {"status": "ok", "model": self.predictor.name, "inference": self.mode}
        return Response(orjson.dumps(body), media_type=JSON)

    @app.post("/predict")
    async def predict(self, request: Request) -> Response:
        try:
            length = request.headers.get("content-length")
            self.predictor.check_length(int(length) if length and length.isdigit() else None)
            # a body without a length (chunked) is counted as it arrives; one with a length is bounded by it
            X = self.predictor.parse(await request.body() if length else await read_limited_async(request.stream()))
        except BadRequest as exc:
            return Response(exc.body(), status_code=exc.status, media_type=JSON)
        if self.mode == "inline":
            body = self.predictor.predict(X)
        else:
            body = await run_in_threadpool(self.predictor.predict, X)
        return Response(body, media_type=JSON)


class Stop(Exception):
    """SIGTERM or SIGINT arrived."""


def _stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def _watchdog(wakeup_fd: int, ray_up: threading.Event, temp_dir: str) -> None:
    """Bound the stop: kill the process group if the orderly shutdown has not ended in time.

    Python runs signal handlers only between bytecodes, and ray.init can sit for a minute in a blocking call
    (waiting for a GCS that the same SIGTERM stopped); this thread learns of the signal from the wakeup fd
    at once, whatever the main thread is doing.
    """
    while os.read(wakeup_fd, 1)[0] not in (signal.SIGTERM, signal.SIGINT):
        pass  # another signal with a Python handler
    time.sleep(STOP_DEADLINE_S if ray_up.is_set() else STARTING_STOP_DEADLINE_S)
    log("ray did not stop in time: killing the process group")
    shutil.rmtree(temp_dir, ignore_errors=True)
    if os.getpgrp() == os.getpid():  # as the harness starts it: every Ray process is in our group
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(1)  # run by hand: Ray's fate sharing ends the processes this one started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="replicas of the deployment")
    args = parser.parse_args()
    started = time.perf_counter()
    # Ray's session folder holds Unix sockets (path limit 107 bytes): a short private folder, removed at exit.
    temp_dir = tempfile.mkdtemp(prefix="servebench-ray-")
    os.environ[READY_FILE] = os.path.join(temp_dir, "servebench-ready")
    ray_up = threading.Event()
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)
    threading.Thread(target=_watchdog, args=(wakeup_read, ray_up, temp_dir), daemon=True).start()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Ray swaps a loopback node address for the machine's network address, and then its GCS, raylet, agents
    # and workers listen on every interface. Kept on loopback, they listen on 127.0.0.1 (this is one node).
    ray._private.services.resolve_ip_for_localhost = lambda host: host
    try:
        ray.init(
            num_cpus=args.workers,  # one logical CPU per replica; controller and proxy take none
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            _temp_dir=temp_dir,
            object_store_memory=80 << 20,  # requests and answers never go through the object store
            logging_level="WARNING",
            log_to_driver=True,  # replicas' stderr (model load, errors) reaches the server log
        )
        # ray.init installs Ray's own SIGTERM handlers (they exit at once, skipping the cleanup): take it back.
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        ray_up.set()
        quiet = LoggingConfig(enable_access_log=False, log_level="WARNING")
        serve.start(http_options={"host": args.host, "port": args.port}, logging_config=quiet)
        serve.run(
            Model.options(num_replicas=args.workers).bind(), name="servebench", route_prefix="/", logging_config=quiet
        )
        open(os.environ[READY_FILE], "w").close()
        log(f"ray serve ready with {args.workers} replica(s) in {time.perf_counter() - started:.1f}s")
        while True:
            signal.pause()
    except (Stop, SystemExit) as stop:  # SystemExit: Ray's own SIGTERM handler, in place during ray.init
        log(f"{stop!r}: shutting down ray")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not interrupt the cleanup
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        t0 = time.perf_counter()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        log(f"ray shut down in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
