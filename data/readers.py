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

import ase.io
import numpy as np
from ase import Atoms
from ase.data import atomic_numbers
from ase.io.extxyz import key_val_str_to_dict

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


def _is_header(line: str) -> bool:
    return line.strip().isdigit()


def _locate_bad_value(chunk: list[str], fields: list[str], first_line: int) -> str | None:
    """Find the first atom-line value that does not convert to its Properties type."""
    converters = {"R": float, "I": int, "L": lambda v: {"T": 1, "F": 0, "True": 1,
                                                       "False": 0}[v], "S": str}
    columns = [(name, converters.get(kind, str)) for name, kind, n in
               zip(fields[0::3], fields[1::3], fields[2::3]) for _ in range(int(n))]
    for atom, line in enumerate(chunk[2:]):
        for (name, convert), token in zip(columns, line.split()):
            try:
                convert(token)
            except (ValueError, KeyError):
                return (f"line {first_line + 2 + atom} (atom {atom}): {name} value {token!r} "
                        f"is not of the declared type")
    return None


def _parse_extxyz_frame(chunk: list[str], first_line: int) -> Atoms | str:
    """One complete frame (count, comment, atom lines) → Atoms, or an error message.

    ``first_line``: 1-based line number of the count line, for messages.
    """
    try:
        comment = key_val_str_to_dict(chunk[1]) if chunk[1].strip() else {}
    except (ValueError, KeyError, IndexError) as err:
        return f"cannot parse the comment line (line {first_line + 1}): {err}"
    properties = str(comment.get("Properties", "species:S:1:pos:R:3"))
    fields = properties.split(":")
    try:
        widths = [int(n) for n in fields[2::3]]
    except ValueError:
        return f"malformed Properties={properties!r} (line {first_line + 1})"
    names = fields[0::3]
    species_at = sum(widths[: names.index("species")]) if "species" in names else None
    exact = "Properties" in comment
    for atom, line in enumerate(chunk[2:]):
        tokens = line.split()
        if len(tokens) < sum(widths) or (exact and len(tokens) > sum(widths)):
            return (f"line {first_line + 2 + atom} (atom {atom}): expected {sum(widths)} values "
                    f"per Properties={properties}, found {len(tokens)}")
        if species_at is not None and tokens[species_at].capitalize() not in atomic_numbers:
            return (f"unknown element {tokens[species_at]!r} at atom {atom} "
                    f"(line {first_line + 2 + atom})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ase.io.read(io.StringIO("".join(chunk)), format="extxyz")
    except (ValueError, KeyError, IndexError, TypeError, OSError) as err:
        located = _locate_bad_value(chunk, fields, first_line)
        return located or f"cannot parse the frame starting at line {first_line}: {err}"


def _iter_extxyz(path: Path, file: str) -> Iterator[tuple[int, Atoms | Problem]]:
    lines, read_error = _read_lines(path)
    if read_error:
        yield 0, Problem(file, None, read_error)
    pos, frame, n_lines = 0, 0, len(lines)
    while pos < n_lines:
        if not lines[pos].strip():
            pos += 1
            continue
        if not _is_header(lines[pos]):
            yield frame, Problem(file, frame, f"line {pos + 1}: expected the atom count of a "
                                 f"frame, got {lines[pos].strip()[:40]!r}")
            pos = next((k for k in range(pos + 1, n_lines) if _is_header(lines[k])), n_lines)
            frame += 1
            continue
        n_atoms, end = int(lines[pos]), pos + 2 + int(lines[pos])
        next_header = next((k for k in range(pos + 2, min(end, n_lines)) if _is_header(lines[k])),
                           None)
        if next_header is not None or end > n_lines:
            found = (next_header if next_header is not None else n_lines) - pos - 2
            where = (f"the next frame starts at line {next_header + 1}" if next_header is not None
                     else "the file ends")
            yield frame, Problem(file, frame, f"truncated frame: line {pos + 1} announces {n_atoms} "
                                 f"atoms but {where} after {max(found, 0)} atom line(s)")
            pos, frame = (next_header if next_header is not None else n_lines), frame + 1
            continue
        parsed = _parse_extxyz_frame(lines[pos:end], pos + 1)
        yield frame, parsed if isinstance(parsed, Atoms) else Problem(file, frame, parsed)
        pos, frame = end, frame + 1


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
                    require_labels: bool = True) -> ReadResult:
    """Read and validate every frame of ``path``.

    ``format``: ``"extxyz"``, ``"db"`` or ``"cif"``; default from the suffix.
    ``key_map``: record key → key used in the file, e.g.
    ``{"energy": "DFT_energy", "forces": "DFT_forces", "charges": "ddec_charges"}``.
    ``require_labels``: False accepts frames without energy/forces (CIFs to label).
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
        found = validate_atoms(item, file=str(path), frame=frame, require_labels=require_labels)
        problems.extend(found)
        if not found:
            valid.append(item)
            valid_frames.append(frame)
    return ReadResult(valid=valid, problems=problems, n_frames=len(frames), frames=valid_frames)
