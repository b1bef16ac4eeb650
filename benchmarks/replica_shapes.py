"""Benchmark: equal total CPUs, different shapes (the FastAPI vs TF Serving study's "more small nodes or fewer
big ones"), per framework: one replica of N CPUs against N replicas of one CPU, each shape behind the same
HAProxy balancer (runner/replicas.py), on the container backend. Printed per shape: throughput, p99, the
replicas' CPU, requests per busy core, and the balancer's own CPU.

On one 2-core machine the load generator shares the cores with the replicas, so treat the figures as the
method shown working; across machines, give the load to load hosts (--load-hosts, see README).

    .venv/bin/python benchmarks/replica_shapes.py [--frameworks fastapi,cpp] [--cpus 2] [--users 20] [--duration 15]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _options
from servebench.measure.trial import run_trial
from servebench.models.export import export_model
from servebench.results.records import Metric


def main() -> None:
    parser = _options.parser(__doc__)
    parser.add_argument("--frameworks", default="fastapi,cpp")
    parser.add_argument("--model", default="lr")
    parser.add_argument("--cpus", type=int, default=2, help="total CPUs of every shape")
    args = _options.parse(parser)
    shapes = [(n, args.cpus / n) for n in range(1, args.cpus + 1) if args.cpus % n == 0]
    print(
        f"\n{'framework':<12}{'shape':<14}{'rps':>8}{'p99 ms':>9}{'server cpu %':>14}{'rps/core':>10}{'lb cpu %':>10}"
    )
    with tempfile.TemporaryDirectory(prefix="servebench-bench-") as tmp:
        for framework in args.frameworks.split(","):
            for replicas, cpus in shapes:
                spec = _options.trial(args, framework, 1, replicas=replicas, cpus=cpus, backend="docker")
                result = run_trial(spec, export_model(args.model), Path(tmp) / spec.key)
                shape = f"{replicas} x {cpus:g} CPU"
                if not result.ok:
                    print(f"{framework:<12}{shape:<14} failed: {result.reason}")
                    continue
                m = result.metrics
                cpu = m.get(Metric.SERVER_CPU_AVG, float("nan"))
                print(
                    f"{framework:<12}{shape:<14}{m[Metric.RPS]:>8.0f}{m.get(Metric.LATENCY_P99, float('nan')):>9.2f}"
                    f"{cpu:>14.0f}{m[Metric.RPS] / (cpu / 100.0):>10.0f}{m.get(Metric.BALANCER_CPU_AVG, 0.0):>10.0f}"
                    f"  {','.join(result.flags)}"
                )


if __name__ == "__main__":
    main()
