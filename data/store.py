"""The dataset store: a directory of lossless extxyz shards, an index and a manifest.

Layout::

    STORE/manifest.json            schema_version, counts, elements, label_method,
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
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import ase
import numpy as np
import pandas as pd
from ase import Atoms
from ase.io.extxyz import key_val_str_to_dict

from farfield.data.readers import iter_frames, normalise_atoms
from farfield.data.records import (
    CHARGES,
    ENERGY,
    FORCES,
    PARENT_ID,
    SOURCE,
    STRESS,
    STRUCTURE_ID,
    TOTAL_CHARGE,
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


# --- lossless extxyz shard format -------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED_INFO = {"Lattice", "Properties", "pbc"}
_RESERVED_COLUMNS = {"species", "pos", "Z", "charge", "move_mask", "symbols"}  # ASE renames
_SKIPPED_ARRAYS = {"numbers", "positions", FORCES, CHARGES}
_COLUMN_TYPES = {"f": "R", "i": "I", "u": "I", "b": "L", "U": "S", "O": "S"}
_INFO_ORDER = (ENERGY, STRESS, TOTAL_CHARGE, STRUCTURE_ID, PARENT_ID, SOURCE)


def _float(value) -> str:
    return repr(float(value))


def _quote(text: str) -> str:
    """Quote/escape ``text`` for ASE's key=value parser (which unescapes ``\\x`` → ``x``)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if escaped != text or not text or any(c in text for c in " '{}[]=,\t"):
        return f'"{escaped}"'
    return text


def _info_value(key: str, value, where: str) -> str:
    """One info value as extxyz text that ASE's parser reads back unchanged."""
    if isinstance(value, (bool, np.bool_)):
        return "T" if value else "F"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _float(value)
    if key in (STRESS, "virial"):  # ASE's special 3x3 keys: 9 values, Fortran order
        full = np.asarray(value, dtype=np.float64)
        if full.shape == (6,):  # Voigt xx yy zz yz xz xy
            full = full[[[0, 5, 4], [5, 1, 3], [4, 3, 2]]]
        if full.shape != (3, 3):
            raise ValueError(f"{where}: info[{key!r}] has shape {full.shape}, expected (3, 3)")
        return '"' + " ".join(map(_float, full.reshape(-1, order="F"))) + '"'
    if isinstance(value, str):
        candidates = [_quote(value), _quote("_JSON " + json.dumps(value))]
    else:
        try:
            as_list = value.tolist() if isinstance(value, np.ndarray) else value
            candidates = [_quote("_JSON " + json.dumps(as_list))]
        except TypeError as err:
            raise ValueError(f"{where}: info[{key!r}] of type {type(value).__name__} cannot be "
                             f"stored (expected numbers, strings, arrays, lists, dicts)") from err
        return candidates[0]
    for text in candidates:
        parsed = key_val_str_to_dict(f"k={text}").get("k")
        if isinstance(parsed, str) and parsed == value:
            return text
    raise ValueError(f"{where}: info[{key!r}]={value!r} cannot be stored losslessly in extxyz")


def _column(name: str, array: np.ndarray, where: str) -> tuple[str, list[list[str]]]:
    """``("name:TYPE:ncols", cells)`` for arrays[name]; positions are written as ``pos``."""
    kind = _COLUMN_TYPES.get(array.dtype.kind)
    if kind is None or array.ndim not in (1, 2) or not _NAME.match(name) \
            or name in _RESERVED_COLUMNS:
        raise ValueError(f"{where}: arrays[{name!r}] (dtype {array.dtype}, shape {array.shape}) "
                         f"cannot be stored; expected a 1-D/2-D numeric, bool or str array")
    table = array.reshape(len(array), -1)
    if kind == "R":
        cells = [[_float(v) for v in row] for row in table.tolist()]
    elif kind == "L":
        cells = [["T" if v else "F" for v in row] for row in table.tolist()]
    else:
        cells = [[str(v) for v in row] for row in table.tolist()]
        if kind == "S" and any(not v or any(c.isspace() for c in v) for r in cells for v in r):
            raise ValueError(f"{where}: arrays[{name!r}] has empty strings or whitespace")
    return f"{'pos' if name == 'positions' else name}:{kind}:{table.shape[1]}", cells


def format_frame(atoms: Atoms) -> str:
    """One record as extxyz text (count, comment, atom lines), exact to the last bit.

    Floats use Python's shortest round-trip repr; strings that ASE would misread as
    numbers or booleans are written as ``_JSON "..."``. Raises ValueError for
    values that cannot be stored.
    """
    where = f"structure {atoms.info.get(STRUCTURE_ID)!r}"
    names = ["numbers", "positions"] + [k for k in (FORCES, CHARGES) if k in atoms.arrays]
    names += sorted(k for k in atoms.arrays if k not in _SKIPPED_ARRAYS)
    columns = [("species:S:1", [[s] for s in atoms.get_chemical_symbols()])]
    columns += [_column(name, atoms.arrays[name], where) for name in names[1:]]
    comment = []
    if atoms.cell.any():
        lattice = " ".join(_float(v) for v in atoms.cell.array.reshape(-1))
        comment.append(f'Lattice="{lattice}"')
    comment.append("Properties=" + ":".join(spec for spec, _ in columns))
    keys = [k for k in _INFO_ORDER if k in atoms.info]
    keys += sorted(k for k in atoms.info if k not in _INFO_ORDER)
    for key in keys:
        if key in _RESERVED_INFO or not _NAME.match(key):
            raise ValueError(f"{where}: info key {key!r} cannot be stored in extxyz")
        comment.append(f"{key}={_info_value(key, atoms.info[key], where)}")
    comment.append('pbc="' + " ".join("T" if p else "F" for p in atoms.pbc) + '"')
    lines = [str(len(atoms)), " ".join(comment)]
    lines += [" ".join(cell for _, cells in columns for cell in cells[i]) for i in range(len(atoms))]
    return "\n".join(lines) + "\n"


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


def _prepare(frames: Iterable[Atoms]) -> list[Atoms]:
    """Copies of ``frames`` in record form, validated, with unique structure_ids."""
    prepared, problems, first_seen = [], [], {}
    for position, original in enumerate(frames):
        atoms = original.copy()
        atoms.calc = original.calc
        normalise_atoms(atoms)
        problems += validate_atoms(atoms, file="frames", frame=position)
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
                extra_files: dict[str, str] | None = None) -> DatasetStore:
    """Validate ``frames`` and write them as a new store at ``out``; returns it opened.

    ``label_method``: how energies/forces were computed (e.g. ``"GFN2-xTB"``).
    ``shard_size``: frames per shard (a parent_id's frames are kept together when
    they fit). ``sources``: defaults to the sorted distinct ``info["source"]``.
    ``extra_files``: name → text written next to the manifest (not hashed).
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
    prepared = _prepare(frames)
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
        manifest = {
            "schema_version": SCHEMA_VERSION, "n_structures": len(index),
            "n_parents": int(index["parent_id"].nunique()), "n_shards": len(shards),
            "elements": sorted({e for row in index["elements"] for e in row.split()}),
            "label_method": label_method,
            "has_charges": {"with": with_charges, "without": len(index) - with_charges},
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

    def _read_shard(self, name: str) -> list[Atoms]:
        frames = []
        for frame, item in iter_frames(self.path / SHARD_DIR / name, format="extxyz"):
            if isinstance(item, Problem):
                raise StoreError(f"{self.path}: the store is corrupted: {item}")
            frames.append(item)
        return frames

    def iter_shards(self) -> Iterator[tuple[str, list[Atoms]]]:
        """Yield ``(shard name, frames)`` for every shard, in store order."""
        for name in self.shard_names():
            yield name, self._read_shard(name)

    def _read_rows(self, rows: pd.DataFrame) -> list[Atoms]:
        loaded: dict[str, list[Atoms]] = {}
        result = []
        for shard, frame, structure_id in zip(rows["shard"], rows["frame"], rows["structure_id"]):
            if shard not in loaded:
                loaded = {shard: self._read_shard(shard)}
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
