"""Benchmark: how much of a request's server CPU is the framework, not the model, for lr, mlp and gbdt.

    .venv/bin/python benchmarks/framework_overhead.py [--models lr,mlp,gbdt] [--frameworks fastapi,cpp]
                                                      [--rate 150] [--duration 15]

Each (model, framework) is loaded at the same open-loop rate, so every figure is quoted at one load (CPU per
request differs several-fold between light and saturating load). For each:
- `cpu µs/req`: the server's CPU time over the measured window, all its processes, per request;
- `predict µs`: the median in-process inference time the server measured itself at warm-up (Python servers:
  ONNX Runtime's run and the JSON answer; the C++ server: parse, Eigen forward pass and answer, no HTTP);
- `overhead %` = (cpu µs/req - predict µs) / cpu µs/req: what the serving stack adds, as a share of the total.
A framework that cannot serve a model (the C++ server and a tree ensemble) prints the reason instead.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import _options
from servebench.measure.trial import run_trial
from servebench.models.export import export_model

PREDICT_LOG = re.compile(r"median predict (\d+(?:\.\d+)?) ?us")


def predict_us(server_log: Path) -> float | None:
    """The median in-process predict time a server logged at warm-up (the first worker's)."""
    found = PREDICT_LOG.search(server_log.read_text(errors="replace")) if server_log.exists() else None
    return float(found.group(1)) if found else None


def main() -> None:
    parser = _options.parser(__doc__, users=8, duration=15.0)
    parser.add_argument("--models", default="lr,mlp,gbdt")
    parser.add_argument("--frameworks", default="fastapi,cpp")
    parser.add_argument("--rate", type=float, default=150.0, help="open-loop requests per second, for every row")
    args = _options.parse(parser)
    print(f"every row at an open-loop {args.rate:g} req/s (Poisson arrivals), one worker")
    print(
        f"{'model':6} {'framework':10} {'held rps':>8} {'cpu µs/req':>10} {'predict µs':>10} {'overhead %':>10}  notes"
    )
    with tempfile.TemporaryDirectory(prefix="servebench-bench-") as tmp:
        for model in args.models.split(","):
            export = export_model(model)
            for framework in args.frameworks.split(","):
                args.model = model
                spec = _options.trial(args, framework, 1, load="open", rate=args.rate)
                result = run_trial(spec, export, Path(tmp) / spec.key)
                if result.status == "skipped":
                    print(f"{model:6} {framework:10} {'':>8} {'':>10} {'':>10} {'':>10}  skipped: {result.reason}")
                    continue
                if not result.ok:
                    print(f"{model:6} {framework:10} failed: {result.reason}")
                    continue
                cpu = result.metrics["server_cpu_us_per_request"]
                inside = predict_us(result.out_dir / "server.log")
                share = f"{100 * (cpu - inside) / cpu:10.0f}" if inside is not None and cpu else f"{'-':>10}"
                shown = f"{inside:10.0f}" if inside is not None else f"{'-':>10}"
                print(
                    f"{model:6} {framework:10} {result.metrics['rps']:8.0f} {cpu:10.0f} {shown} {share}  "
                    f"{','.join(result.flags)}"
                )


if __name__ == "__main__":
    main()
