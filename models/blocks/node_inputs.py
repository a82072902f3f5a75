"""The hook through which a long-range head (e.g. CELLI) feeds per-atom values back into a backbone.

``node_extra``: (n_atoms, k) invariant values (for CELLI, charges in e, k = 1). Layers
``1..layers-1`` (every layer but the first) add a learned linear projection of them to
their invariant input features. With ``n_extra = 0`` (the default) the hook has no
parameters and passing ``node_extra`` is an error.
"""

from __future__ import annotations

import torch
from torch import nn


class NodeExtraInjection(nn.Module):
    """``scalars + W_layer · node_extra`` for layers ≥ 1; the identity for layer 0 or no extras."""

    def __init__(self, n_extra: int, channels: int, layers: int):
        super().__init__()
        if n_extra < 0:
            raise ValueError(f"node_extra_features must be >= 0, got {n_extra}")
        self.n_extra = int(n_extra)
        self.projections = nn.ModuleList(
            nn.Linear(n_extra, channels, bias=False) for _ in range(max(layers - 1, 0) if n_extra else 0)
        )

    def forward(self, scalars: torch.Tensor, node_extra: torch.Tensor | None, layer: int) -> torch.Tensor:
        """``scalars``: (n_atoms, channels); ``node_extra``: (n_atoms, n_extra) or None."""
        if node_extra is None or layer == 0:
            return scalars
        if self.n_extra == 0:
            raise ValueError("node_extra was passed but the backbone was built with node_extra_features=0")
        if node_extra.shape != (scalars.shape[0], self.n_extra):
            raise ValueError(
                f"node_extra must have shape (n_atoms, {self.n_extra}) = {(scalars.shape[0], self.n_extra)}, "
                f"got {tuple(node_extra.shape)}"
            )
        return scalars + self.projections[layer - 1](node_extra.to(scalars.dtype))
