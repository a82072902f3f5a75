"""Read structure records from extxyz / xyz (optionally .gz/.xz/.bz2), ASE db and CIF.

Every reader reads every frame it can: a broken frame becomes a :class:`Problem`
naming file and frame, and the frames around it are still returned. Records come
out in the form of :mod:`farfield.data.records` (energy/stress in ``info``,
forces/charges in ``arrays``, no calculator attached), then go through
:func:`~farfield.data.validation.validate_atoms`.

ASE quirks handled here:

* ASE's extxyz reader moves ``energy``/``forces``/``stress``/``charges`` into a
  ``SinglePointCalculator``; :func:`normalise_atoms` moves them back.
* It parses info values that look like numbers or booleans (``structure_id=0001``
  becomes the integer 1, ``T`` becomes True); ids are turned back into strings.
* It silently ignores surplus columns on an atom line; we report them.
* ASE db rows keep labels in the calculator, ``key_value_pairs`` and ``data``; all
  three are flattened into ``info``/``arrays``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from farfield.data.extxyz import iter_extxyz_lines
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

__all__ = ["FORMATS", "ReadResult", "detect_format", "iter_frames", "normalise_atoms",
           "read_structures"]

#: Format name → file suffixes (before an optional compression suffix).
FORMATS = {"extxyz": (".extxyz", ".xyz"), "db": (".db",), "cif": (".cif",)}
_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
#: Record keys a key_map may name, and where each lives.
_ARRAY_KEYS = {FORCES, CHARGES}
_INFO_KEYS = {ENERGY, STRESS, TOTAL_CHARGE, STRUCTURE_ID, PARENT_ID, SOURCE}
#: Calculator results that are per-atom arrays when their length is n_atoms.
_PER_ATOM_RESULTS = {FORCES, CHARGES, "magmoms", "energies", "stresses"}
EMPTY_MESSAGE = "file is empty / contains no frames"


@dataclass
class ReadResult:
    """Outcome of reading one file: valid records, every problem, frames seen.

    ``frames``: the 0-based frame index in the file of each record in ``valid``.
    """

    valid: list[Atoms]
    problems: list[Problem]
    n_frames: int
    frames: list[int] = field(default_factory=list)


def detect_format(path: str | Path, format: str | None = None) -> str:
    """Format name for ``path``: ``format`` if given, else from the suffix."""
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"format={format!r} is not supported; choose one of {sorted(FORMATS)}")
        return format
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in _OPENERS:
        suffixes.pop()
    for name, known in FORMATS.items():
        if suffixes and suffixes[-1] in known:
            return name
    raise ValueError(
        f"{path}: cannot tell the format from the suffix {''.join(Path(path).suffixes)!r}; "
        f"expected one of {[s for known in FORMATS.values() for s in known]} "
        f"(optionally + .gz/.xz/.bz2), or pass format= one of {sorted(FORMATS)}"
    )


def _put(atoms: Atoms, key: str, value, per_atom: bool | None = None) -> None:
    """Store ``value`` under ``key`` as a per-atom array or in info.

    ``per_atom``: True/False forces the choice (it still goes to info if its length
    is not n_atoms, so validation can report the shape); None guesses from length.
    """
    if key in ("numbers", "positions"):
        return
    array = None if isinstance(value, (str, dict, list)) else np.asarray(value)
    fits = (array is not None and array.ndim >= 1 and len(array) == len(atoms)
            and array.dtype.kind in "biuf")
    if array is not None and array.ndim == 0 and array.dtype.kind in "biuf":
        value = array.item()  # numpy scalar → Python scalar
    if fits and per_atom is not False:
        atoms.info.pop(key, None)
        atoms.arrays[key] = array.copy()
    else:
        atoms.arrays.pop(key, None)
        atoms.info[key] = value


def _to_voigt(stress) -> object:
    """(3, 3) or 9-vector stress → Voigt-6 (xx yy zz yz xz xy); anything else unchanged."""
    array = np.asarray(stress)
    if array.dtype.kind not in "iuf" or array.size != 9:
        return stress
    full = array.reshape(3, 3).astype(np.float64)
    return np.array([full[0, 0], full[1, 1], full[2, 2], full[1, 2], full[0, 2], full[0, 1]])


def normalise_atoms(atoms: Atoms, key_map: dict[str, str] | None = None) -> Atoms:
    """Bring one ``Atoms`` into record form, in place; returns it.

    Moves calculator results into ``info``/``arrays`` and drops the calculator;
    renames user keys per ``key_map`` (record key → user key, e.g.
    ``{"energy": "DFT_energy"}``); turns ids and source into strings; energy and
    total_charge into floats; stress into Voigt-6 (eV/Å³, units are not converted).
    """
    calc = atoms.calc
    if calc is not None:
        atoms.calc = None
        for key, value in dict(getattr(calc, "results", {})).items():
            _put(atoms, key, value, per_atom=key in _PER_ATOM_RESULTS)
    for record_key, user_key in (key_map or {}).items():
        if user_key == record_key:
            continue
        per_atom = record_key in _ARRAY_KEYS
        if user_key in atoms.arrays:
            _put(atoms, record_key, atoms.arrays.pop(user_key), per_atom)
        elif user_key in atoms.info:
            _put(atoms, record_key, atoms.info.pop(user_key), per_atom)
    for key in (STRUCTURE_ID, PARENT_ID, SOURCE):
        value = atoms.info.get(key)
        if value is not None and not isinstance(value, str):
            atoms.info[key] = str(value.item() if isinstance(value, np.generic) else value)
    for key in (ENERGY, TOTAL_CHARGE):
        value = atoms.info.get(key)
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            atoms.info[key] = float(value)
    if STRESS in atoms.info:
        atoms.info[STRESS] = _to_voigt(atoms.info[STRESS])
    return atoms


def _check_key_map(key_map: dict[str, str] | None) -> None:
    known = _ARRAY_KEYS | _INFO_KEYS
    for record_key in key_map or {}:
        if record_key not in known:
            raise ValueError(f"key_map key {record_key!r} is not a record field; "
                             f"choose from {sorted(known)}")


def _read_lines(path: Path) -> tuple[list[str], str | None]:
    """All text lines of ``path`` (decompressed); and an error if reading stopped early."""
    opener = _OPENERS.get(path.suffix.lower(), open)
    lines: list[str] = []
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                lines.append(line)
    except (OSError, EOFError, lzma.LZMAError) as err:
        return lines, f"cannot read past line {len(lines)}: {err}"
    return lines, None


def _db_rows(path: Path, file: str) -> Iterator[tuple[int, object]]:
    """``(frame, AtomsRow or Problem)`` per row in id order; a row ASE cannot decode
    becomes a Problem and the others are still returned."""
    import ase.db

    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as check:
        tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
        ids = [row[0] for row in check.execute("SELECT id FROM systems ORDER BY id")] \
            if "systems" in tables else None
    if ids is None:
        yield 0, Problem(file, None, "not an ASE database: SQLite file without a 'systems' table")
        return
    db = ase.db.connect(str(path), type="db", create_indices=False)
    try:
        rows = list(db.select(sort="id"))
    except (ValueError, KeyError, TypeError, IndexError):
        rows = None  # some row cannot be decoded: go row by row to find it
    if rows is not None:
        yield from enumerate(rows)
        return
    for frame, row_id in enumerate(ids):
        try:
            yield frame, db.get(id=row_id)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            yield frame, Problem(file, frame, f"row id {row_id}: ASE cannot decode the row ({err}); "
                                 f"a stored array such as forces probably has the wrong shape")


def _iter_db(path: Path, file: str) -> Iterator[tuple[int, Atoms | Problem]]:
    with open(path, "rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            yield 0, Problem(file, None, "not an ASE database: not an SQLite file")
            return
    try:
        rows = list(_db_rows(path, file))
    except (sqlite3.Error, OSError) as err:
        yield 0, Problem(file, None, f"cannot read ASE database: {err}")
        return
    for frame, row in rows:
        if isinstance(row, Problem):
            yield frame, row
            continue
        try:
            atoms = row.toatoms()
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            yield frame, Problem(file, frame, f"row id {row.id}: cannot build a structure: {err}")
            continue
        atoms.info.update(row.key_value_pairs)
        for key, value in (row.get("data") or {}).items():
            _put(atoms, key, value)
        yield frame, atoms


def _iter_cif(path: Path, file: str) -> Iterator[tuple[int, Atoms | Problem]]:
    from ase.io.cif import parse_cif

    lines, read_error = _read_lines(path)
    if read_error:
        yield 0, Problem(file, None, read_error)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = list(parse_cif(io.StringIO("".join(lines))))
    except (ValueError, KeyError, IndexError, RuntimeError, AssertionError) as err:
        yield 0, Problem(file, None, f"cannot parse CIF: {err}")
        return
    frame = 0
    for block in blocks:
        if not block.has_structure():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                item = block.get_atoms()
        except (ValueError, KeyError, IndexError, RuntimeError, AssertionError) as err:
            item = Problem(file, frame, f"CIF block data_{block.name}: {err}")
        yield frame, item
        frame += 1


def _iter_extxyz(path: Path, file: str) -> Iterator[tuple[int, Atoms | Problem]]:
    lines, read_error = _read_lines(path)
    if read_error:
        yield 0, Problem(file, None, read_error)
    yield from iter_extxyz_lines(lines, file)


_ITERATORS = {"extxyz": _iter_extxyz, "db": _iter_db, "cif": _iter_cif}


def iter_frames(path: str | Path, *, format: str | None = None,
                key_map: dict[str, str] | None = None) -> Iterator[tuple[int, Atoms | Problem]]:
    """Yield ``(frame, Atoms or Problem)`` for every frame of ``path``, normalised
    (see :func:`normalise_atoms`) but not validated. A file-level problem has
    ``Problem.frame is None``. Raises FileNotFoundError / ValueError for a missing
    file or unknown format; never for bad content."""
    file, path = str(path), Path(path)
    _check_key_map(key_map)
    kind = detect_format(path, format)
    if not path.is_file():
        raise FileNotFoundError(f"{file}: no such file")
    if path.stat().st_size == 0:
        yield 0, Problem(file, None, EMPTY_MESSAGE)
        return
    seen = False
    for frame, item in _ITERATORS[kind](path, file):
        seen = True
        yield frame, normalise_atoms(item, key_map) if isinstance(item, Atoms) else item
    if not seen:
        yield 0, Problem(file, None, EMPTY_MESSAGE)


def read_structures(path: str | Path, *, format: str | None = None,
                    key_map: dict[str, str] | None = None,
                    require_labels: bool = True,
                    require_forces: bool | None = None) -> ReadResult:
    """Read and validate every frame of ``path``.

    ``format``: ``"extxyz"``, ``"db"`` or ``"cif"``; default from the suffix.
    ``key_map``: record key → key used in the file, e.g.
    ``{"energy": "DFT_energy", "forces": "DFT_forces", "charges": "ddec_charges"}``.
    ``require_labels``: False accepts frames without energy/forces (CIFs to label).
    ``require_forces``: False accepts frames with an energy but no forces; None
    follows ``require_labels`` (see :func:`~farfield.data.validation.validate_atoms`).
    Frames that fail validation are reported in ``problems``, not returned. Missing
    ``source`` is set to the file name.
    """
    valid: list[Atoms] = []
    valid_frames: list[int] = []
    problems: list[Problem] = []
    frames: set[int] = set()
    for frame, item in iter_frames(path, format=format, key_map=key_map):
        if isinstance(item, Problem):
            problems.append(item)
            if item.frame is not None:
                frames.add(frame)
            continue
        frames.add(frame)
        item.info.setdefault(SOURCE, Path(path).name)
        found = validate_atoms(item, file=str(path), frame=frame, require_labels=require_labels,
                               require_forces=require_forces)
        problems.extend(found)
        if not found:
            valid.append(item)
            valid_frames.append(frame)
    return ReadResult(valid=valid, problems=problems, n_frames=len(frames), frames=valid_frames)
