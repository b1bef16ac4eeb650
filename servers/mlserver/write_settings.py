"""Write the MLServer model repository for one exported model: what `mlserver start FOLDER` reads.

    python write_settings.py MODEL_PATH META_PATH FOLDER [--max-batch-size N --max-batch-time SECONDS]

Run by the harness once per (server environment, exported model) as the manifest's `prepare` step, with
FOLDER = {prepared_dir}. Writes
- FOLDER/settings.json: the server-wide settings that do not change between starts. Host, HTTP port and
  parallel_workers change, so the manifest passes them as MLSERVER_* variables (a value in settings.json
  would win over the variable). gRPC cannot be turned off in MLServer 1.7: it listens on the same host as
  HTTP (loopback), on a port the system picks. The metrics server is off (metrics_endpoint null), and the
  folders MLServer writes into (custom environments, the Prometheus multiprocess files its inference
  workers keep even without a metrics server) are under FOLDER instead of the working directory.
- FOLDER/model/model-settings.json: the model "model" served by sklearn_runtime.ServebenchSKLearnModel
  (MLServer's scikit-learn runtime) from the export's joblib file, and where the export's metadata.json is;
  with --max-batch-size/--max-batch-time, MLServer's adaptive batching.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_path", type=Path)
    parser.add_argument("meta_path", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-batch-size", type=int, default=0, help="requests per batch (0: no batching)")
    parser.add_argument("--max-batch-time", type=float, default=0.0, help="seconds a batch waits to fill up")
    args = parser.parse_args()
    folder = args.folder.resolve()
    meta = json.loads(args.meta_path.read_text())
    settings = {
        "debug": False,  # no access log line per request
        "parallel_workers_timeout": 2,  # seconds a stopping worker gets before it is killed (default 5, each in turn)
        "grpc_port": 0,
        "metrics_endpoint": None,
        "environments_dir": str(folder / "envs"),
        "metrics_dir": str(folder / "metrics"),
    }
    model_settings = {
        "name": "model",
        "implementation": "sklearn_runtime.ServebenchSKLearnModel",
        "platform": "sklearn",
        "versions": [f"{pkg}/{version}" for pkg, version in meta.get("versions", {}).items()],
        "parameters": {
            "uri": str(args.model_path.resolve()),
            "version": meta["key"],
            "extra": {"servebench_meta": str(args.meta_path.resolve())},
        },
        "max_batch_size": args.max_batch_size,
        "max_batch_time": args.max_batch_time,
    }
    # Made here, so that a server that may not write into FOLDER (a container's non-root user) finds them.
    for sub in ("model", "envs", "metrics"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (folder / "model" / "model-settings.json").write_text(json.dumps(model_settings, indent=2) + "\n")
    print(f"MLServer repository for model {meta['name']} ({meta['key']}) in {folder}")


if __name__ == "__main__":
    main()
