"""``farfield ui`` and ``farfield mlflow-server``: the MLflow UI / tracking server of a workspace, in the foreground."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import typer

from farfield.orchestrator.cli.errors import console, fail
from farfield.orchestrator.mlflow_server import ServerStartError


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
    from farfield.orchestrator.mlflow_server import serve_in_foreground, server_command, ui_url

    if not (workspace / "mlflow.db").exists() and not print_command:
        raise fail(FileNotFoundError(f"{workspace / 'mlflow.db'} not found: run `farfield quickstart` or "
                                     "`farfield train` first"))
    if print_command:
        typer.echo(json.dumps(server_command(workspace, host=host, port=port)))
        return

    def announce(server) -> None:
        console.print(f"MLflow UI on {ui_url(server.uri)}  (runs tables; Ctrl-C to stop)", soft_wrap=True)

    try:
        code = serve_in_foreground(workspace, announce, host=host, port=port, record=False,
                                   log_file=workspace.resolve() / "mlflow-ui.log")
    except ServerStartError as err:
        raise fail(err) from err
    raise typer.Exit(code)


def mlflow_server(
    workspace: Path = typer.Option(Path("workspace"), help="Workspace whose mlflow.db and mlartifacts it serves."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (127.0.0.1; a cluster head binds its private IP)."),
    port: int = typer.Option(5000, help="Port of the tracking server."),
) -> None:
    """Start the MLflow tracking server that sweeps log to (SQLite + local artifacts, one worker).

    Runs in the foreground until Ctrl-C, SIGTERM or SIGHUP (which stop its worker too); sweeps on
    the same workspace find and reuse it
    (``<workspace>/mlflow-server.json``). Light form: --workers 1 and no job execution.

    Example:  farfield mlflow-server --workspace workspace --port 5000
    """
    from farfield.orchestrator.mlflow_server import running_server, serve_in_foreground, ui_url

    existing = running_server(workspace)
    if existing is not None:
        raise fail(ValueError(f"an MLflow server for {workspace} is already running at {existing}"))

    def announce(server) -> None:
        console.print(f"MLflow tracking server on {server.uri} for {workspace.resolve()}  (Ctrl-C to stop)")
        console.print(f"sweeps: set tracking.uri: {server.uri} (or MLFLOW_TRACKING_URI), or run them on this "
                      f"workspace")
        console.print(f"UI: {ui_url(server.uri)}", soft_wrap=True)

    try:
        code = serve_in_foreground(workspace, announce, host=host, port=port)
    except ServerStartError as err:
        raise fail(err) from err
    if code not in (0, -signal.SIGTERM):
        raise typer.Exit(code)
