"""The comparison a run ends with, as rows: one per configuration, read back from the trials' records.

It never re-measures: rows come from the trials' records (MLflow runs, or the spool's results when
MLflow is unreachable), and planned trials that recorded nothing are listed as missing. Rows carry the
derived figures a sizing decision needs (requests per second per CPU core and per GB) and which
configuration is best per model; `report` turns them into tables and plots.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servebench.config.spec import TrialSpec
from servebench.results.records import (
    TAG_FLAGS,
    TAG_MODEL_CHANGED,
    TAG_MODEL_VERSION,
    TAG_REASON,
    TAG_STATUS,
    TAG_TRIAL_KEY,
    TAG_VERDICT,
    Flag,
    Metric,
    TrialRecord,
)

MEASURED = ("ok", "degraded")  # statuses with figures: degraded ones measured while something went wrong
# (column header, row key, format)
COLUMNS: list[tuple[str, str, str]] = [
    ("", "best", "s"),
    ("model", "model", "s"),
    ("version", "registered", "s"),
    ("framework", "framework", "s"),
    ("workers", "workers", "s"),
    ("users", "users", "s"),
    ("batch", "batch", "s"),
    ("shape", "shape", "s"),
    ("engine", "engine", "s"),
    ("status", "status", "s"),
    ("parity", "parity", "s"),
    ("rps", Metric.RPS, ".0f"),
    ("rows/s", Metric.ROWS_PER_S, ".0f"),
    ("rps 95% CI", "rps_ci95", "s"),
    ("cv %", "rps_cv_pct", ".1f"),
    ("p50 ms", Metric.LATENCY_P50, ".3f"),
    ("p95 ms", Metric.LATENCY_P95, ".3f"),
    ("p99 ms", Metric.LATENCY_P99, ".3f"),
    ("max rps @SLO", Metric.MAX_RPS_AT_SLO, ".0f"),
    ("errors %", "error_pct", ".2f"),
    ("server cpu %", Metric.SERVER_CPU_AVG, ".0f"),
    ("cpu µs/req", Metric.CPU_US_PER_REQUEST, ".0f"),
    ("server rss MB", Metric.SERVER_RSS_MAX, ".0f"),
    ("rps/core", "rps_per_core", ".0f"),
    ("rps/GB", "rps_per_gb", ".0f"),
    ("max rps", Metric.MAX_RPS, ".0f"),
    ("max rps/core", Metric.MAX_RPS_PER_CORE, ".0f"),
    ("cpu µs/req @max", Metric.CPU_US_AT_MAX, ".0f"),
    ("rss MB/min", Metric.RSS_GROWTH, ".2f"),
    ("cold start s", Metric.COLD_START, ".2f"),
    ("verdict", "verdict", "s"),
    ("notes", "notes", "s"),
]


@dataclass(frozen=True)
class Summary:
    rows: list[dict[str, Any]]
    files: list[Path]
    parent_id: str | None = None  # the MLflow parent run it was logged to
    tracking_error: str | None = None  # MLflow was unreachable: built from the spool, not logged yet

    @property
    def changes(self) -> list[str]:
        """Regressions and improvements against the history, one line per configuration and figure."""
        return changes(self.rows)

    @property
    def regressions(self) -> list[str]:
        return [c for c in self.changes if c.endswith(": regression")]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Configurations that did not run clean; a skipped one (the framework cannot serve the model) is not."""
        return [r for r in self.rows if r["status"] not in ("ok", "skipped")]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "skipped"]

    @property
    def model_changes(self) -> list[str]:
        """One line per model whose served version differs from its baseline's."""
        changed = {r["model"]: r["model_changed"] for r in self.rows if r.get("model_changed")}
        return [f"{model}: model changed ({change}) since the baseline nights" for model, change in changed.items()]

    @property
    def parity_failures(self) -> list[dict[str, Any]]:
        """Configurations not load-tested because their answers differ from the reference model's."""
        return [r for r in self.rows if r.get("parity") == "fail"]

    def text(self) -> str:
        lines = [*self.model_changes, *shape_lines(self.rows), *self.changes]
        return format_table(self.rows) + "".join(f"\n{c}" for c in lines)


def rows_from_records(records: Iterable[TrialRecord], planned: list[TrialSpec] | None = None) -> list[dict[str, Any]]:
    """One row per trial record, plus a 'missing' row per planned trial that recorded nothing."""

    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        p, m, t = record.params, record.metrics, record.tags
        row: dict[str, Any] = {
            "model": p.get("model"),
            "framework": p.get("framework"),
            "workers": int(p.get("workers", 0)),
            "users": int(p.get("users", 0)),
            "batch": int(p.get("batch_size", 1)),
            **shape_fields(int(p.get("replicas", 1)), p.get("cpus_per_replica", "unlimited")),
            "status": t.get(TAG_STATUS, "unknown"),
            "parity": p.get("parity"),
            "run_id": record.run_id,
            "key": t.get(TAG_TRIAL_KEY, record.run_id),
            "engine": p.get("loadgen_engine", "locust"),
            "slo_p99_ms": p.get("slo_p99_ms") if p.get("capacity") == "true" else None,
            **m,
        }
        if Metric.ERROR_RATE in m:
            row["error_pct"] = 100.0 * m[Metric.ERROR_RATE]
        if Metric.RPS_CI95_LOW in m:
            row["rps_ci95"] = f"{m['rps_ci95_low']:.0f}-{m['rps_ci95_high']:.0f}"
            row["rps_cv_pct"] = 100.0 * m[Metric.RPS_CV]
        if m.get(Metric.SERVER_CPU_AVG):  # requests per second for each core the server kept busy
            row["rps_per_core"] = m.get(Metric.RPS, 0.0) / (m[Metric.SERVER_CPU_AVG] / 100.0)
        if m.get(Metric.SERVER_RSS_MAX):
            row["rps_per_gb"] = m.get(Metric.RPS, 0.0) / (m[Metric.SERVER_RSS_MAX] / 1024.0)
        if t.get(TAG_VERDICT, "no_baseline") != "no_baseline":
            row["verdict"] = t[TAG_VERDICT]
        row["verdicts"] = {
            k.removeprefix(TAG_VERDICT + "."): v for k, v in t.items() if k.startswith(TAG_VERDICT + ".")
        }
        row["model_version"] = t.get(TAG_MODEL_VERSION)
        if p.get("registered_version"):  # a user's registered model: the version this trial served
            row["registered"] = f"{p['registered_model']}/{p['registered_version']}"
        row["model_changed"] = t.get(TAG_MODEL_CHANGED)
        row["flags"] = [f for f in t.get(TAG_FLAGS, "").split(",") if f]
        row["notes"] = t.get(TAG_REASON) or ", ".join(row["flags"])
        rows[t.get(TAG_TRIAL_KEY, record.run_id)] = row  # a re-run of a trial replaces the older row
    for spec in planned or []:
        if spec.key not in rows:
            rows[spec.key] = {
                "model": spec.model,
                "framework": spec.framework,
                "workers": spec.workers,
                "users": spec.users,
                "batch": spec.batch,
                **shape_fields(spec.replicas, str(spec.cpus) if spec.cpus else "unlimited"),
                "key": spec.key,
                "status": "missing",
                "notes": "planned but no result was logged (task killed or never ran)",
            }
    for key, row in rows.items():  # a Locust figure capped by Locust, beside the native engine's of the same
        if Flag.LOADGEN_SATURATED in row.get("flags", []) and rows.get(f"{key}-h2load", {}).get("status") in MEASURED:
            row["superseded"] = True
            row["notes"] = "Locust saturated: the h2load row measures the server; " + row["notes"]
    ordered = sorted(
        rows.values(),
        key=lambda r: (
            r["model"],
            r["framework"],
            r["workers"],
            r["users"],
            r.get("batch", 1),
            r.get("shape", ""),
            r.get("engine", ""),
        ),
    )
    for row in best(ordered).values():
        row["best"] = "★"
    return ordered


def shape_fields(replicas: int, cpus: str) -> dict[str, Any]:
    """A row's replica shape: "" for one container as it comes, "2 x 1 CPU" for two replicas of one CPU."""
    limited = cpus not in ("unlimited", "None", "")
    shown = "" if replicas == 1 and not limited else f"{replicas} x {float(cpus):g} CPU" if limited else f"{replicas} x"
    return {"replicas": replicas, "total_cpus": replicas * float(cpus) if limited else None, "shape": shown}


def label(row: dict[str, Any]) -> str:
    """How a configuration is named in texts and plots: model/framework/wN/uN (with its replica shape, and
    /h2load where the native engine measured it)."""
    engine = "/h2load" if row.get("engine") == "h2load" else ""
    shape = f"/{row['shape'].replace(' ', '')}" if row.get("shape") else ""
    batch = f"/b{row['batch']}" if row.get("batch", 1) != 1 else ""
    return f"{row['model']}/{row['framework']}/w{row['workers']}/u{row['users']}{batch}{shape}{engine}"


def shape_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each equal-CPU group in one line: its shapes' throughput, relative to the first shape's."""
    lines = []
    for group in shapes(rows):
        base = group[0].get(Metric.RPS) or 0.0
        shown = ", ".join(
            f"{r['shape']} {r.get(Metric.RPS, 0.0):.0f} rps"
            + (f" ({r.get(Metric.RPS, 0.0) / base:.2f}x)" if base else "")
            for r in group
        )
        first = group[0]
        lines.append(
            f"equal total CPUs ({first['total_cpus']:g}), {first['model']}/{first['framework']}/w{first['workers']}/"
            f"u{first['users']}: {shown}"
        )
    return lines


def shapes(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Groups of measured rows that differ only in their replica shape and have the same total CPUs (e.g. 1 x 2
    CPU and 2 x 1 CPU): the "more small nodes or fewer big ones" comparison, one group per configuration."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("total_cpus") and row["status"] in MEASURED:
            same = (row["model"], row["framework"], row["workers"], row["users"], row.get("engine"), row["total_cpus"])
            groups.setdefault(same, []).append(row)
    return [sorted(g, key=lambda r: r["replicas"]) for g in groups.values() if len(g) > 1]


def speed(row: dict[str, Any]) -> float:
    """The throughput a configuration is ranked by: its max rate within the SLO when capacity search ran."""
    capacity = row.get(Metric.MAX_RPS_AT_SLO)
    return float(capacity if capacity is not None else row.get(Metric.RPS, 0.0))


def best(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model and batch size, the fastest configuration that ran clean (status ok); ties go to the lower p99.
    Keyed `model`, or `model/bN` for a batch of N rows (requests of different sizes are not ranked together)."""
    winners: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["status"] != "ok" or row.get("superseded"):
            continue
        rank = (speed(row), -row.get(Metric.LATENCY_P99, math.inf))
        group = row["model"] + (f"/b{row['batch']}" if row.get("batch", 1) != 1 else "")
        held = winners.get(group)
        if held is None or rank > (speed(held), -held.get(Metric.LATENCY_P99, math.inf)):
            winners[group] = row
    return winners


def frontier(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The measured rows no other row beats on both throughput and p99 (the Pareto frontier), by throughput."""
    points = [r for r in rows if r["status"] in MEASURED and r.get(Metric.LATENCY_P99) and not r.get("superseded")]
    front = [
        r
        for r in points
        if not any(
            o[Metric.RPS] >= r[Metric.RPS]
            and o[Metric.LATENCY_P99] <= r[Metric.LATENCY_P99]
            and (o[Metric.RPS], o[Metric.LATENCY_P99]) != (r[Metric.RPS], r[Metric.LATENCY_P99])
            for o in points
        )
    ]
    return sorted(front, key=lambda r: r[Metric.RPS])


def changes(rows: list[dict[str, Any]]) -> list[str]:
    """Regressions and improvements, one line each; a regression of a configuration whose model changed since
    its baseline is the model's, not the serving's: it reads `model changed (v3 → v4)`."""
    return [
        f"{label(r)}: {shown}"
        for r in rows
        for text in r.get("verdicts", {}).values()
        if (shown := change_text(r, text))
    ]


def change_text(row: dict[str, Any], text: str) -> str | None:
    """A verdict as the summary words it, or None for one that is not a change."""
    if row.get("model_changed") and text.endswith(": regression"):
        return text.removesuffix("regression") + f"model changed ({row['model_changed']})"
    return text if text.endswith((": regression", ": improvement")) else None


def cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "" if key == "best" else "-"
    return format(value, fmt) if fmt != "s" else str(value)


# Shown only when some row has them: a single-repeat or fixed-load run has no interval or capacity, a
# short one no memory trend.
OPTIONAL = {
    "engine",
    "registered",
    Metric.ROWS_PER_S,
    Metric.MAX_RPS,
    Metric.MAX_RPS_PER_CORE,
    Metric.CPU_US_AT_MAX,
    "rps_ci95",
    "rps_cv_pct",
    Metric.MAX_RPS_AT_SLO,
    Metric.RSS_GROWTH,
    "verdict",
    "shape",
}


def columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The columns worth showing for these rows (the engine only when another than Locust measured, the shape
    only when a row has replicas or a CPU limit)."""

    def shown(key: str) -> bool:
        if key in ("batch", Metric.ROWS_PER_S):
            return any(r.get("batch", 1) != 1 for r in rows)
        return key not in OPTIONAL or any(r.get(key) not in (None, "", "locust") for r in rows)

    return [c for c in COLUMNS if shown(c[1])]


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    shown = columns(rows)
    header = [h for h, _, _ in shown]
    body = [[cell(r, k, f) for _, k, f in shown] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]) + "\n"
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    table = [header, ["-" * w for w in widths], *body]
    return "".join("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n" for cells in table)
