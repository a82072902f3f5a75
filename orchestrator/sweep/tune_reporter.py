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

A trial's MLflow runs are found by its **slot** (``sweep_slot``: grid cell and sample
number, see ``grid_search``), not only by its Tune trial id: a trial that started after
Tune's last experiment snapshot is unknown to the restored experiment, and the searcher
issues its slot again, with the same sampled values, under a new Tune trial id. The new
trial takes over the runs of that slot (``tune_trial_id`` re-pointed, the old id kept in
``lost_tune_trial_id``); if one of them is FINISHED it reports that run instead of
training again, so a slot never gets two FINISHED runs. A trial interrupted mid-training
continues from its last finished epoch: the trainer saves its state after every epoch to
``trial_state_file`` (by slot and sampled values), deleted once the run is FINISHED.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path

import ray
from mlflow.tracking import MlflowClient
from ray import tune

from farfield.analysis import run_layout
from farfield.models.training import save_checkpoint
from farfield.models.training.trainer import NonFiniteLossError
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.sweep.config import SweepConfig, cell_label, trial_data
from farfield.orchestrator.sweep.grid_search import TRIAL_COMPLETE, TRIAL_FAILED
from farfield.orchestrator.tracking import trial_title
from farfield.orchestrator.trial import INTERRUPTED_PREFIX, run_trial

#: Every report's place in an uninterrupted trial: epoch + 1 for an epoch, epochs run + 1 for the
#: final report — Tune's ``training_iteration`` as it would be without a resume (a resumed trial
#: reports its earlier epochs again, so its own iteration counter runs ahead). ASHA counts this.
REPORT_INDEX = "report_index"
#: Key of the epochs a resumed trial reports again (value: the epoch its training continues from).
RESUMED_AT_EPOCH = "resumed_at_epoch"
#: Folder of the sweep's experiment that holds interrupted trials' training states.
TRIAL_STATE_DIR = "trial_state"

#: Loggers of Ray that write one INFO line per reported checkpoint ("Checkpoint successfully
#: created at: ..."), i.e. per epoch per trial; quiet unless the sweep runs ``verbose``.
CHECKPOINT_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage")


def quiet_checkpoint_logs(verbose: bool = False) -> None:
    """Silence Ray's per-checkpoint log lines in this process (``verbose``: let them through)."""
    for name in CHECKPOINT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


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
        row[REPORT_INDEX] = epoch + 1
        self.rows.append(row)
        replayed = self.trainer is not None and self.trainer.replaying_until is not None
        if replayed:  # an epoch done before an interruption: no weights of its own here
            row[RESUMED_AT_EPOCH] = self.trainer.replaying_until
        if replayed or not (self.checkpoints and self.trainer is not None):
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
    config = TrialConfig.model_validate(data)
    if config.tracking.run_name is None:
        config.tracking.run_name = run_title(sweep, suggestion, config)
    return config


def run_title(sweep: SweepConfig, suggestion: dict, config: TrialConfig | None = None) -> str:
    """What a sweep trial is: ``painn+les · size · seed 0``; a grid variant is named in brackets
    (``painn+celli [celli-q] · random · seed 0``, so variants of one model do not share a name);
    ``· sample k`` when the sweep samples each grid cell more than once. ``config``: the trial's
    config if already made."""
    if config is None:
        config = TrialConfig.model_validate(trial_data(sweep, suggestion["cell"], suggestion.get("sampled", {})))
    title = trial_title(config, (suggestion["cell"].get("variant") or {}).get("name"))
    if sweep.sweep.samples_per_cell == 1:
        return title
    sample = int(str(suggestion.get("slot", "0.0")).rsplit(".", 1)[-1]) + 1
    return f"{title} · sample {sample}"


def close_open_runs(client: MlflowClient, experiment_id: str, sweep_id: str, trial_id: str | None, status: str,
                    reason: str) -> list[str]:
    """End the sweep's trial runs still RUNNING — of Tune trial ``trial_id``, or of every trial
    when None (the sweep stopped, or its driver was lost) — as ``status``; their run ids. A
    summary run (no Tune trial id) is never ended here."""
    where = "attributes.status = 'RUNNING'"
    if trial_id is not None:
        where += f" and tags.{run_layout.TAG_TUNE_TRIAL_ID} = '{trial_id}'"
    ended = []
    for run in sweep_runs(client, experiment_id, sweep_id, where):
        if run_layout.TAG_TUNE_TRIAL_ID in run.data.tags:
            end_run(client, run.info.run_id, status, reason)
            ended.append(run.info.run_id)
    return ended


def end_run(client: MlflowClient, run_id: str, status: str, reason: str) -> None:
    client.set_tag(run_id, run_layout.TAG_FAILURE_REASON, reason)
    client.set_terminated(run_id, status=status)


def sweep_runs(client: MlflowClient, experiment_id: str, sweep_id: str, where: str = "") -> list:
    """Every run of the sweep (all pages), oldest first; ``where``: more filter clauses joined with ``and``."""
    query = f"tags.{run_layout.TAG_SWEEP_ID} = '{sweep_id}'" + (f" and {where}" if where else "")
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, order_by=["start_time ASC"],
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def sampled_key(sampled: dict) -> str:
    """The sampled values as the ``sampled_json`` tag holds them (equal values, equal text)."""
    return json.dumps(sampled, sort_keys=True)


def trial_runs(client: MlflowClient, meta: dict, trial_id: str, suggestion: dict) -> list:
    """This trial's MLflow runs, oldest first, taking over the runs a lost Tune trial left in its slot.

    A run of the same slot and sampled values under another Tune trial id was made by a
    trial the restored experiment does not know (it started after the last snapshot) and
    that the searcher issued again as this one: its ``tune_trial_id`` becomes ``trial_id``
    (the old one kept in ``lost_tune_trial_id``). Runs of the slot with other sampled
    values are not this trial's and are left alone. Without a slot (a sweep started by an
    older farfield) the runs are those of the Tune trial id.
    """
    slot = suggestion.get("slot")
    if not slot:
        return sweep_runs(client, meta["experiment_id"], meta["sweep_id"], f"tags.{run_layout.TAG_TUNE_TRIAL_ID} = '{trial_id}'")
    mine = []
    key = sampled_key(suggestion["sampled"])
    for run in sweep_runs(client, meta["experiment_id"], meta["sweep_id"], f"tags.{run_layout.TAG_SWEEP_SLOT} = '{slot}'"):
        tags = run.data.tags
        if tags.get(run_layout.TAG_SAMPLED_JSON) != key:
            continue
        if tags.get(run_layout.TAG_TUNE_TRIAL_ID) != trial_id:
            if run_layout.TAG_LOST_TUNE_TRIAL_ID not in tags:
                client.set_tag(run.info.run_id, run_layout.TAG_LOST_TUNE_TRIAL_ID,
                               tags.get(run_layout.TAG_TUNE_TRIAL_ID, ""))
            client.set_tag(run.info.run_id, run_layout.TAG_TUNE_TRIAL_ID, trial_id)
        mine.append(run)
    return mine


def sweep_trainable(suggestion: dict, sweep: dict, meta: dict) -> None:
    """Ray Tune function trainable for one sweep trial (``sweep``: the SweepConfig as JSON data;
    ``meta``: the sweep's shared inputs, see ``sweep_trial_config``, and ``verbose``)."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    quiet_checkpoint_logs(meta.get("verbose", False))
    sweep_config = SweepConfig.model_validate(sweep)
    trial_id = tune.get_context().get_trial_id()
    config = sweep_trial_config(sweep_config, suggestion, meta, trial_id)
    client = MlflowClient(tracking_uri=meta["tracking_uri"])
    earlier = trial_runs(client, meta, trial_id, suggestion)
    finished = [run for run in earlier if run.info.status == "FINISHED"]
    if finished:  # finished before the driver was lost: report it again, never re-train
        run = finished[0]
        tune.report(_final_report(run.data.metrics, run.info.run_id, int(run.data.metrics.get(run_layout.METRIC_EPOCHS_RUN, 0)),
                                  int(run.data.metrics.get(run_layout.METRIC_BEST_EPOCH, -1)), {}))
        return
    for run in earlier:
        if run.info.status == "RUNNING":
            end_run(client, run.info.run_id, "KILLED",
                    f"{INTERRUPTED_PREFIX} (process, node or driver lost); the trial was restarted")
    tags = {
        run_layout.TAG_SWEEP_ID: meta["sweep_id"],
        run_layout.TAG_SWEEP_NAME: sweep_config.name,
        run_layout.TAG_TUNE_TRIAL_ID: trial_id,
        run_layout.TAG_GRID_CELL: cell_label(suggestion["cell"]),
        run_layout.TAG_SAMPLED: ", ".join(f"{k}={v}" for k, v in suggestion["sampled"].items()),
        run_layout.TAG_SAMPLED_JSON: sampled_key(suggestion["sampled"]),
        run_layout.TAG_RAY_NODE_ID: ray.get_runtime_context().get_node_id(),
    }
    if suggestion.get("slot"):
        tags[run_layout.TAG_SWEEP_SLOT] = suggestion["slot"]
    reporter = TuneEpochReporter()
    state_file = trial_state_file(sweep_config, suggestion)
    try:
        result = run_trial(config, progress=False, reporters=[reporter], tags=tags, state_file=state_file)
    except NonFiniteLossError as err:
        tune.report({sweep_config.sweep.metric: math.nan, TRIAL_FAILED: 1, "failure_reason": f"{type(err).__name__}: {err}"[:1000],
                     "epoch": len(reporter.rows), REPORT_INDEX: len(reporter.rows) + 1})
        return
    best_row = reporter.rows[result.best_epoch] if 0 <= result.best_epoch < len(reporter.rows) else {}
    if state_file is not None:  # the run is FINISHED: its state is of no further use
        state_file.unlink(missing_ok=True)
    tune.report(_final_report(result.metrics, result.run_id, result.epochs_run, result.best_epoch, best_row))


def trial_state_file(sweep: SweepConfig, suggestion: dict) -> Path | None:
    """Where a sweep trial's training state lives between epochs: ``<storage>/<sweep>/trial_state/
    <slot>-<sampled hash>.pt``, so a trial restarted after an interruption (same slot and sampled
    values, any Tune id) continues its training. None without a slot or on remote storage."""
    slot = suggestion.get("slot")
    storage = sweep.storage_path()
    if not slot or "://" in storage:
        return None
    sampled = hashlib.sha256(sampled_key(suggestion.get("sampled", {})).encode()).hexdigest()[:12]
    return Path(storage) / sweep.name / TRIAL_STATE_DIR / f"{slot}-{sampled}.pt"


def _final_report(metrics: dict, run_id: str, epochs_run: int, best_epoch: int, best_row: dict) -> dict:
    """The last Tune result: the best epoch's row, then final ``{side}/{metric}`` as ``{side}_{metric}``."""
    final = dict(best_row)
    for key, value in metrics.items():
        if "/" in key and math.isfinite(value):
            final[key.replace("/", "_")] = value
    final.update({TRIAL_COMPLETE: 1, "epoch": epochs_run, REPORT_INDEX: epochs_run + 1, "best_epoch": best_epoch,
                  "mlflow_run_id": run_id})
    return final
