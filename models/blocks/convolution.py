"""Equivariant point convolution: channel-wise tensor product of neighbour features with
spherical harmonics of the edge, weighted by learned radial functions, summed over neighbours.

For every allowed path ``(l1, l2) → l3`` (``|l1 - l2| ≤ l3 ≤ l1 + l2``, parity conserved,
all irreps of natural parity)::

    m_i[c, l3 M] = 1/avg_neighbors Σ_j R_path,c(r_ij) Σ_{m1 m2} C^{l1 l2 l3}_{m1 m2 M} x_j[c, l1 m1] Y_{l2 m2}(r̂_ij)

with ``C`` e3nn's real Wigner-3j symbols scaled by ``sqrt(2 l3 + 1)`` and ``R`` a radial MLP
times the smooth cutoff envelope. This is e3nn's ``uvu`` ("channel-wise") tensor product as
used by NequIP and MACE, written as two dense contractions per edge: first ``Y`` with the
stacked Clebsch–Gordan matrix, ``(n_edges, D_in, P)``, then a batched product with the
neighbour features, ``(n_edges, channels, P)`` — no per-path Python loop.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from farfield.models.blocks.irreps import irrep_dim, irrep_slice
from farfield.models.blocks.mlp import MLP
from farfield.models.blocks.scatter import scatter_sum


def tensor_product_paths(l_in_max: int, l_sh_max: int, l_out_max: int) -> list[tuple[int, int, int]]:
    """Allowed ``(l1, l2, l3)`` with natural parity throughout, sorted by ``l3`` (then l1, l2)."""
    paths = [
        (l1, l2, l3)
        for l3 in range(l_out_max + 1)
        for l1 in range(l_in_max + 1)
        for l2 in range(l_sh_max + 1)
        if abs(l1 - l2) <= l3 <= l1 + l2 and (l1 + l2 + l3) % 2 == 0
    ]
    if not paths:
        raise ValueError(f"no tensor-product path for l_in_max={l_in_max}, l_sh_max={l_sh_max}, l_out_max={l_out_max}")
    return paths


class ChannelwiseTensorProduct(nn.Module):
    """Dense channel-wise tensor product ``x ⊗ Y → paths``.

    ``forward(x (E, C, (l_in_max+1)²), sh (E, (l_sh_max+1)²), weights (E, C, n_paths))``
    → (E, C, P) with ``P = Σ_paths (2 l3 + 1)``, grouped by ``l3`` (``paths_per_l[l3]``
    consecutive paths each). ``split_by_l`` turns it into blocks for ``EquivariantLinear``.
    """

    def __init__(self, l_in_max: int, l_sh_max: int, l_out_max: int):
        super().__init__()
        self.l_in_max, self.l_sh_max, self.l_out_max = l_in_max, l_sh_max, l_out_max
        self.paths = tensor_product_paths(l_in_max, l_sh_max, l_out_max)
        self.paths_per_l = [sum(1 for p in self.paths if p[2] == l) for l in range(l_out_max + 1)]
        d_in, d_sh = irrep_dim(l_in_max), irrep_dim(l_sh_max)
        n_out = sum(2 * l3 + 1 for _, _, l3 in self.paths)
        cg = torch.zeros(d_sh, d_in, n_out, dtype=torch.float64)
        column = 0
        for l1, l2, l3 in self.paths:
            w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * (2 * l3 + 1) ** 0.5
            cg[irrep_slice(l2), irrep_slice(l1), column : column + 2 * l3 + 1] = w3j.transpose(0, 1)
            column += 2 * l3 + 1
        self.register_buffer("cg", cg.reshape(d_sh, d_in * n_out).to(torch.get_default_dtype()))
        self.n_out = n_out

    @property
    def n_paths(self) -> int:
        return len(self.paths)

    def forward(self, x: torch.Tensor, sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        n_edges, channels, d_in = x.shape
        coupling = (sh @ self.cg).reshape(n_edges, d_in, self.n_out)  # (E, D_in, P)
        out = torch.bmm(x, coupling) if d_in > 1 else x * coupling  # (E, C, P)
        # radial weights per path: split + broadcasting (gathers and many overlapping
        # slices would make the double backward of force training slow)
        widths = [n * (2 * l + 1) for l, n in enumerate(self.paths_per_l)]
        weighted = [
            (block.reshape(n_edges, channels, n, 2 * l + 1) * w[..., None]).reshape(n_edges, channels, -1)
            for l, (n, block, w) in enumerate(zip(self.paths_per_l, out.split(widths, -1), weights.split(self.paths_per_l, -1)))
        ]
        return torch.cat(weighted, dim=-1)

    def split_by_l(self, out: torch.Tensor) -> list[torch.Tensor]:
        """(n, C, P) → one (n, C · paths_per_l[l], 2l+1) block per ``l3``."""
        n, channels = out.shape[0], out.shape[1]
        widths = [k * (2 * l + 1) for l, k in enumerate(self.paths_per_l)]
        return [
            block.reshape(n, channels * k, 2 * l + 1)
            for l, (k, block) in enumerate(zip(self.paths_per_l, out.split(widths, dim=-1)))
        ]


class RadialWeights(nn.Module):
    """Learned radial functions ``R(r) = MLP(bessel(r)) · envelope(r)``, smooth at the cutoff.

    ``basis``: (E, n_radial); ``envelope``: (E,) → (E, n_out).
    """

    def __init__(self, n_radial: int, hidden: list[int], n_out: int):
        super().__init__()
        self.mlp = MLP([n_radial, *hidden, n_out])

    def forward(self, basis: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        return self.mlp(basis) * envelope[:, None]


class EquivariantConvolution(nn.Module):
    """Neighbour sum of ``ChannelwiseTensorProduct`` messages with radial weights.

    ``x``: (N, C, (l_in_max+1)²) node features; ``sh``: (E, (l_sh_max+1)²);
    ``basis``/``envelope``: radial features of the edges; ``edge_index``: (2, E),
    row 0 = center (receiver). Returns blocks per ``l3`` (see ``split_by_l``), divided by
    ``avg_neighbors`` so sums over ~avg_neighbors terms stay of order one.
    """

    def __init__(self, channels: int, l_in_max: int, l_sh_max: int, l_out_max: int, n_radial: int,
                 radial_hidden: list[int], avg_neighbors: float):
        super().__init__()
        self.channels = channels
        self.tensor_product = ChannelwiseTensorProduct(l_in_max, l_sh_max, l_out_max)
        self.radial = RadialWeights(n_radial, radial_hidden, self.tensor_product.n_paths * channels)
        self.inv_avg_neighbors = 1.0 / float(avg_neighbors)

    @property
    def out_multiplicities(self) -> list[int]:
        return [self.channels * n for n in self.tensor_product.paths_per_l]

    def forward(self, x, sh, basis, envelope, edge_index) -> list[torch.Tensor]:
        center, neighbor = edge_index
        weights = self.radial(basis, envelope).reshape(-1, self.channels, self.tensor_product.n_paths)
        messages = self.tensor_product(torch.index_select(x, 0, neighbor), sh, weights)
        summed = scatter_sum(messages, center, x.shape[0]) * self.inv_avg_neighbors
        return self.tensor_product.split_by_l(summed)
