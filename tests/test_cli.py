"""The command line: clear one-line errors, and a real MLflow UI bound to localhost."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest
from typer.testing import CliRunner

from farfield.orchestrator.cli import app
from farfield.orchestrator.config import TrackingConfig
from farfield.orchestrator.mlflow_server import server_command, server_environment
from farfield.orchestrator.tracking import ensure_experiment


def test_train_with_misspelled_key_is_one_clear_error(tmp_path):
    config = tmp_path / "t.yaml"
    config.write_text("model:\n  chanels: 8\n")
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 1
    assert "did you mean 'channels'" in result.output
    assert "Traceback" not in result.output


def test_train_missing_config_file(tmp_path):
    result = CliRunner().invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "config file not found" in result.output


def test_ui_without_store_says_what_to_run(tmp_path):
    result = CliRunner().invoke(app, ["ui", "--workspace", str(tmp_path)])
    assert result.exit_code == 1
    assert "farfield quickstart" in result.output


def test_ui_command_is_light_and_local(tmp_path):
    result = CliRunner().invoke(app, ["ui", "--workspace", str(tmp_path), "--port", "5123", "--print-command"])
    command = json.loads(result.output)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5123"
    assert command[command.index("--workers") + 1] == "1"
    assert server_environment()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_ui_serves_the_workspace_store(tmp_path):
    ensure_experiment(TrackingConfig(experiment="served"), tmp_path)
    port = _free_port()
    process = subprocess.Popen(server_command(tmp_path, port=port), env=server_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=served"
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.5)
        assert body["experiment"]["name"] == "served"
    finally:
        process.terminate()
        process.wait(timeout=30)
