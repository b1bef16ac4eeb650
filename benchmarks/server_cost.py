"""Benchmark: what each shipped server costs per request, from one run on this machine.

Server CPU time per request (all the server's processes, over the measured window) does not depend on
how fast the load generator is, so it compares frameworks fairly even when Locust is the bottleneck.
Prints one row per framework (and worker count) for the same model and load.

    .venv/bin/python benchmarks/server_cost.py [--model lr] [--workers 1] [--users 20] [--duration 20]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _options
from servebench.base import paths
from servebench.measure.trial import run_trial
from servebench.models.export import export_model
from servebench.servers import manifest

# Targets for `lr` with one worker (issue 4): server CPU µs per request, and resident MB where one is set.
TARGETS: dict[str, tuple[float, float | None]] = {
    "cpp": (40, 30),
    "cpp-crow": (40, 30),
    "fastapi": (200, None),
    "flask": (600, None),
}


def verdict(framework: str, model: str, workers: int, cpu_us: float, rss_mb: float) -> str:
    if model != "lr" or workers != 1 or framework not in TARGETS:
        return ""
    max_us, max_mb = TARGETS[framework]
    target = f"≤{max_us:.0f} µs" + (f", ≤{max_mb:.0f} MB" if max_mb else "")
    met = cpu_us <= max_us and (max_mb is None or rss_mb <= max_mb)
    return f"{'met' if met else 'MISSED'} ({target})"


def main() -> None:
    parser = _options.parser(__doc__, duration=20.0)
    shipped = sorted(manifest.discover_in(paths.REPO_ROOT / "servers"))
    parser.add_argument("--frameworks", default=",".join(shipped))
    parser.add_argument("--model", default="lr")
    parser.add_argument("--workers", default="1", help="comma list of worker counts")
    args = _options.parse(parser)
    print(f"model {args.model}")
    print(
        f"{'framework':18} {'workers':>7} {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu µs/req':>10} {'cpu %':>6} "
        f"{'rss MB':>7}  {'target':24} flags"
    )
    with tempfile.TemporaryDirectory(prefix="servebench-bench-") as tmp:
        for framework in args.frameworks.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                spec = _options.trial(args, framework, workers)
                result = run_trial(spec, export_model(args.model), Path(tmp) / spec.key)
                m = result.metrics
                if not result.ok:
                    print(f"{framework:18} {workers:7d}  failed: {result.reason}")
                    continue
                print(
                    f"{framework:18} {workers:7d} {m['rps']:7.0f} {m['latency_ms_p50']:7.2f} "
                    f"{m.get('latency_ms_p99', float('nan')):7.2f} {m['server_cpu_us_per_request']:10.0f} "
                    f"{m['server_cpu_percent_avg']:6.0f} {m['server_rss_mb_max']:7.0f}  "
                    f"{verdict(framework, args.model, workers, m['server_cpu_us_per_request'], m['server_rss_mb_max']):24} "
                    f"{','.join(result.flags)}"
                )


if __name__ == "__main__":
    main()
