"""``farfield.analysis.placement``: the report places each parent in the split's own chemical
space — the SOAP cosine and KMeans clusters of the paper's protocol, farfield's joint metric
and HDBSCAN otherwise.

The store is the crafted one of tests/test_splits_paper.py (24 parents: G2 molecules plus a
metal atom in an 8 Å cell, Cd in only two of them). Expected values come from the split
itself (its per-parent table, written by ``make_split`` while splitting) and from an
independent numpy computation on ``parent_space``'s vectors, never from the placement code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from farfield.analysis.dataset_context import DatasetContext
from farfield.analysis.placement import parent_placement
from farfield.data.config import SplitConfig
from farfield.data.splitting import Split, make_split, parent_space
from farfield.data.store import write_store
from tests.test_splits_paper import _metal, _parent_frames


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    frames = [f for i in range(24) for f in _parent_frames(i, _metal(i))]
    return write_store(frames, tmp_path_factory.mktemp("placement") / "store", label_method="synthetic")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("descriptors")


def _split_and_placement(store, cache, tmp_path, min_element_parents=None, max_structures=None, **config):
    """The split as a trial logs it (saved and reloaded JSON), its per-parent table, and the
    placement of a fresh analysis (empty params: everything from the split file).
    ``max_structures``: the trial's ``data.max_structures`` (the split sees that prefix of the index)."""
    prefix = None if max_structures is None else store.index["structure_id"].iloc[:max_structures]
    outcome = make_split(store, SplitConfig(**config), cache_dir=cache, min_element_parents=min_element_parents,
                         structure_ids=prefix)
    split = Split.load(outcome.split.save(tmp_path / "split.json"))
    placement = parent_placement(DatasetContext(store), split, {}, cache_dir=cache, max_structures=max_structures)
    return split, outcome.parents.set_index("parent_id"), placement.set_index("parent_id")


def _cosine_nearest(store, cache, split: Split) -> pd.Series:
    """1 − cosine similarity of each val/test parent's mean SOAP to its closest train parent (numpy)."""
    space, _ = parent_space(store, "soap_cosine", cache_dir=cache)
    vectors = pd.DataFrame(space.geometry, index=space.parent_ids.astype(str))
    vectors = vectors.div(np.linalg.norm(vectors.to_numpy(), axis=1), axis=0)
    query = vectors.loc[split.val + split.test].to_numpy()
    train = vectors.loc[split.train].to_numpy()
    return pd.Series(1.0 - (query @ train.T).max(axis=1), index=split.val + split.test)


def test_kmeans_soap_cosine_placement_is_the_splits_own(store, cache, tmp_path):
    # Cd occurs in 2 parents: min_element_parents=3 drops them, so KMeans ran on 22 parents
    split, table, placement = _split_and_placement(store, cache, tmp_path, min_element_parents=3,
                                                   strategy="kmeans", metric="soap_cosine", n_clusters=6, seed=3)
    assert split.parameters["metric"] == "soap_cosine" and split.parameters["clustering"]["method"] == "kmeans"
    in_split = table.index
    assert len(in_split) == 22 and len(placement) == 24
    # clusters: the split's own KMeans labels for its parents, -1 for the two dropped ones
    assert (placement.loc[in_split, "cluster"] == table["cluster"]).all()
    assert set(placement.loc[placement.index.difference(in_split), "cluster"]) == {-1}
    held_out = set(split.parameters["selection"]["held_out_clusters"])
    in_held_out = set(placement.index[placement["cluster"].isin(held_out)])
    assert set(split.test) <= in_held_out <= set(split.test) | set(split.excluded)
    # distances: 1 - cosine, as the split measured them and as numpy does
    queried = split.val + split.test
    np.testing.assert_allclose(placement.loc[queried, "nearest_train_distance"],
                               table.loc[queried, "nearest_train_distance"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(placement.loc[queried, "nearest_train_distance"],
                               _cosine_nearest(store, cache, split).loc[queried], rtol=1e-9, atol=1e-12)
    assert placement.loc[split.train + split.excluded, "nearest_train_distance"].isna().all()
    assert set(placement.loc[queried, "nearest_train_parent"]) <= set(split.train)
    assert (placement.loc[split.test, "side"] == "test").all()


@pytest.mark.parametrize("metric", ["soap_cosine", "joint"])
def test_farthest_from_seed_placement_is_the_splits_own(store, cache, tmp_path, metric):
    split, table, placement = _split_and_placement(store, cache, tmp_path, strategy="farthest_from_seed",
                                                   metric=metric, seed=1)
    assert len(placement) == len(table) == 24
    queried = split.val + split.test
    np.testing.assert_allclose(placement.loc[queried, "nearest_train_distance"],
                               table.loc[queried, "nearest_train_distance"], rtol=1e-9, atol=1e-12)
    if metric == "soap_cosine":
        np.testing.assert_allclose(placement.loc[queried, "nearest_train_distance"],
                                   _cosine_nearest(store, cache, split).loc[queried], rtol=1e-9, atol=1e-12)
        assert placement["nearest_train_distance"].max() <= 2.0
    # HDBSCAN clusters as the split recorded them (as a partition and as labels)
    assert (placement.loc[table.index, "cluster"] == table["cluster"]).all()
    # the split file's own statistics (written at 6 significant digits) of the test distances
    summary = split.statistics["nearest_train_distance"]
    assert summary["metric"] == metric
    test_distances = placement.loc[split.test, "nearest_train_distance"].to_numpy()
    for name, value in (("q0", test_distances.min()), ("q100", test_distances.max()),
                        ("mean", test_distances.mean())):
        assert summary["test"][name] == pytest.approx(value, rel=1e-5)


@pytest.mark.parametrize("subset", ["min_element_parents", "max_structures"])
def test_joint_metric_placement_of_a_split_over_part_of_the_store(store, cache, tmp_path, subset):
    # the joint metric standardises its descriptors and HDBSCAN clusters over the parents it is
    # given: a split made over part of the store must be placed in that part's space
    options = {"min_element_parents": 3} if subset == "min_element_parents" else {"max_structures": 40}
    split, table, placement = _split_and_placement(store, cache, tmp_path, strategy="max_separation",
                                                   metric="joint", test=0.3, val=0.1, train=0.6, seed=2, **options)
    n_parents = store.index["parent_id"].nunique()
    assert len(table) < n_parents and len(placement) == n_parents
    queried = split.val + split.test
    np.testing.assert_allclose(placement.loc[queried, "nearest_train_distance"],
                               table.loc[queried, "nearest_train_distance"], rtol=1e-9, atol=1e-12)
    assert (placement.loc[table.index, "cluster"] == table["cluster"]).all()
    outside = placement.index.difference(table.index)
    assert set(placement.loc[outside, "cluster"]) == {-1} and placement.loc[outside, "nearest_train_distance"].isna().all()
