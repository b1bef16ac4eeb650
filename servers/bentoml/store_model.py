"""Put an exported model into the BentoML model store, then build a Bento that serves it.

    python store_model.py MODEL_PATH META_PATH [bentoml build options, e.g. --arg-file bento_args.yaml]

Run by the harness once per (server environment, exported model) before the first start, as the
manifest's `prepare` step, with BENTOML_HOME pointing at the environment's own BentoML home.
Idempotent: a model tag already in the store is kept, and a Bento already built from the same model,
code and arguments is reused. Prints the model tag and the Bento tag; `bentoml serve <bento tag>` and
`bentoml containerize <bento tag>` deploy exactly what was benchmarked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMON = HERE.parent / "_common" / "servebench_model.py"
# What goes into the Bento besides the model: the service, the shared inference core, this script.
BENTO_FILES = (HERE / "service.py", HERE / "store_model.py", HERE / "bentofile.yaml", HERE / "requirements.txt", COMMON)
MODEL_FILE, META_FILE = "model.onnx", "metadata.json"


def model_tag(meta: dict) -> str:
    """The store tag of an export: its model name and export key (a content hash), e.g. servebench-lr:92bfa9f6aee2."""
    return f"{store_name(meta)}:{meta['key']}"


def store_name(meta: dict) -> str:
    """A model name as BentoML's tags allow it (lower case, digits, `-_.`): `churn@champion` -> servebench-churn-champion."""
    return "servebench-" + re.sub(r"[^a-z0-9_.-]", "-", meta["name"].lower())


def _stored(get: Callable[[str], object], tag: str) -> bool:
    """Whether the store already holds `tag` (`get` is bentoml.models.get or bentoml.bentos.get)."""
    from bentoml.exceptions import NotFound

    try:
        get(tag)
    except NotFound:
        return False
    return True


def import_model(model_path: Path, meta_path: Path, meta: dict) -> str:
    import bentoml

    tag = model_tag(meta)
    if _stored(bentoml.models.get, tag):
        print(f"model {tag} already in the store", file=sys.stderr)
        return tag
    with bentoml.models.create(
        tag,
        labels={"servebench.model": meta["name"], "format": "onnx"},
        metadata={"n_features": meta["n_features"], "classes": meta["classes"], "estimator": meta.get("estimator", "")},
    ) as stored:
        shutil.copyfile(model_path, stored.path_of(MODEL_FILE))
        shutil.copyfile(meta_path, stored.path_of(META_FILE))
    print(f"model {tag} imported from {model_path}", file=sys.stderr)
    return tag


def build_bento(tag: str, meta: dict, build_options: list[str]) -> str:
    """`bentoml build` from a staged folder holding the service and the shared core (a Bento must be
    self-contained: the core lives outside this folder); the version hashes model, code and options."""
    import bentoml

    digest = hashlib.sha256(tag.encode() + json.dumps(build_options).encode())
    for file in BENTO_FILES:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    name = store_name(meta)
    bento_tag = f"{name}:{meta['key']}-{digest.hexdigest()[:10]}"
    if _stored(bentoml.bentos.get, bento_tag):
        print(f"bento {bento_tag} already built", file=sys.stderr)
        return bento_tag
    # Staged in the system's temporary folder and removed when the build ends: `bentoml build` refuses any path
    # through a hidden folder, and servebench's state folder is `.servebench/`.
    with tempfile.TemporaryDirectory(prefix="servebench-bento-") as staging:
        for file in BENTO_FILES:
            shutil.copyfile(file, Path(staging) / file.name)
        command = [
            sys.executable, "-m", "bentoml", "build", ".", "--output", "tag",
            "--name", name, "--version", bento_tag.split(":", 1)[1], "--arg", f"model_tag={tag}", *build_options,
        ]  # fmt: skip
        proc = subprocess.run(command, cwd=staging, capture_output=True, text=True)  # bentoml reads only under cwd
    if proc.returncode != 0:
        sys.exit(f"bentoml build failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    built = next(
        (line.split("__tag__:", 1)[1].strip() for line in proc.stdout.splitlines() if "__tag__:" in line), None
    )
    if built != bento_tag:
        sys.exit(f"bentoml build printed {built!r}, expected {bento_tag!r}:\n{proc.stdout}\n{proc.stderr}")
    return bento_tag


def main(argv: list[str]) -> None:
    model_path = Path(argv[0] if argv else os.environ["SERVEBENCH_MODEL_PATH"])
    meta_path = Path(argv[1] if len(argv) > 1 else os.environ["SERVEBENCH_MODEL_META"])
    meta = json.loads(meta_path.read_text())
    tag = import_model(model_path, meta_path, meta)
    bento_tag = build_bento(tag, meta, argv[2:])
    print(f"model: {tag}")
    print(f"bento: {bento_tag}")


if __name__ == "__main__":
    main(sys.argv[1:])
