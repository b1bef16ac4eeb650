"""The README's path, end to end: `servebench airflow --run CONF` (what README command 1 runs) takes a benchmark
through the real scheduler, then `servebench airflow` (how the README opens the UI) shows that run with each
task's log, read in Chromium. Nothing is left running after either."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from servebench.local_airflow import DAG_ID, LocalAirflow
from servebench.servers.runner.local import free_port

from .test_trigger_form import SHOTS
from .trigger_form import chromium, why_no_browser

# --full: three minutes of Airflow starting, scheduling and stopping twice (the form's test is in the default tier).
pytestmark = [
    pytest.mark.browser,
    pytest.mark.full,
    pytest.mark.skipif(bool(why_no_browser()), reason=why_no_browser() or ""),
]
SERVEBENCH = str(Path(sys.executable).parent / "servebench")
CONF = {
    "models": ["lr"],
    "frameworks": ["fastapi"],
    "workers": [1],
    "users": [4],
    "duration": 2,
    "warmup": 0,
    "repeats": 1,
    "experiment": "demo-in-ui",
    "loadgen": "locust",
}


def airflow_processes(home: Path) -> list[str]:
    """Live processes of the Airflow in `home` (components, executors, tasks)."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.environ().get("AIRFLOW_HOME") == str(home):
                found.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            continue
    return found


def test_the_demos_run_and_its_task_logs_in_the_ui(tmp_path: Path) -> None:
    home, port = tmp_path / "airflow", free_port()
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    done = subprocess.run(
        [SERVEBENCH, "airflow", "--port", str(port), "--run", json.dumps(CONF)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-4000:]
    for progress in (
        "task plan: success",
        "task build_server[fastapi]: success",
        "trial lr · fastapi · w1 · u4: ok",
        "task run_trial[lr-fastapi-w1-u4]: success",
        "task summarize: success",
        ": success; task logs in",
    ):
        assert progress in said, f"{progress!r} not in the output:\n{said[-4000:]}"
    assert airflow_processes(home) == []

    ui = subprocess.Popen(
        [SERVEBENCH, "airflow", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert ui.stdout is not None
        lines = []
        while not any("Airflow UI: " in line for line in lines):
            line = ui.stdout.readline()
            assert line, "servebench airflow ended before the UI was up:\n" + "".join(lines)
            lines.append(line)
        client = LocalAirflow(port=port, home=home)  # only for its REST calls
        _, runs = client.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")
        (run,) = runs["dag_runs"]
        assert (run["state"], run["conf"], run["run_type"]) == ("success", CONF, "manual")
        assert client.api("GET", f"/api/v2/dags/{DAG_ID}")[1]["is_paused"], (
            "the demo leaves the DAG paused, as it found it"
        )
        _, pools = client.api("GET", "/api/v2/pools/servebench_load")
        assert pools["slots"] == 1

        driver = chromium(tmp_path / "profile")
        try:
            driver.get(f"{client.url}/dags/{DAG_ID}/runs/{quote(run['dag_run_id'])}/tasks/run_trial/mapped/0")
            deadline = time.monotonic() + 30
            while "trial lr · fastapi · w1 · u4: ok" not in (text := driver.find_element("tag name", "body").text):
                assert time.monotonic() < deadline, f"the log is not shown:\n{text[-2000:]}"
                time.sleep(1)
            SHOTS.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(SHOTS / "demo-run-trial-log.png"))
            assert "ready after" in text and "answers match the reference" in text
            driver.get(f"{client.url}/dags/{DAG_ID}/runs/{quote(run['dag_run_id'])}")
            time.sleep(3)
            driver.save_screenshot(str(SHOTS / "demo-run.png"))
        finally:
            driver.quit()
    finally:
        ui.send_signal(signal.SIGINT)  # Ctrl-C
        assert ui.wait(60) == 128 + signal.SIGINT
    assert airflow_processes(home) == []
