"""The dataset store: a directory of lossless extxyz shards, an index and a manifest.

Layout::

    STORE/manifest.json            schema_version, counts, elements, label_method,
                                   has_charges, forces_required, has_forces,
                                   sources, provenance, created_with, content_hash
    STORE/index.parquet            one row per structure (see INDEX_COLUMNS)
    STORE/shards/shard-00000.extxyz ...

Shards are extxyz written by :func:`format_frame` with every float in its shortest
exact representation, so a write → read round trip is bit-exact. The content hash
is sha256 over the shard names and bytes in order; it has no timestamps, so equal
frames give equal hashes. Writes are atomic: everything goes into a temporary
directory next to the target, which is then renamed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import ase
import pandas as pd
from ase import Atoms

from farfield.data.extxyz import format_frame
from farfield.data.readers import iter_frames, normalise_atoms
from farfield.data.records import (
    CHARGES,
    ENERGY,
    FORCES,
    PARENT_ID,
    SOURCE,
    STRUCTURE_ID,
)
from farfield.data.validation import Problem, validate_atoms

__all__ = ["INDEX_COLUMNS", "SCHEMA_VERSION", "DatasetStore", "StoreError", "format_frame",
           "write_store"]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.parquet"
SHARD_DIR = "shards"
INDEX_COLUMNS = ("structure_id", "parent_id", "n_atoms", "formula", "elements",
                 "element_counts", "shard", "frame", "has_charges", "energy_per_atom",
                 "source", "periodic")
_MANIFEST_KEYS = ("schema_version", "n_structures", "n_parents", "n_shards", "elements",
                  "label_method", "content_hash")


class StoreError(ValueError):
    """A directory is not a readable dataset store, or a request does not match it."""


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        farfield_version = version("farfield")
    except PackageNotFoundError:
        farfield_version = "unknown"
    return {"farfield": farfield_version, "ase": ase.__version__}


def _index_row(atoms: Atoms, shard: str, frame: int) -> dict:
    symbols = atoms.get_chemical_symbols()
    counts = {symbol: symbols.count(symbol) for symbol in sorted(set(symbols))}
    return {
        "structure_id": atoms.info[STRUCTURE_ID], "parent_id": atoms.info[PARENT_ID],
        "n_atoms": len(atoms), "formula": atoms.get_chemical_formula(mode="hill"),
        "elements": " ".join(counts), "element_counts": json.dumps(counts),
        "shard": shard, "frame": frame, "has_charges": CHARGES in atoms.arrays,
        "energy_per_atom": float(atoms.info[ENERGY]) / len(atoms),
        "source": str(atoms.info.get(SOURCE, "")), "periodic": bool(atoms.pbc.any()),
    }


def _pack_shards(frames: list[Atoms], shard_size: int) -> list[list[Atoms]]:
    """Group frames by parent_id (first-appearance order) and pack groups into shards
    of at most ``shard_size``; a parent larger than a shard spans several."""
    groups: dict[str, list[Atoms]] = {}
    for atoms in frames:
        groups.setdefault(atoms.info[PARENT_ID], []).append(atoms)
    shards: list[list[Atoms]] = [[]]
    for group in groups.values():
        if shards[-1] and len(shards[-1]) + len(group) > shard_size:
            shards.append([])
        for atoms in group:
            if len(shards[-1]) == shard_size:
                shards.append([])
            shards[-1].append(atoms)
    return [shard for shard in shards if shard]


def _prepare(frames: Iterable[Atoms], require_forces: bool = True) -> list[Atoms]:
    """Copies of ``frames`` in record form, validated, with unique structure_ids."""
    prepared, problems, first_seen = [], [], {}
    for position, original in enumerate(frames):
        atoms = original.copy()
        atoms.calc = original.calc
        normalise_atoms(atoms)
        problems += validate_atoms(atoms, file="frames", frame=position,
                                   require_forces=require_forces)
        structure_id = atoms.info[STRUCTURE_ID]
        if structure_id in first_seen:
            raise ValueError(
                f"duplicate structure_id {structure_id!r}: frames {first_seen[structure_id]} and "
                f"{position} (sources {prepared[first_seen[structure_id]].info.get(SOURCE)!r}, "
                f"{atoms.info.get(SOURCE)!r}); structure_ids must be unique in a store")
        first_seen[structure_id] = position
        prepared.append(atoms)
    if problems:
        shown = "\n".join(f"  {problem}" for problem in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ValueError(f"{len(problems)} problem(s) in the frames to store:\n{shown}{more}")
    if not prepared:
        raise ValueError("no frames to store: got an empty sequence")
    return prepared


def _content_hash(shards: Iterable[tuple[str, bytes]]) -> str:
    """``"sha256:<hex>"`` over (name, length, bytes) of each shard, in order."""
    digest = hashlib.sha256()
    for name, data in shards:
        digest.update(f"{name}\n{len(data)}\n".encode() + data)
    return f"sha256:{digest.hexdigest()}"


def _replace_dir(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def write_store(frames: Iterable[Atoms], out: str | Path, *, label_method: str,
                shard_size: int = 256, sources: list[str] | None = None,
                provenance: dict | None = None, overwrite: bool = False,
                extra_files: dict[str, str] | None = None,
                require_forces: bool = True) -> DatasetStore:
    """Validate ``frames`` and write them as a new store at ``out``; returns it opened.

    ``label_method``: how energies/forces were computed (e.g. ``"GFN2-xTB"``).
    ``shard_size``: frames per shard (a parent_id's frames are kept together when
    they fit). ``sources``: defaults to the sorted distinct ``info["source"]``.
    ``extra_files``: name → text written next to the manifest (not hashed).
    ``require_forces``: False accepts energy-only frames (no forces); the manifest
    records it as ``forces_required`` next to ``has_forces`` counts.
    Raises ValueError on invalid frames or duplicate structure_ids, FileExistsError
    if ``out`` exists and ``overwrite`` is False. The input frames are not modified.
    """
    out = Path(out)
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass overwrite=True "
                                  f"(--overwrite) to replace it")
        if not (out / MANIFEST).is_file() and (not out.is_dir() or any(out.iterdir())):
            raise StoreError(f"refusing to overwrite {out}: it is not a dataset store")
    prepared = _prepare(frames, require_forces)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / SHARD_DIR).mkdir(parents=True)
        written, rows = [], []
        shards = _pack_shards(prepared, shard_size)
        for number, shard in enumerate(shards):
            name = f"shard-{number:05d}.extxyz"
            data = "".join(format_frame(atoms) for atoms in shard).encode("utf-8")
            (tmp / SHARD_DIR / name).write_bytes(data)
            written.append((name, data))
            rows += [_index_row(atoms, name, frame) for frame, atoms in enumerate(shard)]
        index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
        index.to_parquet(tmp / INDEX, index=False)
        with_charges = int(index["has_charges"].sum())
        with_forces = sum(FORCES in atoms.arrays for atoms in prepared)
        manifest = {
            "schema_version": SCHEMA_VERSION, "n_structures": len(index),
            "n_parents": int(index["parent_id"].nunique()), "n_shards": len(shards),
            "elements": sorted({e for row in index["elements"] for e in row.split()}),
            "label_method": label_method,
            "has_charges": {"with": with_charges, "without": len(index) - with_charges},
            "forces_required": bool(require_forces),
            "has_forces": {"with": with_forces, "without": len(index) - with_forces},
            "sources": list(sources) if sources is not None
            else sorted(set(index["source"]) - {""}),
            "provenance": provenance or {}, "created_with": _versions(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "content_hash": _content_hash(written),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DatasetStore.open(out)


class DatasetStore:
    """A dataset store opened for reading (see the module docstring for the layout).

    ``path``: the store directory; ``manifest``: the parsed manifest.json;
    ``index``: one row per structure, in store order (columns INDEX_COLUMNS).
    """

    def __init__(self, path: Path, manifest: dict, index: pd.DataFrame):
        self.path, self.manifest, self.index = path, manifest, index

    @classmethod
    def open(cls, path: str | Path) -> DatasetStore:
        """Open the store at ``path``; StoreError naming the path if it is not one."""
        path = Path(path)
        hint = "expected a directory written by write_store / `farfield data import`"
        if not path.is_dir():
            what = "not a directory" if path.exists() else "no such directory"
            raise StoreError(f"{path} is not a dataset store: {what} ({hint})")
        if not (path / MANIFEST).is_file():
            raise StoreError(f"{path} is not a dataset store: {MANIFEST} is missing ({hint})")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise StoreError(f"{path / MANIFEST}: not valid JSON: {err}") from err
        missing = [key for key in _MANIFEST_KEYS if key not in manifest] \
            if isinstance(manifest, dict) else list(_MANIFEST_KEYS)
        if missing:
            raise StoreError(f"{path / MANIFEST}: missing keys {missing} ({hint})")
        if manifest["schema_version"] != SCHEMA_VERSION:
            raise StoreError(f"{path / MANIFEST}: schema_version {manifest['schema_version']!r} "
                             f"is not supported; expected {SCHEMA_VERSION}")
        try:
            index = pd.read_parquet(path / INDEX)
        except (OSError, ValueError) as err:
            raise StoreError(f"{path / INDEX}: cannot read the index: {err}") from err
        absent = [column for column in INDEX_COLUMNS if column not in index.columns]
        if absent:
            raise StoreError(f"{path / INDEX}: missing columns {absent}")
        if len(index) != manifest["n_structures"]:
            raise StoreError(f"{path}: index has {len(index)} rows but the manifest says "
                             f"n_structures={manifest['n_structures']}")
        for shard in index["shard"].unique():
            if not (path / SHARD_DIR / shard).is_file():
                raise StoreError(f"{path}: shard {SHARD_DIR}/{shard} named in the index is missing")
        return cls(path, manifest, index)

    @property
    def content_hash(self) -> str:
        """``"sha256:<hex>"`` over the shard contents, from the manifest."""
        return self.manifest["content_hash"]

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"DatasetStore({str(self.path)!r}, n_structures={len(self)}, {self.content_hash})"

    def shard_names(self) -> list[str]:
        """Shard file names in store order."""
        return list(dict.fromkeys(self.index["shard"]))

    def read_shard(self, name: str) -> list[Atoms]:
        """The frames of shard ``name`` (a name of :meth:`shard_names`), in file order."""
        frames = []
        for frame, item in iter_frames(self.path / SHARD_DIR / name, format="extxyz"):
            if isinstance(item, Problem):
                raise StoreError(f"{self.path}: the store is corrupted: {item}")
            frames.append(item)
        return frames

    def iter_shards(self) -> Iterator[tuple[str, list[Atoms]]]:
        """Yield ``(shard name, frames)`` for every shard, in store order."""
        for name in self.shard_names():
            yield name, self.read_shard(name)

    def _read_rows(self, rows: pd.DataFrame) -> list[Atoms]:
        loaded: dict[str, list[Atoms]] = {}
        result = []
        for shard, frame, structure_id in zip(rows["shard"], rows["frame"], rows["structure_id"]):
            if shard not in loaded:
                loaded = {shard: self.read_shard(shard)}
            atoms = loaded[shard][int(frame)]
            if atoms.info.get(STRUCTURE_ID) != structure_id:
                raise StoreError(f"{self.path}: {shard} frame {frame} holds "
                                 f"{atoms.info.get(STRUCTURE_ID)!r}, index says {structure_id!r}")
            result.append(atoms)
        return result

    def _select(self, column: str, values: Iterable[str] | None) -> pd.DataFrame:
        if values is None:
            return self.index
        wanted = [values] if isinstance(values, str) else list(values)
        missing = sorted(set(wanted) - set(self.index[column]))
        if missing:
            raise StoreError(f"{self.path}: {len(missing)} {column}(s) not in the store, "
                             f"e.g. {missing[:5]}")
        return self.index[self.index[column].isin(wanted)]

    def read(self, structure_ids: Iterable[str] | None = None) -> list[Atoms]:
        """Structures with the given ids (all if None), in index order."""
        return self._read_rows(self._select("structure_id", structure_ids))

    def read_parents(self, parent_ids: Iterable[str]) -> list[Atoms]:
        """All structures derived from the given parent_ids, in index order."""
        return self._read_rows(self._select("parent_id", parent_ids))

    def verify(self) -> None:
        """Recompute the content hash from the shards; StoreError if it differs."""
        shards = ((name, (self.path / SHARD_DIR / name).read_bytes())
                  for name in self.shard_names())
        if _content_hash(shards) != self.content_hash:
            raise StoreError(f"{self.path}: shard contents do not match the manifest's "
                             f"content_hash {self.content_hash}; the store was modified")
