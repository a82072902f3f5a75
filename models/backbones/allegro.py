"""Allegro-style backbone: strictly local, equivariant features of edges, no message passing.

After Musaelian et al., "Learning local equivariant representations for large-scale
atomistic dynamics", Nat. Commun. 2023, as implemented in mir-group/allegro 0.7
(``Allegro_Module``, ``FullAllegroEnergyModel``). Every feature belongs to an ordered
pair ``ij`` (edge, ``i`` the centre) and depends only on atoms within the cutoff of ``i``:

1. two-body scalars ``x_ij⁰ = MLP((e_c(Z_i) ‖ e_n(Z_j)) ⊙ W·(Bessel(r_ij) u(r_ij)))``;
2. two-body tensor track ``V_ij⁰[u] = w_ij[u, l] Y_l(r̂_ij)``, ``w = Linear(x_ij⁰)``;
3. layer ``t``: env weights (a linear of ``x⁰`` for the first layer, the latent MLP's
   extra outputs after) weight the spherical harmonics of every edge around ``i``,
   ``Γ_i[u] = Σ_k w_ik[u, l] Y_l(r̂_ik) / sqrt(avg_neighbors)``; the tensor track becomes
   ``V_ij^{t+1} = V_ij^t ⊗ Γ_i`` (``StridedTensorProduct``, weights per channel and
   path); its scalars and all earlier latents feed the latent MLP,
   ``x_ij^{t+1} = MLP(x⁰ ‖ … ‖ x^t ‖ V^{t+1}_ij[:, 0e])`` (densely connected);
4. the edge features ``x⁰ ‖ … ‖ x^L`` go to the potential's ``EdgeEnergyReadout``: edge
   energies summed onto centre atoms. The per-species scale/shift is farfield's energy
   scale (one for all species) and fitted reference energies, both fixed.

All MLPs and linears are bias-free (with the reference's forward-normalised initial
weights), so every feature of an edge vanishes smoothly as it reaches the cutoff. The last layer computes only the scalars of its product. For the
heads, per-atom invariants are the sums of each layer's latents over the edges of an
atom, ``Σ_j x_ij^t / sqrt(avg_neighbors)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import (
    MLP,
    EdgeEmbedding,
    ElementEmbedding,
    NodeInputInjection,
    SphericalHarmonics,
    StridedTensorProduct,
    WeightedHarmonics,
    harmonics_irreps,
    scatter_sum,
)
from farfield.models.blocks.strided_product import Irrep, couples
from farfield.models.graph import AtomicGraph


#: Every MLP and linear map of Allegro: bias-free, forward-normalised initial weights.
_ALLEGRO_MLP = dict(bias=False, normalized_init=True)


def tensor_track_irreps(l_max: int, parity: bool, layers: int) -> list[list[Irrep]]:
    """Irreps ``(l, p)`` of the tensor track before the first layer and after each one.

    As the reference: the input is the spherical harmonics ``0..l_max``; a layer's output
    keeps the allowed irreps (every ``l ≤ l_max`` in both parities with ``parity``, else
    those of the harmonics) that its input ⊗ harmonics can reach, the last layer only
    ``0e``; then, backwards, irreps that cannot lead to the next layer's are dropped.
    """
    harmonics = harmonics_irreps(l_max)
    allowed = [(l, p) for l in range(l_max + 1) for p in (1, -1)] if parity else harmonics
    track = [harmonics]
    for t in range(layers):
        candidates = [(0, 1)] if t == layers - 1 else allowed
        track.append([c for c in candidates if any(couples(a, b, c) for a in track[-1] for b in harmonics)])
    pruned = [track[-1]]
    for irreps in reversed(track[:-1]):
        pruned.append([a for a in irreps if any(couples(a, b, c) for b in harmonics for c in pruned[-1])])
    return list(reversed(pruned))


class Allegro(nn.Module):
    """Allegro-style backbone on a periodic graph.

    ``channels``: C, width of the scalar (latent) track (Allegro's ``num_scalar_features``).
    ``layers``: tensor-product layers. ``cutoff``: Å. ``n_radial``: Bessel functions.
    ``l_max``: degree of the edge spherical harmonics and of the tensor track.
    ``tensor_features``: channels of the tensor track (``num_tensor_features``).
    ``parity``: tensor track with both parities of every ``l`` (reference default) or
    natural parity only (the reference's ``parity: false``).
    ``radial_mlp``: hidden widths of the two-body MLP (``scalar_embed_mlp``).
    ``latent_mlp``: hidden widths of the latent MLPs (``allegro_mlp``).
    ``avg_neighbors``: normalisation of the sums over an atom's edges.
    ``node_input_features``: width ``k`` of the optional ``node_inputs`` input (0 = off).
    Built from ``ModelConfig``, which holds the defaults.
    """

    def __init__(self, *, channels: int, layers: int, cutoff: float, n_radial: int, l_max: int,
                 tensor_features: int, parity: bool, radial_mlp: tuple[int, ...], latent_mlp: tuple[int, ...],
                 avg_neighbors: float, node_input_features: int):
        super().__init__()
        self.channels, self.cutoff, self.layers = channels, float(cutoff), layers
        self.tensor_features = tensor_features
        self.inv_sqrt_neighbors = 1.0 / math.sqrt(float(avg_neighbors))
        self.edge_embedding = EdgeEmbedding(cutoff, n_radial)
        # the reference's Bessel functions are sin(nπr/c)/(πr/c): BesselBasis × c/(π sqrt(2/c))
        self.bessel_scale = self.cutoff / (math.pi * math.sqrt(2.0 / self.cutoff))
        self.spherical_harmonics = SphericalHarmonics(l_max)
        # 1. two-body scalars
        self.center_embedding = ElementEmbedding(channels // 2)
        self.neighbor_embedding = ElementEmbedding(channels - channels // 2)
        self.radial_linear = MLP([n_radial, channels], **_ALLEGRO_MLP)
        self.two_body_mlp = MLP([channels, *radial_mlp, channels], **_ALLEGRO_MLP)
        # 2. two-body tensor track and first env weights
        self.harmonics = WeightedHarmonics(l_max, tensor_features)
        self.tensor_embedding = MLP([channels, self.harmonics.n_weights], **_ALLEGRO_MLP)
        self.first_projection = MLP([channels, channels + self.harmonics.n_weights], **_ALLEGRO_MLP)
        # 3. layers
        track = tensor_track_irreps(l_max, parity, layers)
        # the first layer reads every harmonic; every layer's scalars (0e) come first
        if track[0] != harmonics_irreps(l_max) or any(irreps[0] != (0, 1) for irreps in track[1:]):
            raise AssertionError(f"unexpected tensor track {track}")
        self.products = nn.ModuleList(
            StridedTensorProduct(track[t], harmonics_irreps(l_max), track[t + 1], tensor_features) for t in range(layers)
        )
        self.latents = nn.ModuleList(
            MLP([channels * (t + 1) + tensor_features, *latent_mlp,
                 channels + (self.harmonics.n_weights if t < layers - 1 else 0)], **_ALLEGRO_MLP)
            for t in range(layers)
        )
        # charges (or other per-atom inputs) of the centre and of the neighbour, per edge
        self.node_inputs = NodeInputInjection(node_input_features, 2 * channels, layers)

    @property
    def edge_feature_width(self) -> int:
        """Width of ``BackboneOutput.edge_features``: the two-body and every layer's latents."""
        return self.channels * (self.layers + 1)

    def forward(self, graph: AtomicGraph, edge_vectors: torch.Tensor,
                node_inputs: torch.Tensor | None = None) -> BackboneOutput:
        """``edge_vectors``: (n_edges, 3), Å. ``node_inputs``: (n_atoms, k) or None (see blocks.node_inputs).

        ``node_inputs`` enter the latents ``x^t`` (t ≥ 1) read by layer ``t``: learned
        projections of the centre's and the neighbour's inputs, times the cutoff envelope
        (so edges still vanish at the cutoff).
        """
        center, neighbor = graph.edge_index
        n_atoms = graph.numbers.shape[0]
        edges = self.edge_embedding(edge_vectors)
        sh = self.spherical_harmonics(edge_vectors)
        species = torch.cat([torch.index_select(self.center_embedding(graph.numbers), 0, center),
                             torch.index_select(self.neighbor_embedding(graph.numbers), 0, neighbor)], dim=-1)
        radial = self.radial_linear(edges.basis * (edges.envelope[:, None] * self.bessel_scale))
        two_body = self.two_body_mlp(species * radial)
        tensors = self.harmonics(sh, self.tensor_embedding(two_body))
        projected = self.first_projection(two_body)
        latents, env_weights = [projected[:, : self.channels]], projected[:, self.channels:]
        layer_features = []
        for t, (product, latent_mlp) in enumerate(zip(self.products, self.latents)):
            injected = self.node_inputs.projection(node_inputs, t, n_atoms)
            if injected is not None:
                pair = (torch.index_select(injected[:, : self.channels], 0, center)
                        + torch.index_select(injected[:, self.channels:], 0, neighbor))
                latents[-1] = latents[-1] + pair.to(latents[-1].dtype) * edges.envelope[:, None]
            env = scatter_sum(self.harmonics(sh, env_weights), center, n_atoms) * self.inv_sqrt_neighbors
            tensors = product(tensors, env, center)
            out = latent_mlp(torch.cat([*latents, tensors[:, :, 0]], dim=-1))
            latents.append(out[:, : self.channels])
            env_weights = out[:, self.channels:]
            layer_features.append(scatter_sum(latents[-1], center, n_atoms) * self.inv_sqrt_neighbors)
        return BackboneOutput(node_features=layer_features[-1], layer_features=layer_features,
                              edge_vectors=edge_vectors, edge_lengths=edges.lengths,
                              edge_features=torch.cat(latents, dim=-1),
                              edge_basis=edges.basis, edge_envelope=edges.envelope)
