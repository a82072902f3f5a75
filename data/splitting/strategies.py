"""Split strategies: each one small class that picks the **test** parents.

Like schnetpack's ``SplittingStrategy``, but every choice draws from the seeded
``numpy.random.Generator`` it is handed (never a global RNG). Validation parents are then
drawn at random from what is left (:func:`farfield.data.splitting.api.assign_sides`), so the
validation set is in-distribution and the test set is what the strategy makes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from ase.data import atomic_numbers

from farfield.data.chemspace import ChemicalSpace, Clustering
from farfield.data.chemspace.elements import IS_METAL

__all__ = ["ClusterSplit", "ElementSplit", "MaxSeparationSplit", "MetalSplit", "ParentSet", "RandomSplit",
           "Selection", "SizeSplit", "SplittingStrategy"]


@dataclass
class ParentSet:
    """What strategies see about the parents (rows sorted by ``parent_ids``).

    ``n_atoms``: (n,) atoms per configuration; ``elements``: element symbols per parent;
    ``space``/``clustering``: the joint metric and HDBSCAN clusters (None where unavailable).
    """

    parent_ids: np.ndarray
    n_atoms: np.ndarray
    elements: list[tuple[str, ...]]
    n_configurations: np.ndarray
    space: ChemicalSpace | None = None
    clustering: Clustering | None = None

    def __len__(self) -> int:
        return len(self.parent_ids)

    def containing(self, element: str) -> np.ndarray:
        """Rows of the parents that contain ``element``."""
        return np.array([row for row, present in enumerate(self.elements) if element in present], dtype=int)


@dataclass
class Selection:
    """Test rows chosen by a strategy, rows to leave out entirely, and what it decided."""

    test: np.ndarray
    excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    details: dict = field(default_factory=dict)


class SplittingStrategy:
    """Base: ``select_test(parents, n_test, rng)`` → :class:`Selection`."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()

    def select_test(self, parents: ParentSet, n_test: int, rng: np.random.Generator) -> Selection:
        raise NotImplementedError

    def _require(self, parents: ParentSet) -> None:
        for what in self.needs:
            if getattr(parents, what) is None:
                raise ValueError(f"split strategy {self.name!r} needs the parents' {what}; "
                                 f"make it with farfield.data.splitting.make_split")


class RandomSplit(SplittingStrategy):
    """The baseline: ``n_test`` parents drawn uniformly."""

    name = "random"

    def select_test(self, parents, n_test, rng):
        return Selection(np.sort(rng.permutation(len(parents))[:n_test]))


@dataclass
class SizeSplit(SplittingStrategy):
    """The ``n_test`` largest parents (atoms per configuration; ties by parent_id) in test, or,
    with ``max_train_atoms`` (the paper's small → large split), every parent with more atoms
    than that."""

    max_train_atoms: int | None = None
    name: ClassVar[str] = "size"

    def select_test(self, parents, n_test, rng):
        if self.max_train_atoms is not None:
            return self._above_threshold(parents)
        order = np.lexsort((np.arange(len(parents)), -parents.n_atoms))
        return Selection(np.sort(order[:n_test]), details={"test_min_atoms": float(parents.n_atoms[order[n_test - 1]])})

    def _above_threshold(self, parents: ParentSet) -> Selection:
        test = np.flatnonzero(parents.n_atoms > self.max_train_atoms)
        if len(test) == 0:
            raise ValueError(f"split.max_train_atoms={self.max_train_atoms}: no parent has more atoms (the largest "
                             f"has {parents.n_atoms.max():g}); lower split.max_train_atoms")
        if len(test) == len(parents):
            raise ValueError(f"split.max_train_atoms={self.max_train_atoms}: every parent has more atoms (the "
                             f"smallest has {parents.n_atoms.min():g}); nothing is left to train on")
        return Selection(test, details={"max_train_atoms": self.max_train_atoms,
                                        "test_min_atoms": float(parents.n_atoms[test].min())})


@dataclass
class MaxSeparationSplit(SplittingStrategy):
    """Test = the parents farthest from everything that stays in train, peeled off greedily.

    Every parent starts in train with the distance to its nearest other train parent. Each
    step moves the train parent with the largest such distance to test and updates the
    parents whose nearest neighbour it was — so outlying regions leave whole (a pair of
    nearby outliers goes one after the other) and the test set is the part of chemical space
    farthest from the training set. ``gap``: non-test parents closer than this (joint
    metric) to any test parent are excluded from train and val. Deterministic (the seed
    only draws the validation set).
    """

    gap: float = 0.0
    name: ClassVar[str] = "max_separation"
    needs: ClassVar[tuple[str, ...]] = ("space",)

    def select_test(self, parents, n_test, rng):
        self._require(parents)
        space = parents.space
        n = len(parents)
        everyone = np.arange(n)
        in_train = np.ones(n, dtype=bool)
        nearest_distance, nearest_row = _nearest_other(space, everyone, everyone)
        test = []
        for _ in range(n_test):
            row = int(np.argmax(np.where(in_train, nearest_distance, -np.inf)))
            in_train[row] = False
            test.append(row)
            orphans = np.flatnonzero(in_train & (nearest_row == row))
            if len(orphans) and in_train.sum() > 1:
                nearest_distance[orphans], nearest_row[orphans] = _nearest_other(space, orphans, np.flatnonzero(in_train))
        first = str(parents.parent_ids[test[0]])
        test = np.sort(np.array(test, dtype=int))
        rest = np.flatnonzero(in_train)
        excluded = rest[space.nearest(rest, test)[0] < self.gap] if self.gap > 0 else np.zeros(0, dtype=int)
        return Selection(test, excluded, {"first_parent": first, "n_excluded_by_gap": len(excluded)})


def _nearest_other(space: ChemicalSpace, rows: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest candidate to each of ``rows`` other than itself: (distances, candidate rows)."""
    distances, found = np.empty(len(rows)), np.empty(len(rows), dtype=int)
    for start in range(0, len(rows), 256):
        chunk = rows[start : start + 256]
        block = space.distances(chunk, candidates)
        block[chunk[:, None] == candidates[None, :]] = np.inf
        best = block.argmin(axis=1)
        distances[start : start + len(chunk)] = block[np.arange(len(chunk)), best]
        found[start : start + len(chunk)] = candidates[best]
    return distances, found


@dataclass
class ClusterSplit(SplittingStrategy):
    """Whole HDBSCAN clusters in test (leave-cluster-out), or one fold of k over clusters.

    ``held_out_clusters``: these clusters; else ``n_folds``/``fold``: clusters dealt into
    ``n_folds`` folds balanced by parent count (largest first, to the smallest fold), and fold
    ``fold`` is the test; else clusters in seeded order, each taken if it brings the test
    count closer to ``n_test`` (the first one taken is the first no larger than 2·``n_test``).
    """

    held_out_clusters: list[int] | None = None
    n_folds: int | None = None
    fold: int | None = None
    name: ClassVar[str] = "cluster"
    needs: ClassVar[tuple[str, ...]] = ("clustering",)

    def select_test(self, parents, n_test, rng):
        self._require(parents)
        members = parents.clustering.members()
        n_clusters = len(members)
        if n_clusters < 2:
            raise ValueError(f"HDBSCAN found {n_clusters} cluster(s); leave-cluster-out needs at least 2 "
                             f"(lower split.min_cluster_size or use split.noise='singleton')")
        if self.held_out_clusters is not None:
            unknown = sorted(set(self.held_out_clusters) - set(members))
            if unknown or not self.held_out_clusters:
                raise ValueError(f"split.held_out_clusters {self.held_out_clusters}: clusters {unknown} do not "
                                 f"exist; valid clusters are 0..{n_clusters - 1}")
            chosen = sorted(set(self.held_out_clusters))
        elif self.n_folds is not None:
            if n_clusters < self.n_folds:
                raise ValueError(f"split.n_folds={self.n_folds} but HDBSCAN found only {n_clusters} clusters; "
                                 f"use at most {n_clusters} folds or lower split.min_cluster_size")
            chosen = self._fold_clusters(members, rng)
        else:
            chosen = self._clusters_near_target(members, n_test, rng)
        test = np.sort(np.concatenate([members[c] for c in chosen]))
        if len(test) == len(parents):
            raise ValueError(f"held-out clusters {chosen} contain every parent; nothing is left to train on")
        return Selection(test, details={"held_out_clusters": chosen, "n_clusters": n_clusters})

    @staticmethod
    def _clusters_near_target(members: dict[int, np.ndarray], n_test: int, rng: np.random.Generator) -> list[int]:
        order = [int(c) for c in rng.permutation(len(members))]
        fitting = [c for c in order if len(members[c]) <= 2 * n_test]
        first = fitting[0] if fitting else min(order, key=lambda c: len(members[c]))
        chosen, total = [first], len(members[first])
        for cluster in order:
            size = len(members[cluster])
            if cluster != first and abs(total + size - n_test) < abs(total - n_test):
                chosen.append(cluster)
                total += size
        return sorted(chosen)

    def _fold_clusters(self, members: dict[int, np.ndarray], rng: np.random.Generator) -> list[int]:
        shuffled = [int(c) for c in rng.permutation(len(members))]
        by_size = sorted(shuffled, key=lambda c: -len(members[c]))  # stable: seeded tie order
        fold_sizes, folds = [0] * self.n_folds, [[] for _ in range(self.n_folds)]
        for cluster in by_size:
            target = int(np.argmin(fold_sizes))
            folds[target].append(cluster)
            fold_sizes[target] += len(members[cluster])
        return sorted(folds[self.fold])


@dataclass
class ElementSplit(SplittingStrategy):
    """Every parent that contains ``element`` goes to test."""

    element: str = ""
    name: ClassVar[str] = "element"

    def select_test(self, parents, n_test, rng):
        test = self._parents_with(parents, self.element)
        return Selection(test, details={"element": self.element})

    @staticmethod
    def _parents_with(parents: ParentSet, element: str) -> np.ndarray:
        if element not in atomic_numbers or element == "X":
            raise ValueError(f"split.element {element!r} is not an element symbol (e.g. 'Zn', 'Cu')")
        test = parents.containing(element)
        present = sorted({e for row in parents.elements for e in row}, key=atomic_numbers.get)
        if len(test) == 0:
            raise ValueError(f"split.element {element!r} is in no parent of this dataset; "
                             f"elements present: {' '.join(present)}")
        if len(test) == len(parents):
            raise ValueError(f"split.element {element!r} is in every parent; nothing is left to train on")
        return test


@dataclass
class MetalSplit(ElementSplit):
    """Every parent with one metal in test: ``element`` if given (must be a metal), else the
    metal whose parent count is closest to ``n_test`` (ties broken by the seed)."""

    name: ClassVar[str] = "metal"

    def select_test(self, parents, n_test, rng):
        element = self.element
        if element and not (element in atomic_numbers and IS_METAL[atomic_numbers[element]]):
            raise ValueError(f"split.element {element!r} is not a metal; strategy 'metal' holds out a "
                             f"metal (use strategy 'element' for any element)")
        if not element:
            counts = {}
            for row in parents.elements:
                for symbol in row:
                    if IS_METAL[atomic_numbers[symbol]]:
                        counts[symbol] = counts.get(symbol, 0) + 1
            usable = sorted(m for m, c in counts.items() if c < len(parents))
            if not usable:
                raise ValueError("strategy 'metal': no metal is present in some but not all parents")
            tie_break = dict(zip(usable, rng.permutation(len(usable))))
            element = min(usable, key=lambda m: (abs(counts[m] - n_test), tie_break[m]))
        return Selection(self._parents_with(parents, element), details={"element": element})
