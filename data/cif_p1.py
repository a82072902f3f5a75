"""A fast reader for the plain P1 CIF files that make up CoRE MOF.

ASE's CIF parser tokenises every loop row with :mod:`shlex` and spends ~0.1 s on a
200-atom CoRE MOF file (75 % of the catalogue build). CoRE MOF files are almost all
P1 with an ``_atom_site_`` loop of whitespace-separated, unquoted values, which
``str.split`` reads exactly. :func:`read_p1_cif` handles that case and returns
``None`` for anything else (several data blocks, symmetry operations other than
``x,y,z``, quoted or multi-line values inside the atom-site loop), so callers fall
back to ASE; a type symbol that is no element raises :class:`UnknownElement`. ``tests/test_coremof.py`` checks that both
readers give identical atoms on real CoRE MOF files.

Output: periodic ``ase.Atoms`` (cell in Å, positions = fractional @ cell, wrapped into
the cell exactly as :meth:`Atoms.wrap` does), plus the occupancy and disorder-group
columns when present, so disorder checks can run on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

__all__ = ["P1Cif", "UnknownElement", "read_p1_cif"]


class UnknownElement(ValueError):
    """A type symbol in the atom-site loop is not a chemical element (``symbol``)."""

    def __init__(self, symbol: str):
        self.symbol = symbol
        super().__init__(f"unknown element symbol {symbol!r}")

_CELL_TAGS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
              "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
_SYMOP_TAGS = frozenset(("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz",
                         "_space_group_symop.operation_xyz"))
_UNCERTAINTY = re.compile(r"\(\d+\)$")
_SYMBOL = re.compile(r"([A-Za-z]{1,2})")


@dataclass(frozen=True)
class P1Cif:
    """A parsed P1 CIF: ``atoms`` plus raw per-site ``occupancy`` (n,) or ``None``,
    ``disorder_groups`` (strings other than ``.``/``?``/``0``) and the cell tags found."""

    atoms: Atoms
    occupancy: np.ndarray | None
    disorder_groups: frozenset[str]
    has_cell: bool


def _number(token: str) -> float:
    return float(_UNCERTAINTY.sub("", token))


def _element(token: str) -> int | None:
    """Atomic number of a type symbol such as ``Zn``, ``Zn2+``, ``ZN``; None if unknown."""
    match = _SYMBOL.match(token)
    if not match:
        return None
    letters = match.group(1)
    for candidate in (letters[:1].upper() + letters[1:].lower(), letters[:1].upper()):
        if atomic_numbers.get(candidate, 0) > 0:  # ASE's "X" (0) is a dummy, not an element
            return atomic_numbers[candidate]
    return None


def _loops(lines: list[str]) -> tuple[dict[str, str], list[tuple[list[str], list[str]]]] | None:
    """Split CIF lines into key-value items and loops (tags, raw rows); None if unusual."""
    items: dict[str, str] = {}
    loops: list[tuple[list[str], list[str]]] = []
    n_blocks = 0
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        lower = line.lower()
        if not line or line.startswith("#"):
            i += 1
        elif lower.startswith("data_"):
            n_blocks += 1
            i += 1
        elif line.startswith(";"):
            return None  # multi-line text field
        elif lower == "loop_":
            i += 1
            tags = []
            while i < len(lines) and lines[i].strip().startswith("_"):
                tags.append(lines[i].strip().split()[0].lower())
                i += 1
            rows = []
            while i < len(lines):
                row = lines[i].strip()
                if row.lower().startswith(("loop_", "data_", "_")) or row.startswith(";"):
                    break
                if row and not row.startswith("#"):
                    rows.append(row)
                i += 1
            loops.append((tags, rows))
        elif line.startswith("_"):
            parts = line.split(None, 1)
            items[parts[0].lower()] = parts[1].strip() if len(parts) > 1 else ""
            i += 1
        else:
            return None  # value on its own line, or something else this reader skips
    return (items, loops) if n_blocks == 1 else None


def read_p1_cif(text: str) -> P1Cif | None:
    """Parse a simple P1 CIF; ``None`` when the file needs a full CIF parser."""
    parsed = _loops(text.splitlines())
    if parsed is None:
        return None
    items, loops = parsed
    symops = [rows for tags, rows in loops if _SYMOP_TAGS & set(tags)]
    symops += [[value] for tag, value in items.items() if tag in _SYMOP_TAGS]
    if len(symops) > 1:
        return None
    for op in symops[0] if symops else []:
        if re.sub(r"[\s'\"]", "", op).lower() not in ("x,y,z", "1x,y,z"):
            return None
    sites = [(tags, rows) for tags, rows in loops if "_atom_site_fract_x" in tags]
    if len(sites) != 1:
        return None
    tags, rows = sites[0]
    column = {tag: k for k, tag in enumerate(tags)}
    symbol_col = column.get("_atom_site_type_symbol", column.get("_atom_site_label"))
    if symbol_col is None or not {"_atom_site_fract_y", "_atom_site_fract_z"} <= column.keys():
        return None
    table = [row.split() for row in rows]
    if any(len(values) != len(tags) or any(v[0] in "'\"" for v in values) for values in table):
        return None
    numbers = [_element(values[symbol_col]) for values in table]
    if None in numbers:
        raise UnknownElement(table[numbers.index(None)][symbol_col])
    if not table:
        return None
    try:
        frac = np.array([[_number(values[column[f"_atom_site_fract_{x}"]]) for x in "xyz"]
                         for values in table])
        has_cell = all(tag in items for tag in _CELL_TAGS)
        cellpar = [_number(items[tag]) for tag in _CELL_TAGS] if has_cell else None
        occupancy = None
        if "_atom_site_occupancy" in column:
            occ = [values[column["_atom_site_occupancy"]] for values in table]
            occupancy = np.array([_number(v) if v not in "?." else 1.0 for v in occ])
    except ValueError:
        return None
    groups = frozenset()
    if "_atom_site_disorder_group" in column:
        groups = frozenset(values[column["_atom_site_disorder_group"]] for values in table)
        groups -= {".", "?", "0"}
    atoms = Atoms(numbers=numbers, cell=cellpar, pbc=has_cell)
    if has_cell:
        atoms.set_scaled_positions(frac)
        atoms.wrap()
    return P1Cif(atoms, occupancy, groups, has_cell)
