"""Equivariant feature layout shared by the e3nn backbones, and spherical harmonics.

farfield keeps equivariant node features in one dense layout::

    x: (n_atoms, channels, (l_max + 1) ** 2)

The last axis stacks the irreps ``l = 0, 1, ..., l_max`` (``2l + 1`` components each,
in e3nn's real basis and order), every irrep with the *same* number of channels and
with natural parity ``(-1)^l`` (``0e, 1o, 2e, 3o, ...``), the parity spherical
harmonics of edge directions carry. ``x[:, :, 0]`` is the invariant (scalar) part.

Layers that need different multiplicities per ``l`` (e.g. gates, or several tensor
product paths into one ``l``) work on *blocks*: a list with one
``(n_atoms, multiplicity_l, 2l + 1)`` tensor per ``l``. ``split_blocks`` and
``join_blocks`` convert; ``to_e3nn_layout`` gives e3nn's flat ``mul_ir`` layout and
``irreps_string`` its ``Irreps``, e.g. to run ``e3nn.util.test.assert_equivariant``.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn


def irrep_dim(l_max: int) -> int:
    """Components of irreps ``0..l_max`` stacked: ``(l_max + 1) ** 2``."""
    return (l_max + 1) ** 2


def irrep_slice(l: int) -> slice:
    """Components of irrep ``l`` on the last axis of the dense layout."""
    return slice(l * l, (l + 1) * (l + 1))


def natural_parity(l: int) -> int:
    """Parity of spherical harmonics of degree ``l``: +1 even, -1 odd."""
    return 1 if l % 2 == 0 else -1


def irreps_string(multiplicities: list[int]) -> str:
    """e3nn ``Irreps`` of blocks with ``multiplicities[l]`` copies of ``l`` (natural parity)."""
    return "+".join(f"{m}x{l}{'e' if l % 2 == 0 else 'o'}" for l, m in enumerate(multiplicities) if m > 0)


def split_blocks(x: torch.Tensor, l_max: int) -> list[torch.Tensor]:
    """(n, channels, (l_max+1)²) → one (n, channels, 2l+1) view per ``l``."""
    if x.shape[-1] != irrep_dim(l_max):
        raise ValueError(f"expected last axis {irrep_dim(l_max)} for l_max={l_max}, got shape {tuple(x.shape)}")
    return list(x.split([2 * l + 1 for l in range(l_max + 1)], dim=-1))


def join_blocks(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Blocks with equal multiplicity (n, channels, 2l+1) → dense (n, channels, (l_max+1)²)."""
    return torch.cat(blocks, dim=-1)


def to_e3nn_layout(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Blocks (n, mul_l, 2l+1) → e3nn ``mul_ir`` layout (n, Σ mul_l (2l+1)); see ``irreps_string``."""
    return torch.cat([b.reshape(b.shape[0], -1) for b in blocks], dim=-1)


class SphericalHarmonics(nn.Module):
    """Real spherical harmonics ``Y_lm(r̂)`` for ``l = 0..l_max`` of edge vectors (e3nn).

    Component normalisation (``Σ_m Y_lm² = 2l + 1``), so every component is of order one.
    ``edge_vectors``: (n_edges, 3), Å (normalised inside) → (n_edges, (l_max + 1)²).
    """

    def __init__(self, l_max: int):
        super().__init__()
        if l_max < 0:
            raise ValueError(f"l_max must be >= 0, got {l_max}")
        self.l_max = int(l_max)
        self.ls = list(range(self.l_max + 1))

    def forward(self, edge_vectors: torch.Tensor) -> torch.Tensor:
        return o3.spherical_harmonics(self.ls, edge_vectors, normalize=True, normalization="component")
