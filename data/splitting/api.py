"""Make splits: the Python API behind ``farfield split make``.

:func:`make_split` (a dataset store + a ``SplitConfig``) computes or loads the cached
descriptors, builds the joint metric and HDBSCAN clusters, and calls :func:`split_parents`
(usable without a store, e.g. on a parsed catalogue). :func:`random_split` is the
descriptor-free random split of an index (what a trial uses for ``strategy: random``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from ase.data import atomic_numbers

from farfield.data.chemspace import (
    ChemicalSpace,
    Clustering,
    DescriptorSettings,
    chemical_space,
    cluster_parents,
    embed,
    store_descriptors,
)
from farfield.data.config import SplitConfig
from farfield.data.splitting.split_file import SIDES, Split
from farfield.data.splitting.statistics import distance_summary, side_statistics
from farfield.data.splitting.strategies import ParentSet, RandomSplit, SplittingStrategy, strategy_from_config
from farfield.data.store import DatasetStore

__all__ = ["SplitOutcome", "assign_sides", "make_split", "parents_table_path", "random_split",
           "side_counts", "split_parents", "split_statistics"]


def side_counts(n_parents: int, fractions: dict[str, float]) -> dict[str, int]:
    """Parents per side for ``fractions`` (test ≥ 1, val ≥ 1 if its fraction > 0, train ≥ 1)."""
    for side in SIDES:
        value = fractions.get(side)
        if value is None or not 0 <= value <= 1:
            raise ValueError(f"split fraction {side!r} must be in [0, 1], got {value!r} (fractions {fractions})")
    n_test = max(1, int(round(fractions["test"] * n_parents)))
    n_val = int(round(fractions["val"] * n_parents))
    if fractions["val"] > 0:
        n_val = max(1, n_val)
    n_train = n_parents - n_test - n_val
    if n_train < 1:
        raise ValueError(
            f"cannot split {n_parents} parents into val={n_val}, test={n_test} and leave any for training; "
            f"use a larger dataset or smaller split.val/split.test"
        )
    return {"train": n_train, "val": n_val, "test": n_test}


def assign_sides(parents: ParentSet, strategy: SplittingStrategy, fractions: dict[str, float],
                 seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """``(rows per side, excluded rows, strategy details)``; val is drawn from the non-test rest."""
    counts = side_counts(len(parents), fractions)
    rng = np.random.default_rng(seed)
    selection = strategy.select_test(parents, counts["test"], rng)
    taken = np.zeros(len(parents), dtype=bool)
    taken[selection.test] = True
    taken[selection.excluded] = True
    rest = np.flatnonzero(~taken)
    if len(rest) - counts["val"] < 1:
        raise ValueError(f"strategy {strategy.name!r} put {len(selection.test)} of {len(parents)} parents in test "
                         f"and excluded {len(selection.excluded)}; {len(rest)} remain for val={counts['val']} "
                         f"and train: lower split.val, split.test or split.gap")
    shuffled = rng.permutation(rest)
    rows = {"train": np.sort(shuffled[counts["val"]:]), "val": np.sort(shuffled[: counts["val"]]),
            "test": np.sort(np.asarray(selection.test, dtype=int))}
    return rows, np.sort(np.asarray(selection.excluded, dtype=int)), selection.details


def _random_like(rows: dict[str, np.ndarray], excluded: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    """A random assignment with the sizes of ``rows`` over the same non-excluded parents."""
    eligible = np.setdiff1d(np.arange(n), excluded)
    shuffled = np.random.default_rng(seed).permutation(eligible)
    n_test, n_val = len(rows["test"]), len(rows["val"])
    return {"test": np.sort(shuffled[:n_test]), "val": np.sort(shuffled[n_test : n_test + n_val]),
            "train": np.sort(shuffled[n_test + n_val :])}


@dataclass
class SplitOutcome:
    """A split plus its per-parent table (side, random-baseline side, cluster, 2-D embedding,
    atoms, nearest-train distances) — the input of the split report."""

    split: Split
    parents: pd.DataFrame

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (the split JSON) and ``parents_table_path(path)`` (parquet)."""
        path = self.split.save(path)
        self.parents.to_parquet(parents_table_path(path), index=False)
        return path


def parents_table_path(split_path: str | Path) -> Path:
    """``SPLIT.json`` → ``SPLIT.parents.parquet`` next to it."""
    split_path = Path(split_path)
    return split_path.with_name(split_path.name.removesuffix(".json") + ".parents.parquet")


def _parent_set(space: ChemicalSpace, clustering: Clustering | None) -> ParentSet:
    return ParentSet(space.parent_ids, space.n_atoms, space.elements, space.n_configurations, space, clustering)


def _clustering(space: ChemicalSpace, config: SplitConfig) -> Clustering:
    """HDBSCAN clusters; for strategies other than ``cluster`` (clusters only colour the
    report) an all-noise result falls back to ``noise="singleton"``, and fewer parents than
    ``min_cluster_size`` to one cluster per parent, instead of failing."""
    try:
        return cluster_parents(space, config.min_cluster_size, config.min_samples, config.pca_components,
                               config.noise, config.cluster_selection)
    except ValueError:
        if config.strategy == "cluster":
            raise
    if len(space) >= config.min_cluster_size:
        return cluster_parents(space, config.min_cluster_size, config.min_samples, config.pca_components,
                               "singleton", config.cluster_selection)
    n = len(space)  # too few parents for HDBSCAN: every parent its own cluster
    embedding = embed(space, 2)
    embedding = np.hstack([embedding, np.zeros((n, 2 - embedding.shape[1]))]) if embedding.shape[1] < 2 else embedding
    return Clustering(np.arange(n), np.full(n, -1), np.ones(n, dtype=bool), embedding,
                      {"min_cluster_size": config.min_cluster_size, "noise": "singleton", "hdbscan": "skipped"})


def split_parents(space: ChemicalSpace, config: SplitConfig, dataset_hash: str,
                  clustering: Clustering | None = None, extra_parameters: dict | None = None) -> SplitOutcome:
    """Split the parents of ``space`` as ``config`` says; statistics include nearest-train
    distances in the joint metric for this split and for a random split of the same sizes."""
    if abs(space.weight - config.weight) > 1e-12:
        raise ValueError(f"the chemical space was built with weight {space.weight}, but split.weight is "
                         f"{config.weight}; rebuild it with chemical_space(descriptors, weight={config.weight})")
    if clustering is None:
        clustering = _clustering(space, config)
    parents = _parent_set(space, clustering)
    fractions = {side: getattr(config, side) for side in SIDES}
    rows, excluded, details = assign_sides(parents, strategy_from_config(config), fractions, config.seed)
    baseline = _random_like(rows, excluded, len(parents), config.seed)
    stats = side_statistics(parents, rows)
    nearest = {side: space.nearest_distance(rows[side], rows["train"]) for side in ("val", "test")}
    random_nearest = space.nearest_distance(baseline["test"], baseline["train"])
    stats["excluded"] = {"n_parents": len(excluded)}
    stats["nearest_train_distance"] = {
        "test": distance_summary(nearest["test"]), "val": distance_summary(nearest["val"]),
        "random_test": distance_summary(random_nearest),
        "test_over_random_median": float(f"{np.median(nearest['test']) / max(np.median(random_nearest), 1e-12):.6g}"),
    }
    stats["clusters"] = {"n_clusters": clustering.n_clusters, "n_noise": int(clustering.is_noise.sum())}
    parameters = {"fractions": fractions, "weight": config.weight, "clustering": clustering.parameters,
                  "selection": details, **(extra_parameters or {})}
    parameters.update({k: getattr(config, k) for k in ("held_out_clusters", "n_folds", "fold", "element", "gap")
                       if getattr(config, k) is not None and not (k == "gap" and config.gap == 0.0)})
    ids = [str(p) for p in space.parent_ids]
    split = Split(config.strategy, parameters, config.seed, dataset_hash,
                  *([ids[r] for r in rows[side]] for side in SIDES), stats, [ids[r] for r in excluded])
    return SplitOutcome(split, _parents_table(space, clustering, rows, excluded, baseline, nearest, random_nearest))


def _parents_table(space, clustering, rows, excluded, baseline, nearest, random_nearest) -> pd.DataFrame:
    n = len(space)
    side, random_side = np.full(n, "excluded", dtype=object), np.full(n, "excluded", dtype=object)
    distance, random_distance = np.full(n, np.nan), np.full(n, np.nan)
    for name in SIDES:
        side[rows[name]] = name
        random_side[baseline[name]] = name
    for name in ("val", "test"):
        distance[rows[name]] = nearest[name]
    random_distance[baseline["test"]] = random_nearest
    return pd.DataFrame({
        "parent_id": space.parent_ids.astype(str), "side": side.astype(str), "random_side": random_side.astype(str),
        "cluster": clustering.labels, "is_noise": clustering.is_noise,
        "embedding_1": clustering.embedding[:, 0], "embedding_2": clustering.embedding[:, -1],
        "n_atoms": space.n_atoms, "nearest_train_distance": distance,
        "random_nearest_train_distance": random_distance,
    })


def make_split(store: DatasetStore, config: SplitConfig, cache_dir: str | Path | None = None,
               n_workers: int = 0, settings: DescriptorSettings | None = None,
               address: str | None = None, structure_ids=None) -> SplitOutcome:
    """Descriptors (cached in ``cache_dir``; ``n_workers`` Ray actors, 0 = in process) →
    joint metric with ``config.weight`` → HDBSCAN → :func:`split_parents`.

    ``structure_ids``: split only the parents of these structures (e.g. a trial's
    ``data.max_structures`` prefix); default all of the store."""
    settings = settings or DescriptorSettings()
    descriptors = store_descriptors(store, settings, cache_dir, n_workers, address)
    if structure_ids is not None:
        keep = np.isin(descriptors.structure_ids, np.asarray(list(structure_ids), dtype=str))
        descriptors = dataclasses.replace(descriptors, **{
            f.name: getattr(descriptors, f.name)[keep] for f in dataclasses.fields(descriptors)})
    space = chemical_space(descriptors, config.weight)
    return split_parents(space, config, store.content_hash, extra_parameters={"descriptor": settings.model_dump()})


def _index_parents(index: pd.DataFrame) -> ParentSet:
    grouped = index.groupby("parent_id", sort=True)
    elements = grouped["elements"].agg(lambda col: {e for entry in col for e in str(entry).split()})
    return ParentSet(
        parent_ids=np.asarray(grouped.size().index, dtype=str),
        n_atoms=grouped["n_atoms"].mean().to_numpy(dtype=np.float64),
        elements=[tuple(sorted(row, key=atomic_numbers.get)) for row in elements],
        n_configurations=grouped.size().to_numpy(),
    )


def random_split(index: pd.DataFrame, dataset_hash: str, fractions: dict[str, float], seed: int) -> Split:
    """Random split of the parents in a store ``index`` (no descriptors, no distance statistics)."""
    parents = _index_parents(index)
    rows, _, _ = assign_sides(parents, RandomSplit(), fractions, seed)
    ids = [str(p) for p in parents.parent_ids]
    return Split("random", {"fractions": dict(fractions)}, seed, dataset_hash,
                 *([ids[r] for r in rows[side]] for side in SIDES), side_statistics(parents, rows))


def split_statistics(index: pd.DataFrame, split: Split) -> dict:
    """Sizes and element coverage of each side of ``split`` over a store ``index``."""
    parents = _index_parents(index)
    row_of = {pid: row for row, pid in enumerate(parents.parent_ids)}
    rows = {side: np.array([row_of[p] for p in getattr(split, side)], dtype=int) for side in SIDES}
    return side_statistics(parents, rows)
