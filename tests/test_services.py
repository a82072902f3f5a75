"""`farfield ui` and `farfield mlflow-server` in the foreground: a signal to the parent stops everything.

Service managers and `kill` send SIGTERM to the one process they started, a terminal sends
SIGINT: either must stop the MLflow server and its uvicorn worker too, leaving the port free
and no process behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from farfield.orchestrator.config import TrackingConfig
from farfield.orchestrator.mlflow_server import RECORD, free_port, is_serving
from farfield.orchestrator.tracking import ensure_experiment

pytestmark = pytest.mark.integration


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # fields after "(comm)": state, ppid, ...


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("command", ["ui", "mlflow-server"])
def test_a_signal_to_the_parent_stops_the_server_and_its_worker(command, stop_signal, tmp_path):
    workspace = tmp_path / "workspace"
    ensure_experiment(TrackingConfig(experiment="served"), workspace)  # the store `farfield ui` serves
    port = free_port()
    log = tmp_path / "console.txt"  # a file, not a pipe: a child left behind would hold a pipe open
    with open(log, "w") as console:
        parent = subprocess.Popen([sys.executable, "-m", "farfield.orchestrator.cli", command, "--workspace",
                                   str(workspace), "--port", str(port)],
                                  stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
    family: list[int] = []
    try:
        deadline = time.time() + 300  # generous: a loaded 2-core machine starts MLflow slowly
        while not is_serving(f"http://127.0.0.1:{port}", timeout=1.0):
            assert parent.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the server did not answer within 300 s"
            time.sleep(0.5)
        family = _descendants(parent.pid)
        assert len(family) >= 2, family  # `mlflow server` and its uvicorn worker
        parent.send_signal(stop_signal)  # the parent only, as `kill PID` or a service manager does
        parent.wait(timeout=90)
        deadline = time.time() + 30
        while any(_alive(p) for p in family) and time.time() < deadline:
            time.sleep(0.2)
        left = [pid for pid in family if _alive(pid)]
        assert left == [], f"left running after {stop_signal.name} to the parent: {left}"
        assert _port_is_free(port), f"port {port} still taken"
        assert parent.returncode == 0, log.read_text()[-3000:]
        assert not (workspace / RECORD).exists()  # no stale record of a stopped server
    finally:
        for pid in [*family, parent.pid]:  # only processes this test started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.poll()
