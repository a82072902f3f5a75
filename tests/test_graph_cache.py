"""The per-shard graph cache: same graphs as on the fly, reuse, keys, corruption, Ray = in process.

The store mixes 40 bundled MOF frames with the periodic NaCl and the non-periodic water
dimer of tests/data, in shards of 8 frames (6 shards), so the Ray path has several tasks.
"""

from __future__ import annotations

import logging
import os
from dataclasses import fields
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from farfield.data.datasets import bundled_store
from farfield.data.store import write_store
from farfield.models import ModelConfig, build_potential
from farfield.data.graphs import GraphCache, graph_cache_dir, neighbor_pairs, precompute_graphs
from farfield.data.graphs import cache as graph_cache
from farfield.models.graph import AtomicGraph, collate
from farfield.models.training import build_graphs, graphs_from_cache
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.trial_pipeline import graph_cache as trial_graph_cache

DATA = Path(__file__).parent / "data"
CUTOFF = 5.0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    bundled = bundled_store(tmp_path_factory.mktemp("ws")).read()[:40]
    extra = [ase.io.read(DATA / "nacl_rocksalt.extxyz"), ase.io.read(DATA / "water_dimer.extxyz")]
    return write_store(bundled + extra, tmp_path_factory.mktemp("stores") / "mixed", label_method="test",
                       shard_size=8)


@pytest.fixture(scope="module")
def frames(store):
    return store.read()


@pytest.fixture(scope="module")
def ray_session(isolated_home):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _assert_same_graph(a: AtomicGraph, b: AtomicGraph) -> None:
    for f in fields(AtomicGraph):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.shape == y.shape, f.name
            assert torch.equal(torch.nan_to_num(x, nan=-999.0), torch.nan_to_num(y, nan=-999.0)), f.name
        else:
            assert x == y, f.name


def _graphs(cache: GraphCache, structure_ids: list[str], dtype: torch.dtype = torch.float64) -> list[AtomicGraph]:
    return graphs_from_cache(cache, {"": structure_ids}, dtype)[""]


def _file_arrays(cache: GraphCache) -> dict[str, dict[str, np.ndarray]]:
    return {shard: cache.load(shard) for shard in cache.store.shard_names()}


def test_cached_graphs_equal_on_the_fly_graphs_and_model_outputs(store, frames, tmp_path):
    assert len(store.shard_names()) == 6
    cache = precompute_graphs(store, CUTOFF, tmp_path, progress=False)
    assert cache.computed == store.shard_names()
    ids = store.index["structure_id"].tolist()
    for dtype in (torch.float32, torch.float64):
        cached = _graphs(cache, ids, dtype)
        fresh = build_graphs(frames, CUTOFF, dtype)
        for a, b in zip(cached, fresh, strict=True):
            _assert_same_graph(a, b)
    # the edges are exactly vesin's, structure by structure (periodic and not)
    for atoms, graph in zip(frames, _graphs(cache, ids), strict=True):
        pairs = neighbor_pairs(atoms.positions, atoms.cell.array, atoms.pbc, CUTOFF)
        np.testing.assert_array_equal(graph.edge_index.numpy(), np.stack([pairs.center, pairs.neighbor]))
        np.testing.assert_array_equal(graph.cell_shifts.numpy(), pairs.cell_shifts)
    assert not frames[-1].pbc.any() and _graphs(cache, [ids[-1]])[0].edge_index.shape[1] > 0

    # same batches → bit-identical energies and forces (float32 model, as trained)
    potential = build_potential(ModelConfig(channels=8, layers=2, cutoff=CUTOFF, dtype="float32"))
    order = ids[::-1][:12]  # any order: graphs come back in the order asked
    batch_cached = collate(_graphs(cache, order, torch.float32))
    batch_fresh = collate(build_graphs(store.read(order)[::-1], CUTOFF, torch.float32))
    assert batch_cached.structure_ids == order == batch_fresh.structure_ids
    out_cached = potential(batch_cached, compute_forces=True)
    out_fresh = potential(batch_fresh, compute_forces=True)
    assert torch.equal(out_cached["energy"], out_fresh["energy"])
    assert torch.equal(out_cached["forces"], out_fresh["forces"])


def test_rerun_reuses_files_and_keys_follow_dataset_and_cutoff(store, tmp_path, monkeypatch, frames):
    first = precompute_graphs(store, CUTOFF, tmp_path, progress=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.directory.glob("*.npz")}
    assert len(mtimes) == 6 and (first.directory / "manifest.json").is_file()

    def no_compute(*args, **kwargs):
        raise AssertionError("a shard was recomputed although its cache file is valid")

    with monkeypatch.context() as patch:
        patch.setattr(graph_cache, "shard_arrays", no_compute)
        again = precompute_graphs(store, CUTOFF, tmp_path, progress=False)
        assert again.computed == [] and again.directory == first.directory
        _graphs(again, store.index["structure_id"].tolist())  # reading needs no computing either
    assert {p.name: p.stat().st_mtime_ns for p in first.directory.glob("*.npz")} == mtimes

    manifest = (first.directory / "manifest.json").read_text()
    assert store.content_hash in manifest and '"cutoff": 5.0' in manifest
    smaller = precompute_graphs(store, 4.0, tmp_path, progress=False)
    assert smaller.directory != first.directory and smaller.computed == store.shard_names()
    assert graph_cache_dir(store, 5.0, tmp_path) != graph_cache_dir(store, 5.000001, tmp_path)
    assert _graphs(smaller, [frames[0].info["structure_id"]])[0].cutoff == 4.0
    other = write_store(frames[:8], tmp_path / "other", label_method="test", shard_size=8)
    assert graph_cache_dir(other, CUTOFF, tmp_path) != first.directory
    with pytest.raises(ValueError, match="cutoff must be > 0"):
        graph_cache_dir(store, 0.0, tmp_path)


def test_partial_and_corrupted_files_are_recomputed(store, frames, tmp_path, caplog):
    cache = precompute_graphs(store, CUTOFF, tmp_path, progress=False)
    reference = _file_arrays(cache)
    shards = store.shard_names()
    truncated, flipped = cache.path(shards[1]), cache.path(shards[3])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])  # a partial write
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside an array: only the checksum sees it
    flipped.write_bytes(bytes(data))

    again = GraphCache(store, CUTOFF, tmp_path)
    assert again.ensure(progress=False) == [shards[1]]
    with caplog.at_level(logging.WARNING):
        graphs = _graphs(again, store.index["structure_id"].tolist())
    assert again.computed == [shards[1], shards[3]]
    assert "checksum mismatch" in caplog.text or "unreadable" in caplog.text
    for a, b in zip(graphs, build_graphs(frames, CUTOFF, torch.float64), strict=True):
        _assert_same_graph(a, b)
    for shard, arrays in _file_arrays(again).items():
        assert arrays.keys() == reference[shard].keys()
        for name in arrays:
            np.testing.assert_array_equal(arrays[name], reference[shard][name])
    assert not [p for p in cache.directory.iterdir() if ".tmp-" in p.name]  # no temporary files left


def test_ray_tasks_write_the_same_files_as_in_process(store, ray_session, tmp_path, monkeypatch):
    local = precompute_graphs(store, CUTOFF, tmp_path / "local", use_ray=False, progress=False)
    with monkeypatch.context() as patch:  # prove the Ray path ran: nothing may be computed in this process
        patch.setattr(GraphCache, "_compute_here", lambda self, shard: pytest.fail("computed in process"))
        on_ray = precompute_graphs(store, CUTOFF, tmp_path / "ray", use_ray=True, progress=False)
    assert sorted(on_ray.computed) == sorted(store.shard_names())
    ray_files, local_files = _file_arrays(on_ray), _file_arrays(local)
    for shard in store.shard_names():
        for name, array in local_files[shard].items():
            np.testing.assert_array_equal(ray_files[shard][name], array)


def test_a_trial_caches_only_the_shards_it_reads(store, tmp_path):
    config = TrialConfig.model_validate({"name": "t", "workspace": str(tmp_path), "data": {"max_structures": 10},
                                         "model": {"cutoff": 4.5}})
    cache = trial_graph_cache(config, store)
    assert cache.computed == store.shard_names()[:2]  # frames 0-9 lie in the first two shards
    assert cache.directory.parent == tmp_path / "cache" / "graphs"
    assert os.path.basename(cache.directory).endswith("-rc4.5-f1")
