"""Periodic neighbour lists from ``vesin``.

A neighbour list is a *full* list (both ``i→j`` and ``j→i`` appear) of every pair
closer than ``cutoff`` (Å), including periodic images and an atom's own images in
cells smaller than the cutoff. See docs/conventions.md for the edge direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from vesin import NeighborList


def check_cutoff(cutoff: float, name: str = "cutoff") -> float:
    """``cutoff`` (Å) as a float; ValueError unless it is > 0 (and finite). The one place the
    condition is written: neighbour lists, the graph cache key and the configs call it."""
    value = float(cutoff)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be > 0 Å, got {cutoff}")
    return value


@dataclass(frozen=True)
class NeighborPairs:
    """Pairs ``(center, neighbor)`` within the cutoff of one structure.

    ``center``: (n_edges,) int64, index of the atom that receives the message.
    ``neighbor``: (n_edges,) int64, index of the atom that sends it.
    ``cell_shifts``: (n_edges, 3) int64, integer lattice translation ``S`` such that the
    neighbour's image sits at ``positions[neighbor] + S @ cell``.
    """

    center: np.ndarray
    neighbor: np.ndarray
    cell_shifts: np.ndarray


def neighbor_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> NeighborPairs:
    """All pairs closer than ``cutoff``.

    ``positions``: (n_atoms, 3), Å. ``cell``: (3, 3), Å, lattice vectors as rows.
    ``pbc``: (3,) bool. ``cutoff``: Å, > 0.
    """
    cutoff = check_cutoff(cutoff)
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    box = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if not pbc.any():
        box = np.zeros((3, 3))
    calculator = NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
    i, j, shifts = calculator.compute(points=positions, box=box, periodic=pbc.tolist(), quantities="ijS")
    return NeighborPairs(
        center=i.astype(np.int64), neighbor=j.astype(np.int64), cell_shifts=shifts.astype(np.int64)
    )
