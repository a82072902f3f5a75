"""What every backbone returns, so long-range heads can read any of them alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class BackboneOutput:
    """Features of a batch after message passing.

    ``node_features``: (n_atoms, channels), invariant (rotation- and inversion-independent)
    features; the energy readout and the long-range heads read these. PaiNN and NequIP:
    the scalars of the last layer (``node_features is layer_features[-1]``); MACE: the
    sum of per-layer linear projections of every layer's scalars (MACE's per-layer
    readouts summed); Allegro: the last layer's edge latents summed over each atom's edges.
    ``layer_features``: one (n_atoms, channels) invariant tensor per message-passing
    layer, first to last (the scalar channels of each layer's output).
    ``edge_vectors``: (n_edges, 3), Å, and ``edge_lengths``: (n_edges,), Å, as used by
    the backbone (already differentiable w.r.t. positions and cell).
    ``edge_features``: (n_edges, F) invariant features of each edge (ordered pair, row 0
    of ``edge_index`` its centre), set only by backbones whose energy is a sum of edge
    energies (Allegro: ``F = backbone.edge_feature_width``); the potential's
    ``EdgeEnergyReadout`` reads these instead of ``node_features``.
    ``edge_basis``: (n_edges, n_radial), 1/Å, the backbone's radial basis of each edge, and
    ``edge_envelope``: (n_edges,), its smooth cutoff in [0, 1] (zero at the cutoff); the
    edges are ``graph.edge_index``'s. Heads that build edge features (CELLI's reference
    parametrisation) read these.
    """

    node_features: torch.Tensor
    layer_features: list[torch.Tensor] = field(default_factory=list)
    edge_vectors: torch.Tensor | None = None
    edge_lengths: torch.Tensor | None = None
    edge_features: torch.Tensor | None = None
    edge_basis: torch.Tensor | None = None
    edge_envelope: torch.Tensor | None = None
