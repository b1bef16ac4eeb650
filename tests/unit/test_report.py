"""The report, `servebench report` and `servebench compare`, built from a real MLflow SQLite store."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from servebench import cli, pipeline
from servebench.config.spec import TrialSpec
from servebench.report import page as report
from servebench.report import summary
from servebench.results import spool
from servebench.results.records import Metric, TrialResult
from servebench.results.spool import Benchmark
from servebench.results.tracker import Tracker

HOST = {"trigger": "scheduled", "host.fingerprint": "h1", "host.name": "bench-1", "host.cpu_count": "2"}
PARAMS = {
    "models": ["lr", "mlp"],
    "frameworks": ["cpp", "fastapi", "flask"],
    "workers": [1, 2],
    "users": [8],
    "duration": 5.0,
}
# (model, framework, workers) -> (rps, p99 ms, cpu %, rss MB); lr/fastapi/w2 is fastest, cpp the leanest
FIGURES = {
    ("lr", "cpp", 1): (3000.0, 4.0, 90.0, 8.0),
    ("lr", "fastapi", 1): (1500.0, 9.0, 100.0, 100.0),
    ("lr", "fastapi", 2): (3600.0, 6.0, 190.0, 200.0),
    ("lr", "flask", 1): (900.0, 3.0, 100.0, 110.0),  # slow but the lowest p99: on the frontier
    ("mlp", "fastapi", 1): (700.0, 20.0, 100.0, 120.0),
}


def spec(model: str, framework: str, workers: int) -> TrialSpec:
    return TrialSpec.of(model, framework, workers, 8, spawn_rate=10.0, duration=5.0, warmup=1.0, repeats=1)


def trial(model: str, framework: str, workers: int, out: Path, scale: float = 1.0, status: str = "ok") -> TrialResult:
    rps, p99, cpu, rss = FIGURES.get((model, framework, workers), (0.0, 0.0, 0.0, 0.0))
    metrics = {
        "rps": rps * scale,
        "requests": rps * scale * 5,
        "error_rate": 0.0 if status == "ok" else 0.05,
        "latency_ms_p50": p99 / 4,
        "latency_ms_p95": p99 / 2,
        "latency_ms_p99": p99 / scale,
        "server_cpu_percent_avg": cpu,
        "server_rss_mb_max": rss,
    }
    series = {
        "series/rps": [(s, rps * scale) for s in range(6)],
        "series/latency_ms_p95": [(s, p99 / 2) for s in range(6)],
        "series/server_cpu_percent": [(s, cpu) for s in range(6)],
        "series/server_rss_mb": [(s, rss + s) for s in range(6)],
    }
    flags = ("loadgen_saturated",) if framework == "cpp" else ()
    out.mkdir(parents=True, exist_ok=True)
    if status == "failed":
        return TrialResult(spec(model, framework, workers), "failed", "server exited with code 3", out_dir=out)
    return TrialResult(spec(model, framework, workers), status, "", metrics, series, flags, {}, out)


@pytest.fixture
def tracker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tracker:
    monkeypatch.setenv("SERVEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return Tracker()


def benchmark(tracker: Tracker, tmp_path: Path, name: str, scale: float = 1.0, tags: dict | None = None) -> str:
    """A logged benchmark of FIGURES (throughput times `scale`), plus a failed and a degraded configuration."""
    bench = spool.create(Benchmark(name, "nightly", f"night {name}", PARAMS, {**HOST, **(tags or {})}, {}, tracker.uri))
    for model, framework, workers in FIGURES:
        key = spec(model, framework, workers).key
        trial(model, framework, workers, bench.trial_dir(key), scale).save()
    trial("mlp", "flask", 1, bench.trial_dir(spec("mlp", "flask", 1).key), status="failed").save()
    degraded = trial("mlp", "fastapi", 2, bench.trial_dir(spec("mlp", "fastapi", 2).key), status="degraded")
    TrialResult(
        degraded.spec,
        "degraded",
        "3 of 60 requests failed",
        {**degraded.metrics, "rps": 650.0},
        degraded.series,
        out_dir=degraded.out_dir,
    ).save()
    planned = [*(spec(*k) for k in FIGURES), spec("mlp", "flask", 1), spec("mlp", "fastapi", 2), spec("mlp", "cpp", 1)]
    pipeline.summarize(name, planned, tracker)
    parent = tracker.open_parent(spool.load(name))
    return parent


def test_the_report_names_the_winner_its_cost_and_every_configuration(tracker: Tracker, tmp_path: Path) -> None:
    parent = benchmark(tracker, tmp_path, "one")
    built = report.gather(parent, tracker, pipeline.planned_trials(parent, tracker))
    rows = {summary.label(r): r for r in built.rows}
    assert rows["lr/fastapi/w2/u8"]["best"] == "★" and rows["mlp/fastapi/w1/u8"]["best"] == "★"
    assert sum(1 for r in built.rows if r.get("best")) == 2  # one per model; a degraded row never wins
    assert rows["lr/cpp/w1/u8"]["rps_per_core"] == pytest.approx(3000 / 0.9)
    assert rows["lr/fastapi/w2/u8"]["rps_per_gb"] == pytest.approx(3600 / (200 / 1024))
    assert rows["mlp/cpp/w1/u8"]["status"] == "missing" and rows["mlp/flask/w1/u8"]["status"] == "failed"
    front = [summary.label(r) for r in summary.frontier([r for r in built.rows if r["model"] == "lr"])]
    assert front == ["lr/flask/w1/u8", "lr/cpp/w1/u8", "lr/fastapi/w2/u8"]  # fastapi w1 is beaten by cpp on both
    assert set(built.series) == {"lr/fastapi/w2/u8", "mlp/fastapi/w1/u8"}  # the best per model, from MLflow
    assert built.series["lr/fastapi/w2/u8"]["series/server_rss_mb"] == [(s, 200.0 + s) for s in range(6)]

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.png").write_bytes(b"a user's own picture")
    (tmp_path / "out" / "capacity.png").write_bytes(b"an older report's plot")
    files = report.write(built, tmp_path / "out")
    assert (tmp_path / "out" / "mine.png").exists() and not (tmp_path / "out" / "capacity.png").exists()
    names = [f.name for f in files]
    assert names[:3] == ["index.html", "summary.md", "summary.csv"]
    assert set(names[3:]) == {
        "throughput_vs_workers.png",
        "latency_percentiles.png",
        "pareto.png",
        "resources.png",
        "timeseries.png",
    }
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files[3:])
    page = files[0].read_text()
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 5  # self-contained: every plot embedded
    assert (
        "fastest: <b class=big>fastapi w2</b> at 8 users: <b>3,600 req/s</b>, p99 6.00 ms, 1.90 cores, 200 MB" in page
    )
    assert "most req/s per core: cpp w1 u8 (3,333 req/s per core)" in page
    assert (
        "not ok: cpp w1 u8 (missing), cpp w2 u8 (missing), fastapi w2 u8 (degraded), flask w1 u8 (failed), flask w2 u8 (missing)"
        in page
    )
    assert "loadgen_saturated: Locust used its cores to the full" in page and "(lr/cpp/w1/u8)" in page
    assert "<tr class='st-ok best'>" in page and "server exited with code 3" in page
    assert "No verdicts" not in page and "without a baseline yet" in page  # ok rows judged: no history
    with files[2].open() as f:
        table = {r["run_id"]: r for r in csv.DictReader(f) if r["run_id"]}
    assert float(table[rows["lr/cpp/w1/u8"]["run_id"]]["rps_per_core"]) == pytest.approx(3333.33, abs=0.01)
    assert "| ★ | lr | fastapi | 2 | 8 | ok |" in files[1].read_text()
    # what the summary task logged to the parent run is this same report
    logged = {a.path for a in MlflowClient(tracker.uri).list_artifacts(parent, "summary")}
    assert {f"summary/{n}" for n in names} == logged


@pytest.mark.full  # half a minute of seeded nights; the DAG's e2e run ends red on a regression by default
def test_a_regression_is_a_section_of_the_report(tracker: Tracker, tmp_path: Path) -> None:
    for night in range(3):  # the fewest a baseline needs
        benchmark(tracker, tmp_path, f"n{night}", scale=1.0 + night / 200)
        time.sleep(0.01)  # MLflow orders the history by start time (ms)
    tonight = benchmark(tracker, tmp_path, "tonight", scale=0.75)
    built = report.gather(tonight, tracker, [])
    assert built.history["lr/fastapi/w2/u8"] == pytest.approx(
        [3600.0, 3618.0, 3636.0]
    )  # its baseline nights, oldest first
    files = report.write(built, tmp_path / "out")
    assert "history.png" in [f.name for f in files]
    page = files[0].read_text()
    assert "Tonight against the nights before" in page
    assert "<li class=bad><b>lr/fastapi/w2/u8</b>: rps 2700 vs 3618 (-25.4%" in page
    assert "latency_ms_p99 8 vs 5.97 (+34.0%" in page  # p99 / 0.75: higher is worse
    done = pipeline.summarize("tonight", [], tracker)  # again, as the task would: same verdicts
    assert len(done.regressions) == 10 and pipeline.verdict(done, nightly=True, fail_on_regression=False)
    manual = pipeline.verdict(done, nightly=False, fail_on_regression=False)
    assert manual is not None and manual.startswith("2 of 7 configurations not ok")  # failed rows still count


def test_report_and_compare_commands(tracker: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = benchmark(tracker, tmp_path, "before")
    after = benchmark(tracker, tmp_path, "after", scale=0.8, tags={"host.fingerprint": "h2"})
    assert cli.main(["report", after, "--out", str(tmp_path / "rebuilt")]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(tmp_path / "rebuilt" / "index.html") and Path(printed).is_file()
    assert "night after" in Path(printed).read_text()
    assert cli.main(["report", after]) == 0  # default: under the state folder
    assert capsys.readouterr().out.strip() == str(tmp_path / "home" / "reports" / after / "index.html")

    assert cli.main(["compare", before, after]) == 0
    out = capsys.readouterr().out
    assert "host.fingerprint: h1  ->  h2" in out and "different machines" in out
    line = next(x for x in out.splitlines() if x.startswith("lr/fastapi/w2/u8"))
    assert line.split()[1:] == [
        "ok",
        "ok",
        "3600",
        "2880",
        "-20.0%",
        "worse",
        "6.00",
        "7.50",
        "+25.0%",
        "worse",
        "190",
        "190",
        "+0.0%",
        "200",
        "200",
        "+0.0%",
    ]
    assert re.search(r"^mlp/cpp/w1/u8\s+missing\s+missing", out, re.M)

    child = tracker.trial_runs(after)[0].run_id
    assert cli.main(["report", child]) == 2
    assert f"run {child} is not a benchmark's parent run; it is a trial of benchmark {after}" in capsys.readouterr().err
    assert cli.main(["compare", before, "nope"]) == 2
    assert "servebench: no run 'nope' at sqlite:///" in capsys.readouterr().err


def test_equal_cpu_shapes_are_compared_side_by_side() -> None:
    def row(replicas: int, cpus: str, rps: float, framework: str = "fastapi") -> dict:
        shape = summary.shape_fields(replicas, cpus)
        return {
            "model": "lr",
            "framework": framework,
            "workers": 1,
            "users": 8,
            "status": "ok",
            "engine": "locust",
            **shape,
            Metric.RPS: rps,
            Metric.SERVER_CPU_AVG: 150.0,
            Metric.BALANCER_CPU_AVG: 20.0,
        }

    rows = [row(1, "2.0", 1000.0), row(2, "1.0", 1500.0), row(4, "1.0", 2500.0), row(1, "unlimited", 900.0)]
    assert [r["shape"] for r in rows] == ["1 x 2 CPU", "2 x 1 CPU", "4 x 1 CPU", ""]
    assert summary.label(rows[1]) == "lr/fastapi/w1/u8/2x1CPU"
    (group,) = summary.shapes(rows)  # 4 x 1 has other total CPUs, the unlimited one none
    assert [r["shape"] for r in group] == ["1 x 2 CPU", "2 x 1 CPU"]
    assert summary.shape_lines(rows) == [
        "equal total CPUs (2), lr/fastapi/w1/u8: 1 x 2 CPU 1000 rps (1.00x), 2 x 1 CPU 1500 rps (1.50x)"
    ]
    html = report.render_html(report.Report("shapes", rows, {}, {}, {}), {})
    assert "<h2>Equal total CPUs, different shapes</h2>" in html and "<td class=s>2 x 1 CPU</td><td>1500</td>" in html
