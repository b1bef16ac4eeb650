"""Where a benchmarked model comes from: a built-in recipe, the MLflow Model Registry, or a file.

A `models` entry is one of
- a recipe name (`lr`, `mlp`, `gbdt`);
- `models:/<name>/<version>` or `models:/<name>@<alias>`, looked up in the tracking server the run uses;
- a path to `.onnx`, or to scikit-learn's `.joblib`/`.pkl` with `trust_pickle` (unpickling runs code).

`entry_id` is pure (the trigger form and the planner use it); `resolve` looks things up and says, naming the
entry, why one cannot be benchmarked, before any server starts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from servebench.models.recipes import MODEL_NAMES

REGISTRY_PREFIX = "models:/"
ONNX_SUFFIXES = (".onnx",)
PICKLE_SUFFIXES = (".joblib", ".pkl")
_REGISTRY = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


class SourceError(ValueError):
    """A model entry that cannot be benchmarked; the message names the entry and the problem."""


def kind(entry: str) -> str:
    """ "recipe", "registry" or "file"; SourceError for an entry that is none of them."""
    if entry in MODEL_NAMES:
        return "recipe"
    if entry.startswith(REGISTRY_PREFIX):
        if not _REGISTRY.match(entry):
            raise SourceError(f"{entry}: a registry URI is models:/<name>/<version> or models:/<name>@<alias>")
        return "registry"
    if entry.endswith(ONNX_SUFFIXES + PICKLE_SUFFIXES):
        return "file"
    raise SourceError(
        f"{entry}: not a model: expected a recipe ({', '.join(MODEL_NAMES)}), models:/<name>/<version>, "
        f"models:/<name>@<alias>, or a {'/'.join(ONNX_SUFFIXES + PICKLE_SUFFIXES)} file"
    )


def entry_id(entry: str) -> str:
    """The model's name in trial keys, run names and folders: stable across nights for the same entry.
    `lr`, `churn.champion` (an alias), `churn.v3`, `fraud.onnx.1a2b3c` (a file: its name and a hash of its
    absolute path). Only characters MLflow keys, file names and image tags all take (no `@`, no `:`)."""
    what = kind(entry)
    if what == "recipe":
        return entry
    if what == "registry":
        found = _REGISTRY.match(entry)
        assert found is not None  # kind() checked it
        name = re.sub(r"[^\w.-]+", "_", found["name"])
        return f"{name}.{found['alias']}" if found["alias"] else f"{name}.v{found['version']}"
    path = Path(entry).expanduser().resolve()
    name = re.sub(r"[^\w.-]+", "_", path.name)
    return f"{name}.{hashlib.sha256(str(path).encode()).hexdigest()[:6]}"


@dataclass(frozen=True)
class RegisteredVersion:
    """A registry entry resolved to the version it means now."""

    name: str
    version: str
    alias: str  # "" for a pinned version
    run_id: str
    source: str  # the model's artifact URI

    @property
    def uri(self) -> str:
        return f"{REGISTRY_PREFIX}{self.name}/{self.version}"


def resolve_registered(entry: str, tracking_uri: str) -> RegisteredVersion:
    """The version a registry entry points at; SourceError when the name, version or alias does not exist."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    found = _REGISTRY.match(entry)
    if not found:
        raise SourceError(f"{entry}: a registry URI is models:/<name>/<version> or models:/<name>@<alias>")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = found["name"]
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        raise SourceError(f"{entry}: no registered model {name!r} in the registry at {tracking_uri}") from None
    try:
        if found["alias"]:
            version = client.get_model_version_by_alias(name, found["alias"])
        else:
            version = client.get_model_version(name, found["version"])
    except MlflowException:
        if found["alias"]:
            aliases = sorted(getattr(registered, "aliases", {}) or {})
            raise SourceError(
                f"{entry}: registered model {name!r} has no alias {found['alias']!r} pointing at a version "
                f"(its aliases: {aliases or 'none'})"
            ) from None
        raise SourceError(f"{entry}: registered model {name!r} has no version {found['version']}") from None
    return RegisteredVersion(
        name, str(version.version), found["alias"] or "", version.run_id or "", version.source or ""
    )


def check_file(entry: str, trust_pickle: bool) -> Path:
    """The file of a file entry, refused when it is missing, or a pickle not explicitly trusted."""
    path = Path(entry).expanduser().resolve()
    if not path.is_file():
        raise SourceError(f"{entry}: no such file")
    if path.suffix in PICKLE_SUFFIXES and not trust_pickle:
        raise SourceError(
            f"{entry}: loading a pickle runs whatever code it holds; set trust_pickle (CLI --trust-pickle) "
            "only for a file you trust, or export the model to ONNX"
        )
    return path
