"""``farfield sweep``: parse, validate, call ``farfield.orchestrator.sweep.run.run_sweep``; print its table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from farfield.orchestrator.cli.errors import USER_ERRORS, console, fail, shell_path


def sweep(
    config_file: Path | None = typer.Argument(None, help="Sweep config YAML (see configs/sweep-quickstart.yaml)."),
    resume: str | None = typer.Option(None, "--resume", help="Continue the interrupted sweep NAME (Tuner.restore)."),
    address: str | None = typer.Option(None, help="Ray cluster address ('auto' = running cluster); default: local Ray."),
    workspace: Path | None = typer.Option(None, help="Override the config's workspace folder."),
    storage_path: str | None = typer.Option(None, help="Override sweep.storage_path (shared storage on a cluster)."),
    result_json: Path | None = typer.Option(None, help="Also write the sweep's result (ids, best trial) as JSON."),
    verbose: bool = typer.Option(False, "--verbose", help="Also show Ray's per-checkpoint log lines of every trial."),
    archive: Path | None = typer.Option(None, "--archive", help="Keep the finished runs and training states in this "
                                        "folder; --resume continues from it where the sweep never ran."),
) -> None:
    """Run a sweep (grid over backbone × long_range × split × seed, Optuna TPE over ranges) with Ray Tune.

    Every trial is one MLflow run on the sweep's tracking server; the sweep gets a summary run.
    With --resume NAME the config is read from the sweep's folder (CONFIG may be omitted), or from
    the --archive folder on a machine that never ran the sweep (its runs are imported first).

    Examples:  farfield sweep configs/sweep-quickstart.yaml
               farfield sweep --resume quickstart-sweep --workspace workspace
    """
    from farfield.orchestrator.sweep.run import run_sweep, sweep_config_for
    from farfield.orchestrator.submit import result_line

    overrides = {}
    if workspace is not None:
        overrides["workspace"] = str(workspace)
    if storage_path is not None:
        overrides["sweep"] = {"storage_path": storage_path}
    try:
        config = sweep_config_for(config_file, resume, overrides, archive=archive)
        result = run_sweep(config, address=address, resume=resume is not None, verbose=verbose, archive=archive)
    except USER_ERRORS as err:
        raise fail(err) from err
    print_sweep(result, config)
    if result_json is not None:
        result_json.write_text(json.dumps(sweep_result_data(result), indent=1, default=str))
    typer.echo(result_line(sweep_result_data(result)))  # read back by submit_sweep handles


def sweep_result_data(result) -> dict:
    """The JSON-able part of a ``SweepResult`` (what ``submit_sweep`` handles read back)."""
    best = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in (result.best or {}).items()}
    return {"kind": "sweep", "sweep_id": result.sweep_id, "name": result.name, "tracking_uri": result.tracking_uri,
            "experiment_id": result.experiment_id, "summary_run_id": result.summary_run_id, "best": best,
            "run_ids": [r for r in result.trials.get("mlflow_run_id", []) if r],
            "experiment_path": result.experiment_path, "wall_s": result.wall_s}


def print_sweep(result, config) -> None:
    """Table of trials, the best one, where it is logged, and how to open the MLflow UI."""
    from farfield.orchestrator.mlflow_server import ui_url

    metric = config.sweep.metric
    table = Table(title=f"sweep {result.name!r} ({result.sweep_id}): {len(result.trials)} trials, "
                        f"{result.wall_s / 60:.1f} min")
    columns = ["trial_id", "cell", *[c for c in result.trials.columns if c.startswith("sampled.")], "outcome",
               metric, *(["test_f_mae"] if metric != "test_f_mae" else []), "epochs"]
    for column in columns:
        table.add_column(column.removeprefix("sampled."), overflow="fold")
    for _, row in result.trials.iterrows():
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    console.print(table)
    if result.best:
        console.print(f"best trial     : {result.best['trial_id']} ({result.best['cell']}), {metric} = "
                      f"{result.best[metric]:.4g}, MLflow run {result.best.get('mlflow_run_id', '?')}")
    console.print(f"summary run    : {result.summary_run_id} (experiment {config.tracking.experiment!r})")
    console.print(f"tracking server: {result.tracking_uri}")
    console.print(f"Tune experiment: {result.experiment_path}   (resume: farfield sweep --resume {result.name})")
    if config.tracking.uri is None:
        console.print(f"open the UI    : [bold]farfield ui --workspace {shell_path(Path(config.workspace))}[/]"
                      f"  → {ui_url('http://127.0.0.1:5000', result.experiment_id)}", soft_wrap=True)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)
