"""The hook through which a long-range head (e.g. CELLI) feeds per-atom values back into a backbone.

``node_inputs``: (n_atoms, k) invariant values (for CELLI, charges in e, k = 1). Layers
``1..layers-1`` (every layer but the first; layer 0 if there is only one) add a learned
linear projection of them to their invariant input features. With ``n_inputs = 0`` (the default) the hook has no
parameters and passing ``node_inputs`` is an error.
"""

from __future__ import annotations

import torch
from torch import nn


class NodeInputInjection(nn.Module):
    """``scalars + W_layer · node_inputs`` for layers ≥ ``first_layer``; else the identity."""

    def __init__(self, n_inputs: int, channels: int, layers: int):
        super().__init__()
        if n_inputs < 0:
            raise ValueError(f"node_input_features must be >= 0, got {n_inputs}")
        self.n_inputs = int(n_inputs)
        self.first_layer = 1 if layers > 1 else 0
        self.projections = nn.ModuleList(
            nn.Linear(n_inputs, channels, bias=False) for _ in range(layers - self.first_layer if n_inputs else 0)
        )

    def forward(self, scalars: torch.Tensor, node_inputs: torch.Tensor | None, layer: int) -> torch.Tensor:
        """``scalars``: (n_atoms, channels); ``node_inputs``: (n_atoms, n_inputs) or None."""
        projected = self.projection(node_inputs, layer, scalars.shape[0])
        return scalars if projected is None else scalars + projected.to(scalars.dtype)

    def projection(self, node_inputs: torch.Tensor | None, layer: int, n_atoms: int) -> torch.Tensor | None:
        """``W_layer · node_inputs`` (n_atoms, channels), or None where the hook is the identity.

        For backbones whose features are not per atom (Allegro's edges gather it onto theirs).
        """
        if node_inputs is None or layer < self.first_layer:
            return None
        if self.n_inputs == 0:
            raise ValueError("node_inputs was passed but the backbone was built with node_input_features=0")
        if node_inputs.shape != (n_atoms, self.n_inputs):
            raise ValueError(
                f"node_inputs must have shape (n_atoms, {self.n_inputs}) = {(n_atoms, self.n_inputs)}, "
                f"got {tuple(node_inputs.shape)}"
            )
        projection = self.projections[layer - self.first_layer]
        return projection(node_inputs.to(projection.weight.dtype))
