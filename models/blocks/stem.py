"""The stem every e3nn-style backbone starts with (MACE-style, NequIP-style).

Before its first interaction such a backbone needs the same five things: the initial node
features from the element (an embedding), element features for element-dependent weights,
the radial description of every edge (Bessel basis and smooth envelope), the edge
spherical harmonics, and the hook through which a head feeds per-atom values back
(``node_inputs``, e.g. CELLI's charges). :class:`EquivariantStem` builds them once.

It is a base class rather than a submodule so that its parameters keep the names they
always had on the backbone (``embedding.weight``, ``node_inputs.projections.0.weight``):
checkpoints of earlier runs load unchanged. The modules are created in that fixed order,
so a seed gives the same initial weights as before the stem was shared.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from farfield.models.blocks.embedding import ElementEmbedding
from farfield.models.blocks.irreps import SphericalHarmonics
from farfield.models.blocks.node_inputs import NodeInputInjection
from farfield.models.blocks.radial import EdgeEmbedding, EdgeFeatures


@dataclass
class StemFeatures:
    """What the stem gives the first interaction.

    ``node_features``: (n_atoms, channels, 1), the element embedding as the ``l = 0`` block of
    the dense irreps layout. ``element_features``: (n_atoms, n_element_features).
    ``edges``: lengths (Å), Bessel basis (1/Å) and envelope of every edge.
    ``spherical_harmonics``: (n_edges, (l_max + 1)²) of the edge directions.
    """

    node_features: torch.Tensor
    element_features: torch.Tensor
    edges: EdgeFeatures
    spherical_harmonics: torch.Tensor


class EquivariantStem(nn.Module):
    """Base of the e3nn-style backbones: creates ``embedding``, ``element_features``,
    ``edge_embedding``, ``spherical_harmonics`` and ``node_inputs`` on the backbone.

    ``channels``: C. ``layers``: interactions (the node-input hook has one projection per
    layer it feeds). ``cutoff``: Å. ``n_radial``: Bessel functions. ``l_max``: degree of the
    edge spherical harmonics. ``n_element_features``: width of the element features.
    ``node_input_features``: width ``k`` of the optional ``node_inputs`` (0 = off).
    """

    def __init__(self, *, channels: int, layers: int, cutoff: float, n_radial: int, l_max: int,
                 n_element_features: int, node_input_features: int):
        super().__init__()
        self.channels, self.cutoff = channels, float(cutoff)
        self.embedding = ElementEmbedding(channels)
        self.element_features = ElementEmbedding(n_element_features)
        self.edge_embedding = EdgeEmbedding(cutoff, n_radial)
        self.spherical_harmonics = SphericalHarmonics(l_max)
        self.node_inputs = NodeInputInjection(node_input_features, channels, layers)

    def stem(self, numbers: torch.Tensor, edge_vectors: torch.Tensor) -> StemFeatures:
        """``numbers``: (n_atoms,) atomic numbers; ``edge_vectors``: (n_edges, 3), Å."""
        return StemFeatures(
            node_features=self.embedding(numbers)[:, :, None],
            element_features=self.element_features(numbers),
            edges=self.edge_embedding(edge_vectors),
            spherical_harmonics=self.spherical_harmonics(edge_vectors),
        )

    def inject(self, h: torch.Tensor, node_inputs: torch.Tensor | None, layer: int) -> torch.Tensor:
        """``h`` (n_atoms, C, (L+1)²) with the node-input hook applied to its scalars before ``layer``."""
        scalars = self.node_inputs(h[:, :, 0], node_inputs, layer)
        return torch.cat([scalars[:, :, None], h[:, :, 1:]], dim=-1)
