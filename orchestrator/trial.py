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
``farfield.orchestrator.external.trial``, which logs the same run through the same steps
(``farfield.orchestrator.trial_logging``). A failure ends the run FAILED (KILLED on Ctrl-C)
with its reason as a tag.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.models.training import Reporter, save_checkpoint
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.external.trial import train_and_log_external
from farfield.orchestrator.tracking import ensure_experiment, git_commit, tracking_uri, trial_title
from farfield.orchestrator import trial_logging
from farfield.orchestrator.trial_logging import TrialResult
from farfield.orchestrator.trial_pipeline import TrialOutputs, evaluate, make_trainer, seed_everything, trial_graphs

__all__ = ["TrialResult", "run_trial"]


def run_trial(
    config: TrialConfig, progress: bool = True, reporters: list[Reporter] | None = None,
    tags: dict[str, str] | None = None, state_file: Path | None = None,
) -> TrialResult:
    """Train and evaluate one potential; log everything to a new MLflow run.

    ``reporters``: extra per-epoch ``Reporter``s called after the MLflow one (a sweep
    passes its Ray Tune reporter here). ``tags``: extra MLflow run tags (e.g. a sweep id).
    ``state_file``: the trainer's state is saved there after every epoch, and a state left
    by an interrupted run of the same config is continued (``farfield.models.training.resume``;
    the new run gets the earlier epochs' curves and the tag ``resumed_at_epoch``). Not for
    external trainers.
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
            result = train_and_log_external(config, client, run_id, progress, reporters or [])
        else:
            result = _run_logged(config, client, run_id, progress, reporters or [], state_file)
    except BaseException as err:
        client.set_tag(run_id, run_layout.TAG_FAILURE_REASON, failure_reason(err))
        client.set_terminated(run_id, status="KILLED" if isinstance(err, STOPS) else "FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    result.tracking_uri, result.experiment_id = uri, experiment_id
    return result


#: What stops a trial rather than failing it: Ctrl-C in ``farfield train``; the ``SystemExit``
#: that Ray raises in a sweep trial's worker when Tune stops the trial (the sweep was stopped).
STOPS = (KeyboardInterrupt, SystemExit)
#: How the ``failure_reason`` of every interrupted attempt begins (stopped, or its driver, process
#: or node lost): the trial may run again, unlike a failure.
INTERRUPTED_PREFIX = "attempt interrupted"
#: How the ``failure_reason`` of a run ended by one of ``STOPS`` begins.
STOPPED_REASON = f"{INTERRUPTED_PREFIX}: the trial was stopped"


def failure_reason(err: BaseException) -> str:
    """The run's ``failure_reason`` tag for ``err`` (a stop says so; at most 5,000 characters)."""
    if isinstance(err, STOPS):
        return f"{STOPPED_REASON} ({type(err).__name__}) before it finished"
    return f"{type(err).__name__}: {err}"[:5000]


def _run_logged(config: TrialConfig, client: MlflowClient, run_id: str, progress: bool,
                reporters: list[Reporter], state_file: Path | None = None) -> TrialResult:
    """The pipeline, each step's result logged to ``run_id`` (module docstring)."""
    store, _split, ids = trial_logging.log_trial_inputs(config, client, run_id)
    graphs = trial_graphs(config, store, ids, config.model.torch_dtype, progress=progress)
    reporter = trial_logging.epoch_reporter(client, run_id, reporters)
    trainer, reference = make_trainer(config, graphs["train"], reporter, progress=progress)
    client.set_tag(run_id, run_layout.TAG_DEVICE, str(trainer.device))
    client.log_metric(run_id, run_layout.METRIC_N_PARAMETERS, sum(p.numel() for p in trainer.potential.parameters()))
    fit = trainer.fit(graphs["train"], graphs["val"], state_file,
                      training_state_key(config, store.content_hash, _split.content_hash),
                      state_note={"git_commit": git_commit()})
    if fit.resumed_at_epoch is not None:
        client.set_tag(run_id, run_layout.TAG_RESUMED_AT_EPOCH, str(fit.resumed_at_epoch))
        client.set_tag(run_id, run_layout.TAG_TRAINING_SEGMENTS, json.dumps(fit.segments))

    outputs = evaluate(trainer, fit, graphs, store)
    metrics = _log_outputs(client, run_id, config, trainer.potential, outputs)
    metrics = trial_logging.log_final_metrics(client, run_id, metrics, reference, graphs["test"])
    return TrialResult(run_id, "", "", metrics, fit.best_epoch, len(fit.history))


#: Config fields a training state does not depend on: the name and tracking (a restarted sweep
#: trial may get a new Tune id, and so a new name) and the paths of this machine (the workspace,
#: the dataset's store and the split file; their contents count, by hash).
STATE_KEY_EXCLUDE = {"name": True, "tracking": True, "workspace": True, "data": {"dataset"}, "split": {"file"}}


def training_state_key(config: TrialConfig, dataset_hash: str, split_hash: str) -> str:
    """What a saved training state must match to be continued: the config without
    ``STATE_KEY_EXCLUDE``, and the content hashes of the dataset and the split. A state carried
    to another machine or checkout (a study's archive, ``orchestrator.sweep.archive``) continues
    there, where the same data sits under other paths."""
    text = config.model_dump_json(exclude=STATE_KEY_EXCLUDE) + dataset_hash + split_hash
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _log_outputs(client: MlflowClient, run_id: str, config: TrialConfig, potential,
                 outputs: TrialOutputs) -> dict[str, float]:
    """Log the predictions, the heads' charges and the checkpoint; return the final metrics to log."""
    metrics: dict[str, float] = {run_layout.METRIC_BEST_EPOCH: outputs.fit.best_epoch,
                                 run_layout.METRIC_EPOCHS_RUN: len(outputs.fit.history)}
    for side, values in outputs.metrics.items():
        metrics.update({run_layout.final_metric(side, name): value for name, value in values.items()})
    with tempfile.TemporaryDirectory() as tmp:
        if outputs.predictions is not None:
            trial_logging.log_test_predictions(client, run_id, outputs.predictions, Path(tmp))
            metrics.update(trial_logging.log_head_report(client, run_id, outputs.heads, Path(tmp)))
        checkpoint = save_checkpoint(Path(tmp) / run_layout.CHECKPOINT_FILE, potential.cpu(),
                                     config.model_dump(mode="json"))
        client.log_artifact(run_id, str(checkpoint), run_layout.CHECKPOINT_DIR)
    return metrics
