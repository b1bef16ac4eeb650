"""Benchmark: Locust's ceiling from one load host and from two (servebench.lab: hosts as network namespaces).

The C++ server (microseconds per request) runs on the controller, pinned to one CPU; Locust workers on the
lab's load hosts send GETs to its health endpoint as fast as they can. With one load host, the figure is what
one Locust process can send; with two, what two can. Printed: the throughput, each worker's CPU (its mean over
the window, sent by the worker itself), the server's CPU, and the ratio two hosts / one host.

On a 2-core machine the hosts share its cores: load1 gets CPU 0, load2 and the server share CPU 1, so two
hosts cannot double the ceiling here; on separate machines each load host brings its own core(s). Needs root.

    .venv/bin/python benchmarks/load_hosts_ceiling.py [--users 20] [--duration 15] [--warmup 3]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import _options
from servebench.lab import CONTROLLER, Lab, why_unavailable
from servebench.measure import loadgen
from servebench.measure.sampler import ResourceSampler
from servebench.models.export import export_model
from servebench.servers import manifest
from servebench.servers.readiness import wait_ready
from servebench.servers.runner.local import LocalProcessRunner, free_port

PINS = {"load1": "0", "load2": "1"}  # the server gets CPU 1 too: see above


def main() -> None:
    args = _options.parse(_options.parser(__doc__))
    if why := why_unavailable():
        raise SystemExit(f"load_hosts_ceiling: {why}")
    export = export_model("lr")
    cpp = manifest.get("cpp")
    lab = Lab(f"sbb{os.getpid() % 10000}").up(2)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            server = LocalProcessRunner("1", CONTROLLER).start(cpp, export, 1, Path(tmp) / "server.log")
            try:
                wait_ready(server, cpp, export.meta)
                for hosts in (("load1",), ("load1", "load2")):
                    master = f"{CONTROLLER}:{free_port(CONTROLLER)}"
                    for host in hosts:
                        lab.load_worker(host, master, Path(tmp) / f"{host}.log", cpus=PINS[host])
                    spec = loadgen.LoadSpec(
                        server.base_url,
                        str(export.meta_path),
                        args.users,
                        float(args.users),
                        args.duration,
                        args.warmup,
                        probe_path=cpp.health_path,
                        load_hosts=hosts,
                        master_bind=CONTROLLER,
                        master_port=int(master.rpartition(":")[2]),
                    )
                    with ResourceSampler() as sampler:
                        sampler.track("server", server.probe())
                        load = loadgen.run(spec, Path(tmp) / "-".join(hosts))
                    late = lab.wait_all()
                    if late or load.invalid:
                        raise SystemExit(f"load_hosts_ceiling: {load.invalid or f'workers did not end: {late}'}")
                    cpu = [s.cpu_percent for s in sampler.series("server", load.window_start, load.window_end)]
                    rows.append((hosts, load.requests / load.window_s, load.workers, sum(cpu) / max(len(cpu), 1)))
            finally:
                server.stop()
    finally:
        lab.down()
    print(f"\n{'load hosts':<14}{'req/s':>10}{'server CPU %':>14}  workers (host: CPU %, requests)")
    for hosts, rps, workers, server_cpu in rows:
        shown = ", ".join(f"{w['host']}: {w['cpu_percent']}%, {w['requests']}" for w in workers)
        print(f"{len(hosts):<14}{rps:>10.0f}{server_cpu:>14.0f}  {shown}")
    print(f"\nceiling ratio, 2 load hosts / 1: {rows[1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
