"""A trial that stops before its end: its MLflow run ends KILLED when it was stopped (Ctrl-C in
``farfield train``; the SystemExit Ray raises in a sweep trial's worker when Tune stops it) and
FAILED, with the error, when it broke — never RUNNING, and the exception still propagates."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.trial import run_trial


class StopAfterFirstEpoch:
    def __init__(self, error: BaseException):
        self.error = error

    def on_epoch(self, epoch, metrics):
        raise self.error


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("interrupted-ws")


@pytest.mark.parametrize("error, status, reason", [
    (KeyboardInterrupt(), "KILLED", "attempt interrupted: the trial was stopped (KeyboardInterrupt)"),
    (SystemExit(0), "KILLED", "attempt interrupted: the trial was stopped (SystemExit)"),
    (RuntimeError("disk full"), "FAILED", "RuntimeError: disk full"),
], ids=["ctrl-c", "stopped-by-tune", "broken"])
def test_a_trial_stopped_mid_training_ends_killed_and_a_broken_one_failed(workspace, error, status, reason):
    config = TrialConfig.model_validate({
        "name": f"interrupted-{type(error).__name__}", "workspace": str(workspace),
        "data": {"max_structures": 48},
        "model": {"channels": 8, "layers": 1, "cutoff": 4.0, "n_radial": 4},
        "training": {"epochs": 3, "batch_size": 8},
        "tracking": {"experiment": "interrupted"},
        "resources": {"device": "cpu", "torch_threads": 1},
    })
    with pytest.raises(type(error)):
        run_trial(config, progress=False, reporters=[StopAfterFirstEpoch(error)])
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("interrupted")
    [run] = client.search_runs([experiment.experiment_id], f"tags.{run_layout.TAG_TRIAL_NAME} = '{config.name}'")
    assert run.info.status == status
    assert run.data.tags["failure_reason"].startswith(reason), run.data.tags["failure_reason"]
