"""Benchmark parameters: one definition, used by the CLI, the DAG's trigger form and its first task.

The Airflow `Param`s are generated from the same pydantic model, so the trigger form, `--conf`
validation and the CLI reject the same inputs, each naming the field at fault.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from servebench import manifest, models

PositiveInt = Annotated[int, Field(ge=1)]


class ParamsError(ValueError):
    """Invalid benchmark parameters; the message names every field at fault."""


class BenchmarkParams(BaseModel):
    """What to benchmark: the matrix models x frameworks x workers x users, and how long."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    models: list[str] = Field(default=["lr", "mlp"], min_length=1, description="Models to serve.")
    frameworks: list[str] = Field(
        default=["fastapi", "flask"], min_length=1, description="Server frameworks (folders under servers/)."
    )
    workers: list[PositiveInt] = Field(default=[1, 2], min_length=1, description="Worker counts to try.")
    users: list[PositiveInt] = Field(default=[50], min_length=1, description="Concurrent Locust users to try.")
    spawn_rate: float = Field(default=50.0, gt=0, description="Users started per second.")
    duration: float = Field(default=60.0, gt=0, description="Measured seconds per trial, after warm-up.")
    warmup: float = Field(default=10.0, ge=0, description="Seconds of load before measuring; excluded from figures.")
    experiment: str = Field(default="servebench", min_length=1, description="MLflow experiment name.")

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(models.MODEL_NAMES))
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; known: {list(models.MODEL_NAMES)}")
        return value

    @field_validator("frameworks")
    @classmethod
    def _known_frameworks(cls, value: list[str]) -> list[str]:
        known = manifest.available_frameworks()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown framework(s) {unknown}; known: {known}")
        return value

    @field_validator("models", "frameworks", "workers", "users")
    @classmethod
    def _no_repeats(cls, value: list[Any]) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError(f"repeated values in {value}")
        return value


def parse(raw: dict[str, Any]) -> BenchmarkParams:
    """Validate raw parameters (DAG conf, CLI options) or raise ParamsError naming each bad field."""
    try:
        return BenchmarkParams.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "params"
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            problems.append(f"{field}: {err['msg']}{got}")
        raise ParamsError("invalid benchmark parameters: " + "; ".join(problems)) from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON schema per field, with the currently known models and frameworks as enums."""
    schema = BenchmarkParams.model_json_schema()
    fields: dict[str, dict[str, Any]] = {}
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        prop.pop("default", None)
        if name == "models":
            prop["items"] = {"type": "string", "enum": list(models.MODEL_NAMES)}
        elif name == "frameworks":
            prop["items"] = {"type": "string", "enum": manifest.available_frameworks()}
        fields[name] = prop
    return fields
