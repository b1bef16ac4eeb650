"""`servebench`: the benchmark without a scheduler, for a quick local run or a server to poke at."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import UnionType
from typing import (
    Annotated,
    Any,
    Literal,
    Union,
    cast,
    get_args,
    get_origin,
)

from servebench import __version__
from servebench.base import paths

log = logging.getLogger("servebench")


KIND_NAMES = {int: "integers", float: "numbers", str: "names"}


def _scalar(kind: Any) -> tuple[Callable[[str], Any], str]:
    """A parser of one command-line value of a field's (item) type, and what it takes: int, float, str, or a
    union of one of those with literal spellings such as "auto"."""
    kind = get_args(kind)[0] if get_origin(kind) is Annotated else kind
    if get_origin(kind) in (Union, UnionType):
        literals = [v for arg in get_args(kind) if get_origin(arg) is Literal for v in get_args(arg)]
        number, what = next(_scalar(arg) for arg in get_args(kind) if get_origin(arg) is not Literal)
        return (lambda text: text if text in literals else number(text)), " or ".join([what, *literals])
    return cast(Callable[[str], Any], kind), KIND_NAMES.get(kind, str(kind))


def _csv(parse_one: Callable[[str], Any], what: str) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        try:
            return [parse_one(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}") from None

    return parse


def _add_settings(run: argparse.ArgumentParser) -> None:
    """One option per field of the benchmark parameters (`--spawn-rate` for spawn_rate), with its type,
    choices and help from the field: the DAG's trigger form is made from the same fields."""
    from servebench.config.params import BenchmarkParams, defaults

    for name, info in BenchmarkParams.model_fields.items():
        kind = info.annotation
        if get_origin(kind) in (Union, UnionType) and type(None) in get_args(kind):  # optional: absent is None
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        default = defaults()[name]
        shown = ",".join(map(str, default)) if isinstance(default, list) else "none" if default is None else default
        option: dict[str, Any] = {"help": f"{info.description} (default: {shown})".replace("%", "%%")}
        if kind is bool:
            option.update(action="store_true", default=None)
        elif get_origin(kind) is list:
            option.update(type=_csv(*_scalar(get_args(kind)[0])), metavar="A,B,...")
        elif get_origin(kind) is Literal:
            option["choices"] = list(get_args(kind))
        else:
            option["type"] = _scalar(kind)[0]
        run.add_argument("--" + name.replace("_", "-"), **option)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servebench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"servebench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a benchmark matrix and print the comparison")
    _add_settings(run)
    run.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")

    serve = sub.add_parser("serve", help="build what is missing and run one server until Ctrl-C")
    serve.add_argument("--framework", required=True)
    serve.add_argument("--model", required=True, help="a recipe, models:/<name>/<version|@alias> or a model file")
    serve.add_argument(
        "--payload", type=Path, help="request rows to take the sample request from (CSV, Parquet, JSONL)"
    )
    serve.add_argument("--trust-pickle", action="store_true", help="load a .joblib/.pkl file (runs its code)")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--backend", choices=["local", "docker"], default="local", help="a local process or a container")

    sync = sub.add_parser(
        "sync", help="upload the results an unreachable MLflow left in the local spool (each exactly once)"
    )
    sync.add_argument(
        "--any-uri", action="store_true", help="also upload benchmarks meant for another tracking URI to this one"
    )

    build = sub.add_parser(
        "report", help="rebuild the HTML report of a logged benchmark from MLflow alone; prints its index.html"
    )
    build.add_argument("run_id", help="the benchmark's MLflow parent run id")
    build.add_argument("--out", type=Path, help="folder to write it to (default: <state>/reports/<run id>)")

    diff = sub.add_parser("compare", help="side-by-side figures of two logged benchmarks (A, then B)")
    diff.add_argument("run_a", help="parent run id of the benchmark to compare from")
    diff.add_argument("run_b", help="parent run id of the benchmark to compare with")

    flow = sub.add_parser(
        "airflow",
        help="a local Airflow (scheduler, DAG processor, UI on 127.0.0.1) sized for this machine, until Ctrl-C",
    )
    flow.add_argument("--port", type=int, default=8080, help="the UI's and API's port (default 8080)")
    flow.add_argument(
        "--schedule", action="store_true", help="also run the nightly 02:00 runs (default: triggered runs only)"
    )
    flow.add_argument(
        "--run",
        metavar="CONF",
        type=json.loads,
        help="trigger one run of serving_benchmark with this JSON conf, follow it, stop when it ends "
        "(exit 1 unless it succeeded)",
    )

    worker = sub.add_parser(
        "load-worker",
        help="on a load host: serve a benchmark's load tests as Locust workers until its master is gone",
    )
    worker.add_argument("--master", required=True, metavar="HOST:PORT", help="the benchmark's Locust master")
    worker.add_argument("--name", default=socket.gethostname(), help="this load host's name in the results")
    worker.add_argument("--processes", type=int, default=1, help="Locust processes (each up to one core)")
    worker.add_argument(
        "--idle", type=float, default=60.0, help="seconds without a master after a test before ending (default 60)"
    )
    worker.add_argument("--wait", type=float, default=900.0, help="seconds to wait for the first master (default 900)")

    servers = sub.add_parser("servers", help="every server folder and what it can serve (formats, model kinds, inputs)")
    servers.add_argument("--markdown", action="store_true", help="as a Markdown table (the README's)")

    show = sub.add_parser("summary", help="print the comparison table of a logged benchmark run")
    show.add_argument("run_id", nargs="?", help="parent run id (default: the latest in the experiment)")
    show.add_argument("--experiment", default="servebench")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    from servebench.base.teardown import Aborted
    from servebench.config.params import ParamsError
    from servebench.models.schema import SchemaError
    from servebench.models.source import SourceError
    from servebench.servers.images import ImageError
    from servebench.servers.manifest import ManifestError

    try:
        commands = {
            "run": _run,
            "serve": _serve,
            "summary": _summary,
            "sync": _sync,
            "report": _report,
            "compare": _compare,
            "airflow": _airflow,
            "load-worker": _load_worker,
            "servers": _servers,
        }
        return commands[args.command](args)
    except (ParamsError, ManifestError, ImageError, SourceError, SchemaError) as exc:
        print(f"servebench: {exc}", file=sys.stderr)
        return 2
    except Aborted as exc:  # what was running is stopped, the aborted trial recorded in the spool
        print(f"servebench: {exc}", file=sys.stderr)
        return 128 + exc.signum


def _run(args: argparse.Namespace) -> int:
    from servebench import pipeline
    from servebench.config.params import BenchmarkParams

    raw = {name: getattr(args, name) for name in BenchmarkParams.model_fields if getattr(args, name) is not None}
    outcome = pipeline.run_all(raw, trigger="cli")
    done = outcome.summary
    if args.json:
        trials = [
            {
                **result.spec.logged_params(),
                "status": result.status,
                "reason": result.reason,
                "flags": list(result.flags),
                "metrics": result.metrics,
                "mlflow_run_id": child_id,
            }
            for result, child_id in outcome.results
        ]
        print(
            json.dumps(
                {
                    "benchmark": outcome.benchmark,
                    "parent_run_id": done.parent_id,
                    "tracking_error": done.tracking_error,
                    "trials": trials,
                },
                indent=1,
            )
        )
    else:
        print(done.text())
        _print_where(done.parent_id, done.files[0])
    if done.tracking_error:
        print(
            f"servebench: MLflow unreachable ({done.tracking_error}); the results are kept in "
            f"{done.files[0].parent.parent}: run `servebench sync` once it is back",
            file=sys.stderr,
        )
    return 1 if done.failed or done.tracking_error else 0


def _sync(args: argparse.Namespace) -> int:
    from servebench import pipeline
    from servebench.results.tracker import Tracker

    tracker = Tracker()
    done = pipeline.sync(tracker, args.any_uri)
    for bench, uploaded in done:
        state = (
            f"parent run {uploaded.parent_id}, {len(uploaded.runs)} trial runs"
            if not uploaded.error
            else uploaded.error
        )
        print(f"{bench.id}: {state}")
    left = [bench.id for bench, uploaded in done if uploaded.error]
    print(
        f"synced {len(done) - len(left)} benchmark(s) to {tracker.uri}"
        + (f"; {len(left)} still pending" if left else "")
        if done
        else f"nothing to sync: MLflow at {tracker.uri} has every spooled result"
    )
    return 1 if left else 0


def _print_where(parent_id: str | None, report: Path) -> None:
    uri = paths.tracking_uri()
    print(f"MLflow parent run {parent_id or '(not logged yet)'}; report: {report}")
    if uri.startswith("sqlite:"):
        print(
            f"MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {uri} "
            f"--default-artifact-root {paths.local_artifact_root()} --port 5000   -> http://127.0.0.1:5000"
        )
    else:
        print(f"MLflow UI:  {uri}")


def _summary(args: argparse.Namespace) -> int:
    from servebench import pipeline
    from servebench.report import summary
    from servebench.results.tracker import Tracker

    tracker = Tracker()
    run_id = args.run_id or tracker.latest_parent(args.experiment)
    if run_id is None:
        print(f"servebench: no benchmark run in experiment {args.experiment!r} at {tracker.uri}", file=sys.stderr)
        return 2
    rows = summary.rows_from_records(tracker.trial_runs(run_id), pipeline.planned_trials(run_id, tracker))
    print(summary.format_table(rows))
    _print_where(run_id, paths.runs_dir() / tracker.benchmark_of(run_id) / "summary" / "index.html")
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        print(f"{len(bad)} of {len(rows)} configurations not ok", file=sys.stderr)
    return 1 if bad else 0


def _logged_report(tracker: Any, run_id: str) -> Any:
    """The report of a parent run, from MLflow; None (and why, on stderr) when it is not one."""
    from servebench import pipeline
    from servebench.report import page as report
    from servebench.results.records import TAG_KIND
    from servebench.results.tracker import RunMissing

    try:
        run = tracker.run(run_id)
    except RunMissing as exc:
        print(f"servebench: {exc}", file=sys.stderr)
        return None
    if run.tags.get(TAG_KIND) != "benchmark":
        parent = run.tags.get("mlflow.parentRunId")
        hint = f"; it is a trial of benchmark {parent}" if parent else ""
        print(f"servebench: run {run_id} is not a benchmark's parent run{hint}", file=sys.stderr)
        return None
    return report.gather(run_id, tracker, pipeline.planned_trials(run_id, tracker))


def _report(args: argparse.Namespace) -> int:
    from servebench.report import page as report
    from servebench.results.tracker import Tracker

    built = _logged_report(Tracker(), args.run_id)
    if built is None:
        return 2
    files = report.write(built, args.out or paths.state_dir() / "reports" / args.run_id)
    print(f"{len(built.rows)} configurations, {len(files) - 3} plots; tables: {files[1]}, {files[2]}", file=sys.stderr)
    print(files[0])
    return 0


def _compare(args: argparse.Namespace) -> int:
    from servebench.report import page as report
    from servebench.results.tracker import Tracker

    tracker = Tracker()
    a, b = _logged_report(tracker, args.run_a), _logged_report(tracker, args.run_b)
    if a is None or b is None:
        return 2
    print(report.compare(a, b), end="")
    return 0


def _airflow(args: argparse.Namespace) -> int:
    from servebench.base.teardown import stopping_on_signals
    from servebench.local_airflow import DAG_ID, AirflowFailed, LocalAirflow

    airflow = LocalAirflow(port=args.port, schedule=args.schedule)
    try:
        airflow.prepare()
        with stopping_on_signals(), airflow:  # Ctrl-C: Aborted, then a graceful stop
            if args.run is None:
                print(
                    f"Airflow UI: {airflow.url}  (schedule {'on' if args.schedule else 'off: triggered runs only'}; "
                    f"logs in {airflow.log_dir}; Ctrl-C to stop)",
                    flush=True,
                )
                while True:
                    time.sleep(3600)
            _, dag = airflow.api("GET", f"/api/v2/dags/{DAG_ID}")
            run_id = airflow.trigger(args.run)
            log.info("triggered %s run %s: watch it at %s/dags/%s/runs/%s", DAG_ID, run_id, airflow.url, DAG_ID, run_id)
            try:
                state = airflow.follow(run_id, lambda line: log.info("%s", line))
            finally:
                airflow.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": dag["is_paused"]})
        print(f"run {run_id}: {state}; task logs in {airflow.airflow_home / 'logs'}")
        return 0 if state == "success" else 1
    except AirflowFailed as exc:
        print(f"servebench: {exc}", file=sys.stderr)
        return 1


def _load_worker(args: argparse.Namespace) -> int:
    from servebench.measure import locust_engine

    if ":" not in args.master:
        print(f"servebench: --master {args.master!r} is not HOST:PORT", file=sys.stderr)
        return 2
    locust_engine.worker(args.master, args.name, args.processes, args.idle, args.wait)
    return 0


def _servers(args: argparse.Namespace) -> int:
    from servebench.servers import capability, manifest

    rows = capability.matrix([manifest.get(name) for name in manifest.available_frameworks()])
    header = list(rows[0])
    if args.markdown:
        print("| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row.values()) + " |")
        return 0
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in header]
    for cells in [header, *[list(r.values()) for r in rows]]:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from servebench.models.export import export_model
    from servebench.servers import capability, manifest, runner
    from servebench.servers.readiness import wait_ready
    from servebench.servers.runner.base import ServerFailed

    server_manifest = manifest.get(args.framework)
    model = export_model(args.model, payload=args.payload, trust_pickle=args.trust_pickle)
    if why := capability.unsupported(server_manifest, model.meta):
        print(f"servebench: {why}", file=sys.stderr)
        return 2
    log_path = paths.state_dir() / "serve" / f"{args.framework}-{model.name}.log"
    try:
        server = runner.create(args.backend).start(server_manifest, model, args.workers, log_path, port=args.port)
    except ServerFailed as exc:
        print(f"servebench: {exc}", file=sys.stderr)
        return 1
    stop = {"now": False, "ready": False}

    def on_signal(*_: object) -> None:
        stop["now"] = True
        if not stop["ready"]:  # still waiting for the server: leave the wait at once
            raise KeyboardInterrupt

    # Installed explicitly: a process started in the background inherits SIGINT ignored, and then
    # Python never raises KeyboardInterrupt, so Ctrl-C (or kill -INT) would leave the server running.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        wait_ready(server, server_manifest, model.meta)
        stop["ready"] = True
        wire = server_manifest.wire
        body = wire.encode(model.meta["samples"]["inputs"][:1], bool(model.meta["classes"])).decode()
        print(f"{args.framework} serving {args.model} with {args.workers} worker(s) at {server.base_url}")
        print(f"  curl -s {server.base_url}{server_manifest.health_path}")
        print(f"  curl -s -X POST {server.base_url}{wire.predict_path} -H 'Content-Type: application/json' -d '{body}'")
        print(f"log: {log_path}   (Ctrl-C to stop)", flush=True)
        while not stop["now"] and server.exit_code() is None:
            time.sleep(0.5)
        if server.exit_code() is not None:
            print(f"server exited with code {server.exit_code()}:\n{server.log_tail()}", file=sys.stderr)
            return 1
    except ServerFailed as exc:
        print(f"servebench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("servebench: interrupted before the server was ready", file=sys.stderr)
        return 130
    finally:
        report = server.stop()
        print(f"stopped (exit code {report.exit_code}, {'graceful' if report.graceful else 'killed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
