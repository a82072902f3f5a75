"""The quickstart trial: the main job on the embedded default (bundled data, local Ray, local MLflow).

``configs/quickstart-trial.yaml`` holds the same settings as a file (a test keeps the
two equal), so ``farfield train configs/quickstart-trial.yaml`` and ``farfield quickstart``
run the same trial.
"""

from __future__ import annotations

from pathlib import Path

from farfield.orchestrator.config import TrialConfig

QUICKSTART = {
    "name": "quickstart-painn-random",
    "seed": 0,
    "data": {"dataset": "bundled"},
    "split": {"strategy": "random", "train": 0.8, "val": 0.1, "test": 0.1, "seed": 0},
    "model": {"backbone": "painn", "long_range": [], "channels": 32, "layers": 3, "cutoff": 5.0, "n_radial": 8},
    "training": {"epochs": 25, "batch_size": 4, "lr": 2e-3, "ema_decay": 0.99, "patience": 10,
                 "loss": {"energy": 1.0, "forces": 10.0}},
    "tracking": {"experiment": "quickstart"},
    "resources": {"device": "auto", "num_cpus": 1},
}


def quickstart_config(workspace: str | Path = "workspace") -> TrialConfig:
    """The quickstart ``TrialConfig`` writing into ``workspace``."""
    return TrialConfig.model_validate({**QUICKSTART, "workspace": str(workspace)})
