"""`prepare`: package one exported model as a TorchServe model archive (.mar) in its own model store.

usage: archive.py MODEL_PATH META_PATH PREPARED_DIR

torch-model-archiver keeps each file's base name; the export's are staged first as model.onnx and
metadata.json, the names handler.py opens, so the archive does not depend on how the harness names them.
The shared inference core goes in beside the handler: a worker imports both from the extracted archive.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORE = HERE.parent / "_common" / "servebench_model.py"


def main(model_path: str, meta_path: str, prepared_dir: str) -> None:
    store = Path(prepared_dir) / "store"
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=prepared_dir, prefix=".staging-") as staging:
        model, meta = Path(staging) / "model.onnx", Path(staging) / "metadata.json"
        shutil.copyfile(model_path, model)
        shutil.copyfile(meta_path, meta)
        archiver = Path(sys.executable).parent / "torch-model-archiver"
        subprocess.run(
            [
                str(archiver), "--model-name", "model", "--version", "1.0",
                "--serialized-file", str(model), "--handler", str(HERE / "handler.py"),
                "--extra-files", f"{meta},{CORE}", "--export-path", str(store), "--force",
            ],
            check=True,
        )  # fmt: skip
    print(f"servebench: wrote {store / 'model.mar'}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    main(*sys.argv[1:])
