"""What every trial logs to its MLflow run, farfield's own and an external library's alike.

The steps ``farfield.orchestrator.trial`` (a farfield potential) and
``farfield.orchestrator.external.trial`` (a model trained by another library) share, under the
names of ``farfield.analysis.run_layout``: the params, config, dataset and split
(``log_trial_inputs``), the per-epoch curves (``epoch_reporter``), the test predictions, the
heads' charges and metrics, and the final metrics with the ``key/`` ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.data.splitting import Split
from farfield.data.store import DatasetStore
from farfield.models.heads.report import HeadReport
from farfield.models.training import Reporter
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.tracking import MlflowEpochReporter, key_metrics, now_ms
from farfield.orchestrator.trial_pipeline import EpochReporters, open_data, side_ids


@dataclass
class TrialResult:
    """What a finished trial returns (also everything is in its MLflow run)."""

    run_id: str
    tracking_uri: str
    experiment_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int = -1
    epochs_run: int = 0


def log_trial_inputs(config: TrialConfig, client: MlflowClient, run_id: str) -> tuple[DatasetStore, Split, dict]:
    """Params, resolved config, dataset and split (tags and artifact) of a new run; returns the
    store, the split and the structure ids of each side (shared by farfield and external trials)."""
    items = [mlflow.entities.Param(k, v[:6000]) for k, v in config.flat_params().items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])
    client.log_dict(run_id, config.model_dump(mode="json"), run_layout.CONFIG_ARTIFACT)
    store, split = open_data(config)
    client.set_tag(run_id, run_layout.TAG_DATASET_HASH, store.content_hash)
    client.set_tag(run_id, run_layout.TAG_SPLIT_HASH, split.content_hash)
    client.log_dict(run_id, json.loads(split.to_json()), run_layout.SPLIT_ARTIFACT)
    return store, split, side_ids(config, store, split)


def epoch_reporter(client: MlflowClient, run_id: str, reporters: list[Reporter]) -> EpochReporters:
    """The per-epoch reporter of a trial: its MLflow curves first, then ``reporters`` (a sweep's)."""
    return EpochReporters([MlflowEpochReporter(client, run_id), *reporters])


def log_test_predictions(client: MlflowClient, run_id: str, table: pd.DataFrame, tmp: Path) -> None:
    """``predictions/test_predictions.parquet``: one row per test structure (``ErrorAccumulator``'s
    table with its ``parent_id``, ``trial_pipeline.with_parent_ids``)."""
    path = Path(tmp) / run_layout.PREDICTIONS_FILE
    table.to_parquet(path, index=False)
    client.log_artifact(run_id, str(path), run_layout.PREDICTIONS_DIR)


def log_head_report(client: MlflowClient, run_id: str, report: HeadReport, tmp: Path) -> dict[str, float]:
    """Log the learned charges (``predictions/test_charges.parquet``: one table, a row per atom of
    every test structure, ``structure_id`` first); return the heads' metrics as test metrics
    (``test/q_std``, ``test/lr_energy_share``, per head ``..._<head>``). One file, not one per
    structure: through a tracking server each file is a request of its own."""
    if report.charges:
        table = pd.concat([frame.assign(structure_id=structure_id) for structure_id, frame in report.charges.items()],
                          ignore_index=True)
        path = Path(tmp) / run_layout.CHARGES_FILE
        table[["structure_id", *run_layout.LOGGED_CHARGE_COLUMNS]].to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), run_layout.PREDICTIONS_DIR)
    return {run_layout.final_metric("test", name): value for name, value in report.metrics.items()}


def log_final_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], reference: np.ndarray,
                      test_graphs: list) -> dict[str, float]:
    """``metrics`` plus the ``key/`` ones (against the dummy baseline of ``reference`` energies, eV),
    logged at once; returns them all."""
    metrics = {**metrics, **key_metrics(metrics, reference, test_graphs)}
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, float(v), now_ms(), 0) for k, v in metrics.items()])
    return metrics
