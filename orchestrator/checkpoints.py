"""Trial checkpoints from MLflow: download a run's ``checkpoint/model.pt`` and load it.

Model code never imports MLflow; this module fetches the file and hands the local path
to ``farfield.models``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.models.calculator import FarfieldCalculator
from farfield.orchestrator.config import TrackingConfig
from farfield.orchestrator.tracking import tracking_uri

#: Where ``run_trial`` logs the checkpoint inside a run's artifacts.
CHECKPOINT_ARTIFACT = run_layout.CHECKPOINT_ARTIFACT


def download_checkpoint(run_id: str, destination: str | Path, uri: str | None = None,
                        workspace: str | Path = "workspace") -> Path:
    """Copy run ``run_id``'s checkpoint into ``destination`` (a folder); returns the file.

    ``uri``: MLflow tracking URI; None = the workspace's SQLite store, as ``run_trial`` uses.
    """
    uri = uri or tracking_uri(TrackingConfig(), Path(workspace))
    client = MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
    except Exception as err:  # MlflowException for unknown ids, other types for bad URIs
        raise ValueError(f"MLflow run {run_id!r} not found at {uri}: {err}") from err
    path = Path(client.download_artifacts(run_id, CHECKPOINT_ARTIFACT, str(destination)))
    if not path.is_file():
        raise ValueError(f"MLflow run {run_id!r} has no {CHECKPOINT_ARTIFACT} artifact")
    return path


def calculator_from_run(run_id: str, uri: str | None = None, workspace: str | Path = "workspace",
                        device: str = "cpu") -> FarfieldCalculator:
    """ASE calculator of the model trained in MLflow run ``run_id``."""
    with tempfile.TemporaryDirectory() as tmp:
        return FarfieldCalculator.from_checkpoint(download_checkpoint(run_id, tmp, uri, workspace), device=device)


def load_calculator(source: str | Path, uri: str | None = None, workspace: str | Path = "workspace",
                    device: str = "cpu") -> FarfieldCalculator:
    """``source``: a local checkpoint file, or else an MLflow run id."""
    if Path(source).is_file():
        return FarfieldCalculator.from_checkpoint(source, device=device)
    return calculator_from_run(str(source), uri, workspace, device)
