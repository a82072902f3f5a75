"""Real-space pair sums: the short-range Ewald part of periodic cells, and the full
Coulomb sum of non-periodic structures.

Pairs are a *full* list (``i→j`` and ``j→i``), found on detached coordinates by
``vesin`` and re-evaluated differentiably here (``r_ij = r_j + S @ cell − r_i``, see
docs/conventions.md), so potentials are differentiable in positions, cell, charges
and widths. An atom's own periodic images are pairs ``(i, i, S ≠ 0)``; the pair
``(i, i, 0)`` never appears.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from farfield.data.graphs import neighbor_pairs


@dataclass(frozen=True)
class PairList:
    """Pairs of one structure: ``center`` (n_pairs,) int64, ``neighbor`` (n_pairs,) int64,
    ``cell_shifts`` (n_pairs, 3) integer lattice shifts stored in the float dtype."""

    center: torch.Tensor
    neighbor: torch.Tensor
    cell_shifts: torch.Tensor

    def distances(self, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """(n_pairs,), Å, from ``positions`` (n_atoms, 3) Å and ``cell`` (3, 3) Å."""
        vectors = positions[self.neighbor] - positions[self.center] + self.cell_shifts @ cell
        return torch.linalg.vector_norm(vectors, dim=-1)


def periodic_pairs(positions: torch.Tensor, cell: torch.Tensor, cutoff: float) -> PairList:
    """All pairs closer than ``cutoff`` (Å) in a cell periodic in all three directions."""
    pairs = neighbor_pairs(
        positions.detach().cpu().numpy(), cell.detach().cpu().numpy(), np.ones(3, dtype=bool), cutoff
    )
    device, dtype = positions.device, positions.dtype
    return PairList(
        center=torch.as_tensor(pairs.center, device=device),
        neighbor=torch.as_tensor(pairs.neighbor, device=device),
        cell_shifts=torch.as_tensor(pairs.cell_shifts, device=device, dtype=dtype),
    )


def all_pairs(n_atoms: int, device: torch.device, dtype: torch.dtype) -> PairList:
    """Every ordered pair ``i ≠ j`` of a non-periodic structure (no cutoff)."""
    index = torch.arange(n_atoms, device=device)
    center, neighbor = torch.meshgrid(index, index, indexing="ij")
    keep = center != neighbor
    center, neighbor = center[keep], neighbor[keep]
    return PairList(center, neighbor, torch.zeros((center.shape[0], 3), device=device, dtype=dtype))


def pair_potential(pairs: PairList, kernel: torch.Tensor, charges: torch.Tensor) -> torch.Tensor:
    """``φ_i = Σ_pairs kernel_ij q_j``: (n_atoms, n_channels) from ``kernel`` (n_pairs,) and
    ``charges`` (n_atoms, n_channels); the unit is the kernel's times e."""
    contributions = kernel[:, None] * charges[pairs.neighbor]
    out = charges.new_zeros(charges.shape[0], charges.shape[1])
    return out.index_add(0, pairs.center, contributions)


def pair_matrix(pairs: PairList, kernel: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """Dense ``A_ij = Σ_{pairs (i, j, S)} kernel`` (n_atoms, n_atoms), the matrix of ``pair_potential``."""
    matrix = kernel.new_zeros(n_atoms * n_atoms)
    return matrix.index_add(0, pairs.center * n_atoms + pairs.neighbor, kernel).view(n_atoms, n_atoms)
