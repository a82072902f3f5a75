"""A batch of periodic atomic graphs: structures concatenated along the atom axis.

One ``AtomicGraph`` holds ``n_graphs`` structures. Per-atom tensors are concatenated,
``batch`` maps each atom to its structure, and edge indices are offset into the
concatenated atom axis. The same class holds a single structure (``n_graphs == 1``).

Conventions (docs/conventions.md): cells hold lattice vectors as rows; an edge
``(center=i, neighbor=j, shift=S)`` has vector ``r_ij = r_j + S @ cell - r_i`` and
carries a message from ``j`` to ``i``; neighbour lists are full (both directions).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
from ase import Atoms

from farfield.data import records
from farfield.models.graph.neighbors import NeighborPairs, neighbor_pairs


@dataclass
class AtomicGraph:
    """Inputs and (optional) reference labels of one or more structures.

    Inputs
    ------
    ``positions``: (n_atoms, 3), Å. ``numbers``: (n_atoms,) int64, atomic numbers.
    ``cell``: (n_graphs, 3, 3), Å (zeros for non-periodic). ``pbc``: (n_graphs, 3) bool.
    ``batch``: (n_atoms,) int64, structure index of each atom.
    ``edge_index``: (2, n_edges) int64, row 0 = center (receiver), row 1 = neighbor (sender).
    ``cell_shifts``: (n_edges, 3), integer lattice shifts, stored in the float dtype.
    ``n_atoms``: (n_graphs,) int64. ``total_charge``: (n_graphs,), e.

    Labels (NaN / False where absent)
    ---------------------------------
    ``energy``: (n_graphs,), eV. ``forces``: (n_atoms, 3), eV/Å.
    ``charges``: (n_atoms,), e; ``has_charges``: (n_graphs,) bool.
    ``stress``: (n_graphs, 3, 3), eV/Å³; ``has_stress``: (n_graphs,) bool.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    edge_index: torch.Tensor
    cell_shifts: torch.Tensor
    n_atoms: torch.Tensor
    total_charge: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    charges: torch.Tensor
    has_charges: torch.Tensor
    stress: torch.Tensor
    has_stress: torch.Tensor
    structure_ids: list[str] = field(default_factory=list)
    cutoff: float = 0.0

    @property
    def n_graphs(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def periodic(self) -> torch.Tensor:
        """(n_graphs,) bool, True where any direction is periodic."""
        return self.pbc.any(dim=1)

    def edge_vectors(self, positions: torch.Tensor | None = None, cell: torch.Tensor | None = None) -> torch.Tensor:
        """(n_edges, 3), Å: ``r_j + S @ cell - r_i``, differentiable in positions and cell."""
        positions = self.positions if positions is None else positions
        cell = self.cell if cell is None else cell
        center, neighbor = self.edge_index
        edge_cell = cell[self.batch[center]]
        offsets = torch.einsum("ek,ekl->el", self.cell_shifts, edge_cell)
        return positions[neighbor] - positions[center] + offsets

    def volume(self, cell: torch.Tensor | None = None) -> torch.Tensor:
        """(n_graphs,), Å³; NaN for non-periodic structures."""
        cell = self.cell if cell is None else cell
        vol = torch.linalg.det(cell).abs()
        return torch.where(self.periodic, vol, torch.full_like(vol, float("nan")))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> AtomicGraph:
        """Copy onto ``device`` with floating tensors cast to ``dtype``."""
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                if value.is_floating_point() and dtype is not None:
                    value = value.to(dtype=dtype)
                changes[f.name] = value.to(device=device) if device is not None else value
        return replace(self, **changes)

    @classmethod
    def from_atoms(
        cls, atoms: Atoms, cutoff: float, dtype: torch.dtype = torch.float64, pairs: NeighborPairs | None = None
    ) -> AtomicGraph:
        """Graph of one structure; labels are read per data/records.py where present.

        ``pairs``: its neighbour list at ``cutoff`` if already known (e.g. from the graph
        cache); computed with vesin when None.
        """
        return cls.from_arrays(structure_arrays(atoms, cutoff, pairs), cutoff, dtype)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], cutoff: float, dtype: torch.dtype = torch.float64) -> AtomicGraph:
        """Graph of one structure from :func:`structure_arrays` output (or the same arrays read back
        from the graph cache); float arrays are cast to ``dtype``."""

        def tensor(name, dt=dtype):
            return torch.as_tensor(arrays[name], dtype=dt)

        n = int(arrays["numbers"].shape[0])
        return cls(
            positions=tensor("positions"),
            numbers=tensor("numbers", torch.long),
            cell=tensor("cell")[None],
            pbc=torch.as_tensor(arrays["pbc"])[None],
            batch=torch.zeros(n, dtype=torch.long),
            edge_index=torch.as_tensor(np.stack([arrays["center"], arrays["neighbor"]])),
            cell_shifts=tensor("cell_shifts"),
            n_atoms=torch.tensor([n]),
            total_charge=tensor("total_charge")[None],
            energy=tensor("energy")[None],
            forces=tensor("forces"),
            charges=tensor("charges"),
            has_charges=torch.as_tensor(arrays["has_charges"])[None],
            stress=tensor("stress")[None],
            has_stress=torch.as_tensor(arrays["has_stress"])[None],
            structure_ids=[str(arrays["structure_id"])],
            cutoff=float(cutoff),
        )


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


def collate(graphs: list[AtomicGraph]) -> AtomicGraph:
    """Concatenate graphs into one batch, offsetting atom indices of edges and ``batch``."""
    if not graphs:
        raise ValueError("collate needs at least one graph")
    cutoffs = {g.cutoff for g in graphs}
    if len(cutoffs) > 1:
        raise ValueError(f"cannot batch graphs built with different cutoffs: {sorted(cutoffs)}")
    atom_offsets = torch.cumsum(torch.tensor([0] + [int(g.n_atoms.sum()) for g in graphs[:-1]]), 0)
    graph_offsets = torch.cumsum(torch.tensor([0] + [g.n_graphs for g in graphs[:-1]]), 0)
    cat = lambda name: torch.cat([getattr(g, name) for g in graphs])  # noqa: E731
    return AtomicGraph(
        positions=cat("positions"),
        numbers=cat("numbers"),
        cell=cat("cell"),
        pbc=cat("pbc"),
        batch=torch.cat([g.batch + o for g, o in zip(graphs, graph_offsets)]),
        edge_index=torch.cat([g.edge_index + o for g, o in zip(graphs, atom_offsets)], dim=1),
        cell_shifts=cat("cell_shifts"),
        n_atoms=cat("n_atoms"),
        total_charge=cat("total_charge"),
        energy=cat("energy"),
        forces=cat("forces"),
        charges=cat("charges"),
        has_charges=cat("has_charges"),
        stress=cat("stress"),
        has_stress=cat("has_stress"),
        structure_ids=[s for g in graphs for s in g.structure_ids],
        cutoff=graphs[0].cutoff,
    )


def _voigt_to_matrix(stress: np.ndarray) -> np.ndarray:
    """(6,) Voigt (xx yy zz yz xz xy) or (3, 3) → (3, 3), same unit."""
    if stress.shape == (3, 3):
        return stress
    xx, yy, zz, yz, xz, xy = stress.reshape(6)
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def matrix_to_voigt(stress: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) → (..., 6) Voigt order xx yy zz yz xz xy."""
    idx = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])
    return stress[..., idx[0], idx[1]]
