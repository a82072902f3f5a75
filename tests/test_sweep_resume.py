"""Kill the sweep driver mid-sweep, then `farfield sweep --resume`: one finished MLflow run per trial (slow).

The driver is the real CLI in its own process group (it starts its own local Ray); the
MLflow server belongs to the test and outlives the driver, as `farfield mlflow-server`
would on a cluster head.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from farfield.orchestrator.mlflow_server import ManagedServer
from tests.test_sweep import tiny_sweep

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _farfield(*args: str) -> list[str]:
    return [sys.executable, "-m", "farfield.orchestrator.cli", *args]


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HOME": str(home), "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray")})
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _runs(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return [r for r in client.search_runs([found.experiment_id]) if "tune_trial_id" in r.data.tags]


def test_killed_driver_then_resume_gives_one_finished_run_per_trial(tmp_path, isolated_home):
    workspace = tmp_path / "ws"
    config = tiny_sweep(workspace, name="resumable", grid={"seed": [0, 1, 2]}, max_concurrent=1)
    config.training.epochs = 40  # long enough that the kill lands mid-training, not after a trial's last epoch
    config.training.patience = None
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))

    with ManagedServer.start(workspace) as server:
        client = MlflowClient(server.uri)
        driver = subprocess.Popen(_farfield("sweep", str(config_file)), env=_env(isolated_home),
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 400
            while True:  # one trial finished, the next one training
                runs = _runs(client, "resumable")
                finished = [r for r in runs if r.info.status == "FINISHED"]
                training = [r for r in runs if r.info.status == "RUNNING" and "curve/train_loss" in r.data.metrics]
                if finished and training:
                    break
                assert driver.poll() is None, "the sweep ended before it could be interrupted"
                assert time.time() < deadline, "the sweep made no progress"
                time.sleep(0.5)
        finally:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
            driver.wait(timeout=60)
        finished_before = {r.data.tags["tune_trial_id"]: r.info.run_id for r in _runs(client, "resumable")
                           if r.info.status == "FINISHED"}

        result_file = tmp_path / "result.json"
        resumed = subprocess.run(
            _farfield("sweep", "--resume", "resumable", "--workspace", str(workspace), "--result-json",
                      str(result_file)),
            env=_env(isolated_home), capture_output=True, text=True, timeout=900,
        )
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        result = json.loads(result_file.read_text())
        runs = _runs(client, "resumable")

    trial_ids = {r.data.tags["tune_trial_id"] for r in runs}
    assert len(trial_ids) == 3
    for trial_id in trial_ids:
        finished = [r for r in runs if r.data.tags["tune_trial_id"] == trial_id and r.info.status == "FINISHED"]
        assert len(finished) == 1, f"trial {trial_id}: {len(finished)} finished runs"
    for trial_id, run_id in finished_before.items():  # kept, not re-run
        assert [r.info.run_id for r in runs if r.data.tags["tune_trial_id"] == trial_id] == [run_id]
    interrupted = [r for r in runs if r.info.status != "FINISHED"]
    assert interrupted and all(r.info.status == "KILLED" and "interrupted" in r.data.tags["failure_reason"]
                               for r in interrupted)
    assert all(r.data.tags["sweep_id"] == result["sweep_id"] for r in runs)
    assert sorted(result["run_ids"]) == sorted(r.info.run_id for r in runs if r.info.status == "FINISHED")
