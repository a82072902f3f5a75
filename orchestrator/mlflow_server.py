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

A server runs in its own process group (the ``mlflow server`` command and its uvicorn
worker). ``farfield ui`` and ``farfield mlflow-server`` serve in the foreground
(:func:`serve_in_foreground`): SIGTERM, SIGINT or SIGHUP to them stops that
whole group, so nothing is left on the port.

MLflow 3's UI opens in its GenAI layout unless told otherwise (a per-browser switch
whose default is GenAI; the experiment's ``mlflow.experimentKind`` tag is not read while
the switch exists): :func:`ui_url` gives the addresses that open the model-training
layout, the runs table.
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
from collections.abc import Callable
from pathlib import Path

RECORD = "mlflow-server.json"
#: URL query that opens MLflow 3's UI in its model-training layout instead of the GenAI one.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
#: Signals that stop a foreground server (service managers send SIGTERM, a terminal SIGINT or SIGHUP).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def server_command(
    workspace: Path, host: str = "127.0.0.1", port: int = 5000, workers: int = 1, proxy_artifacts: bool = True
) -> list[str]:
    """The ``mlflow server`` command line serving ``<workspace>/mlflow.db`` and its artifacts.

    ``proxy_artifacts``: new experiments store artifacts as ``mlflow-artifacts:/``, uploaded
    through the server (needed when trials run on other machines).
    """
    from farfield.orchestrator.tracking import artifact_root  # here: importing this module stays light (no MLflow)

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


def ui_url(uri: str, experiment_id: str | None = None) -> str:
    """The UI page to open at server ``uri``: the experiment's runs table, or the list of
    experiments, both in the model-training layout."""
    page = f"experiments/{experiment_id}/runs" if experiment_id is not None else "experiments"
    return f"{uri.rstrip('/')}/#/{page}?{MODEL_TRAINING_VIEW}"


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


class ServerStartError(RuntimeError):
    """The MLflow server exited or did not answer in time (the message says where its log is)."""


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
              timeout_s: float = 300.0, log_file: Path | None = None, record: bool = True) -> ManagedServer:
        """Start, wait until it answers, and (``record``) write ``<workspace>/mlflow-server.json``
        so sweeps on the workspace log to it. ``farfield ui`` does not record its server: a
        sweep must not lose its server when the UI is closed."""
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
        try:
            while not is_serving(uri, timeout=1.0):
                if process.poll() is not None:
                    raise ServerStartError(
                        f"MLflow server for {workspace} exited with code {process.returncode} before serving "
                        f"{uri}; see {log_file or workspace / 'mlflow-server.log'}"
                    )
                if time.time() > deadline:
                    raise ServerStartError(f"MLflow server for {workspace} did not answer at {uri} within "
                                       f"{timeout_s:.0f} s")
                time.sleep(0.3)
        except BaseException:  # failed, or interrupted while starting: leave nothing running
            server.stop()
            raise
        if record:
            (workspace / RECORD).write_text(json.dumps({"pid": process.pid, "host": host, "port": port, "uri": uri}))
        return server

    def stop(self, timeout_s: float = 30.0) -> None:
        """Terminate the server's process group (server + uvicorn worker), SIGKILL what is left
        after ``timeout_s``, and drop the record."""
        group = self.process.pid  # start_new_session: the group id is the server's pid
        if _signal_group(group, signal.SIGTERM):
            deadline = time.time() + timeout_s
            while _signal_group(group, 0) and time.time() < deadline:
                self.process.poll()  # reap the server so that it does not linger as a zombie
                time.sleep(0.1)
            _signal_group(group, signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
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


class _StopRequested(Exception):
    """Raised by the signal handler of :func:`serve_in_foreground`."""


def _raise_stop(signum, frame) -> None:
    raise _StopRequested(signum)


def serve_in_foreground(workspace: Path, announce: Callable[[ManagedServer], None], **start_options) -> int:
    """Start a server (``ManagedServer.start(workspace, **start_options)``), ``announce(server)``,
    and serve until it exits or this process receives one of ``STOP_SIGNALS``; then stop its whole
    process group. The signal handlers are in place before the start, so a signal at any moment
    stops what was started. Returns 0 when stopped by a signal, else the server's exit code;
    raises ``ServerStartError`` when the server does not start."""
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    server = None
    try:
        server = ManagedServer.start(workspace, **start_options)
        announce(server)
        return server.process.wait()
    except _StopRequested:
        return 0
    finally:
        for sig in STOP_SIGNALS:  # a second signal while stopping must not interrupt the stop
            signal.signal(sig, signal.SIG_IGN)
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_group(group: int, sig: int) -> bool:
    """Send ``sig`` to process group ``group``; False if no process of it is left."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # only zombies left, or a reused id: nothing of ours to stop
        return False
    return True


def ensure_server(workspace: Path, host: str = "127.0.0.1") -> tuple[str, ManagedServer | None]:
    """``(uri, server)``: a live recorded server for ``workspace`` (server None), else a new one on ``host``."""
    uri = running_server(workspace)
    if uri is not None:
        return uri, None
    server = ManagedServer.start(workspace, host=host)
    return server.uri, server


def report_tracking(workspace: Path, tracking_uri: str | None, experiment: str) -> tuple[str, ManagedServer | None]:
    """``(uri, server or None)`` to read ``experiment``'s runs from (``farfield report``, a study): the
    explicit URI, ``MLFLOW_TRACKING_URI``, the workspace's live server, or its SQLite store — through
    a managed server when the experiment's artifacts are proxied (``mlflow-artifacts:/``, as a
    sweep's are). The caller stops the server it gets."""
    from farfield.analysis.mlflow_queries import artifact_location

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or running_server(workspace)
    if uri:
        return uri, None
    database = workspace / "mlflow.db"
    if not database.is_file():
        raise FileNotFoundError(f"{database} not found: pass --workspace where the trials ran, or --tracking-uri")
    uri = f"sqlite:///{database.resolve().as_posix()}"
    if artifact_location(uri, experiment).startswith("mlflow-artifacts:"):
        return ensure_server(workspace)
    return uri, None
