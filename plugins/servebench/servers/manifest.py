"""Server manifests: a server is a folder `servers/<name>/` with a manifest.toml, its code and requirements.

Adding a framework means adding a folder; the harness learns everything it needs from the manifest.
"""

from __future__ import annotations

import re
import string
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from servebench.base import paths
from servebench.servers import contract

MANIFEST_FILE = "manifest.toml"
# Placeholders a manifest may use in `start`, `build`, `prepare` and `env`; the harness fills them in.
# `env_dir` is the server's build folder (a venv for Python servers); `python` is its interpreter;
# `prepared_dir` is where `prepare` leaves what it makes of one model (e.g. a SavedModel);
# `max_body_bytes` is the manifest's own request size limit, for servers that take it as an option.
PLACEHOLDERS = frozenset(
    {
        "python",
        "host",
        "port",
        "workers",
        "model_path",
        "model_meta",
        "server_dir",
        "env_dir",
        "prepared_dir",
        "max_body_bytes",
    }
)
# What each model format resolves `{model_path}` to: a key of the export's files (see models.py).
ModelFormat = Literal["joblib", "onnx", "weights"]
Backend = Literal["local", "docker"]
# How the harness talks to a server (contract.py): servebench's own contract, TF Serving's REST API, or the
# Open Inference Protocol (KServe v2) of Triton, MLServer and KServe.
Protocol = Literal["servebench-v1", "tfserving-rest", "open-inference-v2"]


class ManifestError(ValueError):
    """A server folder whose manifest is missing or invalid; the message names the file and field."""


def _check_placeholders(texts: list[str]) -> list[str]:
    for text in texts:
        for _, name, _, _ in string.Formatter().parse(text):
            if name is not None and name not in PLACEHOLDERS:
                raise ValueError(f"unknown placeholder {{{name}}} in {text!r}; known: {sorted(PLACEHOLDERS)}")
    return texts


class ContainerSpec(BaseModel):
    """How the container backend builds the server's image (see docker/ and images.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dockerfile: str | None = Field(
        default=None, description="A Dockerfile under docker/; default: server-python or server-native by language."
    )
    build_packages: list[str] = Field(default=[], description="Debian packages a native build stage installs.")
    artifacts: list[str] = Field(default=[], description="Files of a native build that its runtime image keeps.")

    @field_validator("artifacts")
    @classmethod
    def _artifact_placeholders(cls, value: list[str]) -> list[str]:
        return _check_placeholders(value)


Task = Literal["binary", "multiclass", "regressor"]
ColumnType = Literal["number", "string"]


class Serves(BaseModel):
    """What a server can serve, beyond its model format: the planner skips, with the reason, every model and
    batch size outside it (capability.py). The defaults are what a server of the original contract handles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[Task] = Field(default=["binary", "multiclass"], min_length=1, description="Model kinds it answers.")
    column_types: list[ColumnType] = Field(
        default=["number"], min_length=1, description="Input column types it parses."
    )
    named_columns: bool = Field(default=False, description='Rows as {"column": value} objects, not only lists.')
    max_batch_rows: int = Field(default=1024, ge=1, description="Most rows one request may carry.")


class Manifest(BaseModel):
    """How to build a server, start it with N workers on a port, and check its health."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    language: Literal["python", "cpp"]
    description: str = ""
    model_format: ModelFormat
    protocol: Protocol = "servebench-v1"
    model_name: str = Field(
        default="model", description="tfserving-rest, open-inference-v2: the served model's name in its URLs."
    )
    predict_path: str | None = Field(
        default=None, pattern=r"^/", description="Where predictions are posted, if not the protocol's own path."
    )
    output_names: list[str] = Field(
        default=["predictions", "probabilities"],
        min_length=2,
        max_length=2,
        description="open-inference-v2: the outputs asked for: labels (a regressor's values), then probabilities.",
    )
    backends: list[Backend] = Field(
        default=["local", "docker"], min_length=1, description="Runner backends it runs on."
    )
    container: ContainerSpec = ContainerSpec()
    serves: Serves = Serves()
    requirements: str | None = Field(default=None, description="Python servers: pip requirements of their own venv.")
    sources: list[str] = Field(
        default=[],
        description="Files or folders outside the server folder that its build uses (hashed into the build key).",
    )
    build: list[list[str]] = Field(default=[], description="Commands run in the server folder after install.")
    prepare: list[list[str]] = Field(
        default=[], description="Commands run once per exported model before its first start (e.g. into a model store)."
    )
    start: list[str] = Field(min_length=1)
    worker_unit: Literal["process", "thread", "replica"] = Field(
        default="process", description="What one of the N workers is: a process, a thread of one process, a replica."
    )
    health_path: str = Field(default="/health", pattern=r"^/")
    start_timeout_s: float = Field(default=60.0, gt=0)
    stop_grace_s: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(
        default=1 << 20, gt=0, description="Largest request body the server accepts; a bigger one is answered 413."
    )
    env: dict[str, str] = {}
    folder: Path = Field(default=Path("."), exclude=True)

    @field_validator("start")
    @classmethod
    def _start_placeholders(cls, value: list[str]) -> list[str]:
        return _check_placeholders(value)

    @field_validator("build", "prepare")
    @classmethod
    def _command_placeholders(cls, value: list[list[str]]) -> list[list[str]]:
        for command in value:
            if not command:
                raise ValueError("a command must not be empty")
            _check_placeholders(command)
        return value

    @model_validator(mode="after")
    def _python_needs_requirements(self) -> Manifest:
        if self.language == "python" and not self.requirements:
            raise ValueError("requirements: a Python server needs a requirements file for its venv")
        return self

    @field_validator("env")
    @classmethod
    def _env_placeholders(cls, value: dict[str, str]) -> dict[str, str]:
        _check_placeholders(list(value.values()))
        return value

    @property
    def wire(self) -> contract.Wire:
        return contract.wire(self.protocol, self.model_name, self.output_names, self.predict_path)

    @property
    def requirements_path(self) -> Path | None:
        return self.folder / self.requirements if self.requirements else None

    @property
    def source_paths(self) -> list[Path]:
        return [(self.folder / source).resolve() for source in self.sources]


def render(template: str, values: dict[str, object]) -> str:
    """Fill a manifest template's placeholders; ManifestError for one not known at this stage."""
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise ManifestError(
            f"placeholder {{{exc.args[0]}}} in {template!r} has no value here (known at this stage: {sorted(values)})"
        ) from None


def load(folder: Path) -> Manifest:
    """Read and validate `folder/manifest.toml`."""
    path = folder / MANIFEST_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest (every server folder needs a {MANIFEST_FILE})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    try:
        manifest = Manifest.model_validate({**raw, "folder": folder})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ManifestError(f"{path}: {problems}") from None
    if manifest.name != folder.name:
        raise ManifestError(f"{path}: name: {manifest.name!r} must equal the folder's name {folder.name!r}")
    if manifest.requirements_path and not manifest.requirements_path.is_file():
        raise ManifestError(f"{path}: requirements: {manifest.requirements_path} does not exist")
    for source in manifest.source_paths:
        if not source.exists():
            raise ManifestError(f"{path}: sources: {source} does not exist")
    return manifest


def discover_in(root: Path) -> dict[str, Path]:
    """Server folders directly under `root` (private folders such as `_common` excluded)."""
    if not root.is_dir():
        return {}
    return {
        folder.name: folder
        for folder in sorted(root.iterdir())
        if not re.match(r"[._]", folder.name) and (folder / MANIFEST_FILE).is_file()
    }


def discover() -> dict[str, Path]:
    """Server folders by name along the search path; the first folder of a name wins, as on PATH."""
    found: dict[str, Path] = {}
    for root in paths.server_search_path():
        for name, folder in discover_in(root).items():
            found.setdefault(name, folder)
    return found


def available_frameworks() -> list[str]:
    return sorted(discover())


def get(name: str) -> Manifest:
    folders = discover()
    if name not in folders:
        raise ManifestError(f"unknown framework {name!r}; known: {sorted(folders)}")
    return load(folders[name])
