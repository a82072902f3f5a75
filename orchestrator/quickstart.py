"""The quickstart: the main job on the embedded default (bundled data, local Ray, local MLflow server).

``farfield quickstart`` runs a small real sweep (``QUICKSTART_SWEEP``, the same settings as
``configs/sweep-quickstart.yaml``; a test keeps the two equal): two backbones × with and
without a long-range head × a random and a biased split, short budgets. The single
trial ``QUICKSTART`` (= ``configs/quickstart-trial.yaml``) stays the example of one trial:
``farfield train configs/quickstart-trial.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.sweep.config import SweepConfig

QUICKSTART = {
    "name": "quickstart-painn-random",
    "seed": 0,
    "data": {"dataset": "bundled", "max_structures": 200},
    "split": {"strategy": "random", "train": 0.8, "val": 0.1, "test": 0.1, "seed": 0},
    "model": {"backbone": "painn", "long_range": [], "channels": 32, "layers": 3, "cutoff": 5.0, "n_radial": 8},
    "training": {"epochs": 25, "batch_size": 4, "lr": 2e-3, "ema_decay": 0.99, "patience": 10,
                 "loss": {"energy": 1.0, "forces": 10.0}},
    "tracking": {"experiment": "quickstart"},
    "resources": {"device": "auto", "num_cpus": 1},
}

QUICKSTART_SWEEP = {
    "name": "quickstart-sweep",
    "seed": 0,
    "data": {"dataset": "bundled", "max_structures": 200},
    "split": {"strategy": "random", "train": 0.8, "val": 0.1, "test": 0.1, "seed": 0},
    "model": {"backbone": "painn", "long_range": [], "channels": 16, "layers": 2, "cutoff": 5.0, "n_radial": 8},
    "training": {"epochs": 10, "batch_size": 4, "lr": 2e-3, "ema_decay": 0.9, "patience": 6,
                 "loss": {"energy": 1.0, "forces": 10.0}},
    "tracking": {"experiment": "quickstart-sweep"},
    "resources": {"device": "auto", "num_cpus": 1},
    "sweep": {
        "grid": {"backbone": ["painn", "nequip"], "long_range": [[], ["les"]], "split": ["random", "size"]},
        "ranges": {"training.lr": {"low": 1e-3, "high": 4e-3, "log": True}},
        "samples_per_cell": 1,
        "metric": "val_f_mae",
        "mode": "min",
        "scheduler": {"kind": "none"},
        "max_concurrent": 2,
        "max_failures": 1,
    },
}


def quickstart_config(workspace: str | Path = "workspace") -> TrialConfig:
    """The single quickstart ``TrialConfig`` writing into ``workspace``."""
    return TrialConfig.model_validate({**QUICKSTART, "workspace": str(workspace)})


def quickstart_sweep_config(workspace: str | Path = "workspace") -> SweepConfig:
    """The quickstart ``SweepConfig`` writing into ``workspace``."""
    return SweepConfig.model_validate({**QUICKSTART_SWEEP, "workspace": str(workspace)})
