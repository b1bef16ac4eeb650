"""Where servebench keeps things. Every location can be overridden by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def state_dir() -> Path:
    """The one git-ignored folder holding models, server envs, run outputs, Airflow's and MLflow's stores."""
    path = Path(os.environ.get("SERVEBENCH_HOME", REPO_ROOT / ".servebench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def server_search_path() -> list[Path]:
    """Folders holding one sub-folder per server, like PATH: extra server folders can live outside the repo."""
    value = os.environ.get("SERVEBENCH_SERVERS_PATH")
    if not value:
        return [REPO_ROOT / "servers"]
    return [Path(p) for p in value.split(os.pathsep) if p]


def models_dir() -> Path:
    return state_dir() / "models"


def envs_dir() -> Path:
    return state_dir() / "envs"


def runs_dir() -> Path:
    return state_dir() / "runs"


def mlflow_dir() -> Path:
    return state_dir() / "mlflow"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else a SQLite store in the state folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def local_artifact_root() -> Path:
    """Artifacts of the embedded SQLite store (a remote tracking server picks its own)."""
    return mlflow_dir() / "artifacts"
