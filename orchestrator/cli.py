"""The ``farfield`` command line. It parses, validates and calls functions; nothing more.

Every command is a thin wrapper around a function that takes the typed config models,
so notebooks can do the same from Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from farfield.orchestrator.cli_data import data_app
from farfield.orchestrator.cli_report import report as report_command
from farfield.orchestrator.cli_split import split_app
from farfield.orchestrator.cli_study import study as study_command
from farfield.orchestrator.cli_sweep import register as register_sweep_commands
from farfield.orchestrator.config import ConfigError, TrialConfig, load_trial_config

app = typer.Typer(
    help="farfield: do machine-learned interatomic potentials still work on materials they have never seen?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(split_app, name="split")
register_sweep_commands(app)
app.command(name="report")(report_command)
app.command(name="study")(study_command)
console = Console()
err_console = Console(stderr=True)

USER_ERRORS = (ConfigError, ValueError, FileNotFoundError, TypeError)


def _fail(err: BaseException) -> None:
    err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def print_result(config: TrialConfig, result) -> None:
    """Final metrics table, where the results are, and how to open the MLflow UI."""
    from farfield.orchestrator.mlflow_server import ui_url

    table = Table(title=f"trial {config.name!r}: final metrics (EMA weights, best epoch {result.best_epoch})")
    table.add_column("set")
    for name, unit in (("e_mae", "meV/atom"), ("e_rmse", "meV/atom"), ("f_mae", "meV/Å"), ("f_rmse", "meV/Å"),
                       ("q_mae", "me")):
        table.add_column(f"{name} ({unit})", justify="right")
    for side in ("train", "val", "test"):
        if f"{side}/e_mae" in result.metrics:
            table.add_row(side, *(f"{result.metrics[f'{side}/{m}']:.2f}" for m in
                                  ("e_mae", "e_rmse", "f_mae", "f_rmse", "q_mae")))
    console.print(table)
    workspace = Path(config.workspace).resolve()
    console.print(f"MLflow run     : {result.run_id} (experiment {config.tracking.experiment!r})")
    console.print(f"tracking store : {result.tracking_uri}")
    console.print(f"workspace      : {workspace}")
    if config.tracking.uri is None:
        console.print(
            f"open the UI    : [bold]farfield ui --workspace {_shell_path(workspace)}[/]  → "
            f"{ui_url('http://127.0.0.1:5000', result.experiment_id)}", soft_wrap=True
        )


def _shell_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@app.command()
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
        _fail(err)
    print_result(config, result)
    typer.echo(result_line(trial_result_data(result)))  # read back by submit_trial handles


@app.command()
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
    from farfield.orchestrator.cli_sweep import run_quickstart

    run_quickstart(workspace, epochs, single_trial, verbose)


@app.command()
def ui(
    workspace: Path = typer.Option(Path("workspace"), help="Workspace whose mlflow.db and artifacts to serve."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; keep 127.0.0.1 unless you mean to expose it."),
    port: int = typer.Option(5000, help="Port of the UI / tracking server."),
    print_command: bool = typer.Option(False, "--print-command", help="Print the server command and exit."),
) -> None:
    """Start the MLflow UI / tracking server on a workspace (SQLite backend, local artifacts).

    Runs in the foreground; Ctrl-C, SIGTERM or SIGHUP stop it and its worker.

    Example:  farfield ui --workspace workspace --port 5000   (then open the printed address)
    """
    from farfield.orchestrator.mlflow_server import ServerStartError, serve_in_foreground, server_command, ui_url

    if not (workspace / "mlflow.db").exists() and not print_command:
        _fail(FileNotFoundError(f"{workspace / 'mlflow.db'} not found: run `farfield quickstart` or `farfield train` first"))
    if print_command:
        typer.echo(json.dumps(server_command(workspace, host=host, port=port)))
        return
    def announce(server) -> None:
        console.print(f"MLflow UI on {ui_url(server.uri)}  (runs tables; Ctrl-C to stop)", soft_wrap=True)

    try:
        code = serve_in_foreground(workspace, announce, host=host, port=port, record=False,
                                   log_file=workspace.resolve() / "mlflow-ui.log")
    except ServerStartError as err:
        _fail(err)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
