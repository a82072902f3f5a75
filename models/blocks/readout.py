"""Readouts from per-atom (or per-edge) features to per-atom energies, and per-element reference energies."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from farfield.models.blocks.embedding import MAX_ATOMIC_NUMBER
from farfield.models.blocks.mlp import MLP
from farfield.models.blocks.scatter import scatter_sum


class AtomwiseReadout(nn.Module):
    """Invariant per-atom features (n_atoms, channels) → per-atom scalar (n_atoms,).

    The output is multiplied by ``scale`` (a buffer in the output's unit, e.g. eV), so
    the network itself works with numbers of order one.
    """

    def __init__(self, channels: int, hidden: int | None = None, scale: float = 1.0):
        super().__init__()
        hidden = hidden or max(channels // 2, 1)
        self.mlp = MLP([channels, hidden, 1])
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).squeeze(-1) * self.scale


class EdgeEnergyReadout(nn.Module):
    """Invariant per-edge features (n_edges, n_features) → per-atom energies (n_atoms,).

    Allegro's readout: a bias-free MLP gives every edge ``ij`` an energy ``E_ij`` (zero
    for features that vanish, e.g. at the cutoff), and each atom gets the sum over the
    edges it is the centre of, ``E_i = Σ_j E_ij / sqrt(2 · avg_neighbors)`` (the
    reference's normalisation), times ``scale`` (a buffer in eV, as ``AtomwiseReadout``).
    """

    def __init__(self, n_features: int, avg_neighbors: float, hidden: int | None = None, scale: float = 1.0):
        super().__init__()
        hidden = hidden or max(n_features // 2, 1)
        self.mlp = MLP([n_features, hidden, 1], bias=False, normalized_init=True)
        self.factor = 1.0 / math.sqrt(2.0 * float(avg_neighbors))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, edge_features: torch.Tensor, centers: torch.Tensor, n_atoms: int) -> torch.Tensor:
        """``centers``: (n_edges,) int64, the atom each edge's energy belongs to (``edge_index[0]``)."""
        edge_energies = self.mlp(edge_features).squeeze(-1) * self.factor
        return scatter_sum(edge_energies, centers, n_atoms) * self.scale


class ReferenceEnergies(nn.Module):
    """Fixed per-element energies ``E0[Z]`` (eV) added to every atom of element ``Z``.

    Fitted by least squares on the training set (``fit_reference_energies``) and stored
    as a buffer, so they are saved in the checkpoint but never trained.
    """

    def __init__(self, values: torch.Tensor | None = None):
        super().__init__()
        if values is None:
            values = torch.zeros(MAX_ATOMIC_NUMBER + 1)
        if values.shape != (MAX_ATOMIC_NUMBER + 1,):
            raise ValueError(f"reference energies must have shape ({MAX_ATOMIC_NUMBER + 1},), got {tuple(values.shape)}")
        self.register_buffer("values", values.to(torch.get_default_dtype()))

    def forward(self, numbers: torch.Tensor) -> torch.Tensor:
        """``numbers``: (n_atoms,) int64 → (n_atoms,), eV."""
        return self.values[numbers]


def fit_reference_energies(element_counts: np.ndarray, energies: np.ndarray, ridge: float = 1e-8) -> np.ndarray:
    """Least-squares per-element energies.

    ``element_counts``: (n_structures, MAX_ATOMIC_NUMBER + 1), atoms of each element.
    ``energies``: (n_structures,), eV, total energies.
    Returns (MAX_ATOMIC_NUMBER + 1,), eV per atom; zero for elements never seen.
    A tiny ridge term makes the problem well posed when element counts are collinear
    (e.g. every MOF has the same H:C ratio); it does not bias well-determined values.
    """
    counts = np.asarray(element_counts, dtype=np.float64)
    energies = np.asarray(energies, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != MAX_ATOMIC_NUMBER + 1 or counts.shape[0] != energies.shape[0]:
        raise ValueError(
            f"element_counts must be (n_structures, {MAX_ATOMIC_NUMBER + 1}) matching energies "
            f"(n_structures,); got {counts.shape} and {energies.shape}"
        )
    seen = np.flatnonzero(counts.sum(axis=0) > 0)
    a = counts[:, seen]
    n_atoms = a.sum(axis=1, keepdims=True)
    # Solve in per-atom form so large and small cells weigh alike.
    lhs = a / n_atoms
    rhs = energies / n_atoms[:, 0]
    gram = lhs.T @ lhs + ridge * np.eye(len(seen))
    solution = np.linalg.solve(gram, lhs.T @ rhs)
    values = np.zeros(MAX_ATOMIC_NUMBER + 1)
    values[seen] = solution
    return values
