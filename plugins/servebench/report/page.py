"""The morning-after view: one self-contained HTML page (plus Markdown and CSV tables, and each plot as a
PNG) that says, per model, which configuration wins, what it costs, and whether anything got worse.

A report is built from trial records alone, so `servebench report <parent run>` rebuilds exactly what
the summary task logged, from MLflow, without re-running anything; `compare` diffs two benchmarks.
"""

from __future__ import annotations

import base64
import csv
import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servebench.config.spec import TrialSpec
from servebench.report import plots, summary
from servebench.results.records import (
    TAG_HOST,
    TOO_FEW_REQUESTS_PREFIX,
    Flag,
    Metric,
    TrialRecord,
)

if TYPE_CHECKING:
    from servebench.results.tracker import Tracker  # (imports MLflow)

Rows = list[dict[str, Any]]
Steps = dict[str, list[tuple[int, float]]]  # step metrics of one run: name -> (step, value)
SERIES = tuple(key for key, _ in plots.SERIES_PANELS)
# Header facts, in this order, from the benchmark's tags and params.
ABOUT_TAGS = (
    "trigger",
    "airflow.dag_run_id",
    "host.name",
    "host.cpu_model",
    "host.cpu_count",
    "host.memory_gb",
    "host.load_avg_1m",
    "host.fingerprint",
    "git.commit",
    "servebench.version",
)
ABOUT_PARAMS = (
    "models",
    "frameworks",
    "workers",
    "users",
    "duration",
    "warmup",
    "repeats",
    "load",
    "rate",
    "capacity",
    "slo_p99_ms",
    "backend",
    "cpu_split",
)
NEAR_CEILING = 0.8  # a figure this close to the load generator's ceiling is partly the load generator's
FLAG_MEANINGS = {
    Flag.LOADGEN_SATURATED: "Locust used its cores to the full: the server may be faster than shown (add --loadgen-processes)",
    Flag.NOISY: "throughput varied across repeats beyond max_cv: compare with care, or add repeats",
    Flag.MEMORY_GROWING: "server memory grew steadily during the load test (a leak, or a cache filling)",
    Flag.LATENCY_DRIFTING: "p95 latency rose steadily during the load test",
    Flag.SERVER_PROCESS_DIED: "a server process died during the load test",
    Flag.NO_REQUESTS: "no request completed in the measured window",
    Flag.CONTENDED: "other processes used the machine's CPU during the measured window (see host_other_cpu_percent)",
    Flag.NO_RATE_WITHIN_SLO: "capacity search found no rate within the p99 SLO",
    Flag.LOADGEN_SATURATED_DURING_CAPACITY_SEARCH: "Locust saturated during capacity search: the max rate is a lower bound",
}
PLOTS = (  # file, heading, how to read it
    (
        "throughput_vs_workers.png",
        "Throughput vs workers",
        "Lines rising with workers mean the framework scales on this machine; flat lines mean a worker more buys nothing.",
    ),
    (
        "latency_percentiles.png",
        "Latency percentiles",
        "p50 is the typical request, p99 the slow tail users notice; log scale.",
    ),
    (
        "pareto.png",
        "p99 latency vs throughput",
        "Right and low is better. Configurations on the dashed frontier are not beaten on both at once; "
        "the others are dominated.",
    ),
    (
        "resources.png",
        "CPU, memory and efficiency",
        "Cores the server kept busy (mean), peak resident memory, and requests per second for each core used.",
    ),
    (
        "timeseries.png",
        "Second by second (best configuration per model)",
        "A steady line is a trustworthy mean; a slope or steps say the window was not steady state.",
    ),
    (
        "history.png",
        "Tonight against the nights before",
        "Throughput of each configuration over its baseline nights (scheduled runs on this host), tonight last; "
        "red: judged a regression.",
    ),
    (
        "batch_sizes.png",
        "Batch size: throughput and p99",
        "Rows per second and p99 latency per request as each request carries more rows: where the lines flatten, "
        "batching has stopped paying; where p99 climbs, it costs the tail.",
    ),
    (
        "capacity.png",
        "Capacity search",
        "p99 at each open-loop rate tried; the highest rate under the SLO line is the configuration's capacity.",
    ),
)


@dataclass(frozen=True)
class Report:
    title: str
    rows: Rows
    about: dict[str, str]  # what was run, where and when: shown at the top
    series: dict[str, Steps]  # configuration label -> per-second series (the best per model)
    curves: dict[str, list[tuple[float, float]]]  # configuration label -> capacity search's (rps, p99) points
    history: dict[str, list[float]] = field(default_factory=dict)  # label -> rps of its baseline nights, oldest first


def from_records(
    records: list[TrialRecord],
    planned: list[TrialSpec],
    title: str,
    about: dict[str, str],
    series_of: Callable[[TrialRecord], Steps] | None = None,
) -> Report:
    """A report of these records; `series_of` fetches a record's per-second series when it holds none."""
    rows = summary.rows_from_records(records, planned)
    by_run = {r.run_id: r for r in records}
    series = {}
    for row in summary.best(rows).values():
        record = by_run.get(row["run_id"])
        if record is not None:
            series[summary.label(row)] = record.series if (record.series or series_of is None) else series_of(record)
    curves = {
        summary.label(row): by_run[row["run_id"]].capacity
        for row in rows
        if row.get("run_id") in by_run and by_run[row["run_id"]].capacity
    }
    return Report(title, rows, about, series, curves)


def about(started_ms: int | None, params: dict[str, Any], tags: dict[str, str], **more: str) -> dict[str, str]:
    """The facts at the top of a page (the run's name is its title)."""
    facts = dict(more)
    if started_ms:
        facts["started"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started_ms / 1000))
    facts.update({name: tags[name] for name in ABOUT_TAGS if tags.get(name)})
    facts.update({name: str(params[name]) for name in ABOUT_PARAMS if params.get(name) not in (None, "null")})
    return facts


def gather(parent_id: str, tracker: Tracker, planned: list[TrialSpec]) -> Report:
    """The report of a logged benchmark, from MLflow alone."""
    parent = tracker.run(parent_id)
    facts = about(
        parent.start_ms,
        parent.params,
        parent.tags,
        **{"MLflow parent run": parent_id, "experiment": parent.experiment, "tracking URI": tracker.uri},
    )
    built = from_records(
        tracker.trial_runs(parent_id), planned, parent.name, facts, lambda record: tracker.series(record.run_id, SERIES)
    )
    history = {}
    for row in built.rows:  # the nights each ok configuration was judged against
        if row["status"] == "ok" and row.get("verdicts"):
            past = tracker.history(parent.experiment, row["key"], parent.tags.get(TAG_HOST, ""), parent.start_ms)
            if past:
                history[summary.label(row)] = [r.metrics[Metric.RPS] for r in reversed(past) if Metric.RPS in r.metrics]
    return Report(built.title, built.rows, built.about, built.series, built.curves, history)


def write(report: Report, out_dir: Path) -> list[Path]:
    """index.html (self-contained: plots embedded), summary.md, summary.csv and each plot's PNG; index.html first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Callable[[Path], bool]] = {
        "throughput_vs_workers.png": lambda p: plots.throughput_vs_workers(report.rows, p),
        "latency_percentiles.png": lambda p: plots.latency_percentiles(report.rows, p),
        "pareto.png": lambda p: plots.pareto(report.rows, p),
        "resources.png": lambda p: plots.resources(report.rows, p),
        "timeseries.png": lambda p: plots.timeseries(report.series, p),
        "capacity.png": lambda p: plots.capacity(report.curves, report.rows, p),
        "batch_sizes.png": lambda p: plots.batch_sizes(report.rows, p),
        "history.png": lambda p: plots.history(report.history, report.rows, p),
    }
    for name in drawn:  # a rebuilt report must not keep a plot of ours the new one has no data for
        (out_dir / name).unlink(missing_ok=True)
    pngs = [out_dir / name for name, draw in drawn.items() if draw(out_dir / name)]
    csv_path, md_path, html_path = out_dir / "summary.csv", out_dir / "summary.md", out_dir / "index.html"
    _write_csv(report.rows, csv_path)
    md_path.write_text(
        f"# {report.title}\n\n"
        + summary.format_table(report.rows, markdown=True)
        + "".join(f"\n- {c}" for c in summary.changes(report.rows))
    )
    html_path.write_text(render_html(report, {p.name: p for p in pngs}))
    return [html_path, md_path, csv_path, *pngs]


def _write_csv(rows: Rows, path: Path) -> None:
    extra = [
        Metric.LATENCY_MAX,
        Metric.LATENCY_P999,
        "locust_latency_ms_p50",
        "locust_latency_ms_p99",
        Metric.RPS_CI95_LOW,
        Metric.RPS_CI95_HIGH,
        Metric.RPS_CV,
        Metric.LOADGEN_SATURATED,
        Metric.LOADGEN_CPU_AVG,
        Metric.SERVER_THREADS_MAX,
        "baseline/rps",
        "change_pct/rps",
        "baseline/latency_ms_p99",
        "change_pct/latency_ms_p99",
        "model_version",
        "key",
    ]
    keys = ["run_id"] + [k for _, k, _ in summary.COLUMNS if k != "notes"] + extra + ["notes"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# -- HTML ----------------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1500px;color:#1d2329}
body{padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:30px;border-bottom:2px solid #e3e7eb;padding-bottom:4px}
h3{font-size:16px;margin:18px 0 6px}.muted{color:#5f6b76;font-size:13px}
dl.about{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:2px 14px;font-size:13px;margin:10px 0}
dl.about dt{color:#5f6b76}dl.about dd{margin:0;overflow-wrap:anywhere}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #d5dbe0;border-radius:8px;padding:10px 14px;min-width:320px;flex:1}
.card b.big{font-size:17px}.bad{color:#b3261e}.good{color:#1b7f3b}.warn{color:#9a6700}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 14px;width:100%}
.scroll{overflow-x:auto}th,td{border:1px solid #dde2e6;padding:3px 5px;text-align:right;white-space:nowrap}
th{background:#f3f5f7;white-space:normal;vertical-align:bottom}td.s{text-align:left}
td.notes{text-align:left;white-space:normal;min-width:180px;font-size:11.5px;overflow-wrap:anywhere}
tr.best td{background:#e7f6ec;font-weight:600}tr.st-degraded td{background:#fff6dd}
tr.st-failed td,tr.st-missing td{background:#fdecea}tr.st-skipped td{color:#5f6b76;background:#f6f7f8}
img{max-width:100%;border:1px solid #e3e7eb;border-radius:6px}ul{margin:4px 0}li{margin:2px 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def render_html(report: Report, pngs: dict[str, Path]) -> str:
    rows = report.rows
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(report.title)} · servebench</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>servebench: {_e(report.title)}</h1>",
        "<p class=muted>Which way of serving each model is fastest and cheapest, and did it get worse? "
        "Every figure below is read back from the trials' records; nothing here was re-measured.</p>",
        _about(report.about),
        "<h2>At a glance</h2>",
        _glance(rows),
        _verdicts(rows),
        _caveats(rows),
        "<h2>Every configuration</h2>",
        "<p class=muted>★ = best per model (highest throughput among configurations that ran clean; capacity "
        "search's max rate within the SLO when it ran). rps/core = requests per second per CPU core the server "
        "kept busy; rps/GB = per GB of peak resident memory. Latency is measured by the harness per request "
        "(HDR histogram), CPU and memory sampled from the server's whole process tree.</p>",
    ]
    for model in sorted({r["model"] for r in rows}):
        parts.append(f"<h3>{_e(model)}</h3>" + _table([r for r in rows if r["model"] == model]))
    parts.append(_shapes(rows))
    parts.append("<h2>Plots</h2>")
    for name, heading, how in PLOTS:
        if name in pngs:
            data = base64.b64encode(pngs[name].read_bytes()).decode()
            parts.append(
                f"<h3>{_e(heading)}</h3><p class=muted>{_e(how)}</p><img alt='{_e(heading)}' src='data:image/png;base64,{data}'>"
            )
    parts.append(
        f"<p class=muted>Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} by servebench. "
        "Tables as summary.md and summary.csv beside this page.</p></body></html>"
    )
    return "\n".join(parts)


def _about(facts: dict[str, str]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts.items())
    return f"<dl class=about>{items}</dl>"


def _fmt(value: Any, fmt: str, unit: str = "") -> str:
    return "-" if value is None else f"{format(value, fmt)}{unit}"


def _glance(rows: Rows) -> str:
    """Per model: the winner and what it costs, the most frugal alternatives, and what did not run clean."""
    cards = []
    winners = summary.best(rows)
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        lines = []
        win = winners.get(model)
        if win:
            cores = (win.get(Metric.SERVER_CPU_AVG) or 0) / 100
            engine = " (measured by h2load)" if win.get("engine") == "h2load" else ""
            lines.append(
                f"fastest: <b class=big>{_e(win['framework'])} w{win['workers']}</b>{engine} at {win['users']} users: "
                f"<b>{_fmt(summary.speed(win), ',.0f')} req/s</b>, p99 {_fmt(win.get('latency_ms_p99'), '.2f', ' ms')}, "
                f"{cores:.2f} cores, {_fmt(win.get('server_rss_mb_max'), '.0f', ' MB')}"
            )
            if Flag.LOADGEN_SATURATED in win.get("flags", []):
                lines.append(
                    "<span class=warn>the load generator was saturated: this server is at least this fast; "
                    "compare at saturation (loadgen auto or h2load: max rps per core)</span>"
                )
            if win.get(Metric.MAX_RPS_PER_CORE):
                lines.append(
                    f"at saturation: {win[Metric.MAX_RPS]:,.0f} req/s, {win[Metric.MAX_RPS_PER_CORE]:,.0f} per core, "
                    f"{win.get(Metric.CPU_US_AT_MAX, 0):,.0f} µs of CPU per request"
                )
            capped = [r for r in mine if r.get("superseded")]
            if capped:
                lines.append(
                    "Locust saturated on "
                    + _e(", ".join(f"{r['framework']} w{r['workers']}" for r in capped))
                    + ": the h2load rows answer how fast those servers are; Locust's show the load it could make"
                )
            ok = [r for r in mine if r["status"] == "ok"]
            for key, what, unit in (
                ("rps_per_core", "most req/s per core", "req/s per core"),
                ("rps_per_gb", "most req/s per GB", "req/s per GB"),
            ):
                scored = [r for r in ok if r.get(key)]
                if scored:
                    top = max(scored, key=lambda r: r[key])
                    lines.append(
                        f"{what}: {_e(top['framework'])} w{top['workers']} u{top['users']} ({top[key]:,.0f} {unit})"
                    )
        else:
            lines.append("<span class=bad>no configuration ran clean</span>")
        bad = [
            f"{r['framework']} w{r['workers']} u{r['users']} ({r['status']})"
            for r in mine
            if r["status"] not in ("ok", "skipped")
        ]
        skipped = sorted({f"{r['framework']}: {r['notes']}" for r in mine if r["status"] == "skipped"})
        lines.append(
            f"{len(mine) - len(bad) - len(skipped)} of {len(mine)} configurations ok"
            + (f"; <span class=bad>not ok: {_e(', '.join(bad))}</span>" if bad else "")
        )
        if skipped:
            lines.append(f"<span class=muted>skipped (cannot serve this model): {_e('; '.join(skipped))}</span>")
        versions = sorted({r["model_version"] for r in mine if r.get("model_version")})
        if versions:
            lines.append(f"served: registered version {_e(', '.join(versions))}")
        changed = next((r["model_changed"] for r in mine if r.get("model_changed")), None)
        if changed:
            lines.append(f"<b class=warn>model changed ({_e(changed)}) since the baseline nights</b>")
        cards.append(f"<div class=card><h3>{_e(model)}</h3>" + "<br>".join(lines) + "</div>")
    return f"<div class=cards>{''.join(cards)}</div>"


def _verdicts(rows: Rows) -> str:
    """Regressions and improvements against each configuration's history, or why there are none."""
    judged = [r for r in rows if r.get("verdicts")]
    head = "<h3>Regressions against the last scheduled runs on this host</h3>"
    if not judged:
        return head + (
            "<p class=muted>No verdicts: only configurations that ran ok are judged, against the last 7 "
            "scheduled runs of the same configuration on the same host fingerprint.</p>"
        )
    found = [(r, figure, text) for r in judged for figure, text in sorted(r["verdicts"].items())]
    items = []
    for row, _, text in found:
        shown = summary.change_text(row, text)
        if shown:
            css = "bad" if shown.endswith("regression") else "good" if shown.endswith("improvement") else "warn"
            items.append(f"<li class={css}><b>{_e(summary.label(row))}</b>: {_e(shown)}</li>")
    waiting = sum(1 for _, _, text in found if "no baseline" in text)
    steady = sum(1 for _, _, text in found if text.endswith(": unchanged"))
    tail = (
        f"<p class=muted>{steady} figure(s) within their baseline's noise band; {waiting} without a baseline yet "
        "(3 earlier scheduled runs on this host needed). rps and p99 are judged: a change counts when it exceeds 10% "
        "and lies outside the median ± 3 robust standard deviations of the last 7 runs.</p>"
    )
    if items:
        listing = f"<ul>{''.join(items)}</ul>"
    elif steady:
        listing = "<p class=good>No regression and no improvement.</p>"
    else:
        listing = "<p class=warn>Nothing judged yet: no configuration has a baseline on this host.</p>"
    return head + listing + tail


def _caveats(rows: Rows) -> str:
    """Flags that qualify figures, with what each means, so nobody trusts a number the run itself doubts."""
    flagged: dict[str, list[str]] = {}
    for row in rows:
        for flag in row.get("flags", []):
            meaning = FLAG_MEANINGS.get(flag) or (
                "too few requests for the percentile(s) named: left out, not guessed"
                if flag.startswith(TOO_FEW_REQUESTS_PREFIX)
                else flag
            )
            flagged.setdefault(f"{flag}: {meaning}", []).append(summary.label(row))
    for row in rows:
        ceiling, rps = row.get(Metric.LOADGEN_CEILING), row.get(Metric.RPS)
        if ceiling and rps and rps >= NEAR_CEILING * ceiling and not row.get("superseded"):
            what = (
                f"within {NEAR_CEILING:.0%} of the load generator's ceiling: {row.get('engine', 'locust')} could drive "
                f"about {ceiling:,.0f} req/s with all its cores at the CPU per request it spent here, so part of "
                "what is measured is the load generator"
            )
            flagged.setdefault(what, []).append(f"{summary.label(row)} at {rps:,.0f} req/s")
    if not flagged:
        return ""
    items = "".join(
        f"<li class=warn><b>{_e(what)}</b> ({_e(', '.join(labels))})</li>" for what, labels in flagged.items()
    )
    return f"<h3>Caveats</h3><ul>{items}</ul>"


def _shapes(rows: Rows) -> str:
    """Equal total CPUs, different shapes: one table per configuration measured in several shapes."""
    groups = summary.shapes(rows)
    if not groups:
        return ""
    parts = [
        "<h2>Equal total CPUs, different shapes</h2>",
        "<p class=muted>The same server given the same CPUs as one big replica or several small ones, each shape "
        "behind the same HAProxy balancer (its CPU shown apart). rps/core = requests per second per core the "
        "replicas kept busy.</p>",
    ]
    for group in groups:
        first = group[0]
        head = f"{first['model']} · {first['framework']} · w{first['workers']} · u{first['users']} · {first['total_cpus']:g} CPUs"
        cells = [
            f"<tr><td class=s>{_e(r['shape'])}</td><td>{_fmt(r.get(Metric.RPS), '.0f')}</td>"
            f"<td>{_fmt(r.get(Metric.LATENCY_P99), '.2f')}</td><td>{_fmt(r.get('rps_per_core'), '.0f')}</td>"
            f"<td>{_fmt(r.get(Metric.SERVER_CPU_AVG), '.0f')}</td><td>{_fmt(r.get(Metric.BALANCER_CPU_AVG), '.0f')}</td></tr>"
            for r in group
        ]
        parts.append(
            f"<h3>{_e(head)}</h3><table><thead><tr><th>shape</th><th>rps</th><th>p99 ms</th><th>rps/core</th>"
            f"<th>server cpu %</th><th>balancer cpu %</th></tr></thead><tbody>{''.join(cells)}</tbody></table>"
        )
    return "\n".join(parts)


def _table(rows: Rows) -> str:
    shown = [c for c in summary.columns(rows) if c[1] != "model"]
    head = "".join(f"<th>{_e(h)}</th>" for h, _, _ in shown)
    body = []
    for row in rows:
        cells = []
        for _, key, fmt in shown:
            css = "notes" if key == "notes" else "s" if fmt == "s" else ""
            cells.append(f"<td class='{css}'>{_e(summary.cell(row, key, fmt))}</td>")
        classes = f"st-{row['status']}" + (" best" if row.get("best") else "")
        body.append(f"<tr class='{classes}'>{''.join(cells)}</tr>")
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


# -- compare -------------------------------------------------------------------------------------------
COMPARED = (
    (Metric.RPS, Metric.RPS, ".0f", +1),
    ("p99 ms", Metric.LATENCY_P99, ".2f", -1),
    ("cpu %", Metric.SERVER_CPU_AVG, ".0f", -1),
    ("rss MB", Metric.SERVER_RSS_MAX, ".0f", -1),
)


def compare(a: Report, b: Report) -> str:
    """A side-by-side diff of two benchmarks: the settings that differ, then each configuration's figures."""
    lines = [
        f"A: {a.title} ({a.about.get('MLflow parent run', '')})",
        f"B: {b.title} ({b.about.get('MLflow parent run', '')})",
    ]
    differ = [
        k
        for k in dict.fromkeys([*a.about, *b.about])
        if k not in ("MLflow parent run", "started", "airflow.dag_run_id", "host.load_avg_1m")
        and a.about.get(k) != b.about.get(k)
    ]
    for key in differ:
        lines.append(f"  {key}: {a.about.get(key, '-')}  ->  {b.about.get(key, '-')}")
    if "host.fingerprint" in differ:
        lines.append("  (different machines: the figures compare the machines as much as the servers)")
    header = ["configuration", "status A", "status B"]
    for name, _, _, _ in COMPARED:
        header += [f"{name} A", f"{name} B", "change"]
    table = [header]
    rows_a, rows_b = {r["key"]: r for r in a.rows}, {r["key"]: r for r in b.rows}
    for key in sorted(set(rows_a) | set(rows_b), key=lambda k: summary.label(rows_a.get(k) or rows_b[k])):
        ra, rb = rows_a.get(key, {}), rows_b.get(key, {})
        line = [summary.label(ra or rb), ra.get("status", "absent"), rb.get("status", "absent")]
        for _, metric, fmt, better in COMPARED:
            va, vb = ra.get(metric), rb.get(metric)
            change = ""
            if va and vb is not None:
                pct = 100 * (vb - va) / va
                change = f"{pct:+.1f}%" + (" better" if pct * better > 2 else " worse" if pct * better < -2 else "")
                if metric == Metric.RPS and _overlap(ra, rb):
                    change += " ≈"
            line += [_fmt(va, fmt), _fmt(vb, fmt), change]
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines.append("")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines += [
        "",
        "better/worse: a change over 2%; ≈: the two rps 95% confidence intervals overlap (not a clear difference)",
    ]
    return "\n".join(lines) + "\n"


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two configurations' throughput intervals (from their repeats) overlap."""
    keys = (Metric.RPS_CI95_LOW, Metric.RPS_CI95_HIGH)
    if not all(k in row for row in (a, b) for k in keys):
        return False
    return bool(a[Metric.RPS_CI95_LOW] <= b[Metric.RPS_CI95_HIGH] and b[Metric.RPS_CI95_LOW] <= a[Metric.RPS_CI95_HIGH])
