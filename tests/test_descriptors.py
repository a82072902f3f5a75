"""Descriptors, the joint metric and clustering: invariances, standardisation, Ray sharding, cache.

One Ray instance for the module (HOME isolated: Ray 2.60 writes an auth token there),
shut down at the end.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule

from farfield.data.chemspace import (
    ChemicalSpace,
    DescriptorSettings,
    FrameDescriptors,
    chemical_space,
    cluster_parents,
    describe_frames,
    describe_shards,
    descriptor_cache_path,
    store_descriptors,
)
from farfield.data.chemspace import sharded
from farfield.data.chemspace.metric import composition_features
from farfield.data.datasets import bundled_store

EXACT = DescriptorSettings(max_centers=None)


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """Small matrices: threaded BLAS is up to 100x slower on a busy 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return bundled_store(tmp_path_factory.mktemp("workspace"))


@pytest.fixture(scope="module")
def ray_session(isolated_home):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def test_geometry_descriptor_is_rotation_translation_permutation_invariant(mof_cell):
    reference = describe_frames([mof_cell], EXACT).geometry[0]
    moved = mof_cell.copy()
    rotation = _random_rotation(3)
    moved.set_cell(moved.cell.array @ rotation.T, scale_atoms=False)
    moved.positions = moved.positions @ rotation.T + np.array([0.3, -1.1, 2.0])
    moved = moved[np.random.default_rng(4).permutation(len(moved))]
    changed = describe_frames([moved], EXACT).geometry[0]
    np.testing.assert_allclose(changed, reference, atol=1e-8)
    assert np.linalg.norm(reference) == pytest.approx(1.0)


def test_geometry_descriptor_sees_geometry(mof_cell):
    squeezed = mof_cell.copy()
    squeezed.set_cell(mof_cell.cell.array * 0.85, scale_atoms=True)
    a, b = describe_frames([mof_cell, squeezed], EXACT).geometry
    assert _cosine(a, b) < 0.999


def test_centre_subsampling_approximates_the_full_average(mof_cell):
    big = mof_cell.repeat((3, 2, 2))
    big.rattle(0.05, seed=5)
    full = describe_frames([big], EXACT).geometry[0]
    sampled = describe_frames([big], DescriptorSettings(max_centers=64)).geometry[0]
    again = describe_frames([big], DescriptorSettings(max_centers=64)).geometry[0]
    assert _cosine(full, sampled) > 0.98
    np.testing.assert_array_equal(sampled, again)  # seeded by structure id


def test_molecules_and_mixed_pbc(water_dimer):
    result = describe_frames([water_dimer, molecule("CH4")], EXACT)
    assert result.geometry.shape[0] == 2 and np.all(np.isfinite(result.geometry))
    slab = water_dimer.copy()
    slab.cell = [10, 10, 10]
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match="mixed"):
        describe_frames([slab], EXACT)


def test_composition_features_match_hand_values(nacl_cell):
    counts = describe_frames([nacl_cell], EXACT).element_counts
    features, names = composition_features(counts)
    row = dict(zip(names, features[0]))
    assert row["fraction_Na"] == pytest.approx(0.5) and row["fraction_Cl"] == pytest.approx(0.5)
    assert row["electronegativity_mean"] == pytest.approx((0.93 + 3.16) / 2)
    assert row["electronegativity_var"] == pytest.approx(((3.16 - 0.93) / 2) ** 2)
    assert row["metal_fraction"] == pytest.approx(0.5)


def _toy_descriptors(n_parents: int = 12, per_parent: int = 2, seed: int = 0) -> FrameDescriptors:
    rng = np.random.default_rng(seed)
    n = n_parents * per_parent
    counts = np.zeros((n, 119), dtype=np.int32)
    counts[:, [1, 6, 8]] = rng.integers(1, 20, size=(n, 3))
    counts[::3, 30] = 1
    return FrameDescriptors(
        structure_ids=np.array([f"s{i}" for i in range(n)]),
        parent_ids=np.array([f"p{i // per_parent:02d}" for i in range(n)]),
        n_atoms=counts.sum(axis=1), element_counts=counts, geometry=rng.normal(size=(n, 7)))


def test_joint_metric_blocks_are_standardised_and_weighted():
    descriptors = _toy_descriptors()
    space = chemical_space(descriptors, weight=0.5)
    rows = np.arange(len(space))
    for block in (space.geometry, space.composition):
        diffs = block[:, None, :] - block[None, :, :]
        mean_squared = (diffs**2).sum(-1).sum() / (len(block) * (len(block) - 1))
        assert mean_squared == pytest.approx(2.0 * len(block) / (len(block) - 1))
    geometry_only = chemical_space(descriptors, weight=1.0)
    d_geo = np.linalg.norm(space.geometry[:, None] - space.geometry[None], axis=-1)
    d_comp = np.linalg.norm(space.composition[:, None] - space.composition[None], axis=-1)
    np.testing.assert_allclose(geometry_only.distances(rows, rows), d_geo, atol=1e-6)
    np.testing.assert_allclose(space.distances(rows, rows), np.sqrt(0.5 * d_geo**2 + 0.5 * d_comp**2), atol=1e-6)
    np.testing.assert_allclose(space.nearest_distance(rows[:3], rows[3:]),
                               space.distances(rows[:3], rows[3:]).min(axis=1))


def test_parent_averaging_and_bad_weight():
    descriptors = _toy_descriptors(n_parents=5, per_parent=3)
    space = chemical_space(descriptors)
    assert list(space.parent_ids) == [f"p{i:02d}" for i in range(5)]
    np.testing.assert_array_equal(space.n_configurations, [3] * 5)
    np.testing.assert_allclose(space.n_atoms[1], descriptors.n_atoms[3:6].mean())
    assert space.elements[0] == ("H", "C", "O", "Zn")
    with pytest.raises(ValueError, match="weight"):
        chemical_space(descriptors, weight=1.5)


def test_clustering_keeps_noise_explicit():
    rng = np.random.default_rng(1)
    blobs = np.vstack([rng.normal(c, 0.05, size=(15, 4)) for c in (0.0, 3.0, 6.0)] + [np.full((1, 4), 20.0)])
    n = len(blobs)
    space = ChemicalSpace(np.array([f"p{i}" for i in range(n)]), np.ones(n), np.ones(n, dtype=int),
                          [("C",)] * n, blobs, np.zeros((n, 1)), ["x"], 1.0)
    nearest = cluster_parents(space, min_cluster_size=5, pca_components=3)
    assert nearest.n_clusters == 3 and nearest.is_noise[-1]
    assert nearest.labels[-1] == nearest.labels[-2]  # outlier joins the nearest (last) blob
    singleton = cluster_parents(space, min_cluster_size=5, pca_components=3, noise="singleton")
    assert singleton.n_clusters == 3 + int(singleton.is_noise.sum())
    assert (singleton.labels >= 0).all()
    leaf = cluster_parents(space, min_cluster_size=5, pca_components=3, selection="leaf")
    assert leaf.n_clusters >= 3 and leaf.parameters["selection"] == "leaf"
    with pytest.raises(ValueError, match="min_cluster_size"):
        cluster_parents(space, min_cluster_size=n + 1)
    with pytest.raises(ValueError, match="cluster selection 'tree' is unknown"):
        cluster_parents(space, selection="tree")


def test_ray_shards_match_in_process_and_cache_by_hash(store, ray_session, tmp_path, monkeypatch):
    on_ray = store_descriptors(store, cache_dir=tmp_path, n_workers=2)
    assert list(on_ray.structure_ids) == list(store.index["structure_id"])
    subset = store.index["structure_id"].tolist()[:8]
    local = describe_shards([subset[:5], subset[5:]], store.read, n_workers=0)
    np.testing.assert_allclose(on_ray.geometry[:8], local.geometry, atol=1e-12)
    np.testing.assert_array_equal(on_ray.element_counts[:8], local.element_counts)
    assert descriptor_cache_path(store, DescriptorSettings(), tmp_path).is_file()

    def no_recompute(*args, **kwargs):
        raise AssertionError("descriptors were recomputed although a valid cache exists")

    monkeypatch.setattr(sharded, "describe_shards", no_recompute)
    cached = store_descriptors(store, cache_dir=tmp_path, n_workers=2)
    np.testing.assert_array_equal(cached.geometry, on_ray.geometry)
    with pytest.raises(AssertionError, match="recomputed"):  # other settings: a different cache key
        store_descriptors(store, DescriptorSettings(r_cut=4.0), cache_dir=tmp_path)


def test_describe_shards_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_workers"):
        describe_shards([[1]], lambda payload: [], n_workers=-1)
    with pytest.raises(ValueError, match="no shards"):
        describe_shards([], lambda payload: [], n_workers=0)
