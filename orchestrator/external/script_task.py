"""The body of the Ray task that runs a script with the trainer environment's Python.

Standard library only: Ray sends this module by value into the trainer's environment,
where farfield is not imported.
"""

from __future__ import annotations

import os
import subprocess
import sys


def run(script: str, arguments: list[str], log_path: str, environment: dict[str, str]) -> tuple[int, str, str]:
    """Run ``sys.executable script *arguments`` (stdout and stderr to ``log_path``).

    Returns (exit status, the Python that ran it, the last 3,000 characters of the log)."""
    env = {**os.environ, **environment}
    with open(log_path, "ab") as log:
        returncode = subprocess.run([sys.executable, script, *arguments], stdout=log, stderr=subprocess.STDOUT,
                                    env=env).returncode
    with open(log_path, "rb") as log:
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - 3000))
        tail = log.read().decode(errors="replace")
    return returncode, sys.executable, tail
