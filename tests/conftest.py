"""Shared fixtures. Every test session gets its own state folder; nothing touches the user's .servebench/."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE_SERVERS = REPO / "tests" / "fixtures" / "servers"
SESSION_HOME = Path(os.environ.get("SERVEBENCH_TEST_HOME", "")) if os.environ.get("SERVEBENCH_TEST_HOME") else None

# Airflow reads its configuration at import: point it at the repo's DAGs before any test imports it,
# and never at the user's ~/airflow.
os.environ.setdefault(
    "AIRFLOW_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"servebench-tests-airflow-{os.getpid()}")
)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


def why_unavailable(framework: str) -> str | None:
    """Why a shipped server cannot be built and run as a local process here, or None; its tests skip with
    this reason."""
    backends = tomllib.loads((REPO / "servers" / framework / "manifest.toml").read_text()).get("backends", ["local"])
    if "local" not in backends:
        return f"{framework} runs only in a container (backends {backends}); tests/container covers it"
    if (
        framework == "cpp-crow"
        and not os.environ.get("FETCHCONTENT_SOURCE_DIR_CROW")
        and not _reachable("github.com", 443)
    ):
        return (
            "cpp-crow: Crow is not packaged by Debian and GitHub is unreachable here; "
            "set FETCHCONTENT_SOURCE_DIR_CROW to a Crow source tree to build and test it"
        )
    return None


def _protocol(framework: str) -> str:
    manifest = tomllib.loads((REPO / "servers" / framework / "manifest.toml").read_text())
    return str(manifest.get("protocol", "servebench-v1"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking `shipped_server` runs for every folder under servers/, skipped (saying why) when that
    server cannot be built here: adding a framework adds it to every such test. A test marked
    `default_tier_servers(...)` runs for those servers in the default tier and for the others with --full;
    one marked `shipped_protocols(...)` runs only for the servers speaking one of those protocols."""
    if "shipped_server" in metafunc.fixturenames:
        names = sorted(p.name for p in (REPO / "servers").iterdir() if (p / "manifest.toml").is_file())
        if protocols := metafunc.definition.get_closest_marker("shipped_protocols"):
            names = [n for n in names if _protocol(n) in protocols.args]
        tiered = metafunc.definition.get_closest_marker("default_tier_servers")
        params = []
        needs_build = "unit" not in metafunc.definition.path.parts  # unit tests only read the folder
        for name in names:
            reason = why_unavailable(name) if needs_build else None
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            if tiered and name not in tiered.args:
                marks.append(pytest.mark.full)
            params.append(pytest.param(name, marks=marks))
        metafunc.parametrize("shipped_server", params)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder, so `-m unit` / `-m integration` / `-m e2e` select suites."""
    for item in items:
        for marker in ("unit", "integration", "e2e", "container", "browser", "lab"):
            if f"{os.sep}{marker}{os.sep}" in str(item.fspath):
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session", autouse=True)
def servebench_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private state folder and MLflow store; trained models and server envs are shared by the session."""
    # Under a hidden folder, as a clone's `.servebench/` is: a tool refusing such paths (`bentoml build` does) fails here too.
    home = SESSION_HOME or tmp_path_factory.mktemp("servebench-home") / ".servebench"
    home.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("SERVEBENCH_HOME", "SERVEBENCH_SERVERS_PATH", "MLFLOW_TRACKING_URI")}
    os.environ["SERVEBENCH_HOME"] = str(home)
    os.environ["SERVEBENCH_SERVERS_PATH"] = os.pathsep.join([str(REPO / "servers"), str(FIXTURE_SERVERS)])
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _tracking_uri_restored() -> Iterator[None]:
    """MLflow's `set_tracking_uri` (a Tracker's) also sets MLFLOW_TRACKING_URI for the whole process: a test's
    tracker must not point the next test's default store elsewhere."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") != before:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def exports(servebench_home: Path) -> dict[str, Any]:
    """The built-in models, each trained and exported once per session when a test first asks for it
    (ExportedModel by name)."""
    from servebench.models.export import export_model

    class Exports(dict[str, Any]):
        def __missing__(self, name: str) -> Any:
            self[name] = export_model(name)
            return self[name]

    return Exports()


def _ours(roots: set[str]) -> dict[int, str]:
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if any(root in part for part in cmdline for root in roots):
                found[proc.pid] = " ".join(cmdline)[:200]
        except psutil.Error:
            continue
    return found


@pytest.fixture
def no_leftover_processes(servebench_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fails the test if a process it started outlives it: servers run from the session's state folder and
    Locust writes into test folders, so a new process naming pytest's temporary root is a leftover.
    Leftovers are killed after being reported, so one leak does not fail every later test."""
    roots = {
        str(servebench_home) + os.sep,
        str(tmp_path_factory.getbasetemp()) + os.sep,
    }  # not a sibling with the same prefix
    before = set(_ours(roots))
    yield
    leftovers = {pid: cmd for pid, cmd in _ours(roots).items() if pid not in before}
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="session")
def engine() -> Any:
    """The Docker-compatible engine at DOCKER_HOST; the container tests skip, saying why, without one."""
    from servebench.servers import images

    try:
        return images.engine()
    except images.ImageError as exc:
        pytest.skip(f"no container engine here: {exc}")


@pytest.fixture
def no_leftover_containers(engine: Any) -> Iterator[None]:
    """Fails the test if a servebench container it started outlives it (and removes it)."""
    from servebench.servers import images

    before = {c.id for c in engine.containers.list(all=True, filters={"label": f"{images.LABEL}=true"})}
    yield
    after = engine.containers.list(all=True, filters={"label": f"{images.LABEL}=true"})
    leftovers = [c for c in after if c.id not in before]
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"containers left behind: {[c.name for c in leftovers]}"
