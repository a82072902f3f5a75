"""How every ``farfield`` command reports a user error: one line on stderr, exit status 1.

``raise fail(err) from err`` in a command turns an exception (or a message) into
``error: <message>`` on stderr and ``typer.Exit(1)``; the exceptions a user can cause
(a bad config, a missing file, a wrong value) are :data:`USER_ERRORS`. Shared console
objects and the path shown to the user live here too, so the commands print alike.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from farfield.orchestrator.config import ConfigError
from farfield.orchestrator.mlflow_server import ServerStartError

__all__ = ["USER_ERRORS", "console", "err_console", "fail", "shell_path"]

console = Console()
err_console = Console(stderr=True)

#: What a user's input can raise: shown as one line, never as a traceback.
USER_ERRORS = (ConfigError, ValueError, FileNotFoundError, TypeError, ServerStartError)


def fail(error: BaseException | str) -> typer.Exit:
    """Print ``error: <error>`` on stderr (bold red on a terminal, the text as it is, never
    read as markup); return the ``typer.Exit(1)`` to raise: ``raise fail(err) from err``."""
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True, emoji=False)
    return typer.Exit(code=1)


def shell_path(path: Path) -> str:
    """``path`` as the user would type it here: relative to the current folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(Path(path).resolve())
