"""Run one trial: start the server, check it answers right, load it while sampling, stop it, measure.

A trial never raises for a fault of the server or the load: it returns a failed (nothing measured) or
degraded (measured, but requests failed or server processes died) TrialResult whose reason and server
log tail say what happened, so the rest of a run goes on and nothing is lost. Only a kill signal
(`teardown.Aborted`) or an Airflow time-out ends it early: what it started is stopped, why is recorded,
and the exception goes on.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from servebench import aggregate, build, capacity, loadgen, manifest, metrics, models, placement, runner as runners, spool, teardown
from servebench.parity import ParityReport
from servebench.readiness import ParityFailed, wait_ready
from servebench.runner.base import Runner, ServerFailed
from servebench.sampler import ProcessTreeProbe, ResourceSampler, Sample
from servebench.spec import TrialSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialResult:
    """Everything a tracker or report needs about one trial; written to `out_dir/result.json`."""

    spec: TrialSpec
    status: str  # "ok" | "degraded" | "failed"
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    context: dict[str, str] = field(default_factory=dict)  # logged as params beside the spec
    out_dir: Path = Path(".")
    log_tail: str = ""
    result_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # uploads of one result are deduplicated by it

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["out_dir"] = str(self.out_dir)
        return raw

    @classmethod
    def load(cls, path: Path) -> "TrialResult":
        """A result back from its result.json (the spool's record of it)."""
        raw = json.loads(path.read_text())
        return cls(
            **{**raw, "spec": TrialSpec.from_dict(raw["spec"]), "out_dir": path.parent, "flags": tuple(raw["flags"]),
               "series": {k: [(int(step), float(v)) for step, v in points] for k, points in raw["series"].items()}},
        )  # fmt: skip

    def save(self) -> None:
        spool.write_json(self.out_dir / spool.RESULT_FILE, self.to_dict())


def run_trial(spec: TrialSpec, out_dir: Path, runner: Runner | None = None) -> TrialResult:
    """Measure one configuration into a fresh `out_dir` (a re-run replaces what an earlier attempt left)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    log.info("trial %s: starting", spec.run_name)
    teardown.reap_orphans()
    try:
        with teardown.stopping_on_signals():
            where = placement.resolve(spec.cpu_split, spec.cpuset)
            server_cpus = placement.cpuset_of(where.server_cpus) or None
            result = _measure(spec, out_dir, runner or runners.create(spec.backend, server_cpus, spec.memory_mb), where)
    except Exception as exc:  # noqa: BLE001 - any fault fails this trial only, and says why
        tail = exc.log_tail if isinstance(exc, ServerFailed) else ""
        reason = exc.reason if isinstance(exc, ServerFailed) else f"{type(exc).__name__}: {exc}"
        log.error("trial %s failed: %s%s", spec.run_name, reason, f"\n--- server log (tail) ---\n{tail}" if tail else "")
        if not isinstance(exc, ServerFailed):
            log.debug("trial %s traceback", spec.run_name, exc_info=True)
        context = {}
        if isinstance(exc, ParityFailed):
            context["parity"] = _write_parity(out_dir, exc.report)
        result = TrialResult(spec, "failed", reason=reason, context=context, out_dir=out_dir, log_tail=tail)
    except BaseException as exc:  # a kill signal, Airflow's execution time-out, Ctrl-C: recorded, then let through
        why = f"{exc}" if isinstance(exc, teardown.Aborted) else f"{type(exc).__name__}: {exc}"
        TrialResult(spec, "failed", reason=f"aborted: {why}", out_dir=out_dir).save()
        log.error("trial %s aborted: %s", spec.run_name, why)
        raise
    result.save()
    return result


@dataclass(frozen=True)
class _Measured:
    """One load test against the running server."""

    figures: dict[str, float]
    flags: list[str]
    series: dict[str, list[tuple[int, float]]]
    lost_pids: list[int]  # server processes that died during the load test


def _measure(spec: TrialSpec, out_dir: Path, runner: Runner, where: placement.Placement) -> TrialResult:
    server_manifest = manifest.get(spec.framework)
    model = models.export(spec.model)
    if where.note:
        log.info("trial %s: CPUs not split: %s", spec.run_name, where.note)
    context = {
        "backend": runner.name,
        **runner.limits(),
        **where.params(),
        "model_key": model.key,
        "model_format": server_manifest.model_format,
        "worker_unit": server_manifest.worker_unit,
        "inference_threads": build.THREAD_CAPS["OMP_NUM_THREADS"],
    }
    server = runner.start(server_manifest, model, spec.workers, out_dir / "server.log")
    context.update(server.details)
    if server.packages:
        (out_dir / "server_packages.txt").write_text(server.packages)

    def load_test(folder: str, mode: str, rate: float | None, duration_s: float) -> _Measured:
        load_spec = loadgen.LoadSpec(
            host=server.base_url, meta_path=str(model.meta_path), users=spec.users,
            spawn_rate=spec.spawn_rate, duration_s=duration_s, warmup_s=spec.warmup_s,
            protocol=server_manifest.protocol, model_name=server_manifest.model_name, mode=mode, rate=rate,
            arrival=spec.arrival, processes=spec.loadgen_processes, cpus=where.loadgen_cpus,
            request_timeout_s=spec.request_timeout_s,
        )  # fmt: skip
        probe = server.probe()
        with ResourceSampler() as sampler:
            sampler.track("server", probe)
            load = loadgen.run(load_spec, out_dir / folder, on_started=lambda pid: sampler.track("loadgen", ProcessTreeProbe(pid)))
        server_samples = sampler.series("server", load.window_start, load.window_end)
        _write_samples(out_dir / folder / "resources.csv", sampler.samples)
        figures, flags = metrics.trial_metrics(
            load, server_samples, sampler.series("loadgen", load.window_start, load.window_end),
            where.loadgen_cores(spec.loadgen_processes),
        )  # fmt: skip
        figures["warmup_requests"] = float(load.warmup_requests)
        if load.failures:
            top = "; ".join(f"{n}x {reason}" for reason, n in load.failure_reasons[:3])
            log.warning("trial %s: %d of %d requests failed: %s", spec.run_name, load.failures, load.requests, top)
            context["top_failures"] = top[:500]
        return _Measured(figures, flags, metrics.per_second_series(load, server_samples), probe.gone())

    try:
        cold_start_s, parity_report = wait_ready(server, server_manifest, model.meta)
        context["parity"] = _write_parity(out_dir, parity_report)
        log.info(
            "trial %s: ready after %.2fs at %s, answers match the reference (max difference %.1e); loading",
            spec.run_name, cold_start_s, server.base_url, parity_report.max_abs_diff or 0.0,
        )  # fmt: skip
        measured = []
        repeats = 1 if spec.capacity or spec.soak_minutes else spec.repeats
        duration_s = spec.soak_minutes * 60.0 if spec.soak_minutes else spec.duration_s
        for i in range(1, repeats + 1):
            if repeats > 1:
                log.info("trial %s: repeat %d of %d", spec.run_name, i, repeats)
            measured.append(load_test(f"repeat-{i}", spec.load if not spec.capacity else "closed", spec.rate, duration_s))
            if server.exit_code() is not None:
                log.error("trial %s: the server exited during repeat %d; no further repeats", spec.run_name, i)
                break
        figures, flags = aggregate.combine([m.figures for m in measured], spec.max_cv)
        flags = list(dict.fromkeys([f for m in measured for f in m.flags] + flags))
        series = _joined_series([m.series for m in measured])
        if repeats > 1:
            for key in REPEAT_SERIES:
                series[f"repeat/{key}"] = [(i, m.figures[key]) for i, m in enumerate(measured, 1) if key in m.figures]
        if spec.capacity and server.exit_code() is None:
            _search_capacity(spec, figures, flags, series, load_test, out_dir)
        exit_during_load = server.exit_code()
    finally:
        stop = server.stop()
    figures["cold_start_s"] = cold_start_s
    if parity_report.max_abs_diff is not None:
        figures["parity_max_abs_diff"] = parity_report.max_abs_diff
    context.update(server_exit_code=str(stop.exit_code), stop_graceful=str(stop.graceful).lower())
    problems, harms = [], []
    if exit_during_load is not None:
        problems.append(f"server exited with code {exit_during_load} during the load test")
    if stop.leftovers:
        problems.append(f"server left things behind after stopping: {', '.join(stop.leftovers)}")
    lost = [pid for m in measured for pid in m.lost_pids]
    if lost:
        figures["server_processes_lost"] = float(len(lost))
        flags.append("server_process_died")
        harms.append(f"server process(es) {', '.join(map(str, lost))} died during the load test")
    if figures.get("failures"):
        harms.append(f"{figures['failures']:.0f} of {figures['requests']:.0f} requests failed ({context.get('top_failures', '')})")
    for flag in flags:
        log.warning("trial %s: flagged %s", spec.run_name, flag)
    tail = server.log_tail() if problems or harms else ""
    result = TrialResult(
        spec,
        "failed" if problems else "degraded" if harms else "ok",
        reason="; ".join(problems + harms),
        metrics=figures,
        series=series,
        flags=tuple(flags),
        context=context,
        out_dir=out_dir,
        log_tail=tail,
    )
    log.info(
        "trial %s: %s  %.0f rps%s  p50 %.3f ms  p99 %s ms  errors %.2f%%%s",
        spec.run_name, result.status, figures["rps"],
        f" (95% CI {figures['rps_ci95_low']:.0f}-{figures['rps_ci95_high']:.0f}, CV {100 * figures['rps_cv']:.1f}%)"
        if "rps_cv" in figures else "",
        figures.get("latency_ms_p50", float("nan")),
        f"{figures['latency_ms_p99']:.3f}" if "latency_ms_p99" in figures else "n/a", 100 * figures["error_rate"],
        f"  max rps at SLO {figures['max_rps_at_slo']:.0f}" if "max_rps_at_slo" in figures else "",
    )  # fmt: skip
    return result


REPEAT_SERIES = ("rps", "latency_ms_p50", "latency_ms_p99", "server_cpu_us_per_request")


def _joined_series(parts: list[dict[str, list[tuple[int, float]]]]) -> dict[str, list[tuple[int, float]]]:
    """Per-second series of consecutive load tests as one, seconds counted on across them."""
    joined: dict[str, list[tuple[int, float]]] = {}
    offset = 0
    for part in parts:
        for key, points in part.items():
            joined.setdefault(key, []).extend((offset + step, value) for step, value in points)
        offset += 1 + max((step for points in part.values() for step, _ in points), default=-1)
    return joined


def _search_capacity(
    spec: TrialSpec, figures: dict[str, float], flags: list[str], series: dict[str, list[tuple[int, float]]],
    load_test: Callable[[str, str, float | None, float], _Measured], out_dir: Path,
) -> None:
    """Capacity search from 80% of the closed-loop throughput (or the given rate); adds its figures."""
    count = itertools.count(1)

    def measure(rate: float) -> capacity.Step:
        m = load_test(f"capacity-{next(count)}", "open", rate, capacity.step_seconds(rate, spec.duration_s))
        return capacity.judge(
            rate, m.figures["rps"], m.figures.get("latency_ms_p99"), m.figures["error_rate"], spec.slo_p99_ms,
            "loadgen_saturated" in m.flags,
        )  # fmt: skip

    first = spec.rate or max(capacity.LOWEST_RATE, 0.8 * figures.get("rps", 0.0))
    best, steps = capacity.search(measure, first)
    with (out_dir / "capacity_steps.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(capacity.Step.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(s.to_dict() for s in steps)
    for key in ("rate", "rps", "p99_ms"):
        series[f"capacity/{key}"] = [(i, getattr(s, key)) for i, s in enumerate(steps, 1) if getattr(s, key) is not None]
    figures["capacity_steps"] = float(len(steps))
    if any(s.loadgen_saturated for s in steps):  # the bound found may be Locust's, not the server's
        flags.append("loadgen_saturated_during_capacity_search")
    if best is None:
        flags.append("no_rate_within_slo")
    else:
        figures["max_rps_at_slo"] = best


def _write_parity(out_dir: Path, report: ParityReport) -> str:
    """parity.json beside the other artifacts; returns "pass" or "fail" for the trial's params."""
    (out_dir / "parity.json").write_text(json.dumps(report.to_dict(), indent=1))
    return "pass" if report.passed else "fail"


def _write_samples(path: Path, samples: list[Sample]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Sample.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
