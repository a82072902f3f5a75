"""Embedding (PCA, optionally UMAP), HDBSCAN clustering of the parents, and the paper's KMeans.

HDBSCAN (the ``hdbscan`` package) runs on the first ``pca_components`` principal components
of the joint coordinates: Euclidean distances there approximate the joint metric while
density estimates stay meaningful. Noise points (HDBSCAN label −1) are never dropped:
``noise="nearest"`` gives each the cluster of its nearest clustered parent in the joint
metric; ``noise="singleton"`` makes each its own cluster. ``Clustering.is_noise`` keeps
which parents were noise either way.

:func:`kmeans_parents` is the paper's clustering (scikit-learn KMeans on the metric's
vectors, every parent in a cluster); the ``kmeans`` split holds out half of its clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from farfield.data.chemspace.metric import ChemicalSpace

__all__ = ["KMEANS_RANDOM_STATE", "Clustering", "cluster_parents", "embed", "embed_2d", "kmeans_parents"]

#: KMeans initialisation seed: fixed, so the clusters of a dataset do not depend on the split
#: seed (which only chooses the held-out half).
KMEANS_RANDOM_STATE = 0

NoisePolicy = Literal["nearest", "singleton"]


def embed(space: ChemicalSpace, n_components: int = 2, method: Literal["pca", "umap"] = "pca",
          seed: int = 0) -> np.ndarray:
    """(n_parents, k) embedding of the joint coordinates, k = min(n_components, n_parents, d).

    ``method="umap"`` needs the optional ``umap-learn`` package.
    """
    x = space.coordinates
    k = min(n_components, x.shape[0], x.shape[1])
    if method == "pca":
        return PCA(n_components=k, svd_solver="full").fit_transform(x)
    if method == "umap":
        try:
            import umap
        except ImportError as err:
            raise ValueError("embedding method 'umap' needs the optional package umap-learn "
                             "(pip install umap-learn); use method='pca' otherwise") from err
        return umap.UMAP(n_components=n_components, random_state=seed).fit_transform(x)
    raise ValueError(f"embedding method {method!r} is unknown; expected 'pca' or 'umap'")


def embed_2d(space: ChemicalSpace) -> np.ndarray:
    """(n_parents, 2) PCA map of the parents (zero-padded where fewer components exist)."""
    embedding = embed(space, 2)
    return np.hstack([embedding, np.zeros((len(space), 2 - embedding.shape[1]))])


@dataclass
class Clustering:
    """Cluster of each parent (rows as in the ChemicalSpace).

    ``labels``: (n,) int ≥ 0 after noise handling; ``raw_labels``: (n,) HDBSCAN labels
    (−1 = noise); ``is_noise``: (n,) bool; ``embedding``: (n, 2) first two PCs;
    ``parameters``: what produced it.
    """

    labels: np.ndarray
    raw_labels: np.ndarray
    is_noise: np.ndarray
    embedding: np.ndarray
    parameters: dict

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def members(self) -> dict[int, np.ndarray]:
        """``{cluster: row numbers}`` for every cluster."""
        return {c: np.flatnonzero(self.labels == c) for c in range(self.n_clusters)}


def cluster_parents(space: ChemicalSpace, min_cluster_size: int = 5, min_samples: int | None = None,
                    pca_components: int = 10, noise: NoisePolicy = "nearest",
                    selection: Literal["eom", "leaf"] = "eom") -> Clustering:
    """HDBSCAN clusters of the parents of ``space`` (deterministic).

    ``selection``: HDBSCAN's ``cluster_selection_method`` — ``"eom"`` (excess of mass,
    fewer and larger clusters) or ``"leaf"`` (many small, homogeneous clusters).
    """
    import hdbscan

    n = len(space)
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be >= 2, got {min_cluster_size}")
    if n < min_cluster_size:
        raise ValueError(f"cannot cluster {n} parents with min_cluster_size={min_cluster_size}; "
                         f"lower split.min_cluster_size")
    if noise not in ("nearest", "singleton"):
        raise ValueError(f"noise policy {noise!r} is unknown; expected 'nearest' or 'singleton'")
    reduced = embed(space, pca_components)
    if selection not in ("eom", "leaf"):
        raise ValueError(f"cluster selection {selection!r} is unknown; expected 'eom' or 'leaf'")
    model = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                            cluster_selection_method=selection)
    raw = np.asarray(model.fit_predict(reduced), dtype=np.int64)
    is_noise = raw < 0
    labels = raw.copy()
    if is_noise.all() and noise == "nearest":
        raise ValueError(f"HDBSCAN found no cluster among {n} parents (min_cluster_size="
                         f"{min_cluster_size}, min_samples={min_samples}); lower min_cluster_size "
                         f"or use noise='singleton'")
    if is_noise.any():
        noise_rows, clustered = np.flatnonzero(is_noise), np.flatnonzero(~is_noise)
        if noise == "nearest":
            labels[noise_rows] = raw[space.nearest(noise_rows, clustered)[1]]
        else:
            labels[noise_rows] = raw.max() + 1 + np.arange(len(noise_rows))
    parameters = {"min_cluster_size": min_cluster_size, "min_samples": min_samples,
                  "pca_components": int(reduced.shape[1]), "noise": noise, "selection": selection}
    return Clustering(labels, raw, is_noise, reduced[:, :2], parameters)


def kmeans_parents(space: ChemicalSpace, n_clusters: int) -> Clustering:
    """KMeans (``n_init=10``, seed ``KMEANS_RANDOM_STATE``) with ``n_clusters`` clusters on
    ``space.coordinates`` — the joint coordinates, or the unit-norm mean SOAP vectors of the
    ``soap_cosine`` metric (on unit vectors squared Euclidean distance is 2 · (1 − cosine)).
    Clusters are numbered by their smallest row, so labels do not depend on KMeans' order."""
    n = len(space)
    if n_clusters < 2:
        raise ValueError(f"split.n_clusters must be >= 2, got {n_clusters}")
    if n < n_clusters:
        raise ValueError(f"cannot make {n_clusters} KMeans clusters of {n} parents; lower split.n_clusters "
                         f"(at most {n})")
    raw = KMeans(n_clusters=n_clusters, n_init=10, random_state=KMEANS_RANDOM_STATE).fit_predict(space.coordinates)
    first_row = {int(c): int(np.flatnonzero(raw == c)[0]) for c in np.unique(raw)}
    renumber = {c: new for new, c in enumerate(sorted(first_row, key=first_row.get))}
    labels = np.array([renumber[int(c)] for c in raw], dtype=np.int64)
    if len(renumber) < n_clusters:
        raise ValueError(f"KMeans found only {len(renumber)} distinct clusters of the {n_clusters} asked "
                         f"(duplicate parents?); lower split.n_clusters")
    return Clustering(labels, labels.copy(), np.zeros(n, dtype=bool), embed_2d(space),
                      {"method": "kmeans", "n_clusters": n_clusters, "n_init": 10,
                       "random_state": KMEANS_RANDOM_STATE})
