"""Benchmark: FastAPI with inference inline on the event loop vs in the thread pool, for each model.

The FastAPI server picks the mode at start-up from the model's median prediction time (inline below
1 ms). This measures both modes on this machine, same load, one after another, and prints throughput,
latency and the thread-pool/inline ratio, so the rule rests on figures rather than on belief.

    .venv/bin/python benchmarks/fastapi_inference_mode.py [--duration 15] [--warmup 3] [--users 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _options
from servebench.measure import latency, loadgen
from servebench.models.export import export_model
from servebench.servers import manifest
from servebench.servers.readiness import wait_ready
from servebench.servers.runner.local import LocalProcessRunner

MODES = ("inline", "threadpool")


def measure(model: str, mode: str, args: argparse.Namespace, out: Path) -> dict[str, float]:
    base = manifest.get("fastapi")
    forced = base.model_copy(update={"env": {**base.env, "SERVEBENCH_INFERENCE": mode}})
    export = export_model(model)
    server = LocalProcessRunner().start(forced, export, args.workers, out / "server.log")
    try:
        wait_ready(server, forced, export.meta)
        spec = loadgen.LoadSpec(
            server.base_url, str(export.meta_path), args.users, args.users, args.duration, args.warmup
        )
        load = loadgen.run(spec, out)
    finally:
        server.stop()
    figures, _ = latency.figures_ms(load.histogram)
    return {"rps": load.requests / load.window_s, "errors": float(load.failures), **figures}


def main() -> None:
    parser = _options.parser(__doc__)
    parser.add_argument("--models", default="lr,mlp")
    parser.add_argument("--workers", type=int, default=1)
    args = _options.parse(parser)
    print(f"fastapi, {args.workers} worker(s)")
    print(f"{'model':6} {'mode':11} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    with tempfile.TemporaryDirectory(prefix="servebench-bench-") as tmp:
        for model in args.models.split(","):
            results = {}
            for mode in MODES:
                results[mode] = r = measure(model, mode, args, Path(tmp) / f"{model}-{mode}")
                p99 = f"{r['latency_ms_p99']:8.2f}" if "latency_ms_p99" in r else f"{'n/a':>8}"
                print(
                    f"{model:6} {mode:11} {r['rps']:8.0f} {r.get('latency_ms_p50', float('nan')):8.2f} {p99} {r['errors']:7.0f}"
                )
            ratio = (
                results["threadpool"]["rps"] / results["inline"]["rps"] if results["inline"]["rps"] else float("nan")
            )
            print(f"{model:6} threadpool/inline throughput ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
