"""``farfield train``: one trial as a Ray task (or in this process); the final metrics table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from farfield.analysis.run_layout import final_metric
from farfield.orchestrator.cli.errors import USER_ERRORS, console, fail, shell_path
from farfield.orchestrator.config import TrialConfig, load_trial_config

#: Unit of each final metric (METRIC_NAMES) in the printed table.
METRIC_UNITS = {"e_mae": "meV/atom", "e_rmse": "meV/atom", "f_mae": "meV/Å", "f_rmse": "meV/Å", "q_mae": "me"}


def print_result(config: TrialConfig, result) -> None:
    """Final metrics table, where the results are, and how to open the MLflow UI."""
    from farfield.data.splits import SIDES
    from farfield.models.training.metrics import METRIC_NAMES  # torch: only once a trial ran
    from farfield.orchestrator.mlflow_server import ui_url

    table = Table(title=f"trial {config.name!r}: final metrics (EMA weights, best epoch {result.best_epoch})")
    table.add_column("set")
    for name in METRIC_NAMES:
        table.add_column(f"{name} ({METRIC_UNITS[name]})", justify="right")
    for side in SIDES:
        if final_metric(side, "e_mae") in result.metrics:
            table.add_row(side, *(f"{result.metrics[final_metric(side, name)]:.2f}" for name in METRIC_NAMES))
    console.print(table)
    workspace = Path(config.workspace).resolve()
    console.print(f"MLflow run     : {result.run_id} (experiment {config.tracking.experiment!r})")
    console.print(f"tracking store : {result.tracking_uri}")
    console.print(f"workspace      : {workspace}")
    if config.tracking.uri is None:
        console.print(
            f"open the UI    : [bold]farfield ui --workspace {shell_path(workspace)}[/]  → "
            f"{ui_url('http://127.0.0.1:5000', result.experiment_id)}", soft_wrap=True
        )


def train(
    config_file: Path = typer.Argument(..., help="Trial config YAML (see configs/quickstart-trial.yaml)."),
    workspace: Path | None = typer.Option(None, help="Override the config's workspace folder."),
    address: str | None = typer.Option(None, help="Ray cluster address ('auto' = running cluster); default: local Ray."),
    local: bool = typer.Option(False, "--local", help="Run in this process without Ray (debugging)."),
) -> None:
    """Train and evaluate one trial as a Ray task and log it to MLflow.

    Example:  farfield train configs/quickstart-trial.yaml
    """
    from farfield.orchestrator.launch import run_trial_on_ray
    from farfield.orchestrator.submit import result_line, trial_result_data
    from farfield.orchestrator.trial import run_trial

    try:
        overrides = {"workspace": str(workspace)} if workspace else None
        config = load_trial_config(config_file, overrides)
        result = run_trial(config) if local else run_trial_on_ray(config, address=address)
    except USER_ERRORS as err:
        raise fail(err) from err
    print_result(config, result)
    typer.echo(result_line(trial_result_data(result)))  # read back by submit_trial handles
