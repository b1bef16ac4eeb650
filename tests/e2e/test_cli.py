"""The `servebench` CLI: the same pipeline without a scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from mlflow.tracking import MlflowClient

from servebench.base.httpclient import request
from servebench.results.tracker import Tracker
from servebench.servers.runner.local import free_port

from .conftest import BIN, run


def test_run_prints_json_and_logs_to_the_tracking_uri_it_is_given(tmp_path: Path, no_leftover_processes: None) -> None:
    uri = f"sqlite:///{tmp_path / 'own.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [
        str(BIN / "servebench"),
        "run",
        "--models",
        "lr",
        "--frameworks",
        "fastapi,kserve",  # a server of the contract and one of the Open Inference Protocol
        "--workers",
        "1",
        "--users",
        "5",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--loadgen",
        "locust",
        "--experiment",
        "cli",
        "--json",
    ]
    proc = run(cmd, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trial 2/2" in proc.stderr  # progress goes to the terminal, JSON alone to stdout
    out = json.loads(proc.stdout)
    assert [t["framework"] for t in out["trials"]] == ["fastapi", "kserve"]
    tracker = Tracker(uri)
    for trial in out["trials"]:
        assert trial["status"] == "ok" and trial["metrics"]["rps"] > 0
        assert MlflowClient(tracker.uri).get_run(trial["mlflow_run_id"]).data.metrics["rps"] == trial["metrics"]["rps"]
    shown = run([str(BIN / "servebench"), "summary", "--experiment", "cli"], env)
    assert shown.returncode == 0 and "fastapi" in shown.stdout and out["parent_run_id"] in shown.stdout


def test_run_rejects_bad_options_naming_them() -> None:
    proc = run([str(BIN / "servebench"), "run", "--workers", "0,2", "--frameworks", "fastapi,nope"], dict(os.environ))
    assert proc.returncode == 2
    assert "workers.0: Input should be greater than or equal to 1" in proc.stderr
    assert "unknown framework(s) ['nope']" in proc.stderr
    proc = run([str(BIN / "servebench"), "run", "--workers", "two"], dict(os.environ))
    assert proc.returncode == 2 and "expected a comma-separated list of int" in proc.stderr


def test_a_malformed_manifest_or_unknown_model_is_rejected_before_any_server_starts(
    tmp_path: Path, no_leftover_processes: None
) -> None:
    bad = tmp_path / "servers" / "bad"
    bad.mkdir(parents=True)
    (bad / "manifest.toml").write_text(
        'name = "bad"\nlanguage = "cpp"\nmodel_format = "onnx"\nstart = "./server --port {port}"\n'
    )
    env = {
        **os.environ,
        "SERVEBENCH_SERVERS_PATH": f"{tmp_path / 'servers'}{os.pathsep}{os.environ['SERVEBENCH_SERVERS_PATH']}",
    }
    proc = run([str(BIN / "servebench"), "run", "--frameworks", "fastapi,bad", "--models", "lr"], env)
    assert proc.returncode == 2 and f"{bad / 'manifest.toml'}: start: Input should be a valid list" in proc.stderr, (
        proc.stderr
    )
    proc = run([str(BIN / "servebench"), "run", "--frameworks", "fastapi", "--models", "lr,nope"], env)
    assert (
        proc.returncode == 2
        and "models: Value error, nope: not a model: expected a recipe (lr, mlp, gbdt)" in proc.stderr
    ), proc.stderr
    assert "starting" not in proc.stderr  # nothing was started


def test_serve_runs_one_server_until_interrupted(no_leftover_processes: None) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "servebench"),
            "serve",
            "--framework",
            "flask",
            "--model",
            "lr",
            "--workers",
            "2",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        while first and "serving" not in first:
            first = proc.stdout.readline()
        assert f"flask serving lr with 2 worker(s) at http://127.0.0.1:{port}" in first
        assert request(f"http://127.0.0.1:{port}", "GET", "/health")[0] == 200
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "stopped (exit code 0, graceful)" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
