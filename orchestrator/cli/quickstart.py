"""``farfield quickstart``: the main job on the embedded default (local Ray, local MLflow, bundled MOFs)."""

from __future__ import annotations

from pathlib import Path

import typer

from farfield.orchestrator.cli.errors import USER_ERRORS, fail
from farfield.orchestrator.cli.sweep import print_sweep
from farfield.orchestrator.cli.train import print_result


def quickstart(
    workspace: Path = typer.Option(Path("workspace"), help="Folder for the dataset store, splits and MLflow."),
    epochs: int | None = typer.Option(None, help="Override the number of training epochs."),
    single_trial: bool = typer.Option(False, "--single-trial", help="Train only the quickstart trial, no sweep."),
    verbose: bool = typer.Option(False, "--verbose", help="Also show Ray's per-checkpoint log lines of every trial."),
) -> None:
    """Run the main job on the embedded default: local Ray, a local MLflow server, bundled MOF data.

    A small real sweep (configs/sweep-quickstart.yaml): two backbones x with/without a
    long-range head x a random and a biased split on real CoRE MOF structures with
    GFN1-xTB labels; prints the trials, the best one, and how to open the MLflow UI.
    --single-trial trains configs/quickstart-trial.yaml instead.

    Example:  farfield quickstart --workspace workspace
    """
    from datetime import datetime

    from farfield.orchestrator.launch import run_trial_on_ray
    from farfield.orchestrator.quickstart import quickstart_config, quickstart_sweep_config
    from farfield.orchestrator.sweep.run import run_sweep

    try:
        if single_trial:
            config = quickstart_config(workspace)
            if epochs is not None:
                config.training.epochs = epochs
            print_result(config, run_trial_on_ray(config))
            return
        config = quickstart_sweep_config(workspace)
        config.name = f"{config.name}-{datetime.now():%Y%m%d-%H%M%S}"  # a fresh sweep each run
        if epochs is not None:
            config.training.epochs = epochs
        result = run_sweep(config, verbose=verbose)
    except USER_ERRORS as err:
        raise fail(err) from err
    print_sweep(result, config)
