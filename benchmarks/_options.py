"""Options every benchmark script shares: the load it applies."""

from __future__ import annotations

import argparse
from typing import Any

from servebench.config.spec import TrialSpec


def parser(doc: str | None, users: int = 20, duration: float = 15.0) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--users", type=int, default=users, help="concurrent Locust users")
    result.add_argument("--duration", type=float, default=duration, help="measured seconds per trial")
    result.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    return result


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, quiet the library's progress logging (a benchmark prints a table), and say what load runs."""
    import logging

    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"{args.users} users, {args.duration:g}s measured after {args.warmup:g}s warm-up")
    return args


def trial(args: argparse.Namespace, framework: str, workers: int, **settings: Any) -> TrialSpec:
    """One trial of `framework` under the benchmark's load (its model, users, duration, warm-up), one repeat."""
    return TrialSpec.of(
        args.model,
        framework,
        workers,
        args.users,
        spawn_rate=float(args.users),
        duration=args.duration,
        warmup=args.warmup,
        repeats=1,
        **settings,
    )
