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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from servebench.base import placement, teardown
from servebench.config.spec import TrialSpec
from servebench.measure import aggregate, capacity, loadgen, metrics
from servebench.measure.loadgen import LoadgenError
from servebench.measure.sampler import MachineProbe, ResourceSampler, Sample, wait_for_quiet
from servebench.models.export import ExportedModel
from servebench.results.records import REPEAT_PREFIX, Flag, Metric, Series, TrialResult
from servebench.servers import build, capability, manifest
from servebench.servers import runner as runners
from servebench.servers.parity import ParityReport
from servebench.servers.probes import ProcessTreeProbe
from servebench.servers.readiness import ParityFailed, wait_ready
from servebench.servers.runner.base import Runner, ServerFailed

log = logging.getLogger(__name__)


def run_trial(spec: TrialSpec, model: ExportedModel, out_dir: Path, runner: Runner | None = None) -> TrialResult:
    """Measure one configuration serving `model` (the export of `spec.model`) into a fresh `out_dir` (a re-run
    replaces what an earlier attempt left)."""
    settings = spec.settings
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    if why := _unsupported(spec, model):
        log.info("trial %s: skipped: %s", spec.run_name, why)
        result = TrialResult(spec, "skipped", reason=why, context=model_context(model), out_dir=out_dir)
        result.save()
        return result
    log.info("trial %s: starting", spec.run_name)
    teardown.reap_orphans()
    wait_for_quiet(f"trial {spec.run_name}")
    try:
        with teardown.stopping_on_signals():
            where = placement.resolve(settings.cpu_split, settings.cpuset)
            server_cpus = placement.cpuset_of(where.server_cpus) or None
            # With load hosts, a local server listens where they reach this machine: the Locust master's address.
            address = settings.loadgen_master.rpartition(":")[0] if settings.load_hosts else runners.HOST
            runner = runner or runners.create(
                settings.backend, server_cpus, settings.memory_mb, address, where=settings.server_host or ""
            )
            result = _measure(spec, model, out_dir, runner, where)
    except Exception as exc:
        tail = exc.log_tail if isinstance(exc, ServerFailed) else ""
        reason = exc.reason if isinstance(exc, ServerFailed) else f"{type(exc).__name__}: {exc}"
        log.error(
            "trial %s failed: %s%s", spec.run_name, reason, f"\n--- server log (tail) ---\n{tail}" if tail else ""
        )
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


def _unsupported(spec: TrialSpec, model: ExportedModel) -> str | None:
    """Why the framework cannot serve this model at this batch size (capability.py), or None; a manifest that
    does not load is left for the trial to fail on."""
    try:
        server_manifest = manifest.get(spec.framework)
    except manifest.ManifestError:
        return None
    return capability.unsupported(server_manifest, model.meta, spec.batch)


def model_context(model: ExportedModel) -> dict[str, str]:
    """What a trial served, as run params: the model's kind, estimator, inputs and where it came from."""
    meta = model.meta
    columns = meta["inputs"]["columns"]
    counts = ", ".join(
        f"{sum(c['type'] == t for c in columns)} {t}"
        for t in ("number", "string")
        if any(c["type"] == t for c in columns)
    )
    source = meta["source"]
    facts = {
        "model_key": model.key,
        "model_task": meta["task"],
        "model_estimator": meta["estimator"][:500],
        "model_inputs": f"{counts} ({'named' if meta['inputs']['named'] else 'positional'})",
        "model_source": source["kind"],
        "request_rows": f"payload of {len(meta['generator']['rows'])} rows"
        if "rows" in meta["generator"]
        else "generated",
    }
    if source["kind"] == "registry":
        facts.update(
            registered_model=source["registered_name"],
            registered_version=source["version"],
            registered_alias=source["alias"] or "-",
            registered_run_id=source["run_id"] or "-",
        )
    return facts


@dataclass(frozen=True)
class _Measured:
    """One load test against the running server."""

    figures: dict[str, float]
    flags: list[str]
    series: dict[str, list[tuple[int, float]]]
    lost_pids: list[int]  # server processes that died during the load test


def _measure(
    spec: TrialSpec, model: ExportedModel, out_dir: Path, runner: Runner, where: placement.Placement
) -> TrialResult:
    settings = spec.settings
    server_manifest = manifest.get(spec.framework)
    if where.note:
        log.info("trial %s: CPUs not split: %s", spec.run_name, where.note)
    context = {
        "backend": runner.name,
        **runner.limits(),
        **where.params(),
        **model_context(model),
        "model_format": server_manifest.model_format,
        "worker_unit": server_manifest.worker_unit,
        "inference_threads": build.THREAD_CAPS["OMP_NUM_THREADS"],
    }
    server = runner.start(
        server_manifest, model, spec.workers, out_dir / "server.log", replicas=spec.replicas, cpus=spec.cpus
    )
    context.update(server.details, server_url=server.base_url)
    if server.packages:
        (out_dir / "server_packages.txt").write_text(server.packages)

    engine = spec.engine
    context["loadgen_engine"] = engine

    def load_test(folder: str, mode: str, rate: float | None, duration_s: float, users: int = spec.users) -> _Measured:
        load_spec = loadgen.LoadSpec(
            host=server.base_url,
            meta_path=str(model.meta_path),
            users=users,
            spawn_rate=settings.spawn_rate,
            duration_s=duration_s,
            warmup_s=settings.warmup,
            wire=server_manifest.wire,
            mode=mode,
            rate=rate,
            arrival=settings.arrival,
            processes=settings.loadgen_processes,
            cpus=where.loadgen_cpus,
            request_timeout_s=settings.request_timeout,
            batch=spec.batch,
            engine=engine,
            load_hosts=tuple(settings.load_hosts),
            master_bind=settings.loadgen_master.rpartition(":")[0],
            master_port=int(settings.loadgen_master.rpartition(":")[2]),
        )
        probe = server.probe()
        with ResourceSampler() as sampler:
            sampler.track("machine", MachineProbe())
            sampler.track("server", probe)
            if balancer := server.balancer_probe():
                sampler.track("balancer", balancer)
            load = loadgen.run(
                load_spec, out_dir / folder, on_started=lambda pid: sampler.track("loadgen", ProcessTreeProbe(pid))
            )
        if load.invalid:
            raise LoadgenError(f"the load test in {folder} is invalid: {load.invalid}")
        if load_spec.load_hosts:
            context["load_host_machines"] = "; ".join(sorted({f"{w['host']} on {w['machine']}" for w in load.workers}))[
                :500
            ]
        server_samples = sampler.series("server", load.window_start, load.window_end)
        _write_samples(out_dir / folder / "resources.csv", sampler.samples)
        figures, flags = metrics.trial_metrics(
            load,
            server_samples,
            sampler.series("loadgen", load.window_start, load.window_end),
            where.loadgen_cores(loadgen.processes(load_spec)),  # h2load's processes grow with the ramp's connections
            sampler.series("machine", load.window_start, load.window_end),
            remote_load=bool(load_spec.load_hosts),
            balancer=sampler.series("balancer", load.window_start, load.window_end),
        )
        figures[Metric.WARMUP_REQUESTS] = float(load.warmup_requests)
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
            spec.run_name,
            cold_start_s,
            server.base_url,
            parity_report.max_abs_diff or 0.0,
        )
        measured = []
        repeats = 1 if settings.capacity or settings.soak_minutes else settings.repeats
        duration_s = settings.soak_minutes * 60.0 if settings.soak_minutes else settings.duration
        for i in range(1, repeats + 1):
            if repeats > 1:
                log.info("trial %s: repeat %d of %d", spec.run_name, i, repeats)
            measured.append(
                load_test(
                    f"repeat-{i}", settings.load if not settings.capacity else "closed", settings.rate, duration_s
                )
            )
            if server.exit_code() is not None:
                log.error("trial %s: the server exited during repeat %d; no further repeats", spec.run_name, i)
                break
        figures, flags = aggregate.combine([m.figures for m in measured], settings.max_cv)
        figures[Metric.ROWS_PER_S] = figures[Metric.RPS] * spec.batch
        flags = list(dict.fromkeys([f for m in measured for f in m.flags] + flags))
        series = _joined_series([m.series for m in measured])
        if repeats > 1:
            for key in REPEAT_SERIES:
                series[REPEAT_PREFIX + key] = [
                    (i, m.figures[key]) for i, m in enumerate(measured, 1) if key in m.figures
                ]
        if settings.capacity and server.exit_code() is None:
            _search_capacity(spec, figures, flags, series, load_test, out_dir)
        if engine == "h2load" and server.exit_code() is None:
            _saturate(spec, measured[-1].figures, figures, series, load_test)
        exit_during_load = server.exit_code()
    finally:
        stop = server.stop()
    figures[Metric.COLD_START] = cold_start_s
    if parity_report.max_abs_diff is not None:
        figures[Metric.PARITY_MAX_ABS_DIFF] = parity_report.max_abs_diff
    context.update(server_exit_code=str(stop.exit_code), stop_graceful=str(stop.graceful).lower())
    problems, harms = [], []
    if exit_during_load is not None:
        problems.append(f"server exited with code {exit_during_load} during the load test")
    if stop.leftovers:
        problems.append(f"server left things behind after stopping: {', '.join(stop.leftovers)}")
    lost = [pid for m in measured for pid in m.lost_pids]
    if lost:
        figures[Metric.SERVER_PROCESSES_LOST] = float(len(lost))
        flags.append(Flag.SERVER_PROCESS_DIED)
        harms.append(f"server process(es) {', '.join(map(str, lost))} died during the load test")
    if figures.get(Metric.FAILURES):
        harms.append(
            f"{figures['failures']:.0f} of {figures['requests']:.0f} requests failed ({context.get('top_failures', '')})"
        )
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
        spec.run_name,
        result.status,
        figures[Metric.RPS],
        f" (95% CI {figures['rps_ci95_low']:.0f}-{figures['rps_ci95_high']:.0f}, CV {100 * figures['rps_cv']:.1f}%)"
        if Metric.RPS_CV in figures
        else "",
        figures.get(Metric.LATENCY_P50, float("nan")),
        f"{figures['latency_ms_p99']:.3f}" if Metric.LATENCY_P99 in figures else "n/a",
        100 * figures[Metric.ERROR_RATE],
        f"  max rps at SLO {figures['max_rps_at_slo']:.0f}" if Metric.MAX_RPS_AT_SLO in figures else "",
    )
    return result


REPEAT_SERIES = (Metric.RPS, Metric.LATENCY_P50, Metric.LATENCY_P99, Metric.CPU_US_PER_REQUEST)


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
    spec: TrialSpec,
    figures: dict[str, float],
    flags: list[str],
    series: dict[str, list[tuple[int, float]]],
    load_test: Callable[[str, str, float | None, float], _Measured],
    out_dir: Path,
) -> None:
    """Capacity search from 80% of the closed-loop throughput (or the given rate); adds its figures."""
    count = itertools.count(1)

    def measure(rate: float) -> capacity.Step:
        m = load_test(f"capacity-{next(count)}", "open", rate, capacity.step_seconds(rate, spec.settings.duration))
        return capacity.judge(
            rate,
            m.figures[Metric.RPS],
            m.figures.get(Metric.LATENCY_P99),
            m.figures[Metric.ERROR_RATE],
            spec.settings.slo_p99_ms,
            Flag.LOADGEN_SATURATED in m.flags,
        )

    first = spec.settings.rate or max(capacity.LOWEST_RATE, 0.8 * figures.get(Metric.RPS, 0.0))
    best, steps = capacity.search(measure, first)
    with (out_dir / "capacity_steps.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(capacity.Step.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(s.to_dict() for s in steps)
    for key in ("rate", Metric.RPS, "p99_ms"):
        series[f"capacity/{key}"] = [
            (i, getattr(s, key)) for i, s in enumerate(steps, 1) if getattr(s, key) is not None
        ]
    figures[Metric.CAPACITY_STEPS] = float(len(steps))
    if any(s.loadgen_saturated for s in steps):  # the bound found may be Locust's, not the server's
        flags.append(Flag.LOADGEN_SATURATED_DURING_CAPACITY_SEARCH)
    if best is None:
        flags.append(Flag.NO_RATE_WITHIN_SLO)
    else:
        figures[Metric.MAX_RPS_AT_SLO] = best


SATURATION_GROWTH = 0.05  # a doubling of connections that adds less throughput than this: saturated
SATURATION_MAX_CONNECTIONS = 512
SATURATION_STEP_S = 2.0  # at most: never longer than the trial's own window


def _saturate(
    spec: TrialSpec,
    window: dict[str, float],
    figures: dict[str, float],
    series: dict[str, list[tuple[int, float]]],
    load_test: Callable[..., _Measured],
) -> None:
    """Capacity per core at saturation (closed loop, native engine): from the trial's own window (its last
    repeat, the first step), connections are doubled until throughput stops growing (bounded); the best step
    gives max_rps, max_rps_per_core and the CPU per request at that load. Per-request CPU differs several-fold
    between light and saturating load, so this is the figure servers are compared by when they are not
    compared at the same load."""
    steps: list[tuple[int, float, float, float]] = []  # connections, rps, server CPU %, CPU µs per request
    connections, step = spec.users, window
    seconds = min(SATURATION_STEP_S, spec.settings.duration)
    while step.get(Metric.ERROR_RATE, 0.0) <= 0.001:  # errors: past what the server can take, not saturated
        rps, cpu = step[Metric.RPS], step.get(Metric.SERVER_CPU_AVG, 0.0)
        steps.append((connections, rps, cpu, step.get(Metric.CPU_US_PER_REQUEST, 0.0)))
        log.info(
            "trial %s: saturation step, %d connections: %.0f rps, %.0f%% CPU", spec.run_name, connections, rps, cpu
        )
        connections *= 2
        if (
            len(steps) > 1 and rps < steps[-2][1] * (1 + SATURATION_GROWTH)
        ) or connections > SATURATION_MAX_CONNECTIONS:
            break
        step = load_test(f"saturation-{len(steps)}", "closed", None, seconds, users=connections).figures
    if not steps:
        return
    best = max(steps, key=lambda s: s[1])
    figures[Metric.MAX_RPS] = best[1]
    if best[2] > 0:
        figures[Metric.MAX_RPS_PER_CORE] = best[1] / (best[2] / 100.0)
        figures[Metric.CPU_US_AT_MAX] = best[3]
    figures[Metric.SATURATION_STEPS] = float(len(steps))
    series[Series.SATURATION_CONNECTIONS] = [(i, float(s[0])) for i, s in enumerate(steps, 1)]
    series[Series.SATURATION_RPS] = [(i, s[1]) for i, s in enumerate(steps, 1)]
    series[Series.SATURATION_CPU] = [(i, s[2]) for i, s in enumerate(steps, 1)]


def _write_parity(out_dir: Path, report: ParityReport) -> str:
    """parity.json beside the other artifacts; returns "pass" or "fail" for the trial's params."""
    (out_dir / "parity.json").write_text(json.dumps(report.to_dict(), indent=1))
    return "pass" if report.passed else "fail"


def _write_samples(path: Path, samples: list[Sample]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Sample.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
