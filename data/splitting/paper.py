"""The paper's chemical-space split strategies (../shared/PAPER.md), next to farfield's own.

- ``kmeans``: KMeans clusters of the parents (``farfield.data.chemspace.kmeans_parents``,
  20 by default); a seeded random half of them (``n_clusters // 2``) is the test set.
- ``farthest_from_seed``: one seeded random parent; the test set is the half of the parents
  (``n // 2``) least similar to it. The seed set is not grown (farfield's ``max_separation``
  peels greedily instead).

Both decide the test size themselves (``split.test`` is not used); the small → large split is
``SizeSplit(max_train_atoms=…)`` in :mod:`.strategies`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from farfield.data.splitting.strategies import Selection, SplittingStrategy

__all__ = ["FarthestFromSeedSplit", "KMeansSplit"]


class KMeansSplit(SplittingStrategy):
    """Test = a random half (``n_clusters // 2``, drawn with the split seed) of the KMeans clusters."""

    name: ClassVar[str] = "kmeans"
    needs: ClassVar[tuple[str, ...]] = ("clustering",)

    def select_test(self, parents, n_test, rng):
        self._require(parents)
        if parents.clustering.parameters.get("method") != "kmeans":
            raise ValueError("split strategy 'kmeans' needs KMeans clusters (farfield.data.chemspace.kmeans_parents); "
                             f"got {parents.clustering.parameters}")
        members = parents.clustering.members()
        held_out = sorted(int(c) for c in rng.permutation(len(members))[: len(members) // 2])
        test = np.sort(np.concatenate([members[c] for c in held_out]))
        return Selection(test, details={"held_out_clusters": held_out, "n_clusters": len(members)})


class FarthestFromSeedSplit(SplittingStrategy):
    """Test = the ``n // 2`` parents farthest (least similar) from one random seed parent;
    ties go to the lower row (parent_id order)."""

    name: ClassVar[str] = "farthest_from_seed"
    needs: ClassVar[tuple[str, ...]] = ("space",)

    def select_test(self, parents, n_test, rng):
        self._require(parents)
        n = len(parents)
        if n < 2:
            raise ValueError(f"split strategy 'farthest_from_seed' needs at least 2 parents, got {n}")
        seed_row = int(rng.integers(n))
        distance = parents.space.distances(np.array([seed_row]), np.arange(n))[0]
        order = np.lexsort((np.arange(n), -distance))
        test = np.sort(order[: n // 2])
        return Selection(test, details={"seed_parent": str(parents.parent_ids[seed_row]),
                                        "min_test_distance": float(f"{distance[test].min():.6g}")})
