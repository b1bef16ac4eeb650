"""The benchmark models' recipes: what each is and how it is made (data, estimator, hyper-parameters).

Kept apart from their training and export (export.py) so that names and descriptions cost nothing to read:
the trigger form lists them when Airflow parses the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """How a benchmark model is made. Everything here goes into the export key."""

    name: str
    description: str
    estimator: str  # "logistic_regression" | "mlp" | "hist_gradient_boosting"
    n_features: int = 30
    n_classes: int = 3
    n_samples: int = 3000
    seed: int = 20261123
    hyper: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="lr",
            description="Logistic regression on 30 features: inference takes microseconds, framework overhead dominates.",
            estimator="logistic_regression",
            hyper={"max_iter": 1000},
        ),
        Recipe(
            name="mlp",
            description="MLP with three 1536-wide hidden layers: inference (1-2 ms on one core) dominates.",
            estimator="mlp",
            # Few epochs on purpose: the benchmark needs the model's shape, not its best accuracy.
            hyper={"hidden_layer_sizes": [1536, 1536, 1536], "max_iter": 3},
        ),
        Recipe(
            name="gbdt",
            description="Gradient-boosted trees (300 of 31 leaves) on 30 features: a typical production tabular model.",
            estimator="hist_gradient_boosting",
            n_classes=2,
            # A fixed ensemble size (no early stopping), so every night serves the same number of trees.
            hyper={"max_iter": 300, "max_leaf_nodes": 31, "early_stopping": False},
        ),
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(RECIPES)
