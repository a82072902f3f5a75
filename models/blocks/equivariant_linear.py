"""Equivariant linear maps: mix channels within each irrep ``l``, never across ``l``."""

from __future__ import annotations

import math

import torch
from torch import nn


class EquivariantLinear(nn.Module):
    """Per-``l`` channel mixing of blocks (see ``farfield.models.blocks.irreps``).

    ``in_multiplicities[l]`` → ``out_multiplicities[l]`` channels for each ``l``; an ``l``
    with zero input or output multiplicity is dropped (outputs zeros if only the input is
    missing). ``bias`` adds a learned bias to the scalars (``l = 0``) only, which keeps the
    map equivariant. Weights are initialised ``N(0, 1/in_l)`` so outputs stay of order one.

    ``blocks``: list of (n, in_multiplicities[l], 2l+1) → list of (n, out_multiplicities[l], 2l+1).
    """

    def __init__(self, in_multiplicities: list[int], out_multiplicities: list[int], bias: bool = False):
        super().__init__()
        if len(in_multiplicities) != len(out_multiplicities):
            raise ValueError(
                f"in_multiplicities {in_multiplicities} and out_multiplicities {out_multiplicities} "
                "must list the same irreps l = 0..l_max"
            )
        self.in_multiplicities = list(in_multiplicities)
        self.out_multiplicities = list(out_multiplicities)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(max(n_in, 1), n_out) / math.sqrt(max(n_in, 1)))
            for n_in, n_out in zip(in_multiplicities, out_multiplicities)
        )
        self.bias = nn.Parameter(torch.zeros(out_multiplicities[0])) if bias and out_multiplicities[0] else None

    def forward(self, blocks: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(blocks) != len(self.in_multiplicities):
            raise ValueError(f"expected {len(self.in_multiplicities)} irrep blocks, got {len(blocks)}")
        out = []
        for l, (block, weight) in enumerate(zip(blocks, self.weights)):
            n_out = self.out_multiplicities[l]
            if self.in_multiplicities[l] == 0:
                out.append(block.new_zeros((block.shape[0], n_out, 2 * l + 1)))
                continue
            y = torch.einsum("nim,io->nom", block, weight)
            if l == 0 and self.bias is not None:
                y = y + self.bias[None, :, None]
            out.append(y)
        return out


class ElementGatedLinear(nn.Module):
    """Element-dependent equivariant linear map ``y[n,c] = g(Z_n)[c] · (W x[n])[c]``.

    The per-atom, per-output-channel gain ``g`` is an affine map of element features
    (n_atoms, n_element_features), e.g. from ``ElementEmbedding`` — a low-rank form of
    MACE/NequIP's skip connection (a tensor product with one-hot species), costing
    ``O(channels)`` per atom instead of one weight matrix per element.
    """

    def __init__(self, in_multiplicities: list[int], out_multiplicities: list[int], n_element_features: int):
        super().__init__()
        self.linear = EquivariantLinear(in_multiplicities, out_multiplicities)
        self.gains = nn.ModuleList(nn.Linear(n_element_features, n) for n in out_multiplicities)
        for gain in self.gains:
            nn.init.zeros_(gain.weight)
            nn.init.ones_(gain.bias)

    def forward(self, blocks: list[torch.Tensor], element_features: torch.Tensor) -> list[torch.Tensor]:
        """``element_features``: (n_atoms, n_element_features), invariant."""
        return [y * gain(element_features)[:, :, None] for y, gain in zip(self.linear(blocks), self.gains)]
