"""Per-frame validation of structure records (see :mod:`farfield.data.records`).

:func:`validate_atoms` checks one ``Atoms`` against the record contract and returns
every problem it finds as a :class:`Problem` naming the file and frame, so a reader
can report all bad frames of a file at once instead of stopping at the first.

Checks, in order:

* at least one atom; every atomic number is a known element (1..118);
* positions finite;
* ``info["energy"]`` present, a real number, finite (eV);
* ``arrays["forces"]`` present, shape (n_atoms, 3), finite (eV/Å);
* any periodic direction → cell volume above :data:`MIN_CELL_VOLUME` (Å³);
* no two atoms (periodic images included) closer than
  :data:`~farfield.data.records.MIN_INTERATOMIC_DISTANCE` (Å);
* ``arrays["charges"]`` if present: shape (n_atoms,), finite, summing to
  ``info["total_charge"]`` (default 0 e) within
  :data:`~farfield.data.records.CHARGE_SUM_TOLERANCE`;
* ``info["stress"]`` if present: shape (6,) or (3, 3), finite (eV/Å³);
* physically plausible (:mod:`farfield.data.plausibility`), for the fields that passed
  the checks above: atoms bonded to their neighbours, periodic cells of plausible density and
  volume per atom, energy within the all-electron bound of its atoms, forces, stress
  and charges of possible magnitude — what a corrupted or unit-confused file fails.

Missing ``structure_id`` / ``parent_id`` / ``total_charge`` are filled in place with
defaults (``f"{file stem}-{frame}"``, the structure_id, 0.0).

Which labels must be present:

* ``require_labels=True`` (default): energy and forces are required;
* ``require_forces=False``: energy is still required, forces are optional (energy-only
  data such as QMOF's relaxed structures); the store records this choice in its
  manifest (``forces_required``) so a trainer can refuse to fit forces it lacks;
* ``require_labels=False``: neither is required (structures about to be labelled).

Labels that are present are always checked.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from farfield.data import plausibility
from farfield.data.records import (
    CHARGE_SUM_TOLERANCE,
    CHARGES,
    ENERGY,
    FORCES,
    MIN_INTERATOMIC_DISTANCE,
    PARENT_ID,
    STRESS,
    STRUCTURE_ID,
    TOTAL_CHARGE,
)

__all__ = ["MIN_CELL_VOLUME", "Problem", "file_stem", "validate_atoms"]

#: Smallest allowed cell volume (Å³) for a structure with any periodic direction.
MIN_CELL_VOLUME = 1e-6
#: Neighbour-search radius (Å) for the overlap check; pairs are then filtered at
#: MIN_INTERATOMIC_DISTANCE. vesin's cell list is ~10x slower at 0.5 Å than at 2 Å.
_OVERLAP_SEARCH_CUTOFF = 2.0
#: Largest known atomic number (oganesson).
MAX_ATOMIC_NUMBER = 118

_COMPRESSION_SUFFIXES = (".gz", ".xz", ".bz2")


@dataclass(frozen=True)
class Problem:
    """One problem of one frame of one file.

    ``file``: the path as the user gave it; ``frame``: 0-based frame index, or
    ``None`` when the problem concerns the whole file; ``message``: what is wrong.
    """

    file: str
    frame: int | None
    message: str

    def __str__(self) -> str:
        if self.frame is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}: frame {self.frame}: {self.message}"

    def to_dict(self) -> dict:
        """JSON-ready ``{"file", "frame", "message"}``."""
        return {"file": self.file, "frame": self.frame, "message": self.message}


def file_stem(file: str | Path) -> str:
    """File name without directory, compression suffix and format suffix.

    ``"runs/mof-a.extxyz.gz"`` → ``"mof-a"``.
    """
    name = Path(file).name
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(name).stem or name


def _is_real_scalar(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf"


def _as_float_array(value) -> np.ndarray | None:
    """``value`` as a float64 array, or None if it is not numeric."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if array.dtype.kind not in "iuf":
        return None
    return array.astype(np.float64)


def _first_non_finite(array: np.ndarray) -> str:
    """Describe the first non-finite entry of ``array``: ``"NaN (atom 5)"``."""
    bad = np.argwhere(~np.isfinite(array))[0]
    value = array[tuple(bad)]
    kind = "NaN" if np.isnan(value) else "inf"
    return f"{kind} (atom {int(bad[0])})" if array.ndim >= 1 else kind


def _keys(where: str, mapping: dict) -> str:
    """``"info has: a, b"`` listing up to 8 keys, for 'missing' messages."""
    keys = [str(k) for k in mapping if k not in ("numbers", "positions")]
    shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
    return f"{where} has: {shown or 'nothing'}"


def _check_elements(atoms: Atoms) -> list[str]:
    numbers_ = atoms.numbers
    bad = np.flatnonzero((numbers_ < 1) | (numbers_ > MAX_ATOMIC_NUMBER))
    if len(bad) == 0:
        return []
    return [
        f"unknown element: atomic number {int(numbers_[bad[0]])} at atom {int(bad[0])} "
        f"({len(bad)} atom(s) affected); expected 1..{MAX_ATOMIC_NUMBER}"
    ]


def _check_energy(atoms: Atoms) -> list[str]:
    if ENERGY not in atoms.info:
        return [f"energy missing: no info[{ENERGY!r}] (total energy, eV); "
                f"{_keys('info', atoms.info)}"]
    energy = atoms.info[ENERGY]
    if not _is_real_scalar(energy):
        return [f"energy is {energy!r} ({type(energy).__name__}), expected a real number (eV)"]
    if not np.isfinite(float(energy)):
        return [f"energy is {float(energy)}, expected a finite number (eV)"]
    return plausibility.check_energy_scale(atoms, float(energy)) if len(atoms) else []


def _check_per_atom(atoms: Atoms, key: str, shape: tuple[int, ...], unit: str, plausible=None) -> list[str]:
    """Shape and finiteness of a per-atom array stored in arrays (or misplaced in info),
    then ``plausible(array)`` (a :mod:`~farfield.data.plausibility` check) if given."""
    value = atoms.arrays.get(key, atoms.info.get(key))
    array = _as_float_array(value)
    if array is None:
        return [f"{key} are not numeric (got {type(value).__name__}), expected {unit}"]
    if array.shape != shape:
        return [f"{key} have shape {array.shape}, expected {shape} (n_atoms={len(atoms)})"]
    if not np.isfinite(array).all():
        return [f"{key} contain {_first_non_finite(array)}"]
    return plausible(array) if plausible is not None else []


def _check_cell(atoms: Atoms) -> list[str]:
    if not atoms.pbc.any():
        return []
    volume = abs(float(np.linalg.det(atoms.cell.array)))
    if not np.isfinite(volume) or volume <= MIN_CELL_VOLUME:
        return [
            f"cell is degenerate: volume {volume:.3g} Å^3 with pbc={atoms.pbc.tolist()}, "
            f"expected > {MIN_CELL_VOLUME:g} Å^3 (three independent lattice vectors)"
        ]
    return []


def _check_overlaps(atoms: Atoms) -> list[str]:
    """Pairs closer than MIN_INTERATOMIC_DISTANCE, periodic images included."""
    import vesin  # local import: only needed here

    pbc = atoms.pbc
    box = atoms.cell.array if pbc.any() else np.zeros((3, 3))
    neighbors = vesin.NeighborList(cutoff=_OVERLAP_SEARCH_CUTOFF, full_list=False)
    first, second, shifts, distances = neighbors.compute(
        points=np.ascontiguousarray(atoms.positions, dtype=np.float64),
        box=np.ascontiguousarray(box, dtype=np.float64),
        periodic=pbc.tolist(),
        quantities="ijSd",
    )
    close = distances < MIN_INTERATOMIC_DISTANCE
    if not close.any():
        return []
    k = int(np.argmin(np.where(close, distances, np.inf)))
    i, j, distance = int(first[k]), int(second[k]), float(distances[k])
    image = " (periodic image)" if np.any(shifts[k]) else ""
    pair = f"atom {i} and its own periodic image" if i == j else f"atoms {i} and {j}{image}"
    return [
        f"overlapping atoms: {pair} are {distance:.3f} Å apart "
        f"({int(close.sum())} pair(s) closer than {MIN_INTERATOMIC_DISTANCE} Å)"
    ]


def _check_charges(atoms: Atoms) -> list[str]:
    if CHARGES not in atoms.arrays and CHARGES not in atoms.info:
        return []
    problems = _check_per_atom(atoms, CHARGES, (len(atoms),), "charges in e", plausibility.check_charge_scale)
    if problems:
        return problems
    total = atoms.info.get(TOTAL_CHARGE, 0.0)
    if not _is_real_scalar(total) or not np.isfinite(float(total)):
        return [f"total_charge is {total!r}, expected a finite number (e)"]
    charge_sum = float(np.sum(atoms.arrays.get(CHARGES, atoms.info.get(CHARGES))))
    if abs(charge_sum - float(total)) > CHARGE_SUM_TOLERANCE:
        return [
            f"charges sum to {charge_sum:.6g} e but total_charge is {float(total):.6g} e "
            f"(tolerance {CHARGE_SUM_TOLERANCE:g} e)"
        ]
    return []


def _check_stress(atoms: Atoms) -> list[str]:
    if STRESS not in atoms.info:
        return []
    stress = _as_float_array(atoms.info[STRESS])
    if stress is None or stress.shape not in ((6,), (3, 3)):
        shape = None if stress is None else stress.shape
        return [f"stress has shape {shape}, expected (6,) Voigt or (3, 3), eV/Å^3"]
    if not np.isfinite(stress).all():
        return ["stress contains NaN or inf"]
    return plausibility.check_stress_scale(stress)


def _fill_defaults(atoms: Atoms, file: str, frame: int) -> None:
    if atoms.info.get(STRUCTURE_ID) in (None, ""):
        atoms.info[STRUCTURE_ID] = f"{file_stem(file)}-{frame}"
    if atoms.info.get(PARENT_ID) in (None, ""):
        atoms.info[PARENT_ID] = atoms.info[STRUCTURE_ID]
    atoms.info.setdefault(TOTAL_CHARGE, 0.0)


def validate_atoms(
    atoms: Atoms, *, file: str, frame: int, require_labels: bool = True,
    require_forces: bool | None = None,
) -> list[Problem]:
    """Check one structure record; return all its problems (empty list if valid).

    ``atoms``: the record (energy in ``info``, forces/charges in ``arrays``, stress
    as Voigt-6 in ``info``); it is modified in place only to fill missing
    ``structure_id``, ``parent_id`` and ``total_charge``.
    ``file``/``frame``: where the record came from, used in messages and defaults.
    ``require_labels``: if False, a missing energy or missing forces is not a
    problem (for unlabelled structures such as CIFs about to be labelled);
    labels that are present are still checked.
    ``require_forces``: None follows ``require_labels``; False accepts a structure
    with an energy but no forces (energy-only data); True requires forces.
    """
    if require_forces is None:
        require_forces = require_labels
    messages: list[str] = []
    if len(atoms) == 0:
        messages.append("frame has no atoms")
    element_messages = _check_elements(atoms)
    messages += element_messages
    positions_ok = np.isfinite(atoms.positions).all()
    if not positions_ok:
        messages.append(f"positions contain {_first_non_finite(atoms.positions)}")
    if require_labels or ENERGY in atoms.info:
        messages += _check_energy(atoms)
    if FORCES in atoms.arrays or FORCES in atoms.info:
        messages += _check_per_atom(atoms, FORCES, (len(atoms), 3), "eV/Å", plausibility.check_force_scale)
    elif require_forces:
        messages.append(f"forces missing: no arrays[{FORCES!r}] (n_atoms, 3), eV/Å; "
                        f"{_keys('arrays', atoms.arrays)} (map other names with key_map, or accept "
                        f"energy-only data with --allow-missing-forces)")
    cell_messages = _check_cell(atoms)
    messages += cell_messages
    if positions_ok and not cell_messages and len(atoms) > 0:
        overlaps = _check_overlaps(atoms)
        messages += overlaps
        if not element_messages:  # masses and radii need known elements
            messages += plausibility.check_cell_density(atoms)
            if not overlaps:
                messages += plausibility.check_bonding(atoms)
    messages += _check_charges(atoms)
    messages += _check_stress(atoms)
    _fill_defaults(atoms, file, frame)
    return [Problem(file=file, frame=frame, message=message) for message in messages]
