"""One definition of every setting: a field added to BenchmarkParams reaches the trigger form, the CLI and the
trial runs' MLflow params with no other edit. The field is added here at run time, the way a contributor adds
one to params.py, and followed through the real code of each front door."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from pydantic import Field, create_model

from servebench import cli
from servebench.config import params
from servebench.config.spec import TrialSpec, plan
from servebench.results.records import TrialResult
from servebench.results.spool import Benchmark
from servebench.results.tracker import Tracker

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def with_new_setting(monkeypatch: pytest.MonkeyPatch) -> type[params.BenchmarkParams]:
    extended = create_model(
        "BenchmarkParams",
        __base__=params.BenchmarkParams,
        think_time_ms=(
            float,
            Field(
                default=0.0,
                ge=0,
                title="Think time (ms)",
                description="Pause between a user's requests.",
                json_schema_extra={"section": "Load"},
            ),
        ),
    )
    monkeypatch.setattr(params, "BenchmarkParams", extended)
    return extended


def test_a_new_setting_is_in_the_form_the_cli_and_the_trial_runs(with_new_setting: type, tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    # the trigger form: the DAG's Params, as Airflow parses the file
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["serving_benchmark"]
    param = dag.params.get_param("think_time_ms")
    assert (param.value, param.description) == (0.0, "Pause between a user's requests.")
    assert param.schema == {"type": "number", "minimum": 0, "title": "Think time (ms)", "section": "Load"}

    # the CLI
    args = cli._parser().parse_args(
        ["run", "--think-time-ms", "5", "--models", "lr", "--frameworks", "fastapi", "--workers", "1"]
    )
    assert args.think_time_ms == 5.0

    # the trial: validated, planned, through XCom or the spool, logged to a real MLflow store
    (trial,) = plan(
        params.parse({"think_time_ms": args.think_time_ms, "models": ["lr"], "frameworks": ["fastapi"], "workers": [1]})
    )
    again = TrialSpec.from_dict(trial.to_dict())
    assert again.settings.think_time_ms == 5.0  # type: ignore[attr-defined]
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = tracker.open_parent(Benchmark("b", "exp", "b", {}, {}, {}, tracker.uri))
    (tmp_path / "trial").mkdir()
    run_id = tracker.log_trial(parent, TrialResult(again, "ok", metrics={"rps": 1.0}, out_dir=tmp_path / "trial"))
    logged = MlflowClient(tracker.uri).get_run(run_id).data.params
    assert logged["think_time_ms"] == "5.0"
    assert logged["duration_s"] == "60.0", "a field logged under an older public name keeps it"
