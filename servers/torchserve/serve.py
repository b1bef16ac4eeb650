"""Start TorchServe's Java frontend on one prepared model store, every file it writes kept in a run folder.

usage: serve.py --host H --port P --workers N --model-store DIR --run-root DIR [--max-body-bytes B]

Instead of the `torchserve` command, which writes its pid file to the system's temp folder (and refuses to
start while that names a live server), spawns java and returns unless told --foreground, this writes a
config.properties for the given address and execs the JVM itself, so the harness's process is the server
and stopping its process group stops the frontend and its Python workers.

Ports: inference on H:P; management, metrics, gRPC inference and management (TorchServe 0.12 cannot turn
gRPC off) on free ports of 127.0.0.1, picked at start.

The run folder RUN_ROOT/P, emptied at each start, is the JVM's working and temp folder: the workers' Unix
sockets (named by worker port, 9000 up, so two servers sharing one folder would collide) and the extracted
.mar; LOG_LOCATION and METRICS_LOCATION point there too. TorchServe names a socket java.io.tmpdir + "/.ts.sock.
9000", and a Unix socket's path must fit in 107 bytes, which a deep servebench home (a pytest tmp folder)
exceeds: java.io.tmpdir is /proc/<pid>/cwd, the JVM's own short name for its working folder, which its
workers (children, same user) resolve too. The pid is this process's: exec keeps it. The JVM holds a lock on
its run folder, so a later start removes the folders of servers that are gone.
"""

import argparse
import fcntl
import importlib.util
import os
import shutil
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCK = ".serve.lock"


def free_loopback_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, for the APIs servebench does not use (management, metrics, two gRPC):
    port+1..+4 collided with servers started beside this one."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def config(args: argparse.Namespace) -> str:
    """TorchServe's settings for one server (docs/configuration.md of TorchServe 0.12)."""
    management, metrics, grpc_inference, grpc_management = free_loopback_ports(4)
    settings = {
        "inference_address": f"http://{args.host}:{args.port}",
        # Everything but inference stays on loopback, also in a container (where H is 0.0.0.0): the harness
        # needs none of it, and token auth, which guards the management API, is off.
        "management_address": f"http://127.0.0.1:{management}",
        "metrics_address": f"http://127.0.0.1:{metrics}",
        "grpc_inference_address": "127.0.0.1",
        "grpc_inference_port": grpc_inference,
        "grpc_management_address": "127.0.0.1",
        "grpc_management_port": grpc_management,
        # Off as on the other servers (no keys to hand out, no key_file.json written): acceptable only
        # because the harness runs servers on 127.0.0.1 and the management API never leaves loopback.
        "disable_token_authorization": "true",
        "model_store": args.model_store,
        "load_models": "model.mar",
        "default_workers_per_model": args.workers,
        # The handler parses the raw body with the core's orjson, not the worker's json.loads first.
        "decode_input_request": "false",
        # Bodies over the harness's limit are refused by the frontend (413) before any worker sees them.
        "max_request_size": args.max_body_bytes,
        # No collector process every minute writing host metrics into logs: the harness samples the server.
        "disable_system_metrics": "true",
        "install_py_dep_per_model": "false",
        "number_of_gpu": 0,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def hold(path: Path) -> None:
    """Lock `path` for as long as the server lives: the descriptor stays open across exec, in the JVM."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.set_inheritable(fd, True)


def remove_stale(root: Path) -> None:
    """Run folders of servers gone (each start takes a new port), e.g. an extracted .mar left by a SIGKILL."""
    for folder in root.glob("*/"):
        try:
            fd = os.open(folder / LOCK, os.O_RDWR)
        except FileNotFoundError:
            continue  # being set up by a server starting now
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its server runs
        else:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--model-store", required=True)
    parser.add_argument("--run-root", required=True)
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20)
    args = parser.parse_args()

    root = Path(args.run_root).resolve()
    run = root / str(args.port)
    remove_stale(root)
    shutil.rmtree(run, ignore_errors=True)
    logs = run / "logs"
    logs.mkdir(parents=True)
    hold(run / LOCK)
    (run / "config.properties").write_text(config(args))
    os.environ.update(LOG_LOCATION=str(logs), METRICS_LOCATION=str(logs), TMPDIR=str(run), TEMP=str(run))

    # TorchServe's home is the folder holding the `ts` package (the frontend's jars and the worker script);
    # found without importing it, which would import torch.
    ts_home = Path(importlib.util.find_spec("ts").origin).parent.parent
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    argv = [
        java,
        f"-Dmodel_server_home={ts_home}",
        f"-Djava.io.tmpdir=/proc/{os.getpid()}/cwd",  # the run folder, in few bytes (see the docstring)
        f"-Dlog4j.configurationFile=file://{HERE / 'log4j2.xml'}",
        # A bounded heap, as TorchServe's own benchmark config sets one: by default the JVM may take a quarter of
        # the host's memory and keeps what it grew to (RSS +35-100 MB per 200 oversized requests, still
        # growing); with 256 MB it levels off (+13, +5, +3 MB), the queue (100 jobs) of 1 MiB bodies fits
        # twice, and no change in throughput showed (h2load, lr). A JVM out of memory exits, not limps on.
        "-Xmx256m", "-XX:+ExitOnOutOfMemoryError",
        "-XX:-UsePerfData",  # else the JVM keeps a file in /tmp/hsperfdata_<user>, whatever java.io.tmpdir says
        "-cp", f"{ts_home / 'ts' / 'frontend'}/*",
        "org.pytorch.serve.ModelServer",
        "--python", sys.executable,
        "-f", str(run / "config.properties"),
        "--no-config-snapshot",  # no config/ snapshots of the settings under LOG_LOCATION
    ]  # fmt: skip
    os.chdir(run)  # also where key_file.json would go, were token auth on
    os.execvp(java, argv)


if __name__ == "__main__":
    main()
