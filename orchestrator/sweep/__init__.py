"""Sweeps: a grid × TPE search over trials with Ray Tune + Optuna, tracked in MLflow.

    config         SweepConfig (a TrialConfig plus the search space), grid cells, trial configs
    run            run_sweep / resume on the driver; the shared inputs prepared once
    grid_search    GridCrossedTPE: one Optuna TPE study per grid cell, the Tune searcher
    tune_reporter  the Tune trainable of one trial (run_trial + per-epoch reports, checkpoints)
    progress       the console progress lines and trial outcomes
    summary        the table of trials and the sweep's summary run
    archive        the finished runs and training states as files (a study's runs/), imported elsewhere

``config`` is light (pydantic only); the rest imports Ray Tune, so ``run_sweep`` and friends
are imported on first use.
"""

from farfield.orchestrator.sweep.config import SweepConfig, grid_cells, load_sweep_config

__all__ = ["SweepConfig", "SweepResult", "grid_cells", "load_sweep_config", "run_sweep", "sweep_config_for"]


def __getattr__(name: str):
    """``run_sweep``, ``sweep_config_for`` and ``SweepResult`` on first use (they pull in Ray Tune)."""
    if name in ("run_sweep", "sweep_config_for", "SweepResult"):
        from farfield.orchestrator.sweep import run

        return getattr(run, name)
    raise AttributeError(f"module 'farfield.orchestrator.sweep' has no attribute {name!r}")
