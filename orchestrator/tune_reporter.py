"""Inside a Ray Tune trial: the per-epoch reporter and the trainable that runs one sweep trial.

The trainable turns the searcher's suggestion (grid cell + sampled values) into a
``TrialConfig`` and calls the same ``run_trial`` as ``farfield train``: one MLflow run
per trial, tagged with the sweep id, the Tune trial id and the grid cell. Each epoch's
validation metrics go to Tune with a checkpoint (state_dict + config, the trial's
weights of that epoch, EMA applied when on). After training, one last report carries
the selected weights' final metrics and ``trial_complete`` — the mark that tells the
searcher this value is a full-budget result. A loss that becomes NaN/inf ends the
trial (its MLflow run FAILED with the reason) with ``trial_failed`` instead of an
exception, so the deterministic failure is not retried; anything else raises and Ray
retries it up to ``sweep.max_failures`` times.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import ray
from mlflow.tracking import MlflowClient
from ray import tune

from farfield.models.training import save_checkpoint
from farfield.models.training.trainer import NonFiniteLossError
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.grid_search import TRIAL_COMPLETE, TRIAL_FAILED
from farfield.orchestrator.sweep_config import SweepConfig, cell_label, trial_data
from farfield.orchestrator.trial import run_trial


class TuneEpochReporter:
    """``Reporter`` for the trainer: ``tune.report`` of every epoch's numbers, with a checkpoint.

    ``attach(trainer, config)`` (called by ``run_trial``) lets it save the model of each
    epoch; without it, metrics are reported alone. ``rows`` keeps the reported history.
    """

    def __init__(self, checkpoints: bool = True):
        self.checkpoints = checkpoints
        self.trainer = None
        self.trial_config: dict = {}
        self.rows: list[dict[str, float]] = []

    def attach(self, trainer, trial_config: dict) -> None:
        self.trainer = trainer
        self.trial_config = trial_config

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        row = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        row["epoch"] = epoch
        self.rows.append(row)
        if not (self.checkpoints and self.trainer is not None):
            tune.report(row)
            return
        with tempfile.TemporaryDirectory() as tmp:
            self._save(Path(tmp) / "model.pt")
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(tmp))

    def _save(self, path: Path) -> None:
        trainer = self.trainer
        if trainer.ema is not None:
            with trainer.ema.applied(trainer.potential):
                save_checkpoint(path, trainer.potential, self.trial_config)
        else:
            save_checkpoint(path, trainer.potential, self.trial_config)


def sweep_trial_config(sweep: SweepConfig, suggestion: dict, meta: dict, trial_id: str) -> TrialConfig:
    """The ``TrialConfig`` of one Tune trial: base + cell + sampled values + the sweep's shared inputs.

    ``meta``: ``dataset`` (absolute store path), ``split_files`` (one per cell, made on the
    driver), ``tracking_uri`` (the sweep's MLflow server).
    """
    index = suggestion["cell_index"]
    data = trial_data(sweep, suggestion["cell"], suggestion["sampled"])
    data["name"] = f"{sweep.name}-{trial_id}"
    data["data"]["dataset"] = meta["dataset"]
    data["split"]["file"] = meta["split_files"][index]
    data["tracking"]["uri"] = meta["tracking_uri"]
    if data["resources"].get("torch_threads") is None:
        data["resources"]["torch_threads"] = max(1, int(data["resources"]["num_cpus"]))
    return TrialConfig.model_validate(data)


def close_open_runs(client: MlflowClient, experiment_id: str, sweep_id: str, trial_id: str, status: str,
                    reason: str) -> list[str]:
    """End this trial's MLflow runs still RUNNING (an attempt lost with its process) as ``status``."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.sweep_id = '{sweep_id}' and tags.tune_trial_id = '{trial_id}' and attributes.status = 'RUNNING'",
    )
    for run in runs:
        client.set_tag(run.info.run_id, "failure_reason", reason)
        client.set_terminated(run.info.run_id, status=status)
    return [run.info.run_id for run in runs]


def sweep_trainable(suggestion: dict, sweep: dict, meta: dict) -> None:
    """Ray Tune function trainable for one sweep trial (``sweep``: the SweepConfig as JSON data)."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    sweep_config = SweepConfig.model_validate(sweep)
    trial_id = tune.get_context().get_trial_id()
    config = sweep_trial_config(sweep_config, suggestion, meta, trial_id)
    client = MlflowClient(tracking_uri=meta["tracking_uri"])
    finished = _finished_run(client, meta, trial_id)
    if finished is not None:  # finished before the driver was lost: report it again, never re-train
        tune.report(_final_report(finished.data.metrics, finished.info.run_id,
                                  int(finished.data.metrics.get("epochs_run", 0)),
                                  int(finished.data.metrics.get("best_epoch", -1)), {}))
        return
    close_open_runs(client, meta["experiment_id"], meta["sweep_id"], trial_id, "KILLED",
                    "attempt interrupted (process, node or driver lost); the trial was restarted")
    tags = {
        "sweep_id": meta["sweep_id"],
        "sweep_name": sweep_config.name,
        "tune_trial_id": trial_id,
        "grid_cell": cell_label(suggestion["cell"]),
        "sampled": ", ".join(f"{k}={v}" for k, v in suggestion["sampled"].items()),
        "ray_node_id": ray.get_runtime_context().get_node_id(),
    }
    reporter = TuneEpochReporter()
    try:
        result = run_trial(config, progress=False, reporters=[reporter], tags=tags)
    except NonFiniteLossError as err:
        tune.report({sweep_config.sweep.metric: math.nan, TRIAL_FAILED: 1, "failure_reason": f"{type(err).__name__}: {err}"[:1000],
                     "epoch": len(reporter.rows)})
        return
    best_row = reporter.rows[result.best_epoch] if 0 <= result.best_epoch < len(reporter.rows) else {}
    tune.report(_final_report(result.metrics, result.run_id, result.epochs_run, result.best_epoch, best_row))


def _finished_run(client: MlflowClient, meta: dict, trial_id: str):
    runs = client.search_runs(
        [meta["experiment_id"]],
        f"tags.sweep_id = '{meta['sweep_id']}' and tags.tune_trial_id = '{trial_id}' and "
        "attributes.status = 'FINISHED'",
    )
    return runs[0] if runs else None


def _final_report(metrics: dict, run_id: str, epochs_run: int, best_epoch: int, best_row: dict) -> dict:
    """The last Tune result: the best epoch's row, then final ``{side}/{metric}`` as ``{side}_{metric}``."""
    final = dict(best_row)
    for key, value in metrics.items():
        if "/" in key and math.isfinite(value):
            final[key.replace("/", "_")] = value
    final.update({TRIAL_COMPLETE: 1, "epoch": epochs_run, "best_epoch": best_epoch, "mlflow_run_id": run_id})
    return final
