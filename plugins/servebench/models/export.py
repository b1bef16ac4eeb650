"""Train or load the benchmarked models and export them: ONNX, dense weights (weights.py, for native servers)
where the model has them, and a metadata file every server and test relies on.

A model comes from a built-in recipe (trained here on generated data: nothing is downloaded), the MLflow
Model Registry or a file (source.py). Whatever its source, its export is one folder: the files each server
format needs, the input schema (schema.py), the rows load tests send (replayed from a payload sample or
generated), and fixed sample inputs with the *source model's own* outputs, which parity compares servers with.
A format a model cannot be exported to is recorded with the reason (`unavailable`), once, for the planner.

Exports are cached by a key over the source (recipe, registered version, file hash), the payload and the
library versions, so a nightly run re-exports only when something that changes the model changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

import numpy as np

from servebench.base import paths
from servebench.models import schema as schemas
from servebench.models import source as sources
from servebench.models import weights
from servebench.models.recipes import RECIPES, Recipe

log = logging.getLogger(__name__)

EXPORT_FORMAT = 3  # bump when the files or metadata written below change
N_SAMPLES_CHECKED = 16  # fixed inputs with reference outputs: cold-start check, parity and tests
PROBA_TOLERANCE = 1e-5  # servers must match the source model's probabilities this closely ...
TREE_PROBA_TOLERANCE = 1e-3  # ... or this, for tree ensembles: ONNX sums hundreds of leaves in float32
REGRESSION_RTOL = 1e-4  # a regressor's outputs: relative to max(|reference|, the samples' spread)
_LIBRARIES = ("scikit-learn", "numpy", "skl2onnx", "onnx", "onnxruntime")


@dataclass(frozen=True)
class ExportedModel:
    """A model on disk: its formats and metadata.json in one folder named by its key."""

    dir: Path

    @cached_property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads((self.dir / "metadata.json").read_text())
        return meta

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    @property
    def meta_path(self) -> Path:
        return self.dir / "metadata.json"

    def files_for(self, fmt: str) -> list[Path]:
        """Every file a server loading `fmt` needs (a server image holds these, not the whole export)."""
        main = self.path(fmt)
        files = [self.meta_path, main]
        if fmt == "weights":  # the header names its data file
            files.append(main.with_name(json.loads(main.read_text())["data_file"]))
        return files

    def path(self, fmt: str) -> Path:
        """The file of one format ("joblib", "onnx" or "weights")."""
        try:
            return self.dir / str(self.meta["files"][fmt]["path"])
        except KeyError:
            why = self.meta.get("unavailable", {}).get(fmt, f"it has {sorted(self.meta['files'])}")
            raise ValueError(f"model {self.name!r} has no {fmt!r} export: {why}") from None


@dataclass
class Loaded:
    """A source model in memory, before export: a scikit-learn estimator or an ONNX graph, and its inputs."""

    name: str
    description: str
    schema: schemas.Schema
    estimator: Any = None  # a fitted scikit-learn estimator or pipeline
    onnx_bytes: bytes | None = None  # an ONNX source (no estimator)
    columns: list[dict[str, Any]] = field(default_factory=list)  # generated rows' distributions, per column
    source: dict[str, str] = field(default_factory=dict)  # what it is: recipe, registered version, file
    trained: dict[str, Any] = field(default_factory=dict)  # recipes: accuracy, training time
    seed: int = 20261123


def library_versions() -> dict[str, str]:
    return {p: pkg_metadata.version(p) for p in _LIBRARIES}


def _key(what: dict[str, Any], payload: Path | None) -> str:
    digest = hashlib.sha256(payload.read_bytes()).hexdigest() if payload else None
    text = json.dumps(
        {**what, "payload": digest, "versions": library_versions(), "format": EXPORT_FORMAT}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def export_model(
    entry: str,
    root: Path | None = None,
    *,
    payload: Path | None = None,
    trust_pickle: bool = False,
    tracking_uri: str | None = None,
) -> ExportedModel:
    """The export of a `models` entry, made first when no export with its key exists (a recipe is trained)."""
    root = root or paths.models_dir()
    name = sources.entry_id(entry)
    what = _identity(entry, trust_pickle, tracking_uri or paths.tracking_uri())
    key = _key(what, payload)
    target = root / f"{name}-{key}"
    if (target / "metadata.json").exists():
        log.info("model %s: using cached export %s", entry, target)
        return ExportedModel(target)
    root.mkdir(parents=True, exist_ok=True)
    # Write into a temporary folder and rename: a crash never leaves a half-written export behind.
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
        loaded = load(entry, Path(tmp), trust_pickle=trust_pickle, tracking_uri=tracking_uri)
        rows = schemas.read_payload(payload, loaded.schema, loaded.seed) if payload else []
        _write(loaded, key, rows, Path(tmp))
        try:
            Path(tmp).rename(target)
        except OSError:
            if not (target / "metadata.json").exists():  # not a concurrent export of the same key
                raise
        else:
            Path(tmp).mkdir()  # let TemporaryDirectory clean up after the rename
    return ExportedModel(target)


def check(entry: str, payload: Path | None, *, trust_pickle: bool, tracking_uri: str) -> None:
    """Whether an entry can be benchmarked with this payload, before any work: the registry resolves it, the
    file loads as a model, the payload fits its schema; SourceError or SchemaError saying what is wrong.
    A recipe is not trained for this: its schema is known."""
    if sources.kind(entry) == "recipe":
        schema = schemas.Schema.positional(RECIPES[entry].n_features)
    else:
        paths.models_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=paths.models_dir(), prefix=".check-") as tmp:
            schema = load(entry, Path(tmp), trust_pickle=trust_pickle, tracking_uri=tracking_uri).schema
    if payload is not None:
        schemas.read_payload(payload, schema, seed=0)


def _identity(entry: str, trust_pickle: bool, tracking_uri: str) -> dict[str, Any]:
    """What makes an export of this entry the same as another (its cache key), resolved now: the version an
    alias points at tonight, a file's content."""
    what = sources.kind(entry)
    if what == "recipe":
        return {"recipe": asdict(RECIPES[entry])}
    if what == "registry":
        found = sources.resolve_registered(entry, tracking_uri)
        return {"registered": asdict(found)}
    path = sources.check_file(entry, trust_pickle)
    return {"file": hashlib.sha256(path.read_bytes()).hexdigest()}


def load(entry: str, workdir: Path, *, trust_pickle: bool = False, tracking_uri: str | None = None) -> Loaded:
    """The source model of an entry in memory; SourceError or SchemaError saying why it cannot be served.
    A registered model is downloaded into `workdir` (inside servebench's state folder) and loaded as MLflow
    loads it: a skops-serialized model with the types its logger trusted, never more."""
    what = sources.kind(entry)
    if what == "recipe":
        return _train(RECIPES[entry])
    if what == "registry":
        return _load_registered(entry, workdir, tracking_uri or paths.tracking_uri())
    path = sources.check_file(entry, trust_pickle)
    if path.suffix in sources.ONNX_SUFFIXES:
        return _from_onnx(entry, path.read_bytes(), f"ONNX file {path.name}", {"kind": "file", "path": str(path)})
    import joblib

    try:
        estimator = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - whatever the unpickling raised, the file is not a model we can load
        raise sources.SourceError(f"{entry}: not a loadable scikit-learn model: {type(exc).__name__}: {exc}") from None
    return _from_estimator(entry, estimator, None, {"kind": "file", "path": str(path)})


def _load_registered(entry: str, workdir: Path, tracking_uri: str) -> Loaded:
    import mlflow
    from mlflow.models import Model

    found = sources.resolve_registered(entry, tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=found.uri, dst_path=str(workdir / "download")))
    info = Model.load(str(local))
    facts = {
        "kind": "registry",
        "registered_name": found.name,
        "version": found.version,
        "alias": found.alias,
        "run_id": found.run_id,
        "uri": found.uri,
        "model_source": found.source,
    }
    signature_schema = schemas.from_signature(info.signature)
    try:
        if "sklearn" in info.flavors:
            estimator = mlflow.sklearn.load_model(str(local))
            return _from_estimator(entry, estimator, signature_schema, facts)
        if "onnx" in info.flavors:
            onnx_model = mlflow.onnx.load_model(str(local))
            return _from_onnx(entry, onnx_model.SerializeToString(), f"registered ONNX model {found.uri}", facts)
    finally:
        import shutil

        shutil.rmtree(workdir / "download", ignore_errors=True)  # the export keeps what servers need, no more
    raise sources.SourceError(
        f"{entry}: version {found.version} has flavors {sorted(info.flavors)}; servebench serves sklearn and onnx"
    )


def _from_onnx(entry: str, onnx_bytes: bytes, description: str, facts: dict[str, str]) -> Loaded:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors have no common type
        raise sources.SourceError(f"{entry}: not an ONNX model ONNX Runtime can load: {exc}") from None
    schema = schemas.from_onnx(session.get_inputs())
    columns = [{"normal": [0.0, 1.0]} for c in schema.columns if c.type == schemas.NUMBER]
    if len(columns) != len(schema.columns):
        raise schemas.SchemaError(f"{entry}: string inputs have no known categories here: give a payload sample")
    return Loaded(sources.entry_id(entry), description, schema, onnx_bytes=onnx_bytes, columns=columns, source=facts)


def _from_estimator(entry: str, estimator: Any, schema: schemas.Schema | None, facts: dict[str, str]) -> Loaded:
    """A fitted scikit-learn model, its schema (the signature's, else its feature names) and the distributions
    its own preprocessing knows (a StandardScaler's mean and scale, an encoder's categories)."""
    from sklearn.base import is_classifier, is_regressor

    if not (is_classifier(estimator) or is_regressor(estimator)) or not hasattr(estimator, "predict"):
        raise sources.SourceError(f"{entry}: {type(estimator).__name__} is neither a classifier nor a regressor")
    known = _known_distributions(estimator)
    if schema is None:  # no signature: the model's feature names, strings where its encoder knows string categories
        names = getattr(estimator, "feature_names_in_", None)
        if names is not None:
            kinds = {
                n: schemas.STRING if isinstance(known.get(str(n), {}).get("choice", [0])[0], str) else schemas.NUMBER
                for n in names
            }
            schema = schemas.Schema(tuple(schemas.Column(str(n), kinds[n]) for n in names), named=True)
        else:
            schema = schemas.Schema.positional(int(estimator.n_features_in_))
    columns = []
    for i, column in enumerate(schema.columns):
        spec = known.get(column.name if schema.named else str(i))
        if column.type == schemas.STRING and spec is None:
            raise schemas.SchemaError(
                f"{entry}: string column {column.name!r} has no categories the model knows: give a payload sample"
            )
        columns.append(spec or {"normal": [0.0, 1.0]})
    return Loaded(
        sources.entry_id(entry), describe(estimator), schema, estimator=estimator, columns=columns, source=facts
    )


def describe(estimator: Any) -> str:
    """`HistGradientBoostingClassifier`, or a pipeline's steps: `Pipeline(ColumnTransformer(StandardScaler,
    OneHotEncoder) → HistGradientBoostingClassifier)`."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        return f"Pipeline({' → '.join(describe(step) for _, step in estimator.steps)})"
    if isinstance(estimator, ColumnTransformer):
        parts = [describe(t) for _, t, _ in estimator.transformers if t not in ("drop", "passthrough")]
        return f"ColumnTransformer({', '.join(parts)})"
    return type(estimator).__name__


def final_estimator(estimator: Any) -> Any:
    from sklearn.pipeline import Pipeline

    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _known_distributions(estimator: Any) -> dict[str, dict[str, Any]]:
    """Per column name (or index, for positional inputs): what the model's own preprocessing says of it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    known: dict[str, dict[str, Any]] = {}
    steps = estimator.steps if isinstance(estimator, Pipeline) else [("", estimator)]
    for _, step in steps:
        parts = step.transformers_ if isinstance(step, ColumnTransformer) else [("", step, None)]
        for _, transformer, cols in parts:
            inner = transformer.steps[0][1] if isinstance(transformer, Pipeline) else transformer
            names = (
                [str(c) for c in cols]
                if cols is not None
                else [str(i) for i in range(getattr(inner, "n_features_in_", 0))]
            )
            if isinstance(inner, (OneHotEncoder, OrdinalEncoder)):
                for name, categories in zip(names, inner.categories_, strict=False):
                    known[name] = {"choice": [c if isinstance(c, str) else float(c) for c in categories.tolist()]}
            elif isinstance(inner, StandardScaler) and inner.with_mean:
                for name, mean, scale in zip(names, inner.mean_, inner.scale_, strict=False):
                    known[name] = {"normal": [round(float(mean), 6), round(float(scale), 6)]}
        break  # only the first step sees the raw columns
    return known


def _train(recipe: Recipe) -> Loaded:
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    X, y = make_classification(
        n_samples=recipe.n_samples,
        n_features=recipe.n_features,
        n_informative=recipe.n_features * 2 // 3,
        n_classes=recipe.n_classes,
        random_state=recipe.seed,
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=recipe.seed)
    model = _make_estimator(recipe)
    log.info("model %s: training %s on %d rows", recipe.name, type(model).__name__, len(X_train))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # few MLP epochs is the recipe, not an accident
        model.fit(X_train, y_train)
    # Load tests draw inputs from a seeded Gaussian per column, fitted to the training data.
    columns = [
        {"normal": [round(float(m), 6), round(float(s), 6)]}
        for m, s in zip(X_train.mean(axis=0), X_train.std(axis=0), strict=True)
    ]
    return Loaded(
        recipe.name,
        recipe.description,
        schemas.Schema.positional(recipe.n_features),
        estimator=model,
        columns=columns,
        source={"kind": "recipe", "recipe": recipe.name},
        trained={
            "accuracy": float(model.score(X_test, y_test)),
            "train_seconds": round(time.perf_counter() - started, 3),
        },
        seed=recipe.seed,
    )


def _make_estimator(recipe: Recipe) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if recipe.estimator == "logistic_regression":
        return LogisticRegression(random_state=recipe.seed, **recipe.hyper)
    if recipe.estimator == "mlp":
        hyper = dict(recipe.hyper, hidden_layer_sizes=tuple(recipe.hyper["hidden_layer_sizes"]))
        return MLPClassifier(random_state=recipe.seed, **hyper)
    if recipe.estimator == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=recipe.seed, **recipe.hyper)
    raise ValueError(f"unknown estimator {recipe.estimator!r}")


def _write(loaded: Loaded, key: str, payload_rows: list[Any], out: Path) -> None:
    """The export folder of a loaded model: formats, samples with the source's outputs, metadata.json."""
    estimator = describe(loaded.estimator) if loaded.estimator is not None else "ONNX graph"
    generator: dict[str, Any] = {"seed": loaded.seed}
    if payload_rows:
        generator["rows"] = payload_rows
    else:
        generator["columns"] = loaded.columns
    samples = schemas.RowSource(loaded.schema, generator, stream=1 << 20).take(N_SAMPLES_CHECKED)
    files: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    if loaded.estimator is not None:
        reference = _predict_estimator(loaded.estimator, loaded.schema, samples)
        try:
            (out / "model.onnx").write_bytes(to_onnx(loaded.estimator, loaded.schema))
            files["onnx"] = "model.onnx"
        except Exception as exc:  # noqa: BLE001 - skl2onnx raises many types; the reason is what matters
            unavailable["onnx"] = f"skl2onnx cannot convert {estimator}: {str(exc).splitlines()[0][:300]}"
        if weights.unsupported(loaded.estimator):  # first: a tree ensemble has no weights however it is fed
            unavailable["weights"] = (
                f"{estimator} has no dense-weights form ({weights.FORMAT} holds a LogisticRegression "
                "or an MLPClassifier alone)"
            )
        elif loaded.schema.named:
            unavailable["weights"] = "dense weights take positional numbers, this model takes named columns"
        else:
            try:
                header = weights.write(loaded.estimator, out, np.asarray(samples, dtype=np.float32).astype(np.float64))
                files["weights"] = weights.HEADER_FILE
                log.info("model %s: dense weights max |dp| %.2e", loaded.name, header["max_abs_error"])
            except ValueError as exc:
                unavailable["weights"] = str(exc)
        if loaded.source.get("kind") == "recipe":  # the tracker logs a recipe's own model to MLflow from it
            import joblib

            joblib.dump(loaded.estimator, out / "model.joblib")
            files["joblib"] = "model.joblib"
    else:
        assert loaded.onnx_bytes is not None
        (out / "model.onnx").write_bytes(loaded.onnx_bytes)
        files["onnx"] = "model.onnx"
        unavailable["weights"] = "an ONNX model has no dense-weights export"
        # The classes from the graph, or from its answers to more rows than the samples (every class must win one).
        probe = run_onnx(loaded.onnx_bytes, loaded.schema, schemas.RowSource(loaded.schema, generator, 7).take(2048))
        reference = run_onnx(loaded.onnx_bytes, loaded.schema, samples, probe["classes"] or None)
    task = _task(reference)
    tree = any(w in estimator for w in ("Forest", "Boosting", "Tree"))
    meta: dict[str, Any] = {
        "name": loaded.name,
        "key": key,
        "description": loaded.description,
        "estimator": estimator,
        "source": loaded.source,
        "task": task,
        "inputs": loaded.schema.to_dict(),
        "n_features": len(loaded.schema.columns),
        "classes": reference["classes"],
        "tolerance": {
            "proba": TREE_PROBA_TOLERANCE if tree else PROBA_TOLERANCE,
            "rtol": REGRESSION_RTOL,
            "scale": float(np.std(reference["predictions"])) if task == "regressor" else 1.0,
        },
        **loaded.trained,
        "versions": {p: pkg_metadata.version(p) for p in ("scikit-learn", "numpy", "scipy", "joblib", "skl2onnx")},
        "unavailable": unavailable,
        "files": {
            fmt: {"path": fname, "sha256": hashlib.sha256((out / fname).read_bytes()).hexdigest()}
            for fmt, fname in files.items()
        },
        "generator": generator,
        "samples": {"inputs": samples, "predictions": reference["predictions"]}
        | ({"probabilities": reference["probabilities"]} if task != "regressor" else {}),
    }
    if "onnx" in files:  # how servers feed the graph from a request's columns; checked against the source here
        import onnxruntime as ort

        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        meta["onnx_inputs"] = schemas.onnx_feeds(loaded.schema, session.get_inputs())
        converted = (out / "model.onnx").read_bytes()
        if loaded.estimator is not None and (
            why := _differs(run_onnx(converted, loaded.schema, samples, reference["classes"] or None), reference, meta)
        ):
            (out / "model.onnx").unlink()
            del meta["files"]["onnx"], meta["onnx_inputs"]
            unavailable["onnx"] = f"the ONNX conversion answers otherwise than the model: {why}"
    for fmt, why in unavailable.items():
        log.warning("model %s: no %s export: %s", loaded.name, fmt, why)
    (out / "metadata.json").write_text(json.dumps(meta, indent=1))
    log.info("model %s (%s, %s): exported %s", loaded.name, meta["estimator"], task, sorted(meta["files"]))


def _task(reference: dict[str, Any]) -> str:
    if not reference["classes"]:
        return "regressor"
    return "binary" if len(reference["classes"]) == 2 else "multiclass"


def _plain_labels(values: Any) -> list[Any]:
    return [
        v if isinstance(v, str) else (int(v) if float(v).is_integer() else float(v))
        for v in np.asarray(values).tolist()
    ]


def _predict_estimator(estimator: Any, schema: schemas.Schema, rows: list[Any]) -> dict[str, Any]:
    from sklearn.base import is_classifier

    X = schema.frame(rows)
    if is_classifier(estimator):
        return {
            "classes": _plain_labels(estimator.classes_),
            "predictions": _plain_labels(estimator.predict(X)),
            "probabilities": np.asarray(estimator.predict_proba(X), dtype=float).tolist(),
        }
    return {"classes": [], "predictions": np.asarray(estimator.predict(X), dtype=float).ravel().tolist()}


def to_onnx(estimator: Any, schema: schemas.Schema) -> bytes:
    """The ONNX graph of a scikit-learn model: one [N, 1] input per named column where a ColumnTransformer picks
    columns by name, else one float input of all columns in order; a classifier's probabilities as a plain
    float tensor (no ZipMap)."""
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.base import is_classifier
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    _tolerate_numpy_bools()
    first = estimator.steps[0][1] if isinstance(estimator, Pipeline) else estimator
    if schema.named and isinstance(first, ColumnTransformer):
        types = [
            (c.name, StringTensorType([None, 1]) if c.type == schemas.STRING else FloatTensorType([None, 1]))
            for c in schema.columns
        ]
    else:
        types = [("input", FloatTensorType([None, len(schema.columns)]))]
    options = {id(final_estimator(estimator)): {"zipmap": False}} if is_classifier(estimator) else None
    return bytes(convert(estimator, initial_types=types, options=options).SerializeToString())


def _tolerate_numpy_bools() -> None:
    """skl2onnx 1.20 passes numpy booleans to ONNX's `ints` attributes for histogram gradient boosting, which onnx
    1.23 refuses ("Expected an int, got a boolean"); cast them, as skl2onnx's own tree converters do."""
    import skl2onnx.common.tree_ensemble as tree_ensemble

    if getattr(tree_ensemble.add_node, "servebench_casts_bools", False):
        return
    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    add_node.servebench_casts_bools = True  # type: ignore[attr-defined]
    tree_ensemble.add_node = add_node


def run_onnx(
    onnx_bytes: bytes, schema: schemas.Schema, rows: list[Any], classes: list[Any] | None = None
) -> dict[str, Any]:
    """An ONNX model's outputs for rows (labels, probabilities or values); a classifier's classes as given (its
    source's), else from the graph (`onnx_classes`)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feeds = schemas.onnx_feeds(schema, session.get_inputs())
    values = [[r[c.name] for c in schema.columns] if schema.named else r for r in rows]
    feed = {}
    for f in feeds:
        if f["type"] == "string":
            feed[f["name"]] = np.asarray([[v[i] for i in f["columns"]] for v in values], dtype=object)
        else:
            feed[f["name"]] = np.asarray([[v[i] for i in f["columns"]] for v in values], dtype=np.float32)
    outputs = session.run(None, feed)
    if len(outputs) >= 2 and np.asarray(outputs[1]).ndim == 2 and np.asarray(outputs[1]).dtype.kind == "f":
        labels, proba = np.asarray(outputs[0]).ravel(), np.asarray(outputs[1], dtype=float)
        return {
            "classes": classes if classes is not None else onnx_classes(onnx_bytes, labels, proba),
            "predictions": _plain_labels(labels),
            "probabilities": proba.tolist(),
        }
    if len(outputs) == 1 and np.asarray(outputs[0]).dtype.kind == "f":
        return {"classes": [], "predictions": np.asarray(outputs[0], dtype=float).ravel().tolist()}
    raise sources.SourceError(
        "the ONNX model's outputs are neither (label, probabilities) nor one value per row; export classifiers "
        "with zipmap=False"
    )


def onnx_classes(onnx_bytes: bytes, labels: Any, proba: Any) -> list[Any]:
    """A classifier graph's class labels in probability-column order: from its classifier node's attribute (a
    linear or tree classifier), else from its answers, each column's label being the label of the rows where it
    is the most probable (an MLP's graph picks labels from a constant); SourceError when neither tells."""
    import onnx

    for node in onnx.load_from_string(onnx_bytes).graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_int64s", "classlabels_ints") and len(attribute.ints) == proba.shape[1]:
                return [int(v) for v in attribute.ints]
            if attribute.name == "classlabels_strings" and len(attribute.strings) == proba.shape[1]:
                return [v.decode() for v in attribute.strings]
    seen: dict[int, set[Any]] = {}
    for label, column in zip(_plain_labels(labels), np.argmax(proba, axis=1).tolist(), strict=True):
        seen.setdefault(column, set()).add(label)
    if len(seen) == proba.shape[1] and all(len(v) == 1 for v in seen.values()):
        return [seen[i].pop() for i in range(proba.shape[1])]
    raise sources.SourceError(
        f"cannot tell the classes of the ONNX classifier's {proba.shape[1]} probability columns: no classlabels "
        "attribute in the graph, and the sample rows do not make every class the most probable"
    )


def _differs(got: dict[str, Any], want: dict[str, Any], meta: dict[str, Any]) -> str | None:
    """How an ONNX conversion's outputs differ from the source model's beyond the model's tolerance, or None."""
    if got["predictions"] != want["predictions"] and meta["task"] != "regressor":
        return "other labels for the sample inputs"
    if meta["task"] == "regressor":
        scale = max(meta["tolerance"]["scale"], 1e-12)
        diff = np.abs(np.asarray(got["predictions"]) - np.asarray(want["predictions"]))
        bound = meta["tolerance"]["rtol"] * np.maximum(np.abs(want["predictions"]), scale)
        return None if (diff <= bound).all() else f"values differ by up to {diff.max():.3g}"
    diff = float(np.max(np.abs(np.asarray(got["probabilities"]) - np.asarray(want["probabilities"]))))
    return None if diff <= meta["tolerance"]["proba"] else f"probabilities differ by {diff:.2e}"
