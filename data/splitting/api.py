"""Make splits: the Python API behind ``farfield split make``.

:func:`make_split` (a dataset store + a ``SplitConfig``) drops rare elements
(``min_element_parents``), computes or loads the cached descriptors, builds the metric
(:func:`parent_space`: farfield's joint metric or the paper's SOAP cosine) and the clusters
(HDBSCAN, or KMeans for ``kmeans``), and calls :func:`split_parents` (usable without a store,
e.g. on a parsed catalogue). ``strategy: random`` needs no metric: its split file is
:func:`random_split` of the index, the same for a trial and ``farfield split make``
(descriptors only colour its report's parents table).

Validation, for every strategy, is ``val / (train + val)`` of the parents left after the test
set and exclusions (:func:`validation_count`): ``val × n`` when the strategy takes the test
fraction, and the same share of the training side when it sizes the test set itself (the
paper's rule, 10 % of the training side, is ``val / (train + val) = 0.1``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from farfield.data.chemspace import (
    DEFAULT_WEIGHT,
    ChemicalSpace,
    Clustering,
    DescriptorKind,
    DescriptorSettings,
    chemical_space,
    cluster_parents,
    embed_2d,
    index_parents,
    kmeans_parents,
    mean_soap_settings,
    soap_cosine_space,
    store_descriptors,
)
from farfield.data.config import SplitConfig
from farfield.data.splitting.element_coverage import drop_rare_elements, exclude_unseen_elements
from farfield.data.splitting.registry import BIASED, kmeans_clusters, strategy_from_config
from farfield.data.splitting.split_file import SIDES, Split
from farfield.data.splitting.statistics import distance_summary, side_statistics
from farfield.data.splitting.strategies import ParentSet, RandomSplit, SplittingStrategy
from farfield.data.store import DatasetStore

__all__ = ["SplitOutcome", "assign_sides", "make_split", "parent_space", "parents_table_path", "random_split",
           "side_counts", "split_parents", "split_statistics", "validation_count"]


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


def validation_count(n_rest: int, fractions: dict[str, float]) -> int:
    """Validation parents among the ``n_rest`` left after test and exclusions:
    ``round(val / (train + val) · n_rest)``, at least 1 if ``val`` > 0."""
    if fractions["val"] <= 0:
        return 0
    return max(1, int(round(fractions["val"] / (fractions["train"] + fractions["val"]) * n_rest)))


def assign_sides(parents: ParentSet, strategy: SplittingStrategy, fractions: dict[str, float],
                 seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """``(rows per side, excluded rows, strategy details)``; val is drawn from the non-test rest
    (:func:`validation_count`)."""
    counts = side_counts(len(parents), fractions)
    rng = np.random.default_rng(seed)
    selection = strategy.select_test(parents, counts["test"], rng)
    taken = np.zeros(len(parents), dtype=bool)
    taken[selection.test] = True
    taken[selection.excluded] = True
    rest = np.flatnonzero(~taken)
    n_val = validation_count(len(rest), fractions)
    if len(rest) - n_val < 1:
        raise ValueError(f"strategy {strategy.name!r} put {len(selection.test)} of {len(parents)} parents in test "
                         f"and excluded {len(selection.excluded)}; {len(rest)} remain for val={n_val} "
                         f"and train: lower split.val, split.test or split.gap")
    shuffled = rng.permutation(rest)
    rows = {"train": np.sort(shuffled[n_val:]), "val": np.sort(shuffled[:n_val]),
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
    atoms, nearest-train distances) — the input of the split report; None when not made (a
    random split made without descriptors)."""

    split: Split
    parents: pd.DataFrame | None

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (the split JSON) and, if there is one, ``parents_table_path(path)`` (parquet)."""
        path = self.split.save(path)
        if self.parents is not None:
            self.parents.to_parquet(parents_table_path(path), index=False)
        return path


def parents_table_path(split_path: str | Path) -> Path:
    """``SPLIT.json`` → ``SPLIT.parents.parquet`` next to it."""
    split_path = Path(split_path)
    return split_path.with_name(split_path.name.removesuffix(".json") + ".parents.parquet")


def _parent_set(space: ChemicalSpace, clustering: Clustering | None) -> ParentSet:
    return ParentSet(space.parent_ids, space.n_atoms, space.elements, space.n_configurations, space, clustering)


#: The clusterings of the last few chemical spaces. Clusters do not depend on the split seed, so
#: a sweep that makes one split per seed clusters each space once (the PCA of ~1,000 parents ×
#: ~20,000 mean-SOAP dimensions alone takes minutes on one core).
_CLUSTERINGS: OrderedDict[tuple, Clustering] = OrderedDict()
_CLUSTERINGS_KEPT = 4


def _space_key(space: ChemicalSpace) -> str:
    """Content hash of a space's parents and coordinates (its clusters depend on nothing else)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(space.metric.encode())
    digest.update("\n".join(map(str, space.parent_ids)).encode())
    digest.update(np.ascontiguousarray(space.coordinates, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _clustering(space: ChemicalSpace, config: SplitConfig) -> Clustering:
    """:func:`_cluster` of ``space``, computed once per space and clustering parameters."""
    if config.strategy == "kmeans":
        parameters: tuple = ("kmeans", kmeans_clusters(config))
    else:
        parameters = ("hdbscan", config.strategy == "cluster", config.min_cluster_size, config.min_samples,
                      config.pca_components, config.noise, config.cluster_selection)
    key = (_space_key(space), *parameters)
    if key in _CLUSTERINGS:
        _CLUSTERINGS.move_to_end(key)
        return _CLUSTERINGS[key]
    clustering = _cluster(space, config)
    _CLUSTERINGS[key] = clustering
    while len(_CLUSTERINGS) > _CLUSTERINGS_KEPT:
        _CLUSTERINGS.popitem(last=False)
    return clustering


def _cluster(space: ChemicalSpace, config: SplitConfig) -> Clustering:
    """KMeans clusters for ``kmeans``; else HDBSCAN clusters — for strategies other than
    ``cluster`` (clusters only colour the report) an all-noise result falls back to
    ``noise="singleton"``, and fewer parents than ``min_cluster_size`` to one cluster per
    parent, instead of failing."""
    if config.strategy == "kmeans":
        return kmeans_parents(space, kmeans_clusters(config))
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
    return Clustering(np.arange(n), np.full(n, -1), np.ones(n, dtype=bool), embed_2d(space),
                      {"min_cluster_size": config.min_cluster_size, "noise": "singleton", "hdbscan": "skipped"})


def split_parents(space: ChemicalSpace, config: SplitConfig, dataset_hash: str,
                  clustering: Clustering | None = None, extra_parameters: dict | None = None,
                  extra_statistics: dict | None = None) -> SplitOutcome:
    """Split the parents of ``space`` as ``config`` says; statistics include nearest-train
    distances in the space's metric for this split and for a random split of the same sizes.
    Biased strategies exclude test parents with elements absent from train (counted)."""
    if space.metric != config.metric:
        raise ValueError(f"the chemical space measures {space.metric!r} distances, but split.metric is "
                         f"{config.metric!r}; build it with farfield.data.splitting.parent_space")
    if config.metric == "joint" and abs(space.weight - config.weight) > 1e-12:
        raise ValueError(f"the chemical space was built with weight {space.weight}, but split.weight is "
                         f"{config.weight}; rebuild it with chemical_space(descriptors, weight={config.weight})")
    if clustering is None:
        clustering = _clustering(space, config)
    parents = _parent_set(space, clustering)
    fractions = {side: getattr(config, side) for side in SIDES}
    rows, excluded, details = assign_sides(parents, strategy_from_config(config), fractions, config.seed)
    statistics = dict(extra_statistics or {})
    if config.strategy in BIASED:
        rows, excluded, unseen = exclude_unseen_elements(parents, rows, excluded, exempt=details.get("element"))
        statistics["test_unseen_elements"] = unseen
    baseline = _random_like(rows, excluded, len(parents), config.seed)
    stats = side_statistics(parents, rows)
    nearest = {side: space.nearest_distance(rows[side], rows["train"]) for side in ("val", "test")}
    random_nearest = space.nearest_distance(baseline["test"], baseline["train"])
    stats["excluded"] = {"n_parents": len(excluded)}
    stats["nearest_train_distance"] = {
        "metric": space.metric,
        "test": distance_summary(nearest["test"]), "val": distance_summary(nearest["val"]),
        "random_test": distance_summary(random_nearest),
        "test_over_random_median": float(f"{np.median(nearest['test']) / max(np.median(random_nearest), 1e-12):.6g}"),
    }
    stats["clusters"] = {"n_clusters": clustering.n_clusters, "n_noise": int(clustering.is_noise.sum())}
    stats.update(statistics)
    metric = {"weight": config.weight} if config.metric == "joint" else {"metric": config.metric}
    parameters = {"fractions": fractions, **metric, "clustering": clustering.parameters,
                  "selection": details, **(extra_parameters or {})}
    parameters.update({k: getattr(config, k) for k in ("held_out_clusters", "n_folds", "fold", "element", "gap",
                                                          "n_clusters", "max_train_atoms")
                       if getattr(config, k) is not None and not (k == "gap" and config.gap == 0.0)})
    ids = [str(p) for p in space.parent_ids]
    split = Split(config.strategy, parameters, config.seed, dataset_hash,
                  *([ids[r] for r in rows[side]] for side in SIDES), stats, [ids[r] for r in excluded])
    return SplitOutcome(split, _parents_table(space, clustering, rows, excluded, baseline, nearest, random_nearest))


def _random_parents_table(space: ChemicalSpace, clustering: Clustering, split: Split) -> pd.DataFrame:
    """The parents table of a random ``split`` (made by :func:`random_split`) in ``space``."""
    row_of = {str(pid): row for row, pid in enumerate(space.parent_ids)}
    rows = {side: np.array(sorted(row_of[p] for p in getattr(split, side)), dtype=int) for side in SIDES}
    excluded = np.zeros(0, dtype=int)
    baseline = _random_like(rows, excluded, len(space), split.seed)
    nearest = {side: space.nearest_distance(rows[side], rows["train"]) for side in ("val", "test")}
    random_nearest = space.nearest_distance(baseline["test"], baseline["train"])
    return _parents_table(space, clustering, rows, excluded, baseline, nearest, random_nearest)


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


def parent_space(store: DatasetStore, metric: str = "joint", weight: float = DEFAULT_WEIGHT,
                 cache_dir: str | Path | None = None, n_workers: int = 0, settings: DescriptorKind | None = None,
                 address: str | None = None, index: pd.DataFrame | None = None) -> tuple[ChemicalSpace, DescriptorKind]:
    """``(space, descriptor settings)``: the parents of ``index`` (default: all of ``store``) in
    ``metric`` — ``"joint"`` (``DescriptorSettings``, weight ``weight``) or ``"soap_cosine"``
    (the paper's ``MeanSoapSettings`` over the store's elements, one frame per parent).
    Descriptors come from the cache in ``cache_dir`` (computed for the whole store once, with
    ``n_workers`` Ray actors, 0 = in process)."""
    index = store.index if index is None else index
    if metric == "soap_cosine":
        settings = settings or mean_soap_settings(store.manifest["elements"])
        descriptors = store_descriptors(store, settings, cache_dir, n_workers, address)
        return soap_cosine_space(descriptors, index), settings
    if metric != "joint":
        raise ValueError(f"split.metric {metric!r} is unknown; expected 'joint' or 'soap_cosine'")
    settings = settings or DescriptorSettings()
    descriptors = store_descriptors(store, settings, cache_dir, n_workers, address)
    keep = np.isin(descriptors.structure_ids, index["structure_id"].to_numpy(dtype=str))
    if not keep.all():
        descriptors = dataclasses.replace(descriptors, **{
            f.name: getattr(descriptors, f.name)[keep] for f in dataclasses.fields(descriptors)})
    return chemical_space(descriptors, weight), settings


def make_split(store: DatasetStore, config: SplitConfig, cache_dir: str | Path | None = None,
               n_workers: int = 0, settings: DescriptorKind | None = None,
               address: str | None = None, structure_ids=None,
               min_element_parents: int | None = None, parents_table: bool = True) -> SplitOutcome:
    """Rare elements dropped (``min_element_parents``) → descriptors (cached in ``cache_dir``;
    ``n_workers`` Ray actors, 0 = in process) → ``config.metric`` → clusters →
    :func:`split_parents`; for ``strategy: random`` the split is :func:`random_split` of the index
    and the descriptors only make its parents table (skipped with ``parents_table=False``).

    ``structure_ids``: split only the parents of these structures (e.g. a trial's
    ``data.max_structures`` prefix); default all of the store. ``min_element_parents``: the
    trial's ``data.min_element_parents``, applied to those structures."""
    index = store.index
    if structure_ids is not None:
        index = index[index["structure_id"].isin(np.asarray(list(structure_ids), dtype=str))]
    if config.strategy == "random":
        fractions = {side: getattr(config, side) for side in SIDES}
        split = random_split(index, store.content_hash, fractions, config.seed, min_element_parents)
        if not parents_table:
            return SplitOutcome(split, None)
    rare = drop_rare_elements(index, min_element_parents)
    space, settings = parent_space(store, config.metric, config.weight, cache_dir, n_workers, settings, address,
                                   rare.index)
    if config.strategy == "random":
        return SplitOutcome(split, _random_parents_table(space, _clustering(space, config), split))
    key = "descriptor" if config.metric == "joint" else "mean_soap"
    extra = {"rare_elements": rare.statistics} if rare.statistics else None
    return split_parents(space, config, store.content_hash, extra_parameters={key: settings.model_dump()},
                         extra_statistics=extra)


def _index_parents(index: pd.DataFrame) -> ParentSet:
    parent_ids, n_atoms, n_configurations, elements = index_parents(index)
    return ParentSet(parent_ids=parent_ids, n_atoms=n_atoms, elements=elements, n_configurations=n_configurations)


def random_split(index: pd.DataFrame, dataset_hash: str, fractions: dict[str, float], seed: int,
                 min_element_parents: int | None = None) -> Split:
    """Random split of the parents in a store ``index`` (no descriptors, no distance statistics),
    after dropping rare elements (``min_element_parents``, recorded in the statistics)."""
    rare = drop_rare_elements(index, min_element_parents)
    parents = _index_parents(rare.index)
    rows, _, _ = assign_sides(parents, RandomSplit(), fractions, seed)
    ids = [str(p) for p in parents.parent_ids]
    statistics = side_statistics(parents, rows)
    if rare.statistics:
        statistics["rare_elements"] = rare.statistics
    return Split("random", {"fractions": dict(fractions)}, seed, dataset_hash,
                 *([ids[r] for r in rows[side]] for side in SIDES), statistics)


def split_statistics(index: pd.DataFrame, split: Split) -> dict:
    """Sizes and element coverage of each side of ``split`` over a store ``index``."""
    parents = _index_parents(index)
    row_of = {pid: row for row, pid in enumerate(parents.parent_ids)}
    rows = {side: np.array([row_of[p] for p in getattr(split, side)], dtype=int) for side in SIDES}
    return side_statistics(parents, rows)
