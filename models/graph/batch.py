"""A batch of periodic atomic graphs (torch tensors): structures concatenated along the atom axis.

One ``AtomicGraph`` holds ``n_graphs`` structures. Per-atom tensors are concatenated,
``batch`` maps each atom to its structure, and edge indices are offset into the
concatenated atom axis. The same class holds a single structure (``n_graphs == 1``).

Conventions (docs/conventions.md): cells hold lattice vectors as rows; an edge
``(center=i, neighbor=j, shift=S)`` has vector ``r_ij = r_j + S @ cell - r_i`` and
carries a message from ``j`` to ``i``; neighbour lists are full (both directions).
The numpy side (neighbour lists, a structure's arrays, the graph cache) is data
preparation and lives in ``farfield.data.graphs``; this module only makes tensors of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
from ase import Atoms

from farfield.data.graphs import NeighborPairs, structure_arrays


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
        # index_select, not x[index]: the same rows, and its backward (index_add) is ~2.5x faster
        # on CPU than advanced indexing's (index_put with accumulation)
        edge_cell = torch.index_select(cell, 0, torch.index_select(self.batch, 0, center))
        offsets = torch.einsum("ek,ekl->el", self.cell_shifts, edge_cell)
        return torch.index_select(positions, 0, neighbor) - torch.index_select(positions, 0, center) + offsets

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
        """Graph of one structure from :func:`farfield.data.graphs.structure_arrays` output (or the
        same arrays read back from the graph cache); float arrays are cast to ``dtype``."""

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


def matrix_to_voigt(stress: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) → (..., 6) Voigt order xx yy zz yz xz xy."""
    idx = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])
    return stress[..., idx[0], idx[1]]
