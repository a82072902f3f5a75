"""The extxyz codec of farfield: a lossless writer and a frame-by-frame tolerant parser.

Writer: :func:`format_frame` writes every float in Python's shortest exact repr (ASE's
own writer uses ``%16.8f``), so a store round trip is bit-exact; strings that ASE would
misread as numbers or booleans are written as ``_JSON "..."``.

Parser: :func:`iter_extxyz_lines` splits a file into frames by their atom-count lines
and parses each one on its own, so a truncated or garbled frame becomes a ``Problem``
naming file, frame and line, and the frames around it are still read.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Iterator

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
from farfield.data.validation import Problem

__all__ = ["format_frame", "iter_extxyz_lines"]

# --- writer ---------------------------------------------------------------------

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


# --- parser ---------------------------------------------------------------------


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


def iter_extxyz_lines(lines: list[str], file: str) -> Iterator[tuple[int, Atoms | Problem]]:
    """``(frame, Atoms or Problem)`` for every frame in the text ``lines`` of ``file``.

    Truncated or garbled frames become Problems; parsing resumes at the next frame header.
    """
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
