"""One structure as the numpy arrays a graph is made of: inputs, labels and its neighbour list.

:func:`structure_arrays` is the single place where a record (``ase.Atoms``, keys of
data/records.py) becomes graph data; the graph cache stores exactly these arrays and
``farfield.models.graph.AtomicGraph.from_arrays`` turns them into tensors, so graphs built
on the fly and graphs read from the cache cannot drift apart.

Conventions (docs/conventions.md): cells hold lattice vectors as rows; an edge
``(center=i, neighbor=j, shift=S)`` has vector ``r_ij = r_j + S @ cell - r_i`` and
carries a message from ``j`` to ``i``; neighbour lists are full (both directions).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from farfield.data import records
from farfield.data.graphs.neighbors import NeighborPairs, neighbor_pairs

__all__ = ["ATOM_KEYS", "EDGE_KEYS", "STRUCTURE_KEYS", "structure_arrays"]

#: Keys of :func:`structure_arrays`: per structure, per atom and per edge.
STRUCTURE_KEYS = ("structure_id", "cell", "pbc", "total_charge", "energy", "has_charges", "stress", "has_stress")
ATOM_KEYS = ("positions", "numbers", "forces", "charges")
EDGE_KEYS = ("center", "neighbor", "cell_shifts")


def structure_arrays(atoms: Atoms, cutoff: float, pairs: NeighborPairs | None = None) -> dict[str, np.ndarray]:
    """Everything an ``AtomicGraph`` holds about one structure, as numpy arrays.

    Per structure (``STRUCTURE_KEYS``): ``structure_id`` (0-d str), ``cell`` (3, 3) float64
    (zeros when non-periodic), ``pbc`` (3,) bool, ``total_charge``/``energy`` 0-d float64
    (energy NaN when absent), ``has_charges``/``has_stress`` 0-d bool, ``stress`` (3, 3)
    float64 (NaN when absent). Per atom (``ATOM_KEYS``): ``positions``, ``numbers`` int64,
    ``forces``, ``charges`` (NaN when absent). Per edge (``EDGE_KEYS``): ``center``,
    ``neighbor`` int64, ``cell_shifts`` (n_edges, 3) int64, vesin's list at ``cutoff`` Å
    (or ``pairs`` when given).
    """
    n = len(atoms)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array, dtype=np.float64) if pbc.any() else np.zeros((3, 3))
    if pairs is None:
        pairs = neighbor_pairs(atoms.positions, cell, pbc, cutoff)
    elif len(pairs.center) and max(int(pairs.center.max()), int(pairs.neighbor.max())) >= n:
        raise ValueError(f"neighbour pairs index atoms beyond the structure's {n} atoms")
    energy = atoms.info.get(records.ENERGY, np.nan)
    forces = atoms.arrays.get(records.FORCES)
    charges = atoms.arrays.get(records.CHARGES)
    stress = atoms.info.get(records.STRESS)
    stress33 = np.full((3, 3), np.nan) if stress is None else _voigt_to_matrix(np.asarray(stress, dtype=float))
    return {
        "structure_id": np.asarray(str(atoms.info.get(records.STRUCTURE_ID, ""))),
        "cell": cell,
        "pbc": pbc,
        "total_charge": np.asarray(atoms.info.get(records.TOTAL_CHARGE, 0.0), dtype=np.float64),
        "energy": np.asarray(energy if energy is not None else np.nan, dtype=np.float64),
        "has_charges": np.asarray(charges is not None),
        "stress": np.asarray(stress33, dtype=np.float64),
        "has_stress": np.asarray(stress is not None),
        "positions": np.asarray(atoms.positions),
        "numbers": np.asarray(atoms.numbers, dtype=np.int64),
        "forces": np.asarray(forces) if forces is not None else np.full((n, 3), np.nan),
        "charges": np.asarray(charges) if charges is not None else np.full(n, np.nan),
        "center": pairs.center,
        "neighbor": pairs.neighbor,
        "cell_shifts": pairs.cell_shifts,
    }


def _voigt_to_matrix(stress: np.ndarray) -> np.ndarray:
    """(6,) Voigt (xx yy zz yz xz xy) or (3, 3) → (3, 3), same unit."""
    if stress.shape == (3, 3):
        return stress
    xx, yy, zz, yz, xz, xy = stress.reshape(6)
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
