"""Multilayer perceptron with SiLU activations, the dense block of every model."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    """``Linear → SiLU → ... → Linear`` through ``sizes`` (n_in, hidden..., n_out).

    No activation after the last layer. Input (..., sizes[0]) → output (..., sizes[-1]).
    ``bias_last: false`` drops the last layer's bias; ``bias: false`` drops every bias, so
    ``MLP(0) = 0`` (Allegro's MLPs: features that vanish at the cutoff stay zero there).
    ``normalized_init``: weights uniform with variance ``gain² / n_in`` (gain √2 after a
    SiLU, 1 on the first layer) instead of PyTorch's ``1 / (3 n_in)``, so activations stay
    of order one through bias-free layers (nequip's ``forward_weight_init``, which Allegro uses).
    """

    def __init__(self, sizes: Sequence[int], bias_last: bool = True, bias: bool = True,
                 normalized_init: bool = False):
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least input and output sizes, got {list(sizes)}")
        layers: list[nn.Module] = []
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = k == len(sizes) - 2
            linear = nn.Linear(n_in, n_out, bias=bias and (bias_last or not last))
            if normalized_init:
                bound = (1.0 if k == 0 else math.sqrt(2.0)) * math.sqrt(3.0 / n_in)
                nn.init.uniform_(linear.weight, -bound, bound)
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
            layers.append(linear)
            if not last:
                layers.append(nn.SiLU())
        super().__init__(*layers)
