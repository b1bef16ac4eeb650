"""Benchmark: the load generator's ceiling on this machine, and how close each server's figure is to it.

A framework measured at 95% of what the load generator can send at all is measured by the load
generator. This sends GETs to the health endpoint of the fastest server (the C++ one: microseconds per
request) with 1 and 2 Locust processes, as fast as they go: that throughput, and the load generator's
CPU, give its ceiling (rps, and rps per core). Then each framework's /predict throughput (closed loop,
one Locust process, one worker) is printed as a fraction of the one-process ceiling.

    .venv/bin/python benchmarks/loadgen_ceiling.py [--frameworks cpp,fastapi,flask] [--users 20] [--duration 15]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _options
from servebench.config.spec import TrialSpec
from servebench.measure import loadgen
from servebench.measure.sampler import ResourceSampler
from servebench.measure.trial import run_trial
from servebench.models.export import export_model
from servebench.servers import manifest
from servebench.servers.probes import ProcessTreeProbe
from servebench.servers.readiness import wait_ready
from servebench.servers.runner.local import LocalProcessRunner


def ceiling(processes: int, args, out: Path) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(rps, load generator CPU %) of health GETs against the C++ server."""
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
    args = _options.parse(parser)
    with tempfile.TemporaryDirectory(prefix="servebench-bench-") as tmp:
        print(f"{'load generator':22} {'rps':>8} {'cpu %':>6} {'rps/core':>9}")
        ceilings = {}
        for processes in (1, 2):
            rps, cpu = ceiling(processes, args, Path(tmp) / f"ceiling-{processes}")
            ceilings[processes] = rps
            print(f"{f'{processes} process(es), GET /health':22} {rps:8.0f} {cpu:6.0f} {rps / (cpu / 100.0):9.0f}")
        print(f"\n{'framework (lr, w1)':22} {'rps':>8} {'of ceiling':>10}  flags")
        for framework in args.frameworks.split(","):
            spec = TrialSpec.of(
                "lr",
                framework,
                1,
                args.users,
                spawn_rate=float(args.users),
                duration=args.duration,
                warmup=args.warmup,
                repeats=1,
            )
            result = run_trial(spec, export_model("lr"), Path(tmp) / spec.key)
            if not result.ok:
                print(f"{framework:22} failed: {result.reason}")
                continue
            rps = result.metrics["rps"]
            print(f"{framework:22} {rps:8.0f} {rps / ceilings[1]:10.2f}  {','.join(result.flags)}")


if __name__ == "__main__":
    main()
