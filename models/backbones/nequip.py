"""NequIP-style backbone: gated equivariant convolutions with learned radial weights.

After Batzner et al., "E(3)-equivariant graph neural networks for data-efficient and
accurate interatomic potentials", Nat. Commun. 2022. One layer:

1. self-interaction: per-``l`` linear of the node features ``h`` (N, C, (L+1)²);
2. convolution: ``Σ_j R(r_ij) · (h_j ⊗ Y(r̂_ij))`` / avg_neighbors (channel-wise tensor
   product, radial MLP weights per path and channel);
3. linear to scalars, gates and ``l ≥ 1`` features, plus an element-dependent skip
   connection of ``h``;
4. gate nonlinearity (SiLU on scalars, sigmoid gates on ``l ≥ 1``), residual update
   from the second layer on.

The readout uses the scalars of the last layer. Features have irreps ``0..hidden_l_max``
of natural parity, edge spherical harmonics ``0..l_max``.
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
    Gate,
    join_blocks,
    split_blocks,
)
from farfield.models.graph import AtomicGraph


class NequIPConvolutionLayer(nn.Module):
    """One gated convolution: node features (N, C, (l_in+1)²) → (N, C, (l_out+1)²)."""

    def __init__(self, channels: int, l_in: int, l_out: int, l_sh: int, n_radial: int, radial_mlp: list[int],
                 avg_neighbors: float, n_element_features: int):
        super().__init__()
        self.l_in, self.l_out = l_in, l_out
        in_mults = [channels] * (l_in + 1)
        self.self_interaction = EquivariantLinear(in_mults, in_mults)
        self.convolution = EquivariantConvolution(channels, l_in, l_sh, l_out, n_radial, radial_mlp, avg_neighbors)
        self.gate = Gate(channels, l_out)
        self.linear = EquivariantLinear(self.convolution.out_multiplicities, self.gate.in_multiplicities, bias=True)
        padded_in = in_mults + [0] * max(l_out - l_in, 0)
        self.skip = ElementGatedLinear(padded_in[: l_out + 1], self.gate.in_multiplicities, n_element_features)
        self.residual = l_in == l_out

    def forward(self, h, element_features, sh, basis, envelope, edge_index) -> torch.Tensor:
        h_blocks = split_blocks(h, self.l_in)
        x = join_blocks(self.self_interaction(h_blocks))
        conv = self.linear(self.convolution(x, sh, basis, envelope, edge_index))
        skip_in = [*h_blocks, *(h.new_zeros((h.shape[0], 0, 2 * l + 1)) for l in range(self.l_in + 1, self.l_out + 1))]
        skip = self.skip(skip_in[: self.l_out + 1], element_features)
        out = self.gate([c + s for c, s in zip(conv, skip)])
        return h + out if self.residual else out


class NequIP(EquivariantStem):
    """NequIP-style backbone on a periodic graph (built from ``ModelConfig``, which holds the defaults).

    ``channels``: C, channels of every irrep. ``layers``: convolutions. ``cutoff``: Å.
    ``n_radial``: Bessel functions. ``l_max``: degree of the edge spherical harmonics.
    ``hidden_l_max``: highest irrep of the node features. ``radial_mlp``: hidden widths
    of the radial MLP. ``avg_neighbors``: normalisation of neighbour sums.
    ``n_element_features``: width of the element features of the skip connection.
    ``node_input_features``: width ``k`` of the optional ``node_inputs`` input (0 = off).
    """

    def __init__(self, *, channels: int, layers: int, cutoff: float, n_radial: int, l_max: int,
                 hidden_l_max: int, radial_mlp: tuple[int, ...], avg_neighbors: float, n_element_features: int,
                 node_input_features: int):
        super().__init__(channels=channels, layers=layers, cutoff=cutoff, n_radial=n_radial, l_max=l_max,
                         n_element_features=n_element_features, node_input_features=node_input_features)
        self.convolutions = nn.ModuleList(
            NequIPConvolutionLayer(channels, 0 if t == 0 else hidden_l_max, hidden_l_max, l_max, n_radial,
                                   list(radial_mlp), avg_neighbors, n_element_features)
            for t in range(layers)
        )

    def forward(self, graph: AtomicGraph, edge_vectors: torch.Tensor,
                node_inputs: torch.Tensor | None = None) -> BackboneOutput:
        """``edge_vectors``: (n_edges, 3), Å. ``node_inputs``: (n_atoms, k) or None (see blocks.node_inputs)."""
        stem = self.stem(graph.numbers, edge_vectors)
        edges, h = stem.edges, stem.node_features
        layer_features = []
        for t, convolution in enumerate(self.convolutions):
            h = convolution(self.inject(h, node_inputs, t), stem.element_features, stem.spherical_harmonics,
                            edges.basis, edges.envelope, graph.edge_index)
            layer_features.append(h[:, :, 0])
        return BackboneOutput(node_features=layer_features[-1], layer_features=layer_features,
                              edge_vectors=edge_vectors, edge_lengths=edges.lengths,
                              edge_basis=edges.basis, edge_envelope=edges.envelope)
