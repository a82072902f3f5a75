"""End the pytest process with the session's exit status, before interpreter finalization.

The default suite starts and stops Ray several times in its own process (``ray.init`` …
``ray.shutdown()`` in fixtures). Ray's core-worker IO threads (``worker.io``,
``gcs_client_io_service``) and gRPC's threads outlive ``ray.shutdown()`` and race with the
interpreter's finalization; one CI run crashed there with SIGSEGV ("Segmentation fault",
exit 139) after "721 passed", which turned a green session into a failed job (the same
family as ray-project/ray#31145). Nothing is tested after the session ends, so once pytest
has written its summary the process ends with ``os._exit(status)``: the status is the one
pytest decided, finalization (and its crash) is skipped.

Only a process started as the pytest command does this; ``pytest.main()`` called from
another program keeps that program's normal exit.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

import pytest


def _started_as_pytest() -> bool:
    """``pytest …``, ``py.test …`` or ``python -m pytest …`` (argv[0] is pytest's ``__main__.py``)."""
    command = Path(sys.argv[0])
    return command.name in {"pytest", "py.test"} or (command.name == "__main__.py" and command.parent.name == "pytest")


def _exit_now(session: pytest.Session) -> None:
    status = int(session.exitstatus)  # final: pytest returns this value to the command
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Register the exit last, so that it runs first among the atexit handlers."""
    if _started_as_pytest():
        atexit.register(_exit_now, session)
