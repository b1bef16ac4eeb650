"""Build a server's isolated environment, cached by a hash of everything that goes into it.

Python servers get a uv venv of their own (the harness never imports a server framework; it only runs
the environment's interpreter); native servers get a build folder their manifest's commands fill.
Per exported model, a server may also `prepare` it (e.g. import it into its framework's model store).
"""

from __future__ import annotations

import configparser
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata as pkg_metadata
from pathlib import Path

from servebench.base import paths
from servebench.models.export import ExportedModel
from servebench.servers.manifest import Manifest, render

log = logging.getLogger(__name__)

BUILT_MARKER = ".servebench-built"
# Servers get a clean environment: nothing of the harness's venv, Airflow or MLflow leaks into them.
INHERITED_ENV = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE")
# One math thread per worker process: the worker count is the only parallelism knob, and it is logged.
THREAD_CAPS = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")
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
        """The server's interpreter (Python servers); native builds may use the harness's for scripts."""
        return self.env_dir / "bin" / "python" if self.manifest.language == "python" else Path(sys.executable)

    def values(self, model: ExportedModel | None = None) -> dict[str, object]:
        """Placeholder values known once the server is built (and, with `model`, once it serves one)."""
        values: dict[str, object] = {
            "python": self.python,
            "server_dir": self.manifest.folder.resolve(),
            "env_dir": self.env_dir,
            "max_body_bytes": self.manifest.max_body_bytes,
        }
        if model is not None:
            values.update(
                model_path=model.path(self.manifest.model_format),
                model_meta=model.meta_path,
                prepared_dir=self.env_dir / "prepared" / f"{model.name}-{model.key}-{code_digest(self.manifest)}",
            )
        return values

    def environment(self, values: dict[str, object]) -> dict[str, str]:
        """The clean environment the server's commands run in: a few of the host's variables, and
        `server_environment`."""
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(server_environment(self.manifest, values))
        return env


def server_environment(manifest: Manifest, values: dict[str, object]) -> dict[str, str]:
    """What a server's commands need wherever they run (local process or container): thread caps, its
    env folder on PATH, its body size limit, the model's files (when `values` has them) and the manifest's
    `env` filled in."""
    env = dict(THREAD_CAPS)
    env.update(PATH=f"{values['env_dir']}/bin:/usr/local/bin:/usr/bin:/bin", PYTHONUNBUFFERED="1")
    env.update(SERVEBENCH_MAX_BODY_BYTES=str(manifest.max_body_bytes))
    if "model_path" in values:
        env.update(SERVEBENCH_MODEL_PATH=str(values["model_path"]), SERVEBENCH_MODEL_META=str(values["model_meta"]))
    env.update({k: render(v, values) for k, v in manifest.env.items()})
    return env


def constraints_for(manifest: Manifest) -> str:
    if manifest.model_format != "joblib":
        return ""
    return "".join(f"{pkg}=={pkg_metadata.version(pkg)}\n" for pkg in PICKLE_PINNED)


def not_source(parts: tuple[str, ...] | list[str]) -> bool:
    """Build outputs, caches and hidden files in a server's folder: not part of what it is built from."""
    return any(part == "__pycache__" or part.startswith(("build", ".")) for part in parts)


def _tree_digest(path: Path) -> str:
    """Hash of a file, or of every file under a folder (by relative path and content; build outputs,
    caches and hidden files left out, so an in-tree build does not change the key)."""
    digest = hashlib.sha256()
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and not not_source(p.relative_to(path).parts))
    )
    for file in files:
        digest.update(str(file.relative_to(path.parent)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def code_digest(manifest: Manifest) -> str:
    """The server's own code (its folder and sources): what `prepare` makes (e.g. a Bento) embeds it."""
    digests = "".join(_tree_digest(p) for p in [manifest.folder, *manifest.source_paths])
    return hashlib.sha256(digests.encode()).hexdigest()[:12]


def build_key(manifest: Manifest) -> str:
    payload = json.dumps(
        {
            # Only what goes into the environment: a change to how the server starts needs no rebuild.
            "manifest": manifest.model_dump(
                mode="json", include={"name", "language", "requirements", "sources", "build"}
            ),
            "requirements": manifest.requirements_path.read_text() if manifest.requirements_path else "",
            "sources": {str(source): _tree_digest(source) for source in manifest.source_paths},
            "constraints": constraints_for(manifest),
            "python": sys.version,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def _run(step: str, cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise BuildError(f"{step} failed: {' '.join(cmd)}: {exc}") from None
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
        raise BuildError(f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(output))


def build(manifest: Manifest, envs_root: Path | None = None) -> BuiltServer:
    """Return the server's environment, creating it when none with the same key is complete."""
    envs_root = envs_root or paths.envs_dir()
    envs_root.mkdir(parents=True, exist_ok=True)
    key = build_key(manifest)
    built = BuiltServer(manifest, envs_root / f"{manifest.name}-{key}", key)
    with _locked(built):  # two tasks building the same server wait for each other
        if (built.env_dir / BUILT_MARKER).exists():
            problem = _damage(built)
            if problem is None:
                log.info("server %s: environment %s is up to date", manifest.name, built.env_dir.name)
                return built
            log.warning(
                "server %s: environment %s is broken (%s); building it again", manifest.name, built.env_dir, problem
            )
        if built.env_dir.exists():  # an earlier build died half-way, or was damaged since
            shutil.rmtree(built.env_dir)
        _create(built)
    return built


def _damage(built: BuiltServer) -> str | None:
    """What changed in a finished Python environment since it was built (its interpreter gone, packages
    removed or replaced by hand), or None. Native builds are checked by their start command."""
    if built.manifest.language != "python":
        return None
    if not built.python.exists():
        return f"its interpreter {built.python} is missing"
    proc = subprocess.run([_uv(), "pip", "freeze", "--python", str(built.python)], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"its interpreter does not run: {proc.stderr.strip()[-300:]}"
    recorded = set((built.env_dir / "freeze.txt").read_text().splitlines())
    missing = sorted(recorded - set(proc.stdout.splitlines()))
    return f"packages missing or changed: {', '.join(missing)}" if missing else None


class _locked:
    """An exclusive lock per server build, held across processes (Airflow tasks run in several)."""

    def __init__(self, built: BuiltServer) -> None:
        self._path = built.env_dir.parent / f".{built.env_dir.name}.lock"

    def __enter__(self) -> None:
        self._file = open(self._path, "w")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        self._file.close()


PIP_CONFIG_FILES = ("/etc/xdg/pip/pip.conf", "/etc/pip.conf", "~/.pip/pip.conf", "~/.config/pip/pip.conf")


def pip_find_links() -> list[str]:
    """The `find-links` of this machine's own pip configuration (files, then PIP_CONFIG_FILE, then
    PIP_FIND_LINKS): uv reads no pip configuration, and a machine may keep wheels there that no index has,
    such as torch's CPU-only build that TorchServe's venv takes. uv's own UV_FIND_LINKS works as well."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read([os.path.expanduser(f) for f in (*PIP_CONFIG_FILES, os.environ.get("PIP_CONFIG_FILE", ""))])
    links = [
        link
        for section in ("global", "install")
        if parser.has_option(section, "find-links")
        for link in parser.get(section, "find-links").split()
    ]
    return list(dict.fromkeys(links + os.environ.get("PIP_FIND_LINKS", "").split()))


def _create(built: BuiltServer) -> None:
    manifest, env_dir = built.manifest, built.env_dir
    started = time.monotonic()
    log.info("server %s: building environment %s", manifest.name, env_dir)
    if manifest.language == "python":
        _run("creating the venv", [_uv(), "venv", "--quiet", "--python", sys.executable, str(env_dir)])
        constraints = env_dir / "servebench-constraints.txt"
        constraints.write_text(constraints_for(manifest))
        _run(
            "installing requirements",
            [
                _uv(),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(built.python),
                "-r",
                str(manifest.requirements_path),
                "-c",
                str(constraints),
                *[arg for link in pip_find_links() for arg in ("--find-links", link)],
            ],
        )
    else:
        env_dir.mkdir(parents=True)
    values = built.values()
    env = dict(os.environ, **built.environment(values))  # build tools may need more than the server does
    for i, command in enumerate(manifest.build, 1):
        log.info("server %s: build step %d/%d: %s", manifest.name, i, len(manifest.build), " ".join(command))
        _run(f"build step {i}", [render(part, values) for part in command], cwd=manifest.folder, env=env)
    if manifest.language == "python":
        freeze = subprocess.run(
            [_uv(), "pip", "freeze", "--python", str(built.python)], capture_output=True, text=True, check=True
        ).stdout
        (env_dir / "freeze.txt").write_text(freeze)
    (env_dir / BUILT_MARKER).write_text(json.dumps({"key": built.key, "seconds": time.monotonic() - started}))
    log.info("server %s: environment built in %.1fs", manifest.name, time.monotonic() - started)


def prepare(built: BuiltServer, model: ExportedModel) -> None:
    """Run the manifest's `prepare` commands for `model`, once per server build and model export."""
    manifest = built.manifest
    if not manifest.prepare:
        return
    values = built.values(model)
    prepared_dir = Path(str(values["prepared_dir"]))
    marker = prepared_dir / ".servebench-prepared"
    with _locked(built):
        if marker.exists():
            return
        if prepared_dir.exists():  # an earlier prepare died half-way
            shutil.rmtree(prepared_dir)
        prepared_dir.mkdir(parents=True)
        started = time.monotonic()
        env = built.environment(values)
        for i, command in enumerate(manifest.prepare, 1):
            log.info("server %s: preparing model %s, step %d/%d", manifest.name, model.name, i, len(manifest.prepare))
            _run(
                f"preparing model {model.name}, step {i}",
                [render(part, values) for part in command],
                cwd=manifest.folder,
                env=env,
            )
        marker.write_text(json.dumps({"seconds": time.monotonic() - started}))
