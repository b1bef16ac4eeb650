"""Benchmark: each load engine's ceiling on this machine, and how close each server's figure comes to it.

A server measured at 95% of what the load generator can send at all is measured by the load generator. This
sends GETs to the health endpoint of the fastest server (the C++ one: microseconds per request), as fast as
each engine goes (Locust with 1 and 2 processes, h2load), and prints the throughput, the engine's CPU and the
throughput per engine core: that is each engine's ceiling. Then each framework's /predict (lr, one worker,
closed loop) is measured by both engines, and printed with the ratio h2load / Locust: near 1, Locust was fast
enough for that server; far above 1, Locust's figure was its own ceiling, not the server's.

    .venv/bin/python benchmarks/loadgen_ceiling.py [--frameworks cpp,fastapi,flask] [--model lr|mlp] [--cpu-split 1:0]
        [--users 20] [--duration 15]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _options
from servebench.measure import loadgen
from servebench.measure.sampler import ResourceSampler
from servebench.measure.trial import run_trial
from servebench.models.export import export_model
from servebench.results.records import Metric
from servebench.servers import manifest
from servebench.servers.probes import ProcessTreeProbe
from servebench.servers.readiness import wait_ready
from servebench.servers.runner.local import LocalProcessRunner

ENGINES = (("locust", 1), ("locust", 2), ("h2load", 1))


def ceiling(engine: str, processes: int, args, out: Path) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(rps, the engine's CPU %) of health GETs against the C++ server."""
    export = export_model("lr")
    cpp = manifest.get("cpp")
    server = LocalProcessRunner().start(cpp, export, 1, out / "server.log")
    try:
        wait_ready(server, cpp, export.meta)
        spec = loadgen.LoadSpec(
            server.base_url,
            str(export.meta_path),
            args.users,
            float(args.users),
            args.duration,
            args.warmup,
            processes=processes,
            probe_path=cpp.health_path,
            engine=engine,
        )
        with ResourceSampler() as sampler:
            load = loadgen.run(spec, out, on_started=lambda pid: sampler.track("loadgen", ProcessTreeProbe(pid)))
    finally:
        server.stop()
    cpu = [s.cpu_percent for s in sampler.series("loadgen", load.window_start, load.window_end)]
    return load.requests / load.window_s, sum(cpu) / len(cpu) if cpu else float("nan")


def main() -> None:
    parser = _options.parser(__doc__)
    parser.add_argument("--frameworks", default="cpp,fastapi,flask")
    parser.add_argument("--model", default="lr", help="lr, or mlp: a server slower than Locust's ceiling")
    parser.add_argument(
        "--cpu-split", default="auto", help="server:loadgen CPUs (e.g. 1:0): neither engine takes the server's core"
    )
    args = _options.parse(parser)
    with tempfile.TemporaryDirectory(prefix="servebench-bench-") as tmp:
        print(f"{'engine, GET /health of cpp':30} {'rps':>8} {'cpu %':>6} {'rps/core':>9}")
        ceilings = {}
        for engine, processes in ENGINES:
            rps, cpu = ceiling(engine, processes, args, Path(tmp) / f"ceiling-{engine}-{processes}")
            ceilings[engine, processes] = rps
            name = f"{engine}, {processes} process(es)" if engine == "locust" else engine
            per_core = f"{rps / (cpu / 100.0):9.0f}" if cpu > 0 else f"{'-':>9}"  # too short a run to sample it
            print(f"{name:30} {rps:8.0f} {cpu:6.0f} {per_core}")
        print(f"ceiling ratio h2load / locust (1 process): {ceilings['h2load', 1] / ceilings['locust', 1]:.1f}")
        print(
            f"\n{f'framework ({args.model}, w1), /predict':30} {'locust':>8} {'h2load':>8} {'ratio':>6}  "
            "server CPU µs/request at that rps (locust; h2load)  flags (locust; h2load)"
        )
        for framework in args.frameworks.split(","):
            figures, flags, costs = {}, {}, {}
            for engine in ("locust", "h2load"):
                spec = _options.trial(args, framework, 1, loadgen=engine, cpu_split=args.cpu_split)
                result = run_trial(spec, export_model(args.model), Path(tmp) / spec.key)
                if not result.ok:
                    print(f"{framework:30} {engine} failed: {result.reason}")
                    break
                m = result.metrics
                figures[engine], flags[engine] = m[Metric.RPS], ",".join(result.flags) or "-"
                costs[engine] = f"{m.get(Metric.CPU_US_PER_REQUEST, float('nan')):.0f} at {m[Metric.RPS]:.0f}"
            else:
                ratio = figures["h2load"] / figures["locust"]
                print(
                    f"{framework:30} {figures['locust']:8.0f} {figures['h2load']:8.0f} {ratio:6.1f}  "
                    f"{costs['locust']}; {costs['h2load']}  {flags['locust']}; {flags['h2load']}"
                )
                if Metric.MAX_RPS_PER_CORE in m:
                    print(
                        f"{'':30} h2load at saturation: {m[Metric.MAX_RPS]:.0f} rps, "
                        f"{m[Metric.MAX_RPS_PER_CORE]:.0f} per core, {m[Metric.CPU_US_AT_MAX]:.0f} µs CPU/request"
                    )


if __name__ == "__main__":
    main()
