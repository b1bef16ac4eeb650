"""Soak mode: one long load test per configuration, whose memory growth is fitted (a short soak here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servebench.config.spec import TrialSpec
from servebench.measure.trial import run_trial
from servebench.models.export import ExportedModel


@pytest.mark.full  # soak: the trend fit itself is in the default tier (tests/unit/test_tracking_and_summary.py)
def test_a_leaking_server_is_caught_and_a_steady_one_is_not(
    exports: dict[str, ExportedModel], tmp_path: Path, no_leftover_processes: None
) -> None:
    # leaking: 8 KiB kept per prediction; paced: the same server without the leak
    figures = {}
    for framework in ("leaking", "paced"):
        spec = TrialSpec.of(
            "lr", framework, 1, 2, spawn_rate=20.0, duration=1.0, warmup=1.0, repeats=3, soak_minutes=0.25
        )
        result = run_trial(spec, exports["lr"], tmp_path / framework)
        assert result.ok, result.reason
        assert spec.key == f"lr-{framework}-w1-u2-soak0.25m" and result.metrics["repeats"] == 1  # one long run
        assert result.metrics["requests"] / result.metrics["rps"] > 14  # a 15 s window, not 1 s
        figures[framework] = result.metrics
        print(framework, {k: round(v, 3) for k, v in result.metrics.items() if "growth" in k or "drift" in k})
        if framework == "leaking":
            assert "memory_growing" in result.flags
        else:
            assert "memory_growing" not in result.flags
    leaked_mb_per_min = figures["leaking"]["rps"] * 60 * 8 / 1024  # what the server keeps, by construction
    growth = figures["leaking"]["server_rss_growth_mb_per_min"]
    assert (
        0.5 * leaked_mb_per_min < growth < 1.5 * leaked_mb_per_min and figures["leaking"]["server_rss_growth_r2"] > 0.8
    )
    assert abs(figures["paced"]["server_rss_growth_mb_per_min"]) < 1.0
