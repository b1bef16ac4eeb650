"""Register example user models in an MLflow Model Registry, as a team's own training job would, and write a
request sample for each: what README's "Benchmark your own model" starts from, and what the tests use.

    .venv/bin/python scripts/register_example_models.py [--out DIR] [--version-bump]

Registers, in the tracking server of MLFLOW_TRACKING_URI (default: servebench's own SQLite store):
- `churn`: a pipeline (StandardScaler on 6 numbers, one-hot on a `plan` string column) before a histogram
  gradient-boosted classifier (binary), with a signature; alias `champion` on the newest version;
- `iris`: a multinomial logistic regression on scikit-learn's iris data (3 classes, named columns);
- `diabetes`: a random forest regressor on scikit-learn's diabetes data.
Each is logged with skops and the types it needs trusted (what MLflow 3.17 records), and each gets a CSV of
request rows (`<name>-rows.csv`, with its label column, which servebench leaves out). `--version-bump` registers
a new `churn` version (more trees) and moves `champion` to it: a model change between two nights.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NUMBERS = ["tenure", "monthly", "support_calls", "usage_gb", "age", "discount"]


def churn_data(seed: int = 7, rows: int = 3000) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.gamma(2.0, 12.0, rows),
            "monthly": rng.normal(60.0, 20.0, rows),
            "support_calls": rng.poisson(2.0, rows).astype(float),
            "usage_gb": rng.lognormal(3.0, 0.6, rows),
            "age": rng.normal(42.0, 12.0, rows),
            "discount": rng.uniform(0.0, 0.3, rows),
            "plan": rng.choice(["basic", "plus", "pro", "family"], rows, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )
    risk = 0.04 * frame["support_calls"] - 0.02 * frame["tenure"] + 0.01 * frame["monthly"] + (frame["plan"] == "basic")
    return frame, (risk + rng.normal(0, 0.5, rows) > 0.5).astype(int).to_numpy()


def churn_model(trees: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [("numbers", StandardScaler(), NUMBERS), ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])]
                ),
            ),
            ("trees", HistGradientBoostingClassifier(max_iter=trees, early_stopping=False, random_state=0)),
        ]
    )


def _register(name: str, model: Any, frame: pd.DataFrame, alias: str | None = None) -> str:
    """Log with skops and a signature, register a new version; returns `name/version`."""
    import mlflow
    import sklearn
    import skops.io as skops_io
    from mlflow.models import infer_signature

    trusted = skops_io.get_untrusted_types(data=skops_io.dumps(model))
    with mlflow.start_run(run_name=f"train {name}"):
        info = mlflow.sklearn.log_model(
            model,
            name=name,
            signature=infer_signature(frame, model.predict(frame)),
            serialization_format="skops",
            skops_trusted_types=trusted,
            registered_model_name=name,
            # Named, not inferred: inference imports the model in a subprocess, ~15 s a model here.
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", "skops"],
        )
    version = str(info.registered_model_version)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
    return f"{name}/{version}"


def register_all(out: Path, version_bump: bool = False, trees: int = 100) -> dict[str, str]:
    """Register the example models (or, with `version_bump`, a new churn version with twice the trees, alias
    champion moved to it) and write their request samples into `out`; the registered versions by name."""
    import mlflow
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LogisticRegression

    from servebench.base import paths

    paths.mlflow_dir().mkdir(parents=True, exist_ok=True)
    uri = paths.tracking_uri()  # MLFLOW_TRACKING_URI, else servebench's own SQLite store
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:") and mlflow.get_experiment_by_name("example-models") is None:
        # a file store keeps artifacts in the state folder, not in ./mlruns of whatever folder this runs in
        location = (paths.local_artifact_root() / "example-models").as_uri()
        mlflow.create_experiment("example-models", artifact_location=location)
    mlflow.set_experiment("example-models")
    out.mkdir(parents=True, exist_ok=True)
    frame, churned = churn_data()
    registered = {
        "churn": _register(
            "churn", churn_model(trees * (2 if version_bump else 1)).fit(frame, churned), frame, "champion"
        )
    }
    frame.assign(churned=churned).head(2000).to_csv(out / "churn-rows.csv", index=False)
    if version_bump:
        return registered
    iris = load_iris(as_frame=True)
    iris_x = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    registered["iris"] = _register("iris", LogisticRegression(max_iter=500).fit(iris_x, iris.target), iris_x)
    iris_x.assign(species=iris.target).to_csv(out / "iris-rows.csv", index=False)
    diabetes = load_diabetes(as_frame=True)
    forest = RandomForestRegressor(n_estimators=60, max_depth=8, random_state=0).fit(diabetes.data, diabetes.target)
    registered["diabetes"] = _register("diabetes", forest, diabetes.data)
    diabetes.data.assign(progression=diabetes.target).to_csv(out / "diabetes-rows.csv", index=False)
    return registered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="where the request samples are written")
    parser.add_argument("--version-bump", action="store_true", help="a new churn version, with alias champion")
    args = parser.parse_args()
    from servebench.base import paths

    for name, version in register_all(args.out, args.version_bump).items():
        print(f"registered {version}" + (" (alias champion)" if name == "churn" else ""))
    print(f"request samples in {args.out}: <name>-rows.csv; registry at {paths.tracking_uri()}")


if __name__ == "__main__":
    main()
