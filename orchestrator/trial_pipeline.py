"""One trial's pipeline: dataset → split → graphs (cached per shard) → potential → train → evaluate.

Plain functions of a ``TrialConfig`` that know nothing of MLflow: ``farfield.orchestrator.trial``
calls them in order and logs what each returns to the trial's run (``run_trial``), and a
benchmark or a notebook may call them without tracking. In order:

    open_data       the dataset store and the split (loaded from ``split.file`` or made and saved)
    trial_graphs    the graphs of each side, from the per-shard graph cache
    make_trainer    the potential (reference energies fitted on the training side) and its trainer
    evaluate        final metrics per side, the test predictions table and what the heads predict

A model trained by another library (``farfield.orchestrator.external``) shares the first two
steps, ``fit_reference`` and ``with_parent_ids``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from farfield.data.datasets import resolve_dataset
from farfield.data.graphs import GraphCache, precompute_graphs
from farfield.data.splitting import SIDES, Split, drop_rare_elements, split_path
from farfield.data.splitting import make_split as make_chemspace_split
from farfield.data.store import DatasetStore
from farfield.models.blocks.readout import fit_reference_energies
from farfield.models.graph import AtomicGraph
from farfield.models.heads.report import HeadReport, head_report
from farfield.models.registry import build_potential
from farfield.models.training import (
    METRIC_NAMES,
    Reporter,
    Trainer,
    TrainingResult,
    element_count_matrix,
    force_rms,
    graphs_from_cache,
    resolve_device,
)
from farfield.orchestrator.config import TrialConfig

def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
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
    capped = index["structure_id"] if config.data.max_structures is not None else None
    # descriptors in this process (n_workers=0): a trial may itself run inside a Ray task; a random
    # split needs none (no parents table: that is for `farfield split report`)
    outcome = make_chemspace_split(store, config.split, cache_dir=workspace / "descriptors", n_workers=0,
                                   structure_ids=capped, min_element_parents=config.data.min_element_parents,
                                   parents_table=False)
    outcome.save(split_path(workspace, outcome.split))
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


def open_data(config: TrialConfig) -> tuple[DatasetStore, Split]:
    """The trial's dataset store (its labels checked against the loss) and split."""
    store = resolve_dataset(config.data.dataset, config.workspace)
    check_labels(config, store)
    return store, make_split(config, store)


def trial_graphs(config: TrialConfig, store: DatasetStore, ids: dict[str, list[str]], dtype: torch.dtype,
                 progress: bool = False) -> dict[str, list[AtomicGraph]]:
    """The graphs of the structure ids of each side (``side_ids``) in ``dtype``, from the
    per-shard cache (``<workspace>/cache/graphs``; missing shards computed here), identical to
    ``build_graphs`` on the store's frames (tests/test_graph_cache.py)."""
    return graphs_from_cache(graph_cache(config, store, progress=progress), ids, dtype, progress=progress)


def fit_reference(train_graphs: list[AtomicGraph]) -> np.ndarray:
    """Per-element reference energies (119,) eV fitted on the training side."""
    return fit_reference_energies(
        element_count_matrix(train_graphs), np.array([float(g.energy[0]) for g in train_graphs]))


class EpochReporters:
    """Fans one epoch's metrics out to several ``Reporter``s (the tracker's first, then e.g. Ray Tune's)."""

    def __init__(self, reporters: list[Reporter]):
        self.reporters = reporters

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for reporter in self.reporters:
            reporter.on_epoch(epoch, metrics)


def make_trainer(config: TrialConfig, train_graphs: list[AtomicGraph], reporter: EpochReporters,
                 progress: bool = False) -> tuple[Trainer, np.ndarray]:
    """``(trainer, reference energies)``: the potential of ``config.model`` with per-element
    reference energies (eV) fitted on ``train_graphs`` and their force RMS as energy scale, on
    ``resources.device``. ``reporter`` gets every epoch's metrics; its reporters with an
    ``attach`` method (a sweep's, which also checkpoints) get the trainer and the config."""
    reference = fit_reference(train_graphs)
    potential = build_potential(config.model, reference_energies=reference, energy_scale=force_rms(train_graphs))
    trainer = Trainer(potential, config.training, device=resolve_device(config.resources.device), seed=config.seed,
                      reporter=reporter, progress=progress)
    for each in reporter.reporters:
        if hasattr(each, "attach"):
            each.attach(trainer, config.model_dump(mode="json"))
    return trainer, reference


def with_parent_ids(table: pd.DataFrame, store: DatasetStore) -> pd.DataFrame:
    """``table`` (one row per structure, ``structure_id`` first) with each structure's ``parent_id`` second."""
    parent_of = dict(zip(store.index["structure_id"], store.index["parent_id"]))
    table.insert(1, "parent_id", table["structure_id"].map(parent_of))
    return table


@dataclass
class TrialOutputs:
    """What a trained trial predicts: ``metrics`` per side (``{side: {e_mae: meV/atom, ...}}``,
    ``METRIC_NAMES``), ``predictions`` (one row per test structure, with its ``parent_id``; None
    without a test side) and ``heads`` (the heads' charges and metrics on the test side)."""

    fit: TrainingResult
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: pd.DataFrame | None = None
    heads: HeadReport = field(default_factory=HeadReport)


def evaluate(trainer: Trainer, fit: TrainingResult, graphs: dict[str, list[AtomicGraph]],
             store: DatasetStore) -> TrialOutputs:
    """Evaluate the trained potential (EMA weights) on every non-empty side of ``graphs``."""
    outputs = TrialOutputs(fit)
    for side in SIDES:
        if not graphs[side]:
            continue
        evaluation = trainer.evaluate(graphs[side])
        outputs.metrics[side] = {name: evaluation.metrics[name] for name in METRIC_NAMES}
        if side == "test":
            outputs.predictions = with_parent_ids(evaluation.predictions, store)
            outputs.heads = head_report(trainer.potential, graphs[side])
    return outputs
