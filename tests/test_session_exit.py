"""The pytest process ends with pytest's own status, even when its exit would crash.

A crash after the session is stood in for by an atexit handler that sends the process
SIGSEGV (registered when the inner test module is imported, so it would run after the
session). Without tests/session_exit.py that inner run dies with SIGSEGV; with it, the
run's status is the session's: 0 when its test passes, 1 when it fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CRASHING_MODULE = """
import atexit, os, signal

atexit.register(lambda: os.kill(os.getpid(), signal.SIGSEGV))


def test_inner():
    assert {outcome}
"""


def _run_inner(folder: Path, outcome: bool, plugin: bool) -> subprocess.CompletedProcess:
    module = folder / "test_inner.py"
    module.write_text(CRASHING_MODULE.format(outcome=outcome))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)]
    if plugin:
        args[3:3] = ["-p", "tests.session_exit"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("outcome", "status", "summary"), [(True, 0, "1 passed"), (False, 1, "1 failed")])
def test_the_session_status_survives_a_crash_after_the_session(tmp_path, outcome, status, summary):
    run = _run_inner(tmp_path, outcome, plugin=True)
    assert run.returncode == status, run.stdout + run.stderr
    assert summary in run.stdout


def test_without_it_the_same_run_dies_with_sigsegv(tmp_path):
    run = _run_inner(tmp_path, True, plugin=False)
    assert "1 passed" in run.stdout
    assert run.returncode == -signal.SIGSEGV
