"""Where each test parent sits in chemical space: its cluster and its distance to train.

The split file logged with a trial names the parents of each side (and the ``excluded``
ones), the metric (``parameters["metric"]`` — ``"soap_cosine"`` for the paper's protocol;
absent for farfield's joint metric, whose weight is ``parameters["weight"]``), the descriptor
settings (``"descriptor"`` for the joint metric, ``"mean_soap"`` for the SOAP cosine) and the
clustering parameters (HDBSCAN's, or ``{"method": "kmeans", "n_clusters": …}``), or nothing
of the metric (``random``: the trial's ``split.*`` params then give the metric, ``w`` and the
clustering, with farfield's defaults for the descriptors). From these the split's metric is
rebuilt through :func:`farfield.data.splitting.parent_space` (descriptors cached by dataset
hash) and its clusters through ``cluster_parents`` (HDBSCAN) or ``kmeans_parents``; every
val/test parent gets its nearest-train distance and every parent its cluster.

The split was made over its own set of parents — those the split file names (train ∪ val ∪
test ∪ excluded), i.e. the store after ``data.min_element_parents``, within the trial's
``data.max_structures`` prefix of the index. KMeans labels, HDBSCAN clusters and the joint
metric's standardisation all depend on that set, so the space is rebuilt over the same
structures; store parents outside it get cluster −1 and no distance.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from farfield.analysis import run_layout
from farfield.analysis.dataset_context import DatasetContext
from farfield.analysis.disk_cache import cache_key, cached_array
from farfield.data.chemspace import (
    METRICS,
    ChemicalSpace,
    DescriptorKind,
    DescriptorSettings,
    MeanSoapSettings,
    cluster_parents,
    kmeans_parents,
)
from farfield.data.splitting import Split, parent_space

__all__ = ["parent_placement", "split_metric", "split_metric_settings"]

_SPACES: dict[tuple, ChemicalSpace] = {}
_CLUSTERS: dict[tuple, np.ndarray] = {}


def _param(params: dict[str, str], name: str, default):
    value = params.get(name)
    if value is None or value == "None":
        return default
    return type(default)(value) if default is not None else int(value)


def split_metric(split: Split, params: dict[str, str]) -> str:
    """The split's metric: its recorded ``parameters["metric"]``; for files that record none
    (joint-metric and random splits) the trial's ``split.metric`` param, else ``"joint"``."""
    recorded = (split.parameters or {}).get("metric")
    if recorded is not None:
        if recorded not in METRICS:
            raise ValueError(f"split {split.content_hash} records metric {recorded!r}; expected one of {METRICS}")
        return recorded
    if "weight" in (split.parameters or {}):
        return "joint"
    param = params.get(run_layout.split_param("metric"))
    return param if param in METRICS else "joint"


def split_metric_settings(split: Split, params: dict[str, str]) -> tuple[DescriptorKind, float, dict]:
    """``(descriptor settings, weight w, clustering parameters)`` of a trial's split.

    Settings: ``DescriptorSettings`` (joint metric) or ``MeanSoapSettings`` (``soap_cosine``;
    the recorded ``mean_soap``, else the paper's defaults over the store's elements — then
    returned as None and built from the store). ``w`` (dimensionless) is 1 for ``soap_cosine``.
    """
    recorded = split.parameters or {}
    if split_metric(split, params) == "soap_cosine":
        settings = MeanSoapSettings.model_validate(recorded["mean_soap"]) if recorded.get("mean_soap") else None
        weight = 1.0
    else:
        settings = DescriptorSettings.model_validate(recorded.get("descriptor", {}))
        weight = float(recorded.get("weight", _param(params, run_layout.split_param("weight"), 0.5)))
    clustering = recorded.get("clustering") or {
        "min_cluster_size": _param(params, run_layout.split_param("min_cluster_size"), 5),
        "min_samples": _param(params, run_layout.split_param("min_samples"), None),
        "pca_components": _param(params, run_layout.split_param("pca_components"), 10),
        "noise": params.get(run_layout.split_param("noise"), "nearest"),
        "selection": params.get(run_layout.split_param("cluster_selection"), "eom"),
    }
    return settings, weight, clustering


def _space(context: DatasetContext, metric: str, settings: DescriptorKind | None, weight: float,
           cache_dir: str | Path | None, index: pd.DataFrame) -> tuple[ChemicalSpace, tuple]:
    """``(space of the parents of the structures in ``index`` (rows of the store's index) in
    ``metric``, cache key)``."""
    structures = hashlib.sha256("\n".join(index["structure_id"].astype(str)).encode()).hexdigest()
    key = (context.content_hash, metric, settings.key() if settings is not None else "default", weight, structures)
    if key not in _SPACES:
        _SPACES[key] = parent_space(context.store, metric, weight, cache_dir=cache_dir, n_workers=0,
                                    settings=settings, index=index)[0]
    return _SPACES[key], key


def _cluster_labels(space: ChemicalSpace, key: tuple, clustering: dict, cache_dir: str | Path | None = None
                    ) -> np.ndarray:
    """(len(space),) cluster of each parent of the split's own ``space``.

    KMeans (``clustering["method"] == "kmeans"``): ``kmeans_parents`` with the recorded
    ``n_clusters``. Else HDBSCAN; as in ``farfield.data.splitting``, all-noise falls back to
    singletons, and a split that skipped HDBSCAN (too few parents) to one cluster per parent.
    Kept in memory, and with ``cache_dir`` on disk under ``placement/`` (key: the space's key
    and the clustering parameters)."""
    memory_key = key + (json.dumps(clustering, sort_keys=True),)
    if memory_key not in _CLUSTERS:
        path = None if cache_dir is None else Path(cache_dir) / "placement" / f"clusters-{cache_key(*memory_key)}.npy"
        _CLUSTERS[memory_key] = cached_array(path, lambda: _cluster(space, clustering))
    return _CLUSTERS[memory_key]


def _cluster(space: ChemicalSpace, clustering: dict) -> np.ndarray:
    """The clustering of ``_cluster_labels``, computed."""
    if clustering.get("method") == "kmeans":
        labels = kmeans_parents(space, int(clustering["n_clusters"])).labels
    elif clustering.get("hdbscan") == "skipped":
        labels = np.arange(len(space), dtype=np.int64)
    else:
        options = dict(min_cluster_size=int(clustering["min_cluster_size"]), min_samples=clustering.get("min_samples"),
                       pca_components=int(clustering.get("pca_components", 10)),
                       selection=clustering.get("selection", "eom"))
        options["min_cluster_size"] = min(options["min_cluster_size"], max(len(space), 2))
        try:
            labels = cluster_parents(space, noise=clustering.get("noise", "nearest"), **options).labels
        except ValueError:
            labels = cluster_parents(space, noise="singleton", **options).labels
    return np.asarray(labels, dtype=np.int64)


def parent_placement(context: DatasetContext, split: Split, params: dict[str, str],
                     cache_dir: str | Path | None = None, max_structures: int | None = None) -> pd.DataFrame:
    """One row per parent of the store: ``parent_id``, ``side`` (train/val/test/excluded),
    ``cluster`` (int; −1 = not clustered: outside the split's own parents),
    ``nearest_train_distance`` (dimensionless, in the split's metric: the joint distance,
    or 1 − cosine similarity of mean SOAP vectors in [0, 2] for ``soap_cosine``; NaN for
    train and excluded parents) and ``nearest_train_parent``.

    ``params``: the trial's MLflow params (``split.*`` fill in what the split file does not
    record); ``cache_dir``: the descriptor cache (as ``farfield split make``'s);
    ``max_structures``: the trial's ``data.max_structures`` (the split saw that prefix of the
    index only)."""
    metric = split_metric(split, params)
    settings, weight, clustering = split_metric_settings(split, params)
    store_parents = [str(p) for p in pd.unique(context.index["parent_id"].astype(str))]
    sides = split.side_of()
    own_parents = {*sides, *split.excluded}
    unknown = sorted(own_parents.difference(store_parents))
    if unknown:
        raise ValueError(f"split {split.content_hash} names parents absent from dataset {context.content_hash}: "
                         f"{unknown[:5]}")
    space, key = _space(context, metric, settings, weight, cache_dir, context.index_of(own_parents, max_structures))
    ids = [str(p) for p in space.parent_ids]
    row_of = {pid: row for row, pid in enumerate(ids)}
    labels = _cluster_labels(space, key, clustering, cache_dir)
    train_rows = np.array([row_of[p] for p in split.train], dtype=int)
    query = np.array([row_of[p] for p in split.val + split.test], dtype=int)
    distance = np.full(len(ids), np.nan)
    nearest = np.full(len(ids), "", dtype=object)
    if len(query) and len(train_rows):
        found, rows = space.nearest(query, train_rows)
        distance[query] = found
        nearest[query] = [ids[r] for r in rows]
    own = pd.DataFrame({"cluster": labels.astype(int), "nearest_train_distance": distance,
                        "nearest_train_parent": nearest.astype(str)}, index=pd.Index(ids, name="parent_id"))
    table = own.reindex(store_parents)  # parents outside the split's own set: no cluster, no distance
    table["cluster"] = table["cluster"].fillna(-1).astype(int)
    table["nearest_train_parent"] = table["nearest_train_parent"].fillna("")
    table.insert(0, "side", [sides.get(p, "excluded") for p in store_parents])
    return table.reset_index()
