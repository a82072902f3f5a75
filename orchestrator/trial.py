"""One trial end to end: dataset → split → graphs (cached per shard) → train → evaluate → MLflow run.

``run_trial`` is a plain function of a ``TrialConfig``; ``farfield.orchestrator.launch``
runs it inside a Ray task. Everything a trial produces is logged to one MLflow run:
flattened params, per-epoch curves, final ``{train,val,test}/{e_mae,e_rmse,f_mae,f_rmse,q_mae}``,
tags, the checkpoint, per-structure test predictions (parquet), the split file and
the resolved config. A model trained by another library (``model.backbone: external``)
goes through ``farfield.orchestrator.external.trial`` and logs the same run.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.data.datasets import resolve_dataset
from farfield.data.graphs import GraphCache, precompute_graphs
from farfield.data.splits import SIDES, Split, random_split
from farfield.data.splitting import drop_rare_elements
from farfield.data.splitting import make_split as make_chemspace_split
from farfield.data.store import DatasetStore
from farfield.models.blocks.readout import fit_reference_energies
from farfield.models.heads.report import head_report
from farfield.models.registry import build_potential
from farfield.models.training import (
    METRIC_NAMES,
    Trainer,
    element_count_matrix,
    force_rms,
    graphs_from_cache,
    resolve_device,
    save_checkpoint,
)
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

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrialResult:
    """What a finished trial returns (also everything is in its MLflow run)."""

    run_id: str
    tracking_uri: str
    experiment_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int = -1
    epochs_run: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_labels(config: TrialConfig, store: DatasetStore) -> None:
    """Refuse a force loss on a store with energy-only structures (e.g. a QMOF import)."""
    without = store.manifest.get("has_forces", {}).get("without", 0)
    if without and config.training.loss.forces > 0:
        raise ValueError(
            f"data.dataset {config.data.dataset!r}: {without} of {len(store)} structures have no "
            f"forces; set training.loss.forces: 0 to train on energies only")


def make_split(config: TrialConfig, store: DatasetStore) -> Split:
    """The trial's split: loaded from ``split.file`` or made and saved under the workspace."""
    if config.split.file is not None:
        split = Split.load(config.split.file)
        if split.dataset_hash != store.content_hash:
            raise ValueError(
                f"split.file {config.split.file} was made for dataset {split.dataset_hash}, "
                f"but data.dataset has {store.content_hash}"
            )
        return split
    workspace = Path(config.workspace)
    # data.max_structures: split only the parents kept; data.min_element_parents is applied (and recorded) there
    index = _trial_index(config, store, drop_rare=False)
    rare = config.data.min_element_parents
    if config.split.strategy == "random":
        fractions = {side: getattr(config.split, side) for side in SIDES}
        split = random_split(index, store.content_hash, fractions, config.split.seed, min_element_parents=rare)
        split.save(workspace / "splits" / f"{split.strategy}-{split.content_hash[7:19]}.json")
        return split
    # descriptors in this process (n_workers=0): a trial may itself run inside a Ray task
    capped = index["structure_id"] if config.data.max_structures is not None else None
    outcome = make_chemspace_split(store, config.split, cache_dir=workspace / "descriptors", n_workers=0,
                                   structure_ids=capped, min_element_parents=rare)
    outcome.save(workspace / "splits" / f"{outcome.split.strategy}-{outcome.split.content_hash[7:19]}.json")
    return outcome.split


def side_ids(config: TrialConfig, store: DatasetStore, split: Split) -> dict[str, list[str]]:
    """Structure ids of each side of the split, in index order (``data.max_structures`` caps the index first)."""
    index = _trial_index(config, store)
    sides = split.side_of()
    ids = {side: index.loc[index["parent_id"].map(sides) == side, "structure_id"].tolist() for side in SIDES}
    if not ids["train"]:
        raise ValueError("the training side of the split is empty; check data.max_structures and split fractions")
    return ids


def load_sides(config: TrialConfig, store: DatasetStore, split: Split) -> dict[str, list]:
    """Frames of each side of the split (``data.max_structures`` caps the index first)."""
    return {side: store.read(ids) if ids else [] for side, ids in side_ids(config, store, split).items()}


def _trial_index(config: TrialConfig, store: DatasetStore, drop_rare: bool = True):
    index = store.index
    if config.data.max_structures is not None:
        index = index.iloc[: config.data.max_structures]
    if drop_rare:  # data.min_element_parents: structures with rare elements are not used
        index = drop_rare_elements(index, config.data.min_element_parents).index
    return index


def graph_cache_root(config: TrialConfig) -> Path:
    """Where trials cache their graphs: ``<workspace>/cache/graphs`` (farfield.data.graphs.cache)."""
    return Path(config.workspace) / "cache" / "graphs"


def graph_cache(config: TrialConfig, store: DatasetStore, use_ray: bool = False, progress: bool = False) -> GraphCache:
    """The graph cache of ``store`` at ``model.cutoff`` with every shard a trial of ``config`` reads present.

    Inside a trial ``use_ray`` stays False: the trial may itself be a Ray task or a Tune
    trial whose placement group has no CPU for child tasks (the descriptors do the same).
    The driver precomputes on Ray beforehand (:func:`prepare_graph_cache`).
    """
    shards = _trial_index(config, store)["shard"].unique().tolist()
    return precompute_graphs(store, config.model.cutoff, graph_cache_root(config), shards=shards,
                             use_ray=use_ray, progress=progress)


def prepare_graph_cache(config: TrialConfig, progress: bool = True) -> GraphCache:
    """Driver side, before trials start: the graphs every trial of ``config`` reads, one Ray task per
    missing shard when Ray is initialised (in this process otherwise). Trials then only read files."""
    store = resolve_dataset(config.data.dataset, config.workspace)
    return graph_cache(config, store, use_ray=True, progress=progress)


class _Reporters:
    """Fans one epoch's metrics out to several ``Reporter``s (MLflow first, then e.g. Ray Tune)."""

    def __init__(self, reporters: list):
        self.reporters = reporters

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for reporter in self.reporters:
            reporter.on_epoch(epoch, metrics)


def run_trial(
    config: TrialConfig, progress: bool = True, reporters: list | None = None, tags: dict[str, str] | None = None
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
        result = _train_and_log(config, client, run_id, progress, reporters or [])
    except BaseException as err:
        client.set_tag(run_id, run_layout.TAG_FAILURE_REASON, f"{type(err).__name__}: {err}"[:5000])
        client.set_terminated(run_id, status="KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    result.tracking_uri, result.experiment_id = uri, experiment_id
    return result


def log_trial_inputs(config: TrialConfig, client: MlflowClient, run_id: str) -> tuple[DatasetStore, Split, dict]:
    """Params, resolved config, dataset and split (tags and artifact) of a new run; returns the
    store, the split and the structure ids of each side (shared by farfield and external trials)."""
    params = config.flat_params()
    items = [mlflow.entities.Param(k, v[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])
    client.log_dict(run_id, config.model_dump(mode="json"), run_layout.CONFIG_ARTIFACT)

    store = resolve_dataset(config.data.dataset, config.workspace)
    check_labels(config, store)
    split = make_split(config, store)
    client.set_tag(run_id, run_layout.TAG_DATASET_HASH, store.content_hash)
    client.set_tag(run_id, run_layout.TAG_SPLIT_HASH, split.content_hash)
    client.log_dict(run_id, json.loads(split.to_json()), run_layout.SPLIT_ARTIFACT)
    return store, split, side_ids(config, store, split)


def log_test_predictions(client: MlflowClient, run_id: str, table, store: DatasetStore, tmp: Path) -> None:
    """``predictions/test_predictions.parquet``: one row per test structure (ErrorAccumulator's
    table) with its ``parent_id``."""
    parent_of = dict(zip(store.index["structure_id"], store.index["parent_id"]))
    table.insert(1, "parent_id", table["structure_id"].map(parent_of))
    path = Path(tmp) / run_layout.PREDICTIONS_FILE
    table.to_parquet(path, index=False)
    client.log_artifact(run_id, str(path), run_layout.PREDICTIONS_DIR)


def log_head_report(client: MlflowClient, run_id: str, report, tmp: Path) -> dict[str, float]:
    """Learned charges (``charges/<structure_id>.parquet``, one per test structure) and the
    heads' metrics (``test/q_std``, ``test/lr_energy_share``, per head ``..._<head>``) of a
    ``HeadReport``; returns those metrics."""
    if report.charges:
        folder = Path(tmp) / run_layout.CHARGES_DIR
        folder.mkdir(exist_ok=True)
        for structure_id, table in report.charges.items():
            table.to_parquet(folder / run_layout.charge_file_name(structure_id), index=False)
        client.log_artifacts(run_id, str(folder), run_layout.CHARGES_DIR)
    return {run_layout.final_metric("test", name): value for name, value in report.metrics.items()}


def log_final_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], reference: np.ndarray,
                      test_graphs: list) -> dict[str, float]:
    """``metrics`` plus the ``key/`` ones (against the dummy baseline of ``reference`` energies),
    logged at once; returns them all."""
    metrics = {**metrics, **key_metrics(metrics, reference, test_graphs)}
    client.log_batch(
        run_id, metrics=[mlflow.entities.Metric(k, float(v), now_ms(), 0) for k, v in metrics.items()]
    )
    return metrics


def fit_reference(train_graphs: list) -> np.ndarray:
    """Per-element reference energies (119,) eV fitted on the training side."""
    return fit_reference_energies(
        element_count_matrix(train_graphs), np.array([float(g.energy[0]) for g in train_graphs])
    )


def _train_and_log(
    config: TrialConfig, client: MlflowClient, run_id: str, progress: bool, reporters: list
) -> TrialResult:
    if config.model.external is not None:  # another library's trainer, in its own environment
        from farfield.orchestrator.external.trial import train_and_log_external

        return train_and_log_external(config, client, run_id, progress, reporters)
    store, split, ids = log_trial_inputs(config, client, run_id)

    # graphs from the per-shard cache (<workspace>/cache/graphs), computed here for missing shards;
    # identical to build_graphs on the store's frames (tests/test_graph_cache.py)
    dtype = DTYPES[config.model.dtype]
    graphs = graphs_from_cache(graph_cache(config, store, progress=progress), ids, dtype, progress=progress)
    reference = fit_reference(graphs["train"])
    potential = build_potential(config.model, reference_energies=reference, energy_scale=force_rms(graphs["train"]))
    device = resolve_device(config.resources.device)
    client.set_tag(run_id, run_layout.TAG_DEVICE, str(device))
    client.log_metric(run_id, run_layout.METRIC_N_PARAMETERS, sum(p.numel() for p in potential.parameters()))
    trainer = Trainer(
        potential, config.training, device=device, seed=config.seed,
        reporter=epoch_reporter(client, run_id, reporters), progress=progress,
    )
    for reporter in reporters:  # reporters that also checkpoint (a sweep's) get the trainer
        if hasattr(reporter, "attach"):
            reporter.attach(trainer, config.model_dump(mode="json"))
    fit = trainer.fit(graphs["train"], graphs["val"])

    metrics: dict[str, float] = {run_layout.METRIC_BEST_EPOCH: fit.best_epoch,
                                 run_layout.METRIC_EPOCHS_RUN: len(fit.history)}
    with tempfile.TemporaryDirectory() as tmp:
        for side in SIDES:
            if not graphs[side]:
                continue
            evaluation = trainer.evaluate(graphs[side])
            metrics.update({run_layout.final_metric(side, name): evaluation.metrics[name] for name in METRIC_NAMES})
            if side == "test":
                log_test_predictions(client, run_id, evaluation.predictions, store, Path(tmp))
                report = head_report(trainer.potential, graphs[side])
                metrics.update(log_head_report(client, run_id, report, Path(tmp)))
        checkpoint = save_checkpoint(Path(tmp) / run_layout.CHECKPOINT_FILE, trainer.potential.cpu(),
                                     config.model_dump(mode="json"))
        client.log_artifact(run_id, str(checkpoint), run_layout.CHECKPOINT_DIR)
    metrics = log_final_metrics(client, run_id, metrics, reference, graphs["test"])
    return TrialResult(run_id, "", "", metrics, fit.best_epoch, len(fit.history))


def epoch_reporter(client: MlflowClient, run_id: str, reporters: list) -> _Reporters:
    """The per-epoch reporter of a trial: its MLflow curves first, then ``reporters`` (a sweep's)."""
    return _Reporters([MlflowEpochReporter(client, run_id), *reporters])
