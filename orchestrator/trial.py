"""One trial as one MLflow run: the pipeline of ``farfield.orchestrator.trial_pipeline``, logged.

``run_trial`` is a plain function of a ``TrialConfig``; ``farfield.orchestrator.launch``
runs it inside a Ray task. It creates the run, then logs what each step of the pipeline
returns as soon as it has it (names from ``farfield.analysis.run_layout``):

    before any data   tags (backbone, long_range, split, git commit), flattened params, the config
    open_data         the dataset and split hashes (tags), the split file
    make_trainer      the device (tag), the number of parameters
    training          per-epoch curves (``curve/…``, ``MlflowEpochReporter``)
    evaluate          final ``{train,val,test}/{e_mae,e_rmse,f_mae,f_rmse,q_mae}``, ``key/…``, the
                      heads' metrics, per-structure test predictions (parquet), the learned charges
                      and the checkpoint

A model trained by another library (``model.backbone: external``) goes through
``farfield.orchestrator.external.trial``, which logs the same run with the ``log_…`` functions
here. A failure ends the run FAILED (KILLED on Ctrl-C) with its reason as a tag.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.data.splitting import Split
from farfield.data.store import DatasetStore
from farfield.models.heads.report import HeadReport
from farfield.models.training import Reporter, save_checkpoint
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.tracking import (
    MlflowEpochReporter,
    ensure_experiment,
    git_commit,
    key_metrics,
    now_ms,
    tracking_uri,
    trial_title,
)
from farfield.orchestrator.trial_pipeline import (
    EpochReporters,
    TrialOutputs,
    evaluate,
    make_trainer,
    open_data,
    seed_everything,
    side_ids,
    trial_graphs,
)


@dataclass
class TrialResult:
    """What a finished trial returns (also everything is in its MLflow run)."""

    run_id: str
    tracking_uri: str
    experiment_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int = -1
    epochs_run: int = 0


def run_trial(
    config: TrialConfig, progress: bool = True, reporters: list[Reporter] | None = None,
    tags: dict[str, str] | None = None,
) -> TrialResult:
    """Train and evaluate one potential; log everything to a new MLflow run.

    ``reporters``: extra per-epoch ``Reporter``s called after the MLflow one (a sweep
    passes its Ray Tune reporter here). ``tags``: extra MLflow run tags (e.g. a sweep id).
    """
    seed_everything(config.seed)
    if config.resources.torch_threads:
        torch.set_num_threads(config.resources.torch_threads)
    workspace = Path(config.workspace)
    uri = tracking_uri(config.tracking, workspace)
    experiment_id = ensure_experiment(config.tracking, workspace)
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(
        experiment_id,
        run_name=config.tracking.run_name or trial_title(config),
        tags={run_layout.TAG_BACKBONE: config.model.backbone_tag,
              run_layout.TAG_LONG_RANGE: ",".join(config.model.long_range_tag) or run_layout.NO_LONG_RANGE,
              run_layout.TAG_SPLIT: config.split.strategy, run_layout.TAG_GIT_COMMIT: git_commit(),
              run_layout.TAG_TRIAL_NAME: config.name, **(tags or {})},
    )
    run_id = run.info.run_id
    try:
        if config.model.external is not None:  # another library's trainer, in its own environment
            from farfield.orchestrator.external.trial import train_and_log_external

            result = train_and_log_external(config, client, run_id, progress, reporters or [])
        else:
            result = _run_logged(config, client, run_id, progress, reporters or [])
    except BaseException as err:
        client.set_tag(run_id, run_layout.TAG_FAILURE_REASON, f"{type(err).__name__}: {err}"[:5000])
        client.set_terminated(run_id, status="KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    result.tracking_uri, result.experiment_id = uri, experiment_id
    return result


def _run_logged(config: TrialConfig, client: MlflowClient, run_id: str, progress: bool,
                reporters: list[Reporter]) -> TrialResult:
    """The pipeline, each step's result logged to ``run_id`` (module docstring)."""
    store, _split, ids = log_trial_inputs(config, client, run_id)
    graphs = trial_graphs(config, store, ids, config.model.torch_dtype, progress=progress)
    trainer, reference = make_trainer(config, graphs["train"], epoch_reporter(client, run_id, reporters),
                                      progress=progress)
    client.set_tag(run_id, run_layout.TAG_DEVICE, str(trainer.device))
    client.log_metric(run_id, run_layout.METRIC_N_PARAMETERS, sum(p.numel() for p in trainer.potential.parameters()))
    fit = trainer.fit(graphs["train"], graphs["val"])

    outputs = evaluate(trainer, fit, graphs, store)
    metrics = _log_outputs(client, run_id, config, trainer.potential, outputs)
    metrics = log_final_metrics(client, run_id, metrics, reference, graphs["test"])
    return TrialResult(run_id, "", "", metrics, fit.best_epoch, len(fit.history))


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


def _log_outputs(client: MlflowClient, run_id: str, config: TrialConfig, potential,
                 outputs: TrialOutputs) -> dict[str, float]:
    """Log the predictions, the heads' charges and the checkpoint; return the final metrics to log."""
    metrics: dict[str, float] = {run_layout.METRIC_BEST_EPOCH: outputs.fit.best_epoch,
                                 run_layout.METRIC_EPOCHS_RUN: len(outputs.fit.history)}
    for side, values in outputs.metrics.items():
        metrics.update({run_layout.final_metric(side, name): value for name, value in values.items()})
    with tempfile.TemporaryDirectory() as tmp:
        if outputs.predictions is not None:
            log_test_predictions(client, run_id, outputs.predictions, Path(tmp))
            metrics.update(log_head_report(client, run_id, outputs.heads, Path(tmp)))
        checkpoint = save_checkpoint(Path(tmp) / run_layout.CHECKPOINT_FILE, potential.cpu(),
                                     config.model_dump(mode="json"))
        client.log_artifact(run_id, str(checkpoint), run_layout.CHECKPOINT_DIR)
    return metrics


def log_test_predictions(client: MlflowClient, run_id: str, table: pd.DataFrame, tmp: Path) -> None:
    """``predictions/test_predictions.parquet``: one row per test structure (``ErrorAccumulator``'s
    table with its ``parent_id``, ``trial_pipeline.with_parent_ids``)."""
    path = Path(tmp) / run_layout.PREDICTIONS_FILE
    table.to_parquet(path, index=False)
    client.log_artifact(run_id, str(path), run_layout.PREDICTIONS_DIR)


def log_head_report(client: MlflowClient, run_id: str, report: HeadReport, tmp: Path) -> dict[str, float]:
    """Log the learned charges (``charges/<structure_id>.parquet``, one per test structure); return the
    heads' metrics as test metrics (``test/q_std``, ``test/lr_energy_share``, per head ``..._<head>``)."""
    if report.charges:
        folder = Path(tmp) / run_layout.CHARGES_DIR
        folder.mkdir(exist_ok=True)
        for structure_id, table in report.charges.items():
            table.to_parquet(folder / run_layout.charge_file_name(structure_id), index=False)
        client.log_artifacts(run_id, str(folder), run_layout.CHARGES_DIR)
    return {run_layout.final_metric("test", name): value for name, value in report.metrics.items()}


def log_final_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], reference: np.ndarray,
                      test_graphs: list) -> dict[str, float]:
    """``metrics`` plus the ``key/`` ones (against the dummy baseline of ``reference`` energies, eV),
    logged at once; returns them all."""
    metrics = {**metrics, **key_metrics(metrics, reference, test_graphs)}
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, float(v), now_ms(), 0) for k, v in metrics.items()])
    return metrics
