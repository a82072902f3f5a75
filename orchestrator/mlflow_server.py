"""The MLflow tracking server: the UI command, and a managed server that sweeps log to.

Light enough for a 2-core machine: one uvicorn worker and no job execution — two
processes and ~0.5 GB instead of the default ~15 processes and ~3 GB. Binds to
127.0.0.1 unless told otherwise.

Sweeps never let several processes write one SQLite file: every trial logs over HTTP
to one server, the only process that opens ``<workspace>/mlflow.db``. A workspace
has at most one such server; ``<workspace>/mlflow-server.json`` records it
(pid, host, port, uri), and a sweep reuses a live recorded server instead of starting
a second one. Artifacts are proxied (``proxy_artifacts``, the default): experiments
created through the server store them as ``mlflow-artifacts:/`` and clients upload
through the server into ``<workspace>/mlartifacts``, so trials on other nodes need no
shared disk for them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from farfield.orchestrator.tracking import artifact_root

RECORD = "mlflow-server.json"


def server_command(
    workspace: Path, host: str = "127.0.0.1", port: int = 5000, workers: int = 1, proxy_artifacts: bool = True
) -> list[str]:
    """The ``mlflow server`` command line serving ``<workspace>/mlflow.db`` and its artifacts.

    ``proxy_artifacts``: new experiments store artifacts as ``mlflow-artifacts:/``, uploaded
    through the server (needed when trials run on other machines).
    """
    workspace = Path(workspace).resolve()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow") or "mlflow"
    artifacts = (
        ["--artifacts-destination", artifact_root(workspace), "--default-artifact-root", "mlflow-artifacts:/"]
        if proxy_artifacts
        else ["--default-artifact-root", artifact_root(workspace)]
    )
    return [
        mlflow_bin, "server",
        "--backend-store-uri", f"sqlite:///{(workspace / 'mlflow.db').as_posix()}",
        *artifacts,
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]


def server_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def is_serving(uri: str, timeout: float = 2.0) -> bool:
    """True if an MLflow server answers its health check at ``uri``."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def running_server(workspace: Path) -> str | None:
    """URI of the live server recorded for ``workspace``, or None (a stale record is removed)."""
    record = Path(workspace) / RECORD
    if not record.is_file():
        return None
    try:
        info = json.loads(record.read_text())
        uri = info["uri"]
    except (OSError, ValueError, KeyError):
        return None
    if _pid_alive(info.get("pid")) and is_serving(uri):
        return uri
    record.unlink(missing_ok=True)
    return None


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class ManagedServer:
    """An MLflow server process for one workspace: started, recorded, health-checked, stopped.

    ``ManagedServer.start(workspace)`` → ``.uri``; ``.stop()`` ends it and its worker.
    Use ``ensure_server`` to reuse a live one instead.
    """

    def __init__(self, process: subprocess.Popen, uri: str, workspace: Path):
        self.process = process
        self.uri = uri
        self.workspace = workspace

    @classmethod
    def start(cls, workspace: Path, host: str = "127.0.0.1", port: int | None = None,
              timeout_s: float = 120.0, log_file: Path | None = None) -> ManagedServer:
        workspace = Path(workspace).resolve()
        workspace.mkdir(parents=True, exist_ok=True)
        port = port or free_port(host)
        uri = f"http://{host}:{port}"
        log = open(log_file or workspace / "mlflow-server.log", "ab")  # noqa: SIM115 (kept open for the child)
        process = subprocess.Popen(
            server_command(workspace, host=host, port=port), env=server_environment(),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        server = cls(process, uri, workspace)
        deadline = time.time() + timeout_s
        while not is_serving(uri, timeout=1.0):
            if process.poll() is not None:
                raise RuntimeError(
                    f"MLflow server for {workspace} exited with code {process.returncode} before serving {uri}; "
                    f"see {log_file or workspace / 'mlflow-server.log'}"
                )
            if time.time() > deadline:
                server.stop()
                raise RuntimeError(f"MLflow server for {workspace} did not answer at {uri} within {timeout_s:.0f} s")
            time.sleep(0.3)
        (workspace / RECORD).write_text(json.dumps({"pid": process.pid, "host": host, "port": port, "uri": uri}))
        return server

    def stop(self) -> None:
        """Terminate the server's process group (server + uvicorn worker) and drop the record."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        record = self.workspace / RECORD
        try:
            if json.loads(record.read_text()).get("pid") == self.process.pid:
                record.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> ManagedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_server(workspace: Path, host: str = "127.0.0.1") -> tuple[str, ManagedServer | None]:
    """``(uri, server)``: a live recorded server for ``workspace`` (server None), else a new one on ``host``."""
    uri = running_server(workspace)
    if uri is not None:
        return uri, None
    server = ManagedServer.start(workspace, host=host)
    return server.uri, server
