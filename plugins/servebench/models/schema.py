"""A model's inputs as requests carry them: typed columns, named or positional, and the rows load tests send.

Where the schema comes from (in this order): the MLflow signature, else the ONNX graph's inputs, else the
user's payload sample, else the scikit-learn model's `feature_names_in_` / `n_features_in_`.

Rows are either replayed from a payload sample (CSV, Parquet or JSON lines; at most PAYLOAD_ROWS_KEPT of
them, a seeded sample of a bigger file) or generated per column:
- a number column: Normal(mean, std) fitted to the rows we know (the training data of a built-in recipe, the
  model's MLflow input example), else Normal(0, 1);
- a column an encoder of the pipeline (OneHotEncoder, OrdinalEncoder) knows the categories of: uniformly one of
  them (strings, or numbers); a string column without known categories needs a payload.
A request of B rows is `{"instances": [row, ...]}`, each row a list in column order or, for a named schema,
an object `{"column": value}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NUMBER, STRING = "number", "string"
PAYLOAD_ROWS_KEPT = 4096  # a bigger sample is sampled down (seeded): every load generator process holds them
PAYLOAD_SUFFIXES = (".csv", ".parquet", ".jsonl", ".ndjson")
# MLflow's column types as servebench generates and sends them.
_MLFLOW_TYPES = {"double": NUMBER, "float": NUMBER, "long": NUMBER, "integer": NUMBER, "boolean": NUMBER}
_MLFLOW_TYPES["string"] = STRING


class SchemaError(ValueError):
    """A model whose inputs servebench cannot send, or a payload that does not fit them; says which column."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # NUMBER | STRING


@dataclass(frozen=True)
class Schema:
    columns: tuple[Column, ...]
    named: bool  # rows travel as {"column": value} objects; else as lists in column order

    @property
    def types(self) -> set[str]:
        return {c.type for c in self.columns}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {"named": self.named, "columns": [{"name": c.name, "type": c.type} for c in self.columns]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Schema:
        return cls(tuple(Column(c["name"], c["type"]) for c in raw["columns"]), bool(raw["named"]))

    @classmethod
    def positional(cls, n: int) -> Schema:
        return cls(tuple(Column(f"f{i}", NUMBER) for i in range(n)), named=False)

    def encode(self, values: list[Any]) -> Any:
        """One row (values in column order) as a request carries it."""
        return dict(zip(self.names, values, strict=True)) if self.named else list(values)

    def frame(self, rows: list[Any]) -> Any:
        """Rows as the source model takes them: a DataFrame for a named schema, a float matrix otherwise.
        Numbers are rounded to float32 first, as every server receives them, so references compare alike."""
        import pandas as pd

        if not self.named:
            return np.asarray(rows, dtype=np.float32).astype(np.float64)
        frame = pd.DataFrame([[r[n] for n in self.names] for r in rows], columns=self.names)
        for c in self.columns:
            frame[c.name] = frame[c.name].astype(np.float32).astype(np.float64) if c.type == NUMBER else frame[c.name]
        return frame


def from_signature(signature: Any) -> Schema | None:
    """The schema of an MLflow signature's inputs (named columns, or one 2-D tensor), None without one."""
    if signature is None or signature.inputs is None:
        return None
    inputs = signature.inputs
    if inputs.is_tensor_spec():
        shape = inputs.inputs[0].shape
        if len(inputs.inputs) != 1 or len(shape) != 2 or shape[1] < 1:
            raise SchemaError(f"the signature's tensor input {inputs} is not one 2-D (rows x features) tensor")
        return Schema.positional(int(shape[1]))
    columns = []
    for spec in inputs.inputs:
        kind = _MLFLOW_TYPES.get(str(getattr(spec.type, "name", spec.type)))
        if kind is None:
            raise SchemaError(
                f"column {spec.name!r} has type {spec.type}, which servebench cannot send (numbers, strings)"
            )
        columns.append(Column(str(spec.name), kind))
    return Schema(tuple(columns), named=inputs.has_input_names())


def from_onnx(graph_inputs: list[Any]) -> Schema:
    """The schema of an ONNX model's inputs: one float [N, n] tensor (positional) or one [N, 1] tensor per
    named column."""
    if len(graph_inputs) == 1 and len(graph_inputs[0].shape) == 2 and "string" not in graph_inputs[0].type:
        n = graph_inputs[0].shape[1]
        if not isinstance(n, int):
            raise SchemaError(
                f"ONNX input {graph_inputs[0].name!r} has no fixed feature count: {graph_inputs[0].shape}"
            )
        return Schema.positional(n)
    columns = []
    for node in graph_inputs:
        if len(node.shape) != 2 or node.shape[1] != 1:
            raise SchemaError(f"ONNX input {node.name!r} of shape {node.shape} is neither [N, n] alone nor [N, 1]")
        columns.append(Column(node.name, STRING if "string" in node.type else NUMBER))
    return Schema(tuple(columns), named=True)


def onnx_feeds(schema: Schema, graph_inputs: list[Any]) -> list[dict[str, Any]]:
    """How a server feeds the ONNX graph from a request's columns: per graph input, its element type and the
    columns (indices, in order) it stacks."""
    if len(graph_inputs) == 1 and not (schema.named and len(schema.columns) == 1 and schema.types == {STRING}):
        if schema.types != {NUMBER}:
            raise SchemaError("one ONNX input cannot take string columns: export one input per column")
        return [{"name": graph_inputs[0].name, "type": "float", "columns": list(range(len(schema.columns)))}]
    index = {name: i for i, name in enumerate(schema.names)}
    feeds = []
    for node in graph_inputs:
        if node.name not in index:
            raise SchemaError(f"ONNX input {node.name!r} is not a column of the model's schema {schema.names}")
        feeds.append(
            {"name": node.name, "type": "string" if "string" in node.type else "float", "columns": [index[node.name]]}
        )
    return feeds


def read_payload(path: Path, schema: Schema, seed: int) -> list[Any]:
    """The rows of a payload sample as requests carry them; SchemaError when its columns do not fit the schema.
    Columns the schema does not name (a label, an id) are left out, and said so."""
    import pandas as pd

    if path.suffix not in PAYLOAD_SUFFIXES:
        raise SchemaError(f"payload {path}: expected one of {list(PAYLOAD_SUFFIXES)}, not {path.suffix or 'no suffix'}")
    try:
        if path.suffix == ".csv":
            frame = pd.read_csv(path)
        elif path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=True)
    except (OSError, ValueError) as exc:
        raise SchemaError(f"payload {path}: cannot be read: {str(exc).splitlines()[0][:200]}") from None
    if frame.empty:
        raise SchemaError(f"payload {path}: has no rows")
    if schema.named:
        missing = [n for n in schema.names if n not in frame.columns]
        if missing:
            raise SchemaError(f"payload {path}: lacks the model's column(s) {missing} (it has {list(frame.columns)})")
        frame = frame[schema.names]
    elif frame.shape[1] != len(schema.columns):
        raise SchemaError(
            f"payload {path}: has {frame.shape[1]} columns, the model takes {len(schema.columns)} unnamed numbers"
        )
    for column, name in zip(schema.columns, frame.columns, strict=True):
        values = frame[name]
        if values.isna().any():
            raise SchemaError(f"payload {path}: column {name!r} has empty values")
        if column.type == NUMBER and not pd.api.types.is_numeric_dtype(values):
            raise SchemaError(f"payload {path}: column {name!r} should hold numbers, it holds {values.dtype}")
        if column.type == STRING and not all(isinstance(v, str) for v in values):
            raise SchemaError(f"payload {path}: column {name!r} should hold strings")
    if len(frame) > PAYLOAD_ROWS_KEPT:
        frame = frame.sample(PAYLOAD_ROWS_KEPT, random_state=seed)
    return [schema.encode([_plain(v) for v in row]) for row in frame.itertuples(index=False)]


def _plain(value: Any) -> Any:
    return value if isinstance(value, str) else float(value)


class RowSource:
    """Rows for requests, seeded: stream k (one per Locust user or h2load process) has a sequence of its own.
    Replays the payload's rows in a shuffled order per stream, or draws generated rows."""

    def __init__(self, schema: Schema, generator: dict[str, Any], stream: int = 0) -> None:
        self._schema = schema
        self._rng = np.random.default_rng([int(generator["seed"]), stream])
        self._rows: list[Any] = generator.get("rows", [])
        self._order = self._rng.permutation(len(self._rows)) if self._rows else np.empty(0, dtype=int)
        self._next = 0
        self._columns: list[dict[str, Any]] = generator.get("columns", [])
        if not self._rows and not self._columns:
            raise SchemaError("a generator needs rows or column distributions")

    def take(self, count: int) -> list[Any]:
        if self._rows:
            picked = [self._rows[self._order[(self._next + i) % len(self._rows)]] for i in range(count)]
            self._next += count
            return picked
        # One draw per column for all the rows: Locust users make their bodies as they start, on the load
        # generator's own CPU, so this stays a few numpy calls whatever the row count.
        columns = [self._draw(spec, count) for spec in self._columns]
        if self._schema.named:
            return [dict(zip(self._schema.names, row, strict=True)) for row in zip(*columns, strict=True)]
        return [list(row) for row in zip(*columns, strict=True)]

    def _draw(self, spec: dict[str, Any], count: int) -> list[Any]:
        if "choice" in spec:  # categories: strings, or the numbers an encoder knows
            return [spec["choice"][i] for i in self._rng.integers(len(spec["choice"]), size=count).tolist()]
        mean, std = spec["normal"]
        values: list[Any] = self._rng.normal(mean, std, size=count).tolist()
        return values
