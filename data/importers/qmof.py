"""QMOF-style import: a folder of CIFs plus a table of energies (and charges).

Layout (that of the QMOF database, ``qmof_database/``)::

    relaxed_structures/qmof-xxxx.cif   one structure per CIF; the file stem is its id
    qmof.csv or qmof.json              one row per structure: id column (qmof_id),
                                       total energy in eV (outputs.pbe.energy_total)

Charges (optional, ``charges`` = ``ddec`` / ``cm5`` / ``bader``) come from either

* the CIF itself: the per-site column ``_atom_site_pbe_<scheme>_charge`` that QMOF's
  CIF writer adds from the site properties of ``qmof_structure_data.json``
  (``pbe_ddec_charge``, ``pbe_cm5_charge``, ``pbe_bader_charge``). The sites must be
  the structure's atoms in order (a P1 CIF); their fractional coordinates are
  checked against the structure, so charges never land on the wrong atoms; or
* a table column (``charges_column``) holding the per-atom list, JSON-encoded in a
  CSV cell or a plain list in a JSON table, in the CIF's site order.

The rule for labels: the energy is required, forces are absent (QMOF has relaxed
structures, no forces), so the store is written with ``forces_required=False``.

Every CIF becomes one structure or one or more problems naming the CIF (frame 0)
and what is wrong: no table row, an empty or non-numeric energy, a CIF that does
not parse, a charge column that is missing or does not line up. Table rows without
a CIF are not problems (a folder may hold a subset); they are counted.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from farfield.data.importers.table import Table, parse_number, parse_per_atom, read_table
from farfield.data.readers import ReadResult
from farfield.data.records import CHARGES, ENERGY, PARENT_ID, SOURCE, STRUCTURE_ID, TOTAL_CHARGE
from farfield.data.validation import Problem, validate_atoms

__all__ = ["CHARGE_SCHEMES", "DEFAULT_ENERGY_COLUMN", "DEFAULT_ID_COLUMN", "QmofOptions",
           "QmofRead", "cif_charge_tag", "list_cifs", "read_qmof"]

CHARGE_SCHEMES = ("none", "ddec", "cm5", "bader")
DEFAULT_ID_COLUMN = "qmof_id"
DEFAULT_ENERGY_COLUMN = "outputs.pbe.energy_total"
#: Largest allowed mismatch (fractional units) between CIF sites and structure atoms.
_SITE_TOLERANCE = 1e-4
_CIF_ERRORS = (ValueError, KeyError, IndexError, RuntimeError, AssertionError, TypeError)


def cif_charge_tag(scheme: str) -> str:
    """The CIF loop column QMOF's writer uses for a charge scheme."""
    return f"_atom_site_pbe_{scheme}_charge"


@dataclass(frozen=True)
class QmofOptions:
    """Where the labels of a QMOF-style folder are.

    ``table``: the CSV/JSON table; ``id_column``: its column matching the CIF file
    stems; ``energy_column``: total energy of the CIF's cell in eV; ``parent_column``:
    the MOF each structure belongs to (default: the structure is its own parent);
    ``charges``: ``none``, ``ddec``, ``cm5`` or ``bader``; ``charges_column``: read the
    charges from this table column instead of the CIF.
    """

    table: str | Path
    id_column: str = DEFAULT_ID_COLUMN
    energy_column: str = DEFAULT_ENERGY_COLUMN
    parent_column: str | None = None
    charges: str = "none"
    charges_column: str | None = None

    def __post_init__(self) -> None:
        if self.charges not in CHARGE_SCHEMES:
            raise ValueError(f"charges={self.charges!r}: choose one of {', '.join(CHARGE_SCHEMES)}")
        if self.charges_column and self.charges == "none":
            raise ValueError("a charges column needs a charge scheme: pass charges= ddec, cm5 or "
                             "bader (--charges) to say which charges the column holds")

    @property
    def charges_from(self) -> str | None:
        """Where charges are read, in words (None: no charges)."""
        if self.charges == "none":
            return None
        if self.charges_column:
            return f"table column {self.charges_column}"
        return f"CIF column {cif_charge_tag(self.charges)}"


@dataclass
class QmofRead:
    """Outcome of :func:`read_qmof`: one ``(cif path, ReadResult)`` per CIF, the table,
    the ids of table rows without a CIF, and a sha256 over the CIFs' names and bytes."""

    files: list[tuple[str, ReadResult]]
    table: Table
    rows_without_cif: list[str] = field(default_factory=list)
    cifs_sha256: str = ""


def list_cifs(directory: str | Path) -> list[Path]:
    """The ``*.cif`` files of ``directory`` in name order; errors name the directory."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise ValueError(f"{directory}: --format qmof expects a directory of CIFs, got a file")
    cifs = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".cif" and p.is_file())
    if not cifs:
        raise ValueError(f"{directory}: no .cif files in the directory")
    return cifs


def _structure(text: str) -> tuple[Atoms, object] | str:
    """The one structure of a CIF text and its block, or what is wrong."""
    from ase.io.cif import parse_cif

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = [b for b in parse_cif(io.StringIO(text)) if b.has_structure()]
            if len(blocks) != 1:
                return (f"expected one structure per CIF, found {len(blocks)} "
                        f"(QMOF-style folders hold one structure per file)")
            parsed = blocks[0].get_atoms()
    except _CIF_ERRORS as err:
        return f"cannot parse CIF: {err}"
    atoms = Atoms(numbers=parsed.numbers, positions=parsed.positions, cell=parsed.cell,
                  pbc=parsed.pbc)
    return atoms, blocks[0]


def _cif_charges(block, atoms: Atoms, tag: str) -> list[float] | str:
    """Per-site values of ``tag`` in atom order, or why they cannot be used."""
    if tag not in block:
        found = sorted(k for k in block if k.startswith("_atom_site") and "charge" in k)
        return (f"no {tag} column in the CIF (charge columns found: "
                f"{', '.join(found) or 'none'}); use --charges-column for charges in the table")
    values = list(block[tag])
    if len(values) != len(atoms):
        return (f"{tag} has {len(values)} values but the structure has {len(atoms)} atoms "
                f"(per-site charges need a P1 CIF that lists every atom)")
    if not all(isinstance(v, (int, float)) for v in values):
        bad = next(v for v in values if not isinstance(v, (int, float)))
        return f"{tag} holds {bad!r}, not a number"
    fract = [block.get(f"_atom_site_fract_{axis}") for axis in "xyz"]
    if all(column is not None and len(column) == len(atoms) for column in fract):
        offset = np.array(fract, dtype=float).T - atoms.get_scaled_positions(wrap=False)
        offset -= np.round(offset)
        worst = int(np.argmax(np.abs(offset).max(axis=1)))
        if np.abs(offset[worst]).max() > _SITE_TOLERANCE:
            return (f"{tag} does not line up with the atoms: site {worst} is not atom {worst} "
                    f"(the CIF's symmetry reordered or merged sites; use a P1 CIF)")
    return [float(v) for v in values]


def _labels(atoms: Atoms, block, key: str, options: QmofOptions, table: Table) -> list[str]:
    """Put energy, ids and charges on ``atoms``; return what is wrong with them."""
    name = Path(table.file).name
    if key in table.duplicates:
        places = ", ".join(table.duplicates[key])
        return [f"{len(table.duplicates[key])} rows of {name} have {options.id_column}={key!r} "
                + f"({places}); cannot tell which energy applies"]
    row = table.rows.get(key)
    if row is None:
        return [f"no row with {options.id_column}={key!r} in {name}: no energy for this structure"]
    where = f"{name} {table.where[key]}"
    messages = []
    energy = parse_number(row.get(options.energy_column))
    if isinstance(energy, str):
        messages.append(f"{where}: {options.energy_column} {energy} "
                        f"(expected the total energy, eV)")
    else:
        atoms.info[ENERGY] = energy
    if options.parent_column:
        parent = row.get(options.parent_column)
        if parent is None or str(parent).strip() == "":
            messages.append(f"{where}: {options.parent_column} is empty (the parent MOF id)")
        else:
            atoms.info[PARENT_ID] = str(parent).strip()
    if options.charges != "none":
        if options.charges_column:
            charges = parse_per_atom(row.get(options.charges_column))
            if isinstance(charges, list) and len(charges) != len(atoms):
                charges = (f"has {len(charges)} values but the structure has {len(atoms)} atoms")
            if isinstance(charges, str):
                charges = f"{where}: {options.charges_column} {charges}"
        else:
            charges = _cif_charges(block, atoms, cif_charge_tag(options.charges))
        if isinstance(charges, str):
            messages.append(charges)
        else:
            atoms.arrays[CHARGES] = np.array(charges, dtype=np.float64)
    return messages


def _read_one(path: Path, data: bytes, options: QmofOptions, table: Table) -> ReadResult:
    file = str(path)
    found = _structure(data.decode("utf-8", errors="replace"))
    if isinstance(found, str):
        return ReadResult(valid=[], problems=[Problem(file, 0, found)], n_frames=1)
    atoms, block = found
    key = path.stem
    atoms.info.update({STRUCTURE_ID: key, SOURCE: path.name, TOTAL_CHARGE: 0.0})
    messages = _labels(atoms, block, key, options, table)
    problems = [Problem(file, 0, message) for message in messages]
    # Labels that failed are already reported above; only check the structure then.
    problems += validate_atoms(atoms, file=file, frame=0, require_labels=not messages,
                               require_forces=False)
    if problems:
        return ReadResult(valid=[], problems=problems, n_frames=1)
    return ReadResult(valid=[atoms], problems=[], n_frames=1, frames=[0])


def read_qmof(directory: str | Path, options: QmofOptions) -> QmofRead:
    """Read and validate every CIF of ``directory`` with labels from ``options.table``.

    Raises FileNotFoundError / ValueError (naming the path) if the directory or the
    table cannot be used at all; every per-structure problem is reported instead.
    """
    cifs = list_cifs(directory)
    required = tuple(c for c in (options.energy_column, options.parent_column,
                                 options.charges_column) if c)
    table = read_table(options.table, options.id_column, required=required)
    digest = hashlib.sha256()
    files = []
    for path in cifs:
        data = path.read_bytes()
        digest.update(f"{path.name}\n{hashlib.sha256(data).hexdigest()}\n".encode())
        files.append((str(path), _read_one(path, data, options, table)))
    stems = {path.stem for path in cifs}
    missing = [key for key in (*table.rows, *table.duplicates) if key not in stems]
    return QmofRead(files=files, table=table, rows_without_cif=missing,
                    cifs_sha256=digest.hexdigest())
