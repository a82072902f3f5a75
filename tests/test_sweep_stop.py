"""Ctrl-C or SIGTERM to a sweep driver mid-trial: Tune stops the trial, its MLflow run ends KILLED
before the driver exits (not RUNNING until a resume that may never come), and the driver leaves
no process of its own behind (slow: the real CLI with its own local Ray)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from farfield.orchestrator.mlflow_server import ManagedServer
from tests.test_sweep import tiny_sweep
from tests.test_sweep_resume import _env, _farfield, _runs

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_sweep_ends_its_unfinished_runs_killed_and_exits_with_its_children(tmp_path, isolated_home,
                                                                                      stop_signal):
    workspace = tmp_path / "ws"
    config = tiny_sweep(workspace, name="stoppable", grid={"seed": [0, 1]}, max_concurrent=1)
    config.training.epochs = 200  # the signal must land mid-training, long before the trial's end
    config.training.patience = None
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    log = tmp_path / "driver.log"

    with ManagedServer.start(workspace) as server, log.open("w") as out:
        client = MlflowClient(server.uri)
        driver = subprocess.Popen(_farfield("sweep", str(config_file)), env=_env(isolated_home),
                                  start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 600
            while True:  # a trial is training: its run has a first epoch on its curve
                runs = _runs(client, "stoppable")
                if any(r.info.status == "RUNNING" and "curve/train_loss" in r.data.metrics for r in runs):
                    break
                assert driver.poll() is None, "the sweep ended before it could be stopped: " + log.read_text()[-2000:]
                assert time.time() < deadline, "the sweep made no progress"
                time.sleep(0.2)
            training = [r.info.run_id for r in runs if r.info.status == "RUNNING"]
            driver.send_signal(stop_signal)  # the driver only, as `kill PID` or a Ctrl-C'd `farfield sweep`
            driver.wait(timeout=300)
            deadline = time.time() + 60  # the local Ray it started goes with it
            while _group_alive(driver.pid) and time.time() < deadline:
                time.sleep(0.5)
            assert not _group_alive(driver.pid), "processes of the stopped driver's group are still alive"
        finally:
            if _group_alive(driver.pid):
                os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=60)

        console = log.read_text()
        runs = _runs(client, "stoppable")
        assert runs and not [r.info.run_id for r in runs if r.info.status == "RUNNING"], console[-2000:]
        for run_id in training:  # ended by the driver (STOPPED) or, if its worker got there first, by the trial
            run = client.get_run(run_id)
            reason = run.data.tags.get("failure_reason", "")
            assert run.info.status == "KILLED" and reason.startswith("attempt interrupted"), (run.info.status, reason)
        assert not any(r.info.status == "FINISHED" for r in runs)  # stopped long before a trial's end
        assert "ended KILLED; continue with --resume stoppable" in console, console[-2000:]
        summary = client.search_runs([client.get_experiment_by_name("stoppable").experiment_id],
                                     "tags.sweep_summary = 'true'")
        assert len(summary) == 1  # the stopped trial is not taken for one that ASHA pruned
        assert summary[0].data.metrics["n_stopped"] == len(training) and summary[0].data.metrics["n_pruned"] == 0
