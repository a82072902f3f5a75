"""Where each test parent sits in chemical space: its cluster and its distance to train.

The split file logged with a trial names the parents of each side, the joint-metric
weight ``w``, the descriptor settings and the clustering parameters (chemical-space
strategies), or nothing of the metric (``random``: the trial's ``split.*`` params then
give ``w`` and the clustering, with farfield's defaults for the descriptors). From these
the joint metric of ``farfield.data.chemspace`` is rebuilt — the same descriptors (cached
by dataset hash), the same standardisation, the same HDBSCAN — and every val/test parent
gets its nearest-train distance and every parent its cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from farfield.analysis.dataset_context import DatasetContext
from farfield.data.chemspace import (
    ChemicalSpace,
    DescriptorSettings,
    chemical_space,
    cluster_parents,
    store_descriptors,
)
from farfield.data.splitting import Split

__all__ = ["parent_placement", "split_metric_settings"]

_SPACES: dict[tuple, ChemicalSpace] = {}
_CLUSTERS: dict[tuple, np.ndarray] = {}


def _param(params: dict[str, str], name: str, default):
    value = params.get(name)
    if value is None or value == "None":
        return default
    return type(default)(value) if default is not None else int(value)


def split_metric_settings(split: Split, params: dict[str, str]) -> tuple[DescriptorSettings, float, dict]:
    """``(descriptor settings, weight w, clustering parameters)`` of a trial's split."""
    recorded = split.parameters or {}
    settings = DescriptorSettings.model_validate(recorded.get("descriptor", {}))
    weight = float(recorded.get("weight", _param(params, "split.weight", 0.5)))
    clustering = recorded.get("clustering") or {
        "min_cluster_size": _param(params, "split.min_cluster_size", 5),
        "min_samples": _param(params, "split.min_samples", None),
        "pca_components": _param(params, "split.pca_components", 10),
        "noise": params.get("split.noise", "nearest"),
        "selection": params.get("split.cluster_selection", "eom"),
    }
    return settings, weight, clustering


def _space(context: DatasetContext, settings: DescriptorSettings, weight: float,
           cache_dir: str | Path | None) -> ChemicalSpace:
    key = (context.content_hash, settings.key(), weight)
    if key not in _SPACES:
        descriptors = store_descriptors(context.store, settings, cache_dir, n_workers=0)
        _SPACES[key] = chemical_space(descriptors, weight)
    return _SPACES[key]


def _cluster_labels(space: ChemicalSpace, key: tuple, clustering: dict) -> np.ndarray:
    """HDBSCAN labels; as in ``farfield.data.splitting``, all-noise falls back to singletons."""
    cache_key = key + (json.dumps(clustering, sort_keys=True),)
    if cache_key not in _CLUSTERS:
        options = dict(min_cluster_size=int(clustering["min_cluster_size"]), min_samples=clustering.get("min_samples"),
                       pca_components=int(clustering["pca_components"]), selection=clustering.get("selection", "eom"))
        min_size = min(options["min_cluster_size"], max(len(space), 2))
        options["min_cluster_size"] = min_size
        try:
            result = cluster_parents(space, noise=clustering.get("noise", "nearest"), **options)
        except ValueError:
            result = cluster_parents(space, noise="singleton", **options)
        _CLUSTERS[cache_key] = result.labels
    return _CLUSTERS[cache_key]


def parent_placement(context: DatasetContext, split: Split, params: dict[str, str],
                     cache_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per parent of the store: ``parent_id``, ``side`` (train/val/test/excluded),
    ``cluster`` (int), ``nearest_train_distance`` (joint metric, dimensionless; NaN for
    train and excluded parents) and ``nearest_train_parent``."""
    settings, weight, clustering = split_metric_settings(split, params)
    space = _space(context, settings, weight, cache_dir)
    labels = _cluster_labels(space, (context.content_hash, settings.key(), weight), clustering)
    ids = [str(p) for p in space.parent_ids]
    row_of = {pid: row for row, pid in enumerate(ids)}
    sides = split.side_of()
    unknown = [p for p in split.train + split.test if p not in row_of]
    if unknown:
        raise ValueError(f"split {split.content_hash} names parents absent from dataset {context.content_hash}: "
                         f"{unknown[:5]}")
    train_rows = np.array([row_of[p] for p in split.train], dtype=int)
    query = np.array([row_of[p] for p in split.val + split.test], dtype=int)
    distance = np.full(len(ids), np.nan)
    nearest = np.full(len(ids), "", dtype=object)
    if len(query) and len(train_rows):
        found, rows = space.nearest(query, train_rows)
        distance[query] = found
        nearest[query] = [ids[r] for r in rows]
    return pd.DataFrame({"parent_id": ids, "side": [sides.get(p, "excluded") for p in ids],
                         "cluster": labels.astype(int), "nearest_train_distance": distance,
                         "nearest_train_parent": nearest.astype(str)})
