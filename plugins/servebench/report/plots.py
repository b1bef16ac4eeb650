"""The report's pictures (PNG): each answers one question a team asks the morning after, one panel per model.

Only measured configurations are drawn (status ok, or degraded: measured while something went wrong,
drawn hollow); a plot with nothing to draw is not written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from servebench.report.summary import MEASURED, frontier, label
from servebench.results.records import Metric, Series

Rows = list[dict[str, Any]]
WORKER_MARKERS = ("o", "s", "^", "D", "v", "P")  # one per worker count
LINE_STYLES = ("-", "--", ":", "-.")  # one per worker count, where a framework has several lines
PERCENTILES = ((Metric.LATENCY_P50, "p50"), (Metric.LATENCY_P95, "p95"), (Metric.LATENCY_P99, "p99"))
SERIES_PANELS = (
    (Series.RPS, "requests per second"),
    (Series.LATENCY_P95, "p95 latency (ms)"),
    (Series.SERVER_CPU, "server CPU (% of one core)"),
    (Series.SERVER_RSS, "server RSS (MB)"),
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _per_model(
    rows: Rows, path: Path, title: str, panels: int, draw: Callable[[list[Any], Rows], None], height: float = 4.2
) -> bool:
    """`panels` axes per model with measured rows (one panel: models side by side; more: a row per model);
    False (nothing written) when no row was measured."""
    measured = [r for r in rows if r["status"] in MEASURED and r.get(Metric.RPS) is not None]
    models = sorted({r["model"] for r in measured})
    if not models:
        return False
    plt = _pyplot()
    if panels == 1:  # models side by side
        fig, grid = plt.subplots(1, len(models), figsize=(7 * len(models), height), squeeze=False)
        axes = [[ax] for ax in grid[0]]
    else:  # a row of panels per model
        fig, axes = plt.subplots(len(models), panels, figsize=(6 * panels, height * len(models)), squeeze=False)
    for row_axes, model in zip(axes, models, strict=True):
        draw(list(row_axes), [r for r in measured if r["model"] == model])
        for ax in row_axes:
            ax.set_title(f"{model}: {ax.get_title()}", fontsize=10)
            ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _plain_log(axis: Any) -> None:
    """A log axis labelled 3, 10, 30 rather than 3x10^0."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(FormatStrFormatter(""))


def _short(row: dict[str, Any]) -> str:
    return f"{row['framework']} w{row['workers']} u{row['users']}"


def _frameworks(rows: Rows) -> dict[str, Any]:
    """A stable color per framework across every plot."""
    plt = _pyplot()
    palette = plt.get_cmap("tab10").colors
    return {fw: palette[i % len(palette)] for i, fw in enumerate(sorted({r["framework"] for r in rows}))}


def throughput_vs_workers(rows: Rows, path: Path) -> bool:
    colors = _frameworks(rows)

    def draw(axes: list[Any], mine: Rows) -> None:
        ax = axes[0]
        for fw, users in sorted({(r["framework"], r["users"]) for r in mine}):
            line = sorted((r for r in mine if (r["framework"], r["users"]) == (fw, users)), key=lambda r: r["workers"])
            ax.plot(
                [r["workers"] for r in line],
                [r[Metric.RPS] for r in line],
                marker="o",
                color=colors[fw],
                label=f"{fw} u{users}",
            )
            for r in line:
                if r["status"] != "ok":
                    ax.plot(r["workers"], r[Metric.RPS], marker="o", markersize=11, fillstyle="none", color="firebrick")
        ax.set_xticks(sorted({r["workers"] for r in mine}))
        ax.set_xlabel("workers")
        ax.set_ylabel("throughput (req/s)")
        ax.set_ylim(bottom=0)
        ax.set_title("throughput vs workers (red ring: degraded)")
        ax.legend(fontsize=8)

    return _per_model(rows, path, "Throughput by worker count: does adding workers pay?", 1, draw)


def latency_percentiles(rows: Rows, path: Path) -> bool:
    def draw(axes: list[Any], mine: Rows) -> None:
        ax = axes[0]
        mine = sorted(mine, key=lambda r: (r["framework"], r["workers"], r["users"]))
        height = 0.8 / len(PERCENTILES)
        for i, (key, name) in enumerate(PERCENTILES):
            ys = [j + i * height for j in range(len(mine))]
            values = [r.get(key) or float("nan") for r in mine]
            bars = ax.barh(ys, values, height, label=name)
            ax.bar_label(bars, labels=[f"{v:.2f}" if v == v else "" for v in values], fontsize=7, padding=2)
        ax.set_yticks([j + height for j in range(len(mine))], [_short(r) for r in mine], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
        ax.set_xlabel("latency (ms, log scale; no bar = too few requests to tell)")
        ax.set_title("latency percentiles per configuration")
        ax.legend(fontsize=8)

    most = max(
        (sum(1 for r in rows if r["model"] == m and r["status"] in MEASURED) for m in {r["model"] for r in rows}),
        default=0,
    )
    return _per_model(rows, path, "Latency percentiles: how long a request waits", 1, draw, max(4.2, 0.5 * most + 1.5))


def pareto(rows: Rows, path: Path) -> bool:
    colors = _frameworks(rows)

    def draw(axes: list[Any], mine: Rows) -> None:
        ax = axes[0]
        shown = [r for r in mine if r.get(Metric.LATENCY_P99)]  # no p99: too few requests to tell
        workers = sorted({r["workers"] for r in shown})
        for r in shown:
            ax.scatter(
                r[Metric.RPS],
                r[Metric.LATENCY_P99],
                s=60,
                color=colors[r["framework"]],
                zorder=3,
                marker=WORKER_MARKERS[workers.index(r["workers"]) % len(WORKER_MARKERS)]
                if r["status"] == "ok"
                else "X",
            )
        front = frontier(shown)
        if front:
            ax.step(
                [r[Metric.RPS] for r in front],
                [r[Metric.LATENCY_P99] for r in front],
                where="post",
                color="black",
                linestyle="--",
                linewidth=1,
                zorder=2,
            )
            ax.scatter(
                [r[Metric.RPS] for r in front],
                [r[Metric.LATENCY_P99] for r in front],
                s=220,
                facecolors="none",
                edgecolors="black",
                linewidths=1.2,
                zorder=4,
                label="on the Pareto frontier",
            )
        for i, r in enumerate(front):  # only the frontier is named: the points worth choosing between
            ax.annotate(
                _short(r),
                (r[Metric.RPS], r[Metric.LATENCY_P99]),
                fontsize=8,
                textcoords="offset points",
                xytext=(0, 12) if i % 2 else (0, -20),
                ha="center",
            )
        for fw in sorted({r["framework"] for r in shown}):
            ax.plot([], [], color=colors[fw], linewidth=6, label=fw)
        for i, count in enumerate(workers):
            ax.scatter([], [], color="grey", marker=WORKER_MARKERS[i % len(WORKER_MARKERS)], label=f"w{count}")
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        ax.margins(x=0.12, y=0.15)
        ax.set_xlabel("throughput (req/s)   → better")
        ax.set_ylabel("p99 latency (ms, log)   ↓ better")
        ax.set_title("p99 vs throughput (shape: workers; X: degraded)")
        ax.legend(fontsize=8, ncol=2)

    return _per_model(
        rows,
        path,
        "Trade-off: the ringed configurations (the Pareto frontier) are beaten by none on both",
        1,
        draw,
        5.0,
    )


def resources(rows: Rows, path: Path) -> bool:
    colors = _frameworks(rows)
    panels = (
        (Metric.SERVER_CPU_AVG, 0.01, "CPU used (cores, mean)", "%.2f"),
        (Metric.SERVER_RSS_MAX, 1.0, "memory (RSS MB, peak)", "%.0f"),
        ("rps_per_core", 1.0, "efficiency (req/s per core used)", "%.0f"),
    )

    def draw(axes: list[Any], mine: Rows) -> None:
        mine = sorted(mine, key=lambda r: (r["framework"], r["workers"], r["users"]))
        for ax, (key, scale, title, fmt) in zip(axes, panels, strict=True):
            values = [(r.get(key) or 0.0) * scale for r in mine]
            bars = ax.bar(range(len(mine)), values, color=[colors[r["framework"]] for r in mine])
            ax.bar_label(bars, fmt=fmt, fontsize=7)
            ax.set_xticks(range(len(mine)), [_short(r) for r in mine], rotation=45, ha="right", fontsize=7)
            ax.set_title(title)

    return _per_model(rows, path, "What each configuration costs: CPU, memory, and throughput per core", 3, draw, 4.2)


def timeseries(series: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> bool:
    """Per-second series of chosen configurations (one row each): rps, p95, CPU, RSS over the load test."""
    chosen = {name: data for name, data in sorted(series.items()) if any(data.get(k) for k, _ in SERIES_PANELS)}
    if not chosen:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(len(chosen), len(SERIES_PANELS), figsize=(20, 3.2 * len(chosen)), squeeze=False)
    for row_axes, (name, data) in zip(axes, chosen.items(), strict=True):
        for ax, (key, title) in zip(row_axes, SERIES_PANELS, strict=True):
            points = sorted(data.get(key, []))
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", linewidth=1)
                ax.set_ylim(0, max(v for _, v in points) * 1.15 or 1.0)
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.set_xlabel("second of the measured windows (repeats follow each other)", fontsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle("Second by second: is the load steady, does anything drift?")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def history(nights: dict[str, list[float]], rows: Rows, path: Path) -> bool:
    """Throughput of each configuration over the nights it was judged against, tonight last."""
    colors = _frameworks(rows)

    def draw(axes: list[Any], mine: Rows) -> None:
        ax = axes[0]
        for row in mine:
            past = nights.get(label(row))
            if not past:
                continue
            xs = list(range(-len(past), 1))
            color = colors[row["framework"]]
            style = LINE_STYLES[sorted({r["workers"] for r in mine}).index(row["workers"]) % len(LINE_STYLES)]
            ax.plot(
                xs,
                [*past, row[Metric.RPS]],
                marker="o",
                color=color,
                linestyle=style,
                label=f"{row['framework']} w{row['workers']} u{row['users']}",
            )
            if row.get("verdict") == "regression":
                ax.plot(
                    0,
                    row[Metric.RPS],
                    marker="o",
                    markersize=13,
                    fillstyle="none",
                    color="firebrick",
                    markeredgewidth=2,
                )
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("night (0 = tonight; earlier: the scheduled runs it was judged against)")
        ax.set_ylabel("throughput (req/s)")
        ax.set_ylim(bottom=0)
        ax.set_title("throughput night by night (red ring: regression)")
        ax.legend(fontsize=7)

    judged = [r for r in rows if nights.get(label(r))]
    return bool(judged) and _per_model(judged, path, "Did it get worse? Tonight against its baseline nights", 1, draw)


def capacity(curves: dict[str, list[tuple[float, float]]], rows: Rows, path: Path) -> bool:
    """p99 latency against achieved throughput, one line per configuration, the SLO as a line."""
    if not curves:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, points in sorted(curves.items()):
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o", label=name)
    for slo in {float(r["slo_p99_ms"]) for r in rows if r.get("slo_p99_ms") is not None}:
        ax.axhline(slo, color="firebrick", linestyle="--", linewidth=1, label=f"SLO p99 {float(slo):g} ms")
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    ax.set_xlabel("achieved throughput (req/s), open loop")
    ax.set_ylabel("p99 latency (ms, from each request's due time)")
    ax.set_title("Capacity search: the rate each configuration sustains within the SLO")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def batch_sizes(rows: Rows, path: Path) -> bool:
    """Per model: rows/s and p99 against rows per request, a line per framework (and worker count)."""
    if len({r.get("batch", 1) for r in rows}) < 2:
        return False
    colors = _frameworks(rows)

    def draw(axes: list[Any], mine: Rows) -> None:
        for fw, workers, users in sorted({(r["framework"], r["workers"], r["users"]) for r in mine}):
            line = sorted(
                (r for r in mine if (r["framework"], r["workers"], r["users"]) == (fw, workers, users)),
                key=lambda r: r.get("batch", 1),
            )
            batches = [r.get("batch", 1) for r in line]
            axes[0].plot(
                batches,
                [r.get(Metric.ROWS_PER_S, r[Metric.RPS]) for r in line],
                marker="o",
                color=colors[fw],
                label=f"{fw} w{workers} u{users}",
            )
            p99 = [(r.get("batch", 1), r[Metric.LATENCY_P99]) for r in line if r.get(Metric.LATENCY_P99)]
            axes[1].plot(
                [b for b, _ in p99],
                [v for _, v in p99],
                marker="o",
                color=colors[fw],
                label=f"{fw} w{workers} u{users}",
            )
        for ax, ylabel, title in (
            (axes[0], "rows per second", "throughput (rows/s) vs batch size"),
            (axes[1], "p99 latency per request (ms)", "p99 vs batch size"),
        ):
            ax.set_xscale("log", base=2)
            _plain_log(ax.xaxis)
            ax.set_xlabel("rows per request")
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            ax.set_title(title)
            ax.legend(fontsize=8)

    return _per_model(rows, path, "Batching: more rows per request, more rows per second?", 2, draw)
