"""Descriptors over dataset shards in Ray tasks, cached by dataset hash.

A thin wrapper around :func:`farfield.data.ray_runtime.map_shards`: one Ray task per shard
calls the descriptor settings' ``describe`` (``DescriptorSettings`` for the joint metric,
``MeanSoapSettings`` for the paper's SOAP cosine) on the frames ``load`` makes of the
shard's payload (e.g. a list of structure ids, or CIF texts) inside the task, so reading
and parsing are parallel too; at most ``n_workers`` shards run at once.
``n_workers=0`` runs everything in this process (no Ray). The structures described are
``settings.select(store.index)`` (every structure, or one per parent). The cache file is
``<cache_dir>/<dataset hash[:16]>-<settings key>.npz``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ase import Atoms
from farfield.data.chemspace.descriptors import DescriptorKind, DescriptorSettings, FrameDescriptors
from farfield.data.ray_runtime import map_shards
from farfield.data.store import DatasetStore

__all__ = ["describe_shards", "descriptor_cache_path", "store_descriptors"]


class _ShardWorker:
    """Body of a shard's task: ``load`` then describe the shard."""

    def __init__(self, settings: DescriptorKind, load: Callable[[Any], list[Atoms]]):
        self.settings = settings
        self.load = load

    def __call__(self, payload: Any) -> FrameDescriptors:
        return self.settings.describe(self.load(payload))


def describe_shards(shards: Sequence[Any], load: Callable[[Any], list[Atoms]],
                    settings: DescriptorKind | None = None, n_workers: int = 2,
                    address: str | None = None) -> FrameDescriptors:
    """Descriptors of every structure of every shard, in shard order.

    ``shards``: payloads, one per shard; ``load(payload)`` → frames (runs in the worker);
    ``n_workers``: shards described at once in Ray tasks (one CPU each), 0 = in this process.
    """
    settings = settings or DescriptorSettings()
    if not isinstance(n_workers, int) or n_workers < 0:
        raise ValueError(f"n_workers must be an integer >= 0, got {n_workers!r}")
    if not shards:
        raise ValueError("describe_shards: no shards given (the dataset is empty?)")
    parts = dict(map_shards(_ShardWorker(settings, load), shards, n_workers=n_workers, address=address,
                            max_in_flight=n_workers or None))
    return FrameDescriptors.concat([parts[position] for position in range(len(shards))])


class _StoreReader:
    """``load`` for store shards: payload = structure ids; opens the store once per copy."""

    def __init__(self, path: str):
        self.path, self._store = path, None

    def __call__(self, structure_ids: list[str]) -> list[Atoms]:
        if self._store is None:
            self._store = DatasetStore.open(self.path)
        return self._store.read(structure_ids)


def descriptor_cache_path(store: DatasetStore, settings: DescriptorKind, cache_dir: str | Path) -> Path:
    """Where :func:`store_descriptors` caches ``store``'s descriptors for ``settings``."""
    digest = store.content_hash.removeprefix("sha256:")[:16]
    return Path(cache_dir) / f"{digest}-{settings.key()}.npz"


def store_descriptors(store: DatasetStore, settings: DescriptorKind | None = None,
                      cache_dir: str | Path | None = None, n_workers: int = 2,
                      address: str | None = None) -> FrameDescriptors:
    """Descriptors of the structures ``settings.select`` picks from ``store`` (index order; by
    default every structure), from the cache if present.

    ``cache_dir``: folder of cached ``.npz`` files (None = no cache). A cached file is
    used only if its recorded dataset hash and settings match.
    """
    settings = settings or DescriptorSettings()
    path = descriptor_cache_path(store, settings, cache_dir) if cache_dir is not None else None
    metadata = {"dataset_hash": store.content_hash, "settings": settings.model_dump()}
    chosen = settings.select(store.index)
    if path is not None and path.is_file():
        cached, recorded = FrameDescriptors.load(path)
        if recorded == metadata and list(cached.structure_ids) == list(chosen["structure_id"]):
            return cached
    groups = chosen.groupby("shard", sort=False)["structure_id"]
    shards = [list(ids) for _, ids in groups]
    result = describe_shards(shards, _StoreReader(str(Path(store.path).resolve())), settings,
                             n_workers, address)
    if path is not None:
        result.save(path, metadata)
    return result
