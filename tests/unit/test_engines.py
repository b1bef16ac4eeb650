"""The load engines' bookkeeping without a server: h2load's per-request log into per-second histograms, which
settings each engine refuses, when `auto` measures again natively, how a neighbour's CPU is told apart, and
how the report ranks a Locust figure capped by Locust beside the native engine's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from servebench import pipeline
from servebench.config import params
from servebench.config.spec import TrialSpec
from servebench.measure import h2load_engine, latency, loadgen, metrics
from servebench.measure.sampler import Sample
from servebench.report import page, summary
from servebench.results.records import TAG_FLAGS, TAG_STATUS, TAG_TRIAL_KEY, Flag, Metric, TrialRecord, TrialResult

SECOND = 1_796_000_000  # a whole second, in seconds since the epoch


def line(completed_s: float, took_ms: float, status: int = 200) -> str:
    took_us = round(took_ms * 1000)
    return f"{round(completed_s * 1e6) - took_us}\t{status}\t{took_us}"


def test_h2load_lines_bin_into_the_seconds_responses_completed_in(tmp_path: Path) -> None:
    log = tmp_path / "h2load-0.tsv"
    log.write_text(
        "\n".join(
            [
                line(SECOND - 0.5, 1.0),  # warm-up: counted, not measured
                line(SECOND + 0.2, 1.25),
                line(SECOND + 0.9, 0.75),
                line(SECOND + 1.1, 2.0, 500),
                line(SECOND + 1.5, 30.0, -1),  # a failed stream
                line(SECOND + 2.0, 1.0),  # after the window
                "",
            ]
        )
    )
    per_second, failures, reasons, warmup = h2load_engine.bin_log([log, tmp_path / "absent.tsv"], SECOND, SECOND + 2)
    assert warmup == 1 and sorted(per_second) == [SECOND, SECOND + 1]
    assert per_second[SECOND].get_total_count() == 2 and per_second[SECOND + 1].get_total_count() == 2
    assert failures == {SECOND + 1: 2}
    assert reasons == {"HTTP 500": 1, "stream failed (reset, refused or timed out)": 1}
    result = loadgen.result(SECOND, SECOND + 2, per_second, failures, reasons, warmup, {}, tmp_path)
    figures, _ = latency.figures_ms(result.histogram)
    assert (result.requests, result.failures, result.window_s) == (4, 2, 2.0)
    assert figures["latency_ms_min"] == 0.75 and figures["latency_ms_max"] == pytest.approx(30.0, rel=1e-3)
    assert (tmp_path / "latency.hlog").is_file()


def test_h2load_is_refused_where_it_would_hide_queueing() -> None:
    for raw in ({"loadgen": "h2load", "load": "open", "rate": 100}, {"loadgen": "h2load", "capacity": True}):
        with pytest.raises(params.ParamsError, match="loadgen h2load measures closed loop only"):
            params.parse(raw)
    assert params.parse({"loadgen": "auto", "load": "open", "rate": 100}).loadgen == "auto"
    with pytest.raises(loadgen.LoadgenError, match="closed loop only"):
        h2load_engine.run(loadgen.LoadSpec("http://127.0.0.1:1", "m.json", 1, 1, 1, 0, mode="open"), Path("."), print)


def test_each_engine_has_its_own_key_and_auto_keeps_locusts() -> None:
    auto = TrialSpec.of("lr", "cpp", 1, 20, repeats=1)
    native = auto.measured_by("h2load")
    assert (auto.engine, auto.key) == ("locust", "lr-cpp-w1-u20"), "earlier nights (Locust) stay comparable"
    assert (native.engine, native.key, native.run_name) == (
        "h2load",
        "lr-cpp-w1-u20-h2load",
        "lr · cpp · w1 · u20 · h2load",
    )
    assert native.logged_params()["loadgen"] == "h2load" and native.settings.repeats == 1


def result(spec: TrialSpec, flags: tuple[str, ...], status: str = "ok") -> TrialResult:
    return TrialResult(spec, status, flags=flags)


def test_auto_measures_again_only_what_locust_capped() -> None:
    saturated = (Flag.LOADGEN_SATURATED,)
    auto = TrialSpec.of("lr", "cpp", 1, 20)
    assert pipeline.needs_native_engine(result(auto, saturated))
    assert not pipeline.needs_native_engine(result(auto, ()))
    assert not pipeline.needs_native_engine(result(auto, saturated, "degraded"))
    assert not pipeline.needs_native_engine(result(TrialSpec.of("lr", "cpp", 1, 20, loadgen="locust"), saturated))
    assert not pipeline.needs_native_engine(result(TrialSpec.of("lr", "cpp", 1, 20, load="open", rate=50), saturated))
    assert not pipeline.needs_native_engine(result(TrialSpec.of("lr", "cpp", 1, 20, soak_minutes=1), saturated))


def test_a_neighbours_cpu_is_what_neither_the_server_nor_the_load_generator_used(tmp_path: Path) -> None:
    ticks = [1000.0 + i for i in range(5)]
    server = [Sample(t, "server", 80.0, 50.0, 4, 1) for t in ticks]
    load = [Sample(t, "loadgen", 40.0, 30.0, 2, 1) for t in ticks]
    quiet = [Sample(t, "machine", 125.0, 0.0, 0, None) for t in ticks]
    busy = [Sample(t, "machine", 200.0, 0.0, 0, None) for t in ticks]
    assert metrics.host_other_cpu(quiet, server, load) == pytest.approx(5.0)
    assert metrics.host_other_cpu(busy, server, load) == pytest.approx(80.0)
    window = loadgen.result(1000, 1005, {}, Counter(), Counter(), 0, {}, tmp_path)
    _, calm = metrics.trial_metrics(window, server, load, 1, quiet)
    figures, contended = metrics.trial_metrics(window, server, load, 1, busy)
    assert Flag.CONTENDED not in calm and Flag.CONTENDED in contended
    assert figures[Metric.HOST_OTHER_CPU] == pytest.approx(80.0)


def record(key: str, engine: str, rps: float, flags: str = "") -> TrialRecord:
    model, framework, workers, users = key.split("-")[:4]
    return TrialRecord(
        key,
        {"model": model, "framework": framework, "workers": workers[1:], "users": users[1:], "loadgen_engine": engine},
        {Metric.RPS: rps, Metric.LATENCY_P99: 1.0, Metric.SERVER_CPU_AVG: 100.0},
        {TAG_STATUS: "ok", TAG_TRIAL_KEY: key, TAG_FLAGS: flags},
    )


def test_a_locust_figure_capped_by_locust_gives_way_to_the_native_engines(tmp_path: Path) -> None:
    rows = summary.rows_from_records(
        [
            record("lr-cpp-w1-u20", "locust", 8000.0, Flag.LOADGEN_SATURATED),
            record("lr-cpp-w1-u20-h2load", "h2load", 90000.0),
            record("lr-fastapi-w1-u20", "locust", 7000.0, Flag.LOADGEN_SATURATED),  # no native twin
        ]
    )
    capped = next(r for r in rows if r["key"] == "lr-cpp-w1-u20")
    assert capped.get("superseded") and capped["notes"].startswith("Locust saturated: the h2load row")
    assert summary.best(rows)["lr"]["key"] == "lr-cpp-w1-u20-h2load"
    assert summary.label(summary.best(rows)["lr"]) == "lr/cpp/w1/u20/h2load"
    assert capped not in summary.frontier(rows)
    table = summary.format_table(rows)
    assert "engine" in table.splitlines()[0] and "h2load" in table
    only_locust = summary.format_table([r for r in rows if r["engine"] == "locust"])
    assert "engine" not in only_locust.splitlines()[0]


def test_a_figure_near_the_load_generators_ceiling_says_so(tmp_path: Path) -> None:
    """The ceiling comes from the trial itself: the engine's CPU per request, over all the cores it may use."""
    ticks = [1000.0 + i for i in range(5)]
    server = [Sample(t, "server", 50.0, 50.0, 4, 1) for t in ticks]
    window = loadgen.result(1000, 1005, {}, Counter(), Counter(), 0, {}, tmp_path)
    window = loadgen.LoadResult(**{**window.__dict__, "requests": 5000})  # 1000 req/s
    hot = [Sample(t, "loadgen", 85.0, 30.0, 2, 1) for t in ticks]
    figures, flags = metrics.trial_metrics(window, server, hot, 1)
    assert figures[Metric.LOADGEN_CEILING] == pytest.approx(1000 / 0.85) and Flag.LOADGEN_SATURATED not in flags
    cool = [Sample(t, "loadgen", 20.0, 30.0, 2, 1) for t in ticks]
    assert metrics.trial_metrics(window, server, cool, 2)[0][Metric.LOADGEN_CEILING] == pytest.approx(10_000)

    def near(key: str, rps: float, ceiling: float) -> TrialRecord:
        r = record(key, "locust", rps)
        return TrialRecord(r.run_id, r.params, {**r.metrics, Metric.LOADGEN_CEILING: ceiling}, r.tags)

    records = [near("lr-cpp-w1-u20", 8000.0, 9000.0), near("lr-fastapi-w1-u20", 3000.0, 9000.0)]
    html = page.render_html(page.from_records(records, [], "t", {}), {})
    assert "within 80% of the load generator" in html and "9,000 req/s" in html
    assert "lr/cpp/w1/u20 at 8,000 req/s" in html and "lr/fastapi/w1/u20 at" not in html
