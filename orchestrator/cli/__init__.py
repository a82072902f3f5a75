"""The ``farfield`` command line. It parses, validates and calls functions; nothing more.

Every command is a thin wrapper around a function that takes the typed config models,
so notebooks can do the same from Python. One module per command (group); they share
the error helper and consoles of ``errors``:

    train        farfield train                  quickstart   farfield quickstart
    sweep        farfield sweep                  servers      farfield ui, farfield mlflow-server
    data         farfield data ...               data_build   farfield data build / catalogue
    split        farfield split ...              report       farfield report
    study        farfield study

This package assembles them into ``app``; ``main`` is the console-script entry point.
"""

from __future__ import annotations

import sys

import typer

from farfield.orchestrator.cli.data import data_app
from farfield.orchestrator.cli.errors import err_console
from farfield.orchestrator.cli.quickstart import quickstart
from farfield.orchestrator.cli.report import report
from farfield.orchestrator.cli.servers import mlflow_server, ui
from farfield.orchestrator.cli.split import split_app
from farfield.orchestrator.cli.study import study
from farfield.orchestrator.cli.sweep import sweep
from farfield.orchestrator.cli.train import train

__all__ = ["app", "main"]

app = typer.Typer(
    help="farfield: do machine-learned interatomic potentials still work on materials they have never seen?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(split_app, name="split")
app.command()(sweep)
app.command(name="mlflow-server")(mlflow_server)
app.command()(report)
app.command()(study)
app.command()(train)
app.command()(quickstart)
app.command()(ui)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
