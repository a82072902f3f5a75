"""Allegro's strided tensor product: two equivariant features with the same channels,
coupled channel by channel, with learned weights per channel and path.

Unlike the dense layout of ``irreps.py`` (irreps ``0..l_max`` of natural parity), a
*strided* feature holds one copy of each irrep of a list ``[(l, p), ...]`` (``p = +1``
even, ``-1`` odd; pseudotensors allowed) per channel::

    x: (n, channels, Σ (2l + 1))      irreps stacked in list order, e3nn's real basis

For every path ``(l1 p1) ⊗ (l2 p2) → (l3 p3)`` allowed by ``|l1 - l2| ≤ l3 ≤ l1 + l2`` and
``p3 = p1 p2``::

    out[e, u, l3 M] = Σ_paths w[u, path] Σ_{m1 m2} C^{l1 l2 l3}_{m1 m2 M} x1[e, u, l1 m1] x2[idx(e), u, l2 m2]

with ``C`` e3nn's Wigner-3j symbols × ``sqrt(2 l3 + 1)`` (component normalisation) — the
``Contracter`` of mir-group/allegro with ``path_channel_coupling=True``. The second
operand is per *atom* (Allegro: the neighbour sum around the edge's centre) and is read
at ``idx(e)``; contracting it with the weighted Clebsch–Gordan tensor per atom first and
gathering the result onto the edges gives the same numbers as the reference's per-edge
outer product at a fraction of its cost.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

#: An irrep as ``(l, parity)``, parity +1 (even) or -1 (odd).
Irrep = tuple[int, int]


def harmonics_irreps(l_max: int) -> list[Irrep]:
    """Irreps of spherical harmonics ``0..l_max``: natural parity ``(l, (-1)^l)``."""
    return [(l, (-1) ** l) for l in range(l_max + 1)]


def strided_dim(irreps: list[Irrep]) -> int:
    """Components of one channel of a strided feature: ``Σ (2l + 1)``."""
    return sum(2 * l + 1 for l, _ in irreps)


def couples(a: Irrep, b: Irrep, out: Irrep) -> bool:
    """True if ``a ⊗ b`` contains ``out`` (triangle rule and parity)."""
    return abs(a[0] - b[0]) <= out[0] <= a[0] + b[0] and a[1] * b[1] == out[1]


class StridedTensorProduct(nn.Module):
    """``x1 (E, C, D1) ⊗ x2[idx] (E, C, D2) → (E, C, D_out)``, channel by channel (see module doc).

    ``irreps_in1``/``irreps_in2``/``irreps_out``: lists of ``(l, p)``; every output irrep
    must be reachable. ``channels``: C. Path weights ``w`` (C, n_paths) start uniform in
    ``[-√3, √3]`` (unit variance), as in the reference.
    """

    def __init__(self, irreps_in1: list[Irrep], irreps_in2: list[Irrep], irreps_out: list[Irrep], channels: int):
        super().__init__()
        self.irreps_in1, self.irreps_in2, self.irreps_out = list(irreps_in1), list(irreps_in2), list(irreps_out)
        self.channels = channels
        offsets = [_offsets(irreps) for irreps in (self.irreps_in1, self.irreps_in2, self.irreps_out)]
        self.paths = [
            (i1, i2, k)
            for k, c in enumerate(self.irreps_out)
            for i1, a in enumerate(self.irreps_in1)
            for i2, b in enumerate(self.irreps_in2)
            if couples(a, b, c)
        ]
        unreachable = {c for c in self.irreps_out} - {self.irreps_out[k] for _, _, k in self.paths}
        if unreachable:
            raise ValueError(f"output irreps {sorted(unreachable)} not reachable from {irreps_in1} ⊗ {irreps_in2}")
        dims = [strided_dim(irreps) for irreps in (self.irreps_in1, self.irreps_in2, self.irreps_out)]
        w3j = torch.zeros(len(self.paths), *dims, dtype=torch.float64)
        for p, (i1, i2, k) in enumerate(self.paths):
            l1, l2, l3 = self.irreps_in1[i1][0], self.irreps_in2[i2][0], self.irreps_out[k][0]
            block = o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * math.sqrt(2 * l3 + 1)
            w3j[p, offsets[0][i1]: offsets[0][i1] + 2 * l1 + 1, offsets[1][i2]: offsets[1][i2] + 2 * l2 + 1,
                offsets[2][k]: offsets[2][k] + 2 * l3 + 1] = block
        # (P, D2, D1 · D_out): the layout the per-atom contraction multiplies with
        self.register_buffer("w3j", w3j.permute(0, 2, 1, 3).reshape(len(self.paths), dims[1], -1)
                             .to(torch.get_default_dtype()))
        self.dims = dims
        self.weights = nn.Parameter(torch.empty(channels, len(self.paths)).uniform_(-math.sqrt(3), math.sqrt(3)))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``x1``: (E, C, D1) per edge; ``x2``: (N, C, D2) per atom; ``index``: (E,) int64 into ``x2``."""
        d1, d2, d_out = self.dims
        weighted = torch.einsum("up,pjk->ujk", self.weights, self.w3j)  # (C, D2, D1·D_out)
        coupling = torch.bmm(x2.transpose(0, 1), weighted)  # (C, N, D1·D_out), per atom
        coupling = coupling.transpose(0, 1).reshape(x2.shape[0], -1)
        per_edge = torch.index_select(coupling, 0, index).view(-1, self.channels, d1, d_out)
        return torch.matmul(x1.unsqueeze(-2), per_edge).squeeze(-2)


class WeightedHarmonics(nn.Module):
    """Spherical harmonics weighted per channel and ``l``: ``x[e, u, l m] = w[e, u, l] Y_lm(r̂_e)``.

    Allegro's ``MakeWeightedChannels`` (``weight_individual_irreps=True``): a strided
    feature with irreps ``harmonics_irreps(l_max)``. ``sh``: (E, (l_max+1)²);
    ``weights``: (E, channels · (l_max+1)) → (E, channels, (l_max+1)²).
    """

    def __init__(self, l_max: int, channels: int):
        super().__init__()
        self.channels, self.n_irreps = channels, l_max + 1
        spread = torch.zeros(l_max + 1, (l_max + 1) ** 2)
        for l in range(l_max + 1):
            spread[l, l * l: (l + 1) ** 2] = 1.0
        self.register_buffer("spread", spread, persistent=False)

    @property
    def n_weights(self) -> int:
        return self.channels * self.n_irreps

    def forward(self, sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        spread = (weights.reshape(-1, self.n_irreps) @ self.spread).view(sh.shape[0], self.channels, -1)
        return sh.unsqueeze(1) * spread


def _offsets(irreps: list[Irrep]) -> list[int]:
    starts, position = [], 0
    for l, _ in irreps:
        starts.append(position)
        position += 2 * l + 1
    return starts
