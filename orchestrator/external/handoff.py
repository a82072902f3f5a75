"""The split as an external trainer reads it: one extxyz file per side.

Each frame keeps its cell, periodicity, ``structure_id`` and ``parent_id``; the labels go
under the ``REF_`` keys mace-torch and NequIP read (so ASE's calculator fields never shadow
them), in farfield's units, which are both libraries' units: energy eV (total), forces
eV/Å, stress eV/Å³ (Voigt xx yy zz yz xz xy, ASE sign), reference charges e. The sides are
the trial's (``trial.side_ids``): made over parents, so no parent is on two sides.
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from farfield.data import records
from farfield.data.store import DatasetStore

ENERGY_KEY = "REF_energy"  #: info, eV
FORCES_KEY = "REF_forces"  #: arrays, (n_atoms, 3) eV/Å
STRESS_KEY = "REF_stress"  #: info, (6,) eV/Å³ Voigt, ASE sign
CHARGES_KEY = "REF_charges"  #: arrays, (n_atoms,) e


def trainer_frame(atoms: Atoms) -> Atoms:
    """A copy of a stored record with its labels under the ``REF_`` keys and no calculator."""
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.info[records.STRUCTURE_ID] = str(atoms.info[records.STRUCTURE_ID])
    frame.info[records.PARENT_ID] = str(atoms.info[records.PARENT_ID])
    frame.info[records.TOTAL_CHARGE] = float(atoms.info.get(records.TOTAL_CHARGE, 0.0))
    frame.info[ENERGY_KEY] = float(atoms.info[records.ENERGY])
    frame.arrays[FORCES_KEY] = np.asarray(atoms.arrays[records.FORCES], dtype=np.float64).copy()
    if atoms.info.get(records.STRESS) is not None:
        frame.info[STRESS_KEY] = np.asarray(atoms.info[records.STRESS], dtype=np.float64).reshape(6)
    if records.CHARGES in atoms.arrays:
        frame.arrays[CHARGES_KEY] = np.asarray(atoms.arrays[records.CHARGES], dtype=np.float64).copy()
    return frame


def write_sides(store: DatasetStore, ids: dict[str, list[str]], folder: Path) -> dict[str, Path]:
    """``{side: folder/<side>.extxyz}`` for every non-empty side of ``ids`` (structure ids per side)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for side, side_ids in ids.items():
        if not side_ids:
            continue
        path = folder / f"{side}.extxyz"
        ase.io.write(path, [trainer_frame(atoms) for atoms in store.read(side_ids)], format="extxyz")
        files[side] = path
    return files
