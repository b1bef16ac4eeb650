"""Build a server's isolated environment: a uv venv per server, cached by a hash of what goes into it.

The harness never imports a server framework; it only runs the environment's interpreter.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata as pkg_metadata
from pathlib import Path

from servebench import paths
from servebench.manifest import Manifest, render

log = logging.getLogger(__name__)

BUILT_MARKER = ".servebench-built"
# A joblib model unpickles reliably only with the libraries that pickled it.
PICKLE_PINNED = ("scikit-learn", "numpy", "scipy", "joblib")


class BuildError(RuntimeError):
    """A server environment could not be built; the message says which step failed and its output."""


@dataclass(frozen=True)
class BuiltServer:
    manifest: Manifest
    env_dir: Path
    key: str

    @property
    def python(self) -> Path:
        return self.env_dir / "bin" / "python"


def constraints_for(manifest: Manifest) -> str:
    if manifest.model_format != "joblib":
        return ""
    return "".join(f"{pkg}=={pkg_metadata.version(pkg)}\n" for pkg in PICKLE_PINNED)


def build_key(manifest: Manifest) -> str:
    payload = json.dumps(
        {
            "manifest": manifest.model_dump(mode="json"),
            "requirements": manifest.requirements_path.read_text(),
            "constraints": constraints_for(manifest),
            "python": sys.version,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def _run(step: str, cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
        raise BuildError(f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(output))


def build(manifest: Manifest, envs_root: Path | None = None) -> BuiltServer:
    """Return the server's environment, creating it when none with the same key is complete."""
    envs_root = envs_root or paths.envs_dir()
    envs_root.mkdir(parents=True, exist_ok=True)
    key = build_key(manifest)
    built = BuiltServer(manifest, envs_root / f"{manifest.name}-{key}", key)
    with open(envs_root / f".{manifest.name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two tasks building the same server wait for each other
        if (built.env_dir / BUILT_MARKER).exists():
            log.info("server %s: environment %s is up to date", manifest.name, built.env_dir.name)
            return built
        if built.env_dir.exists():  # an earlier build died half-way
            shutil.rmtree(built.env_dir)
        _create(built)
    return built


def _create(built: BuiltServer) -> None:
    manifest, env_dir = built.manifest, built.env_dir
    started = time.monotonic()
    log.info("server %s: building environment %s", manifest.name, env_dir)
    _run("creating the venv", [_uv(), "venv", "--quiet", "--python", sys.executable, str(env_dir)])
    constraints = env_dir / "servebench-constraints.txt"
    constraints.write_text(constraints_for(manifest))
    _run(
        "installing requirements",
        [_uv(), "pip", "install", "--quiet", "--python", str(built.python),
         "-r", str(manifest.requirements_path), "-c", str(constraints)],
    )
    values = {"python": built.python, "server_dir": manifest.folder, "env_dir": env_dir}
    for command in manifest.build:
        _run("build step", [render(part, values) for part in command], cwd=manifest.folder)
    freeze = subprocess.run(
        [_uv(), "pip", "freeze", "--python", str(built.python)], capture_output=True, text=True, check=True
    ).stdout
    (env_dir / "freeze.txt").write_text(freeze)
    (env_dir / BUILT_MARKER).write_text(json.dumps({"key": built.key, "seconds": time.monotonic() - started}))
    log.info("server %s: environment built in %.1fs", manifest.name, time.monotonic() - started)
