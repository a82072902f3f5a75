"""MACE-style backbone: equivariant message passing with higher body-order messages.

After Batatia, Kovács, Simm, Ortner, Csányi, "MACE: Higher Order Equivariant Message
Passing Neural Networks", NeurIPS 2022. One layer ``t``:

1. ``linear_up``: per-``l`` channel mixing of the node features ``h`` (N, C, (L_in+1)²);
2. atomic basis ``A_i = linear(Σ_j R(r_ij) · (h_j ⊗ Y(r̂_ij)))`` / avg_neighbors, irreps
   ``0..l_max`` (the 2-body, channel-wise tensor-product convolution);
3. product basis ``B_i = SymmetricContraction(A_i)``: all symmetric products of ``A`` up
   to ``correlation`` (body order ``correlation + 1``), element-dependent weights;
4. ``h ← linear(B) + skip(h)`` (element-dependent skip; not on the first layer);
   hidden irreps ``0..hidden_l_max``, scalars only on the last layer.

Per-layer readouts: the invariant part of every layer is projected (``Linear(C, C)``)
and the projections are summed into ``node_features``; the potential's readout maps
that sum to per-atom energies — MACE's sum of per-layer readouts, with one shared
nonlinear head. All irreps have natural parity (``0e, 1o, 2e, 3o``), so the model is
equivariant under rotations *and* inversion.
"""

from __future__ import annotations

import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import (
    ElementGatedLinear,
    EquivariantConvolution,
    EquivariantLinear,
    EquivariantStem,
    SymmetricContraction,
    join_blocks,
    split_blocks,
)
from farfield.models.graph import AtomicGraph


class MACEInteraction(nn.Module):
    """One MACE layer: node features (N, C, (l_in+1)²) → (N, C, (l_out+1)²)."""

    def __init__(self, channels: int, l_in: int, l_out: int, l_sh: int, correlation: int, n_radial: int,
                 radial_mlp: list[int], avg_neighbors: float, n_element_features: int, residual: bool):
        super().__init__()
        self.l_in, self.l_out = l_in, l_out
        self.linear_up = EquivariantLinear([channels] * (l_in + 1), [channels] * (l_in + 1))
        self.convolution = EquivariantConvolution(channels, l_in, l_sh, l_sh, n_radial, radial_mlp, avg_neighbors)
        self.linear_basis = EquivariantLinear(self.convolution.out_multiplicities, [channels] * (l_sh + 1))
        self.product = SymmetricContraction(channels, l_sh, l_out, correlation, n_element_features)
        self.linear_out = EquivariantLinear([channels] * (l_out + 1), [channels] * (l_out + 1), bias=True)
        self.skip = (
            ElementGatedLinear([channels] * (l_out + 1), [channels] * (l_out + 1), n_element_features)
            if residual and l_in >= l_out else None
        )

    def forward(self, h, element_features, sh, basis, envelope, edge_index) -> torch.Tensor:
        h_blocks = split_blocks(h, self.l_in)
        x = join_blocks(self.linear_up(h_blocks))
        atomic_basis = join_blocks(self.linear_basis(self.convolution(x, sh, basis, envelope, edge_index)))
        product = self.product(atomic_basis, element_features)
        out = self.linear_out(split_blocks(product, self.l_out))
        if self.skip is not None:
            skip = self.skip(h_blocks[: self.l_out + 1], element_features)
            out = [o + s for o, s in zip(out, skip)]
        return join_blocks(out)


class MACE(EquivariantStem):
    """MACE-style backbone on a periodic graph (built from ``ModelConfig``, which holds the defaults).

    ``channels``: C, channels of every irrep. ``layers``: interactions. ``cutoff``: Å.
    ``n_radial``: Bessel functions. ``l_max``: degree of the edge spherical harmonics and
    of the atomic basis ``A`` (MACE's ``max_ell``). ``hidden_l_max``: highest irrep of
    the node features between layers (MACE's ``max_L``). ``correlation``: order of the
    symmetric contraction (body order = correlation + 1). ``radial_mlp``: hidden widths
    of the radial MLP. ``avg_neighbors``: normalisation of neighbour sums.
    ``n_element_features``: rank of the element-dependent weights.
    ``node_input_features``: width ``k`` of the optional ``node_inputs`` input (0 = off).
    """

    def __init__(self, *, channels: int, layers: int, cutoff: float, n_radial: int, l_max: int,
                 hidden_l_max: int, correlation: int, radial_mlp: tuple[int, ...], avg_neighbors: float,
                 n_element_features: int, node_input_features: int):
        super().__init__(channels=channels, layers=layers, cutoff=cutoff, n_radial=n_radial, l_max=l_max,
                         n_element_features=n_element_features, node_input_features=node_input_features)
        self.interactions = nn.ModuleList()
        for t in range(layers):
            l_in = 0 if t == 0 else hidden_l_max
            l_out = hidden_l_max if t < layers - 1 else 0
            self.interactions.append(MACEInteraction(
                channels, l_in, l_out, l_max, correlation, n_radial, list(radial_mlp), avg_neighbors,
                n_element_features, residual=t > 0,
            ))
        self.layer_readouts = nn.ModuleList(nn.Linear(channels, channels) for _ in range(layers))

    def forward(self, graph: AtomicGraph, edge_vectors: torch.Tensor,
                node_inputs: torch.Tensor | None = None) -> BackboneOutput:
        """``edge_vectors``: (n_edges, 3), Å. ``node_inputs``: (n_atoms, k) or None (see blocks.node_inputs)."""
        stem = self.stem(graph.numbers, edge_vectors)
        edges, h = stem.edges, stem.node_features
        layer_features, node_features = [], None
        for t, interaction in enumerate(self.interactions):
            h = interaction(self.inject(h, node_inputs, t), stem.element_features, stem.spherical_harmonics,
                            edges.basis, edges.envelope, graph.edge_index)
            layer_features.append(h[:, :, 0])
            projected = self.layer_readouts[t](h[:, :, 0])
            node_features = projected if node_features is None else node_features + projected
        return BackboneOutput(node_features=node_features, layer_features=layer_features,
                              edge_vectors=edge_vectors, edge_lengths=edges.lengths,
                              edge_basis=edges.basis, edge_envelope=edges.envelope)
