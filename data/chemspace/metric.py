"""The joint geometry–composition metric over parent MOFs.

Per structure, composition is the element-fraction vector over the dataset's elements plus
five attributes (mean and variance of Pauling electronegativity and of covalent radius,
fraction of metal atoms); geometry is the averaged SOAP vector. Both are averaged over
the configurations of each parent. Then each block is standardised:

- composition: every feature z-scored (its units differ: fractions, Pauling, Å), clipped to
  ``±z_clip`` so one rare element cannot dominate, and the block divided by the square root
  of its total variance;
- geometry: centred and divided by the square root of its total variance (SOAP components
  are commensurate; z-scoring them one by one would amplify near-constant noise).

After this each block has total variance 1, so the mean squared distance between two
random parents is 2 in either block. The joint distance is

    d(a, b)² = w · d_geometry(a, b)² + (1 − w) · d_composition(a, b)²

(``w`` = ``weight``, default 0.5), i.e. the Euclidean distance between the rows of
``ChemicalSpace.coordinates = [√w · geometry, √(1−w) · composition]``.

The same class holds the paper's metric (``metric="soap_cosine"``, built by
:func:`farfield.data.chemspace.mean_soap.soap_cosine_space`): ``coordinates`` are unit-norm
mean SOAP vectors and the distance is 1 − cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from farfield.data.chemspace.descriptors import FrameDescriptors
from farfield.data.config import DEFAULT_JOINT_WEIGHT
from farfield.data.chemspace.elements import COVALENT_RADIUS, IS_METAL, PAULING_ELECTRONEGATIVITY

__all__ = ["ATTRIBUTE_NAMES", "DEFAULT_WEIGHT", "METRICS", "ChemicalSpace", "chemical_space",
           "composition_features"]

DEFAULT_WEIGHT = DEFAULT_JOINT_WEIGHT
#: Distances a ChemicalSpace can measure: farfield's joint metric, or the paper's 1 − cosine.
METRICS = ("joint", "soap_cosine")
ATTRIBUTE_NAMES = ("electronegativity_mean", "electronegativity_var", "covalent_radius_mean",
                   "covalent_radius_var", "metal_fraction")


def _weighted_mean_var(counts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atom-weighted mean and variance of a per-element ``values`` (NaN entries ignored)."""
    known = np.isfinite(values)
    weights = counts[:, known].astype(np.float64)
    total = np.maximum(weights.sum(axis=1), 1.0)
    mean = weights @ values[known] / total
    var = weights @ values[known] ** 2 / total - mean**2
    return mean, np.maximum(var, 0.0)


def composition_features(element_counts: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``(features (n, n_elements + 5), names)`` from ``element_counts`` (n, MAX_Z + 1).

    Element columns cover the elements present in any row, in Z order.
    """
    counts = np.asarray(element_counts, dtype=np.float64)
    n_atoms = counts.sum(axis=1, keepdims=True)
    if (n_atoms == 0).any():
        raise ValueError(f"element_counts: {int((n_atoms == 0).sum())} row(s) have no atoms")
    present = np.flatnonzero(counts.sum(axis=0) > 0)
    fractions = counts[:, present] / n_atoms
    en_mean, en_var = _weighted_mean_var(counts, PAULING_ELECTRONEGATIVITY)
    r_mean, r_var = _weighted_mean_var(counts, COVALENT_RADIUS)
    metal = counts[:, IS_METAL].sum(axis=1) / n_atoms[:, 0]
    features = np.column_stack([fractions, en_mean, en_var, r_mean, r_var, metal])
    return features, [f"fraction_{chemical_symbols[z]}" for z in present] + list(ATTRIBUTE_NAMES)


def _unit_total_variance(block: np.ndarray) -> np.ndarray:
    centred = block - block.mean(axis=0)
    total = float((centred**2).sum(axis=0).sum()) / max(len(block), 1)
    return centred / np.sqrt(total) if total > 0 else centred


def _zscore(block: np.ndarray, clip: float) -> np.ndarray:
    std = block.std(axis=0)
    scaled = np.where(std > 1e-12, (block - block.mean(axis=0)) / np.where(std > 1e-12, std, 1.0), 0.0)
    return np.clip(scaled, -clip, clip)


@dataclass
class ChemicalSpace:
    """Parents as points of a metric space (rows sorted by ``parent_ids``).

    ``parent_ids``: (n,) str; ``n_atoms``: (n,) mean atoms per configuration;
    ``n_configurations``: (n,) int; ``elements``: per parent, its element symbols in Z order;
    ``geometry``/``composition``: (n, ·) standardised blocks; ``weight``: w;
    ``metric``: ``"joint"`` — ``coordinates`` (n, d), Euclidean distance between rows = joint
    distance — or ``"soap_cosine"`` — ``geometry`` holds unit-norm mean SOAP vectors,
    ``composition`` is empty, ``weight`` 1, and the distance is 1 − cosine similarity.
    """

    parent_ids: np.ndarray
    n_atoms: np.ndarray
    n_configurations: np.ndarray
    elements: list[tuple[str, ...]]
    geometry: np.ndarray
    composition: np.ndarray
    composition_names: list[str]
    weight: float
    metric: Literal["joint", "soap_cosine"] = "joint"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"ChemicalSpace.metric {self.metric!r} is unknown; expected one of {METRICS}")

    @cached_property
    def coordinates(self) -> np.ndarray:
        return np.hstack([np.sqrt(self.weight) * self.geometry,
                          np.sqrt(1.0 - self.weight) * self.composition])

    def __len__(self) -> int:
        return len(self.parent_ids)

    def distances(self, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
        """(len(rows_a), len(rows_b)) distances between parents given by row numbers."""
        x = self.coordinates
        return self._pairwise(x[np.asarray(rows_a)], x[np.asarray(rows_b)])

    def nearest(self, query_rows: np.ndarray, reference_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, rows)``, each (len(query_rows),): every query parent's nearest reference
        parent (its row number) and the distance to it; computed in chunks."""
        query_rows, reference_rows = np.asarray(query_rows, dtype=int), np.asarray(reference_rows, dtype=int)
        if len(reference_rows) == 0:
            raise ValueError("nearest: the reference set is empty")
        x = self.coordinates
        reference = x[reference_rows]
        distances, rows = np.empty(len(query_rows)), np.empty(len(query_rows), dtype=int)
        for start in range(0, len(query_rows), 256):
            block = self._pairwise(x[query_rows[start : start + 256]], reference)
            best = block.argmin(axis=1)
            distances[start : start + len(best)] = block[np.arange(len(best)), best]
            rows[start : start + len(best)] = reference_rows[best]
        return distances, rows

    def nearest_distance(self, query_rows: np.ndarray, reference_rows: np.ndarray) -> np.ndarray:
        """(len(query_rows),) distance from each query parent to its nearest reference parent."""
        return self.nearest(query_rows, reference_rows)[0]

    def _pairwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.metric == "soap_cosine":  # rows are unit vectors
            return np.clip(1.0 - a @ b.T, 0.0, 2.0)
        squared = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.maximum(squared, 0.0))


def chemical_space(descriptors: FrameDescriptors, weight: float = DEFAULT_WEIGHT,
                   z_clip: float = 5.0) -> ChemicalSpace:
    """Average ``descriptors`` per parent and standardise them into a :class:`ChemicalSpace`."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight (w) must be in [0, 1] (1 = geometry only, 0 = composition only), got {weight}")
    if z_clip <= 0:
        raise ValueError(f"z_clip must be > 0, got {z_clip}")
    if len(descriptors) == 0:
        raise ValueError("chemical_space: no structures were described")
    composition, names = composition_features(descriptors.element_counts)
    parents = pd.Index(descriptors.parent_ids)
    codes, unique = pd.factorize(parents, sort=True)
    n_parents = len(unique)
    counts = np.bincount(codes, minlength=n_parents)

    def per_parent(values: np.ndarray) -> np.ndarray:
        total = np.zeros((n_parents,) + values.shape[1:])
        np.add.at(total, codes, values)
        return total / counts.reshape((-1,) + (1,) * (values.ndim - 1))

    present = per_parent(descriptors.element_counts > 0) > 0
    symbols = np.array(chemical_symbols[: present.shape[1]])
    return ChemicalSpace(
        parent_ids=np.asarray(unique, dtype=str),
        n_atoms=per_parent(descriptors.n_atoms.astype(np.float64)),
        n_configurations=counts,
        elements=[tuple(str(s) for s in symbols[row]) for row in present],
        geometry=_unit_total_variance(per_parent(descriptors.geometry)),
        composition=_unit_total_variance(_zscore(per_parent(composition), z_clip)),
        composition_names=names,
        weight=float(weight),
    )
