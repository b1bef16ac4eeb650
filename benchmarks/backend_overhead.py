"""Benchmark: what running a server in a container costs, against the same server as a local process.

Runs each framework on both backends back to back (same model, workers and load; the container with no
limits unless --cpuset is given) and prints rps, p50 latency and server CPU per request on each, and the
container / local ratios. CPU per request is the fair figure when Locust saturates (it is flagged).
Needs a Docker-compatible engine at DOCKER_HOST (scripts/container-engine.sh starts one).

    .venv/bin/python benchmarks/backend_overhead.py [--frameworks fastapi,cpp] [--model lr] [--cpuset 1]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _options
from servebench.measure.trial import run_trial
from servebench.models.export import export_model

FIGURES = (
    ("rps", "rps", "{:.0f}"),
    ("latency_ms_p50", "p50 ms", "{:.2f}"),
    ("server_cpu_us_per_request", "cpu µs/req", "{:.0f}"),
)


def main() -> None:
    parser = _options.parser(__doc__)
    parser.add_argument("--frameworks", default="fastapi,cpp")
    parser.add_argument("--model", default="lr")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpuset", default=None, help="CPUs of the container (default: no limit, as local)")
    args = _options.parse(parser)
    print(f"model {args.model}, {args.workers} worker(s), container cpuset {args.cpuset or 'all'}")
    header = "".join(
        f"{label + ' ' + backend:>18}" for _, label, _ in FIGURES for backend in ("local", "docker", "ratio")
    )
    print(f"{'framework':12}{header}  flags")
    with tempfile.TemporaryDirectory(prefix="servebench-bench-") as tmp:
        for framework in args.frameworks.split(","):
            results = {}
            for backend in ("local", "docker"):
                spec = _options.trial(
                    args, framework, args.workers, backend=backend, cpuset=args.cpuset if backend == "docker" else None
                )
                results[backend] = run_trial(spec, export_model(args.model), Path(tmp) / spec.key)
            failed = [f"{b}: {r.reason}" for b, r in results.items() if not r.ok]
            if failed:
                print(f"{framework:12} failed: {'; '.join(failed)}")
                continue
            local, docker = results["local"].metrics, results["docker"].metrics
            cells = ""
            for key, _, fmt in FIGURES:
                cells += f"{fmt.format(local[key]):>18}{fmt.format(docker[key]):>18}{docker[key] / local[key]:>18.2f}"
            flags = {f"{b}:{flag}" for b, r in results.items() for flag in r.flags}
            print(f"{framework:12}{cells}  {','.join(sorted(flags))}")


if __name__ == "__main__":
    main()
