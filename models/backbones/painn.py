"""PaiNN: polarizable atom interaction neural network (Schütt, Unke, Gastegger, ICML 2021).

Each atom carries invariant features ``s`` (n_atoms, F) and equivariant vector features
``v`` (n_atoms, 3, F). A layer is a *message* (continuous filter over neighbours, which
updates ``s`` and rotates neighbour vectors and edge directions into ``v``) followed by
an *update* (per-atom mixing of ``s`` with the norms and inner products of ``v``).
Symbols follow the paper: ``phi`` (feature MLP), ``W`` (radial filter), ``U``/``V``
(vector linear maps), ``a_ss``/``a_sv``/``a_vv`` (update gates).
"""

from __future__ import annotations

import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import (
    MLP,
    EdgeEmbedding,
    ElementEmbedding,
    NodeInputInjection,
    RadialWeights,
    scatter_sum,
)
from farfield.models.graph import AtomicGraph

#: Added under the square root of vector norms so their gradient is finite at v = 0.
_NORM_EPS = 1e-8


class PaiNNMessage(nn.Module):
    """Message block: ``Δs_i = Σ_j φ_s(s_j) W_s(r_ij)``, ``Δv_i = Σ_j v_j φ_vv W_vv + r̂_ij φ_vs W_vs``."""

    def __init__(self, channels: int, n_radial: int):
        super().__init__()
        self.channels = channels
        self.phi = MLP([channels, channels, 3 * channels])
        self.filter = RadialWeights(n_radial, [], 3 * channels)

    def forward(self, s, v, edge_index, radial, envelope, unit_vectors, v_is_zero: bool = False):
        """``s``: (N, F); ``v``: (N, 3, F); ``radial``: (E, n_radial); ``envelope``: (E,);
        ``unit_vectors``: (E, 3). Returns updated ``(s, v)``. ``v_is_zero``: ``v`` is known to be
        zero (the first layer), so the ``v_j φ_vv W_vv`` term — zero, with zero gradients — is
        skipped: one (E, 3, F) gather and product fewer forward and backward. The forward numbers
        are the same; a training's are not to the last bit (rounding of the backward), so a
        training with the term differs from one without it as two trainings differ under
        rounding (docs/study/paper-cpu/README.md)."""
        center, neighbor = edge_index
        x = torch.index_select(self.phi(s), 0, neighbor) * self.filter(radial, envelope)
        x_s, x_vv, x_vs = torch.split(x, self.channels, dim=-1)
        dv = unit_vectors[:, :, None] * x_vs[:, None, :]
        if not v_is_zero:
            dv = torch.index_select(v, 0, neighbor) * x_vv[:, None, :] + dv
        n = s.shape[0]
        return s + scatter_sum(x_s, center, n), v + scatter_sum(dv, center, n)


class PaiNNUpdate(nn.Module):
    """Update block: mixes ``s`` with ``‖V v‖`` and ``⟨U v, V v⟩`` per atom."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.U = nn.Linear(channels, channels, bias=False)
        self.V = nn.Linear(channels, channels, bias=False)
        self.gates = MLP([2 * channels, channels, 3 * channels])

    def forward(self, s, v):
        uv, vv = self.U(v), self.V(v)
        vv_norm = torch.sqrt((vv * vv).sum(dim=1) + _NORM_EPS)
        a = self.gates(torch.cat([s, vv_norm], dim=-1))
        a_vv, a_sv, a_ss = torch.split(a, self.channels, dim=-1)
        s = s + a_sv * (uv * vv).sum(dim=1) + a_ss
        v = v + a_vv[:, None, :] * uv
        return s, v


class PaiNN(nn.Module):
    """PaiNN backbone on a periodic graph.

    ``channels``: feature width F. ``layers``: message-passing layers. ``cutoff``: Å.
    ``n_radial``: Bessel functions per edge. ``node_input_features``: width ``k`` of the
    optional ``node_inputs`` input added to the invariant features of layers ≥ 1 (0 = off).
    Built from ``ModelConfig``, which holds the defaults.
    """

    def __init__(self, *, channels: int, layers: int, cutoff: float, n_radial: int, node_input_features: int):
        super().__init__()
        self.channels = channels
        self.cutoff = float(cutoff)
        self.embedding = ElementEmbedding(channels)
        self.edge_embedding = EdgeEmbedding(cutoff, n_radial)
        self.node_inputs = NodeInputInjection(node_input_features, channels, layers)
        self.messages = nn.ModuleList(PaiNNMessage(channels, n_radial) for _ in range(layers))
        self.updates = nn.ModuleList(PaiNNUpdate(channels) for _ in range(layers))

    def forward(self, graph: AtomicGraph, edge_vectors: torch.Tensor,
                node_inputs: torch.Tensor | None = None) -> BackboneOutput:
        """``edge_vectors``: (n_edges, 3), Å, from ``graph.edge_vectors`` (differentiable).
        ``node_inputs``: (n_atoms, k) or None (see ``farfield.models.blocks.node_inputs``)."""
        edges = self.edge_embedding(edge_vectors)
        lengths = edges.lengths
        unit_vectors = edge_vectors / lengths[:, None]
        s = self.embedding(graph.numbers)
        v = s.new_zeros((s.shape[0], 3, self.channels))
        layer_features = []
        for t, (message, update) in enumerate(zip(self.messages, self.updates)):
            s = self.node_inputs(s, node_inputs, t)
            s, v = message(s, v, graph.edge_index, edges.basis, edges.envelope, unit_vectors, v_is_zero=t == 0)
            s, v = update(s, v)
            layer_features.append(s)
        return BackboneOutput(
            node_features=s, layer_features=layer_features, edge_vectors=edge_vectors, edge_lengths=lengths,
            edge_basis=edges.basis, edge_envelope=edges.envelope,
        )
