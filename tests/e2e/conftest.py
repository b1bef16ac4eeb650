from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def airflow_env(servebench_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated Airflow on SQLite in a temporary home, seeing the repo's DAGs and the fixture servers."""
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(tmp_path_factory.mktemp("airflow")),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",
    )
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


def run(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
