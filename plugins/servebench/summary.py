"""The comparison a run ends with: a table (terminal, Markdown, CSV) and a PNG, read back from MLflow.

It never re-measures: rows come from the trials' records (MLflow runs, or the spool's results when
MLflow is unreachable), and planned trials that recorded nothing are listed as missing.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from servebench.spec import TrialSpec

if TYPE_CHECKING:
    from servebench.tracker import TrialRecord

MEASURED = ("ok", "degraded")  # statuses with figures: degraded ones measured while something went wrong
# (column header, row key, format)
COLUMNS: list[tuple[str, str, str]] = [
    ("model", "model", "s"),
    ("framework", "framework", "s"),
    ("workers", "workers", "s"),
    ("users", "users", "s"),
    ("status", "status", "s"),
    ("parity", "parity", "s"),
    ("rps", "rps", ".0f"),
    ("rps 95% CI", "rps_ci95", "s"),
    ("cv %", "rps_cv_pct", ".1f"),
    ("p50 ms", "latency_ms_p50", ".3f"),
    ("p95 ms", "latency_ms_p95", ".3f"),
    ("p99 ms", "latency_ms_p99", ".3f"),
    ("max rps @SLO", "max_rps_at_slo", ".0f"),
    ("errors %", "error_pct", ".2f"),
    ("server cpu %", "server_cpu_percent_avg", ".0f"),
    ("cpu µs/req", "server_cpu_us_per_request", ".0f"),
    ("server rss MB", "server_rss_mb_max", ".0f"),
    ("rss MB/min", "server_rss_growth_mb_per_min", ".2f"),
    ("cold start s", "cold_start_s", ".2f"),
    ("verdict", "verdict", "s"),
    ("notes", "notes", "s"),
]


@dataclass(frozen=True)
class Summary:
    rows: list[dict[str, Any]]
    files: list[Path]
    parent_id: str | None = None  # the MLflow parent run it was logged to
    tracking_error: str | None = None  # MLflow was unreachable: built from the spool, not logged yet
    changes: list[str] = field(default_factory=list)  # regressions and improvements against the history

    @property
    def regressions(self) -> list[str]:
        return [c for c in self.changes if c.endswith(": regression")]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]

    @property
    def parity_failures(self) -> list[dict[str, Any]]:
        """Configurations not load-tested because their answers differ from the reference model's."""
        return [r for r in self.rows if r.get("parity") == "fail"]

    def text(self) -> str:
        return format_table(self.rows) + "".join(f"\n{c}" for c in self.changes)


def rows_from_records(records: Iterable[TrialRecord], planned: list[TrialSpec] | None = None) -> list[dict[str, Any]]:
    """One row per trial record, plus a 'missing' row per planned trial that recorded nothing."""
    from servebench.tracker import TAG_FLAGS, TAG_REASON, TAG_STATUS, TAG_TRIAL_KEY

    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        p, m, t = record.params, record.metrics, record.tags
        row: dict[str, Any] = {
            "model": p.get("model"), "framework": p.get("framework"),
            "workers": int(p.get("workers", 0)), "users": int(p.get("users", 0)),
            "status": t.get(TAG_STATUS, "unknown"), "parity": p.get("parity"), "run_id": record.run_id,
            "slo_p99_ms": p.get("slo_p99_ms") if p.get("capacity") == "true" else None, **m,
        }  # fmt: skip
        if "error_rate" in m:
            row["error_pct"] = 100.0 * m["error_rate"]
        if "rps_ci95_low" in m:
            row["rps_ci95"] = f"{m['rps_ci95_low']:.0f}-{m['rps_ci95_high']:.0f}"
            row["rps_cv_pct"] = 100.0 * m["rps_cv"]
        row["notes"] = t.get(TAG_REASON) or t.get(TAG_FLAGS, "")
        rows[t.get(TAG_TRIAL_KEY, record.run_id)] = row  # a re-run of a trial replaces the older row
    for spec in planned or []:
        if spec.key not in rows:
            rows[spec.key] = {
                "model": spec.model, "framework": spec.framework, "workers": spec.workers, "users": spec.users,
                "status": "missing", "notes": "planned but no result was logged (task killed or never ran)",
            }  # fmt: skip
    return sorted(rows.values(), key=lambda r: (r["model"], r["framework"], r["workers"], r["users"]))


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt) if fmt != "s" else str(value)


# Shown only when some row has them: a single-repeat or fixed-load run has no interval or capacity, a
# short one no memory trend.
OPTIONAL = {"rps_ci95", "rps_cv_pct", "max_rps_at_slo", "server_rss_growth_mb_per_min", "verdict"}


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    columns = [c for c in COLUMNS if c[1] not in OPTIONAL or any(r.get(c[1]) is not None for r in rows)]
    header = [h for h, _, _ in columns]
    body = [[_cell(r, k, f) for _, k, f in columns] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]) + "\n"
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    fmt_row = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt_row(header), fmt_row(["-" * w for w in widths])] + [fmt_row(r) for r in body]) + "\n"


def write_files(rows: list[dict[str, Any]], out_dir: Path, curves: dict[str, list[tuple[float, float]]] | None = None) -> list[Path]:
    """summary.csv, summary.md and throughput_latency.png in `out_dir`; capacity.png when `curves` (per
    configuration label: the (achieved rps, p99 ms) points a capacity search visited) has any."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, png_path = out_dir / "summary.csv", out_dir / "summary.md", out_dir / "throughput_latency.png"
    extra = ["latency_ms_max", "latency_ms_p999", "locust_latency_ms_p50", "locust_latency_ms_p99", "rps_ci95_low", "rps_ci95_high",
             "rps_cv", "loadgen_saturated", "loadgen_cpu_percent_avg"]
    keys = ["run_id"] + [k for _, k, _ in COLUMNS if k != "notes"] + extra + ["notes"]
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text("# servebench summary\n\n" + format_table(rows, markdown=True))
    plot(rows, png_path)
    files = [csv_path, md_path, png_path]
    if curves:
        files.append(out_dir / "capacity.png")
        plot_capacity(curves, rows, files[-1])
    return files


def plot_capacity(curves: dict[str, list[tuple[float, float]]], rows: list[dict[str, Any]], path: Path) -> None:
    """p99 latency against achieved throughput, one line per configuration, the SLO as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for label, points in sorted(curves.items()):
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=label)
    slos = {r.get("slo_p99_ms") for r in rows if r.get("slo_p99_ms") is not None}
    for slo in slos:
        ax.axhline(float(slo), color="firebrick", linestyle="--", linewidth=1, label=f"SLO p99 {float(slo):g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (req/s), open loop")
    ax.set_ylabel("p99 latency (ms, from each request's due time)")
    ax.set_title("servebench capacity search: the rate each configuration sustains within the SLO")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Throughput and p95 latency per framework x workers (x users), one row of panels per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(len(models) or 1, 2, figsize=(12, 3.6 * max(len(models), 1)), squeeze=False)
    for row_axes, model in zip(axes, models):
        mine = [r for r in rows if r["model"] == model]
        frameworks = sorted({r["framework"] for r in mine})
        variants = sorted({(r["workers"], r["users"]) for r in mine})
        width = 0.8 / max(len(variants), 1)
        for ax, key, title in ((row_axes[0], "rps", "throughput (req/s)"), (row_axes[1], "latency_ms_p95", "p95 latency (ms)")):
            for i, (workers, users) in enumerate(variants):
                values = []
                for fw in frameworks:
                    match = [r for r in mine if r["framework"] == fw and (r["workers"], r["users"]) == (workers, users)]
                    values.append(match[0].get(key, 0.0) if match and match[0]["status"] in MEASURED else 0.0)
                xs = [x + i * width for x in range(len(frameworks))]
                bars = ax.bar(xs, values, width, label=f"w{workers} u{users}")
                ax.bar_label(bars, fmt="%.0f" if key == "rps" else "%.1f", fontsize=7)
            ax.set_xticks([x + width * (len(variants) - 1) / 2 for x in range(len(frameworks))], frameworks)
            ax.set_title(f"{model}: {title}")
            ax.grid(axis="y", alpha=0.3)
        row_axes[0].legend(title="workers, users", fontsize=8)
    notes = []
    for label, wanted in (("no bar = not measured", lambda st: st not in MEASURED), ("degraded", lambda st: st == "degraded")):
        names = [f"{r['model']}/{r['framework']}/w{r['workers']}/u{r['users']}" for r in rows if wanted(r["status"])]
        if names:
            notes.append(f"{label}: {', '.join(names)}")
    if notes:
        fig.text(0.01, 0.005, "; ".join(notes), fontsize=8, color="firebrick")
    fig.suptitle("servebench: throughput and p95 latency per framework and worker count")
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
