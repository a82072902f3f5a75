"""Start the MLflow UI/tracking server for a workspace, light enough for a 2-core machine.

One uvicorn worker and no job execution: two processes and ~0.5 GB instead of the
default ~15 processes and ~3 GB. Binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from farfield.orchestrator.tracking import artifact_root


def server_command(workspace: Path, host: str = "127.0.0.1", port: int = 5000, workers: int = 1) -> list[str]:
    """The ``mlflow server`` command line serving ``<workspace>/mlflow.db`` and its artifacts."""
    workspace = Path(workspace).resolve()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow") or "mlflow"
    return [
        mlflow_bin, "server",
        "--backend-store-uri", f"sqlite:///{(workspace / 'mlflow.db').as_posix()}",
        "--default-artifact-root", artifact_root(workspace),
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]


def server_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env
