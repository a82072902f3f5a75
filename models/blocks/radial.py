"""Radial building blocks: Bessel basis and smooth polynomial cutoff envelope.

Both map edge lengths ``r`` (n_edges,), Å, to features used by every backbone;
``EdgeEmbedding`` applies them together to edge vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from farfield.data.graphs import check_cutoff


class PolynomialCutoff(nn.Module):
    """Smooth envelope ``f(r)`` going to zero at ``cutoff`` with ``p`` continuous derivatives.

    ``f(r) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for ``x = r/cutoff < 1``,
    0 beyond (Klicpera et al., DimeNet; as in NequIP/MACE).
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        cutoff = check_cutoff(cutoff)
        if p < 2:
            raise ValueError(f"polynomial cutoff exponent p must be >= 2, got {p}")
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r``: (n_edges,), Å → (n_edges,), dimensionless in [0, 1]."""
        p = self.p
        x = r / self.cutoff
        envelope = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * x.pow(p)
            + p * (p + 2) * x.pow(p + 1)
            - 0.5 * p * (p + 1) * x.pow(p + 2)
        )
        return envelope * (x < 1.0)


class BesselBasis(nn.Module):
    """``sqrt(2/c) sin(n π r / c) / r`` for ``n = 1..n_radial``; frequencies optionally trainable."""

    def __init__(self, cutoff: float, n_radial: int = 8, trainable: bool = False):
        super().__init__()
        if n_radial < 1:
            raise ValueError(f"n_radial must be >= 1, got {n_radial}")
        self.cutoff = float(cutoff)
        freqs = torch.arange(1, n_radial + 1, dtype=torch.get_default_dtype()) * math.pi / self.cutoff
        if trainable:
            self.frequencies = nn.Parameter(freqs)
        else:
            self.register_buffer("frequencies", freqs)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r``: (n_edges,), Å, > 0 → (n_edges, n_radial), 1/Å."""
        return self.prefactor * torch.sin(self.frequencies * r[:, None]) / r[:, None]


@dataclass
class EdgeFeatures:
    """Invariant descriptions of each edge shared by every backbone.

    ``lengths``: (n_edges,), Å. ``basis``: (n_edges, n_radial), Bessel functions, 1/Å.
    ``envelope``: (n_edges,), smooth cutoff in [0, 1].
    """

    lengths: torch.Tensor
    basis: torch.Tensor
    envelope: torch.Tensor


class EdgeEmbedding(nn.Module):
    """Edge vectors (n_edges, 3), Å → ``EdgeFeatures`` (Bessel basis and polynomial envelope)."""

    def __init__(self, cutoff: float, n_radial: int = 8, envelope_exponent: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.basis = BesselBasis(cutoff, n_radial)
        self.envelope = PolynomialCutoff(cutoff, envelope_exponent)

    def forward(self, edge_vectors: torch.Tensor) -> EdgeFeatures:
        lengths = torch.linalg.vector_norm(edge_vectors, dim=-1)
        return EdgeFeatures(lengths, self.basis(lengths), self.envelope(lengths))
