"""MLflow: where runs go, how experiments are created, and the per-epoch reporter.

The embedded default is a SQLite store in the workspace (``<workspace>/mlflow.db``)
with artifacts under ``<workspace>/mlartifacts``; a remote URI is used as given.
Only ``farfield.orchestrator`` imports MLflow.
"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from farfield.orchestrator.config import TrackingConfig


def tracking_uri(tracking: TrackingConfig, workspace: Path) -> str:
    """The configured URI, or the workspace's SQLite store."""
    if tracking.uri:
        return tracking.uri
    return f"sqlite:///{(Path(workspace).resolve() / 'mlflow.db').as_posix()}"


def artifact_root(workspace: Path) -> str:
    return (Path(workspace).resolve() / "mlartifacts").as_uri()


def ensure_experiment(tracking: TrackingConfig, workspace: Path) -> str:
    """Create the experiment once (on the driver) if missing; return its id."""
    uri = tracking_uri(tracking, workspace)
    if uri.startswith("sqlite:///"):
        Path(workspace).mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_root(workspace) if not tracking.uri else None
    try:
        return client.create_experiment(tracking.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently by another process
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit() -> str:
    """Commit of the farfield checkout, or ``unknown`` for an installed copy."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def finite_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Drop non-numeric entries; MLflow stores NaN as NaN, which is kept."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class MlflowEpochReporter:
    """``Reporter`` for the trainer: logs every per-epoch number as a curve (step = epoch)."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        values = finite_metrics({k: v for k, v in metrics.items() if k != "epoch"})
        entities = [
            mlflow.entities.Metric(key=_curve_name(k), value=v, timestamp=now_ms(), step=epoch)
            for k, v in values.items()
            if not math.isinf(v)
        ]
        self.client.log_batch(self.run_id, metrics=entities)


def _curve_name(key: str) -> str:
    """``train_loss`` → ``curve/train_loss``; ``val_f_mae`` → ``curve/val_f_mae``."""
    return f"curve/{key}"


def now_ms() -> int:
    import time

    return int(time.time() * 1000)
