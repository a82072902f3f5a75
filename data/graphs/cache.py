"""Graphs of a dataset store precomputed per shard (Ray tasks) and cached by (dataset, cutoff).

Layout (``root`` is ``<workspace>/cache/graphs`` for a trial)::

    root/<content hash[:16]>-rc<cutoff>-f<FORMAT_VERSION>/manifest.json
    root/<content hash[:16]>-rc<cutoff>-f<FORMAT_VERSION>/shard-00000.npz  (one per store shard)

A shard file holds, for every structure of the store shard in frame order, the arrays
of :func:`~farfield.data.graphs.arrays.structure_arrays`: vesin's neighbour list at the
cutoff (``center``, ``neighbor``, integer ``cell_shifts``) and the inputs and labels an
``AtomicGraph`` needs, so training builds its graphs without parsing extxyz or calling
vesin. The cache hands out those arrays (numpy, no torch); ``AtomicGraph.from_arrays`` on
them gives exactly the graph ``AtomicGraph.from_atoms`` gives on the store's frames (same
values, same edge order).

Every file records its dataset hash, cutoff, shard name, format version and vesin version
(``meta``), and a sha256 over its arrays (``checksum``). A file whose meta or structure ids
do not match, that does not open (partial write), or whose checksum fails is recomputed;
files are written to a temporary name and ``os.replace``-d, so concurrent writers (trials of
a sweep) never expose a partial file. A changed dataset or cutoff is a different folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from farfield.data.graphs.arrays import ATOM_KEYS, EDGE_KEYS, STRUCTURE_KEYS, structure_arrays
from farfield.data.graphs.neighbors import check_cutoff
from farfield.data.ray_runtime import map_shards, ray_is_initialized
from farfield.data.store import DatasetStore

__all__ = ["FORMAT_VERSION", "CacheFileError", "GraphCache", "graph_cache_dir", "precompute_graphs", "shard_arrays"]

log = logging.getLogger(__name__)

#: Bumped whenever the file layout or the meaning of an array changes.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Ray is used only when at least this many shards are missing (else starting tasks costs more).
MIN_RAY_SHARDS = 2


def _vesin_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vesin")
    except PackageNotFoundError:
        return "unknown"


def _cutoff_key(cutoff: float) -> str:
    """``repr`` of the cutoff as a float: round-trips, so distinct cutoffs get distinct keys."""
    return repr(check_cutoff(cutoff))


def graph_cache_dir(store: DatasetStore, cutoff: float, root: str | Path) -> Path:
    """The folder caching ``store``'s graphs at ``cutoff`` Å under ``root``."""
    digest = store.content_hash.removeprefix("sha256:")[:16]
    return Path(root) / f"{digest}-rc{_cutoff_key(cutoff)}-f{FORMAT_VERSION}"


def _meta(dataset_hash: str, cutoff: float, shard: str) -> dict:
    return {"format_version": FORMAT_VERSION, "dataset_hash": dataset_hash, "cutoff": float(cutoff),
            "shard": shard, "vesin": _vesin_version()}


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        if name == "checksum":
            continue
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _small_int(values: np.ndarray, fits_int8: bool = False) -> np.ndarray:
    """Lossless narrow copy of an int64 array (int8 or int32) to keep cache files small."""
    if fits_int8 and (values.size == 0 or np.abs(values).max() <= 127):
        return values.astype(np.int8)
    if values.size and np.abs(values).max() >= 2**31:
        return values.astype(np.int64)
    return values.astype(np.int32)


def shard_arrays(frames: Sequence, cutoff: float, dataset_hash: str, shard: str) -> dict[str, np.ndarray]:
    """The cache file content of one shard: its frames' structure arrays concatenated.

    Per-structure arrays get a leading axis (``structure_ids`` for ``structure_id``),
    per-atom and per-edge arrays are concatenated with ``n_atoms`` / ``n_edges`` giving
    each structure's share; plus ``meta`` (JSON) and ``checksum``.
    """
    parts = [structure_arrays(atoms, cutoff) for atoms in frames]
    if not parts:
        raise ValueError(f"shard {shard} has no frames")
    out: dict[str, np.ndarray] = {
        "structure_ids": np.array([str(p["structure_id"]) for p in parts]),
        "n_atoms": np.array([len(p["numbers"]) for p in parts], dtype=np.int64),
        "n_edges": np.array([len(p["center"]) for p in parts], dtype=np.int64),
    }
    for key in STRUCTURE_KEYS[1:]:
        out[key] = np.stack([p[key] for p in parts])
    for key in ATOM_KEYS:
        out[key] = np.concatenate([p[key] for p in parts])
    out["center"] = _small_int(np.concatenate([p["center"] for p in parts]))
    out["neighbor"] = _small_int(np.concatenate([p["neighbor"] for p in parts]))
    out["cell_shifts"] = _small_int(np.concatenate([p["cell_shifts"].reshape(-1, 3) for p in parts]), True)
    out["meta"] = np.array(json.dumps(_meta(dataset_hash, cutoff, shard), sort_keys=True))
    out["checksum"] = np.array(_checksum(out))
    return out


def _compute_shard(store_path: str, shard: str, cutoff: float) -> dict[str, np.ndarray]:
    """Body of a Ray task: read one store shard, build its arrays."""
    store = DatasetStore.open(store_path)
    return shard_arrays(store.read_shard(shard), cutoff, store.content_hash, shard)


class CacheFileError(ValueError):
    """A cache file is unreadable, stale or corrupted."""


class GraphCache:
    """The cached graphs of ``store`` at ``cutoff`` Å under ``root`` (see the module docstring).

    ``computed``: shard names this object computed (and wrote), in order.
    """

    def __init__(self, store: DatasetStore, cutoff: float, root: str | Path):
        self.store, self.cutoff = store, float(cutoff)
        self.directory = graph_cache_dir(store, cutoff, root)
        self.computed: list[str] = []
        self._ids_by_shard: dict[str, list[str]] | None = None

    def __repr__(self) -> str:
        return f"GraphCache({str(self.directory)!r}, cutoff={self.cutoff})"

    def path(self, shard: str) -> Path:
        return self.directory / (Path(shard).stem + ".npz")

    # ---------------------------------------------------------------- checking
    def _expected_ids(self, shard: str) -> list[str]:
        if self._ids_by_shard is None:
            ordered = self.store.index.sort_values(["shard", "frame"], kind="stable")
            self._ids_by_shard = {name: list(group) for name, group in
                                  ordered.groupby("shard", sort=False)["structure_id"]}
        return self._ids_by_shard[shard]

    def _check_header(self, shard: str, meta: str, structure_ids: np.ndarray) -> None:
        expected = _meta(self.store.content_hash, self.cutoff, shard)
        recorded = json.loads(str(meta))
        if recorded != expected:
            changed = sorted(k for k in expected if recorded.get(k) != expected[k])
            raise CacheFileError(f"made for other settings ({', '.join(changed)} differ)")
        if structure_ids.tolist() != self._expected_ids(shard):
            raise CacheFileError("its structure ids do not match the store's shard")

    def is_valid(self, shard: str) -> bool:
        """Cheap check: the file opens as a complete zip and its meta and ids match.
        (The full checksum is verified when the file is read by :meth:`load`.)"""
        try:
            with np.load(self.path(shard), allow_pickle=False) as data:
                self._check_header(shard, data["meta"], data["structure_ids"])
        except Exception:  # noqa: BLE001 - any failure means "recompute"
            return False
        return True

    def load(self, shard: str) -> dict[str, np.ndarray]:
        """The arrays of ``shard``'s cache file, fully verified; CacheFileError otherwise."""
        path = self.path(shard)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError as err:
            raise CacheFileError(f"{path}: missing") from err
        except Exception as err:  # truncated zip, bad CRC, bad header, ...
            raise CacheFileError(f"{path}: unreadable ({type(err).__name__}: {err})") from err
        try:
            self._check_header(shard, arrays["meta"], arrays["structure_ids"])
            if str(arrays["checksum"]) != _checksum(arrays):
                raise CacheFileError("checksum mismatch (the file is corrupted)")
            n_atoms, n_edges = arrays["n_atoms"], arrays["n_edges"]
            if (len(arrays["numbers"]) != n_atoms.sum() or len(arrays["center"]) != n_edges.sum()
                    or len(arrays["energy"]) != len(n_atoms)):
                raise CacheFileError("array lengths do not add up")
        except CacheFileError as err:
            raise CacheFileError(f"{path}: {err}") from err
        except (KeyError, ValueError) as err:
            raise CacheFileError(f"{path}: malformed ({type(err).__name__}: {err})") from err
        return arrays

    # ---------------------------------------------------------------- writing
    def _write_manifest(self) -> None:
        manifest = {"format_version": FORMAT_VERSION, "dataset_hash": self.store.content_hash,
                    "cutoff": self.cutoff, "vesin": _vesin_version(), "store": str(self.store.path),
                    "shards": self.store.shard_names()}
        path = self.directory / MANIFEST
        text = json.dumps(manifest, indent=1) + "\n"
        if path.is_file() and path.read_text() == text:
            return
        tmp = path.with_name(f".{MANIFEST}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.write_text(text)
        os.replace(tmp, path)

    def _write(self, shard: str, arrays: Mapping[str, np.ndarray]) -> None:
        path = self.path(shard)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.computed.append(shard)

    def _compute_here(self, shard: str) -> dict[str, np.ndarray]:
        arrays = shard_arrays(self.store.read_shard(shard), self.cutoff, self.store.content_hash, shard)
        self._write(shard, arrays)
        return arrays

    # ---------------------------------------------------------------- API
    def ensure(self, shards: Iterable[str] | None = None, use_ray: bool = True,
               progress: bool = True) -> list[str]:
        """Compute and write every shard of ``shards`` (all if None) without a valid file.

        ``use_ray``: one Ray task (``num_cpus=1``) per missing shard when Ray is initialised
        in this process and at least ``MIN_RAY_SHARDS`` are missing; otherwise (or with
        False) in this process. Returns the shards computed by this call.
        """
        wanted = self.store.shard_names() if shards is None else list(dict.fromkeys(shards))
        unknown = sorted(set(wanted) - set(self.store.shard_names()))
        if unknown:
            raise ValueError(f"{self.store.path}: no shard(s) {unknown[:5]} in the store")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_manifest()
        missing = [shard for shard in wanted if not self.is_valid(shard)]
        if not missing:
            return []
        before, start = len(self.computed), time.perf_counter()
        bar = tqdm(total=len(missing), desc=f"graphs rc={self.cutoff:g} Å", unit="shard",
                   disable=not progress, leave=False)
        if use_ray and len(missing) >= MIN_RAY_SHARDS and ray_is_initialized():
            self._ensure_on_ray(missing, bar)
        else:
            for shard in missing:
                self._compute_here(shard)
                bar.update()
        bar.close()
        done = self.computed[before:]
        log.info("graph cache %s: computed %d of %d shard(s) in %.1f s", self.directory, len(done),
                 len(wanted), time.perf_counter() - start)
        return done

    def _ensure_on_ray(self, missing: list[str], bar) -> None:
        store_path = str(Path(self.store.path).resolve())
        compute = functools.partial(_compute_shard, store_path, cutoff=self.cutoff)
        for position, arrays in map_shards(compute, missing, n_workers=len(missing)):
            self._write(missing[position], arrays)
            bar.update()

    def iter_arrays(self, sets: Mapping[str, Sequence[str]],
                    progress: bool = False) -> Iterator[tuple[str, int, dict[str, np.ndarray]]]:
        """``(set name, position, arrays)`` for every structure id of every set: the
        :func:`~farfield.data.graphs.arrays.structure_arrays` of ``sets[name][position]``,
        shard by shard (so a consumer turning them into tensors holds one shard at a time).

        Each needed shard file is read (and verified) once; a missing or corrupted file is
        recomputed in this process (with a warning) and rewritten.
        """
        location = dict(zip(self.store.index["structure_id"],
                            zip(self.store.index["shard"], self.store.index["frame"])))
        by_shard: dict[str, list[tuple[str, int, int]]] = {}
        for name, ids in sets.items():
            for position, structure_id in enumerate(ids):
                if structure_id not in location:
                    raise KeyError(f"structure_id {structure_id!r} is not in {self.store.path}")
                shard, frame = location[structure_id]
                by_shard.setdefault(shard, []).append((name, position, int(frame)))
        order = [shard for shard in self.store.shard_names() if shard in by_shard]
        for shard in tqdm(order, desc="graphs", unit="shard", disable=not progress, leave=False):
            try:
                arrays = self.load(shard)
            except CacheFileError as err:
                log.warning("graph cache: %s; recomputing shard %s", err, shard)
                self.directory.mkdir(parents=True, exist_ok=True)
                arrays = self._compute_here(shard)
            views = _StructureViews(arrays)
            for name, position, frame in by_shard[shard]:
                yield name, position, views[frame]

    def array_sets(self, sets: Mapping[str, Sequence[str]],
                   progress: bool = False) -> dict[str, list[dict[str, np.ndarray]]]:
        """``{name: structure arrays of those ids, in the order given}`` (see :meth:`iter_arrays`)."""
        out: dict[str, list] = {name: [None] * len(ids) for name, ids in sets.items()}
        for name, position, arrays in self.iter_arrays(sets, progress):
            out[name][position] = arrays
        return out

    def arrays(self, structure_ids: Sequence[str], progress: bool = False) -> list[dict[str, np.ndarray]]:
        """Structure arrays of ``structure_ids`` in the order given (see :meth:`iter_arrays`)."""
        return self.array_sets({"": structure_ids}, progress)[""]


class _StructureViews:
    """``views[k]``: the :func:`structure_arrays` dict of frame ``k`` of a loaded shard file."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = arrays
        self.atom_start = np.concatenate([[0], np.cumsum(arrays["n_atoms"])])
        self.edge_start = np.concatenate([[0], np.cumsum(arrays["n_edges"])])

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        a, e = self.arrays, slice(self.edge_start[k], self.edge_start[k + 1])
        atoms = slice(self.atom_start[k], self.atom_start[k + 1])
        out = {"structure_id": a["structure_ids"][k]}
        out.update({key: a[key][k].copy() for key in STRUCTURE_KEYS[1:]})
        out.update({key: a[key][atoms].copy() for key in ATOM_KEYS})
        out.update({key: a[key][e].astype(np.int64) for key in EDGE_KEYS})
        return out


def precompute_graphs(store: DatasetStore, cutoff: float, root: str | Path, shards: Iterable[str] | None = None,
                      use_ray: bool = True, progress: bool = True) -> GraphCache:
    """Make sure ``store``'s graphs at ``cutoff`` Å are cached under ``root``; returns the cache.

    ``shards``: only these store shards (default all). ``use_ray``: see :meth:`GraphCache.ensure`.
    Rerunning computes nothing while the files are valid.
    """
    cache = GraphCache(store, cutoff, root)
    cache.ensure(shards, use_ray=use_ray, progress=progress)
    return cache
