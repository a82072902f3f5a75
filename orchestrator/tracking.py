"""MLflow: where runs go, how experiments are created, run names, key metrics, the per-epoch reporter.

The embedded default is a SQLite store in the workspace (``<workspace>/mlflow.db``)
with artifacts under ``<workspace>/mlartifacts``; a remote URI is used as given.
Only ``farfield.orchestrator`` imports MLflow.

Every experiment farfield creates (or finds untagged) is tagged as a model-training
experiment (``mlflow.experimentKind = custom_model_development``), the tag MLflow 3 UIs
read to choose the runs table over the GenAI overview. MLflow 3.17's UI decides by a
per-browser switch instead while that switch exists, so the addresses farfield prints
also ask for the model-training layout (``mlflow_server.ui_url``). Runs are named for what the trial is
(``painn+les · size · seed 0``), and the numbers to compare trials by are also logged
under ``key/`` (``key/test_f_mae``, ``key/test_e_mae``, ``key/f_skill``, ``key/e_skill``)
so they sort together in the UI.

Several processes may open one fresh SQLite store at once (``farfield train`` in two
terminals): each creates MLflow's tables on first use, so the store is created, migrated
and the experiment made under a file lock (``<workspace>/mlflow.db.lock``).
"""

from __future__ import annotations

import functools
import math
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
from filelock import FileLock
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.orchestrator.config import TrackingConfig, TrialConfig

#: The experiment tag with which MLflow 3 UIs choose between the GenAI and the model-training layout.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
#: Seconds to wait for another process creating the workspace's SQLite store.
STORE_LOCK_TIMEOUT_S = 600


def tracking_uri(tracking: TrackingConfig, workspace: Path) -> str:
    """The configured URI, or the workspace's SQLite store."""
    if tracking.uri:
        return tracking.uri
    return f"sqlite:///{(Path(workspace).resolve() / 'mlflow.db').as_posix()}"


def artifact_root(workspace: Path) -> str:
    return (Path(workspace).resolve() / run_layout.WORKSPACE_ARTIFACTS).as_uri()


def store_lock(workspace: Path) -> FileLock:
    """The lock held while a process creates or migrates ``<workspace>/mlflow.db`` (and its experiments)."""
    Path(workspace).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(workspace).resolve() / "mlflow.db.lock"), timeout=STORE_LOCK_TIMEOUT_S)


def ensure_experiment(tracking: TrackingConfig, workspace: Path) -> str:
    """Create the experiment if missing, as a model-training experiment; return its id.

    On the workspace's SQLite store this runs under :func:`store_lock`, so processes
    starting at once on a fresh workspace create MLflow's tables once (the first opening
    of the store creates them) and the experiment once."""
    uri = tracking_uri(tracking, workspace)
    if not uri.startswith("sqlite:///"):
        return _ensure_experiment(MlflowClient(tracking_uri=uri), tracking.experiment, None)
    with store_lock(workspace):
        return _ensure_experiment(MlflowClient(tracking_uri=uri), tracking.experiment, artifact_root(workspace))


def _ensure_experiment(client: MlflowClient, name: str, location: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=location,
                                            tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
        except mlflow.exceptions.MlflowException:  # created concurrently through a tracking server
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:  # made by an older farfield or by hand
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return experiment.experiment_id


def trial_title(config: TrialConfig, variant: str | None = None) -> str:
    """What a trial is, as its run name: ``painn+les · size · seed 0`` (``painn · random · seed 1``);
    ``variant`` (a sweep grid variant's name) is added in brackets unless it only repeats the
    model: ``painn [short-range-4L] · random · seed 0``."""
    long_range = config.model.long_range_tag
    model = "+".join([config.model.backbone_tag, *long_range])
    if variant and variant not in (model, "+".join(long_range) or "none"):
        model = f"{model} [{variant}]"
    return f"{model} · {config.split.strategy} · seed {config.seed}"


def key_metrics(metrics: dict[str, float], reference_energies: np.ndarray, test_graphs: list) -> dict[str, float]:
    """``key/test_f_mae``, ``key/test_e_mae`` (the final test MAEs, meV/Å and meV/atom) and
    ``key/f_skill``, ``key/e_skill``: 1 − test MAE / MAE of the dummy baseline on the same
    test structures (0 = no better than it, 1 = exact). The baseline is the report's
    (``farfield.analysis.baseline``): the per-element ``reference_energies`` (eV, fitted on
    the training side) and zero forces. ``test_graphs``: the test side's ``AtomicGraph``s;
    empty result without a test side."""
    from farfield.models.training.metrics import baseline_maes

    if run_layout.final_metric("test", "f_mae") not in metrics or not test_graphs:
        return {}
    baseline = baseline_maes(test_graphs, reference_energies)
    test_f_mae, test_e_mae = (metrics[run_layout.final_metric("test", name)] for name in ("f_mae", "e_mae"))
    key = run_layout.KEY_PREFIX
    return {
        f"{key}test_f_mae": test_f_mae,
        f"{key}test_e_mae": test_e_mae,
        f"{key}f_skill": _skill(test_f_mae, baseline["f_mae"]),
        f"{key}e_skill": _skill(test_e_mae, baseline["e_mae"]),
    }


def _skill(error: float, baseline: float) -> float:
    return 1.0 - error / baseline if baseline > 0 else math.nan


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the farfield checkout, or ``unknown`` for an installed copy.

    Asked once per process: the commit of the code this process imported, even if the
    checkout moves on while it runs (a sweep's warm Ray worker trains many trials).
    """
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
            mlflow.entities.Metric(key=f"{run_layout.CURVE_PREFIX}{k}", value=v, timestamp=now_ms(), step=epoch)
            for k, v in values.items()
            if not math.isinf(v)
        ]
        self.client.log_batch(self.run_id, metrics=entities)


def now_ms() -> int:
    return int(time.time() * 1000)
