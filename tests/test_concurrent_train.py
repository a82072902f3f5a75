"""Several ``farfield train`` on one fresh workspace at once: all succeed.

Each process creates the workspace's MLflow SQLite store, the bundled dataset store and the
split on first use; before these were made under a file lock, the second process died
with a raw SQLAlchemy traceback while both created the tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.integration

TINY_TRIAL = {
    "name": "concurrent",
    "seed": 0,
    "data": {"dataset": "bundled", "max_structures": 48},
    "split": {"strategy": "random", "train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
    "model": {"backbone": "painn", "long_range": [], "channels": 8, "layers": 1, "cutoff": 4.0, "n_radial": 4},
    "training": {"epochs": 1, "batch_size": 8, "lr": 2e-3, "patience": 1},
    "tracking": {"experiment": "concurrent"},
    "resources": {"device": "cpu", "num_cpus": 1, "torch_threads": 1},
}


def test_three_trains_at_once_on_a_fresh_workspace_all_succeed(tmp_path, isolated_home):
    workspace = tmp_path / "workspace"  # fresh: no mlflow.db, no dataset store, no splits
    config = tmp_path / "trial.yaml"
    config.write_text(yaml.safe_dump(TINY_TRIAL))
    farfield = Path(sys.executable).parent / "farfield"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    processes = [
        subprocess.Popen([str(farfield), "train", str(config), "--workspace", str(workspace), "--local"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=900)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
        assert "Traceback" not in output, output[-4000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3 and {run.info.status for run in runs} == {"FINISHED"}
