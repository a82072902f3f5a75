"""Multilayer perceptron with SiLU activations, the dense block of every model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def _silu_rms() -> float:
    """``√E[SiLU(z)²]`` for ``z ~ N(0, 1)`` (≈ 0.596), by Gauss–Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(100)
    silu = nodes / (1.0 + np.exp(-nodes))
    return float(math.sqrt((weights * silu**2).sum() / weights.sum()))


class NormalisedSiLU(nn.Module):
    """``SiLU(x) / √E[SiLU(z)²]``: unit second moment for standard-normal input (e3nn's
    ``normalize_function`` of SiLU)."""

    scale = 1.0 / _silu_rms()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(x) * self.scale


class MLP(nn.Sequential):
    """``Linear → SiLU → ... → Linear`` through ``sizes`` (n_in, hidden..., n_out).

    No activation after the last layer. Input (..., sizes[0]) → output (..., sizes[-1]).
    ``bias_last: false`` drops the last layer's bias; ``bias: false`` drops every bias, so
    ``MLP(0) = 0`` (Allegro's MLPs: features that vanish at the cutoff stay zero there; CELLI's
    edge sums stay smooth as neighbours cross the cutoff).
    ``normalized_init``: weights uniform with variance ``gain² / n_in`` (gain √2 after a
    SiLU, 1 on the first layer) instead of PyTorch's ``1 / (3 n_in)``, so activations stay
    of order one through bias-free layers (nequip's ``forward_weight_init``, which Allegro uses).
    ``e3nn_init``: e3nn's start instead (weights ~ N(0, 1/n_in), biases 0, ``NormalisedSiLU``),
    as the paper's CELLI layer has.
    """

    def __init__(self, sizes: Sequence[int], bias_last: bool = True, bias: bool = True,
                 normalized_init: bool = False, e3nn_init: bool = False):
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least input and output sizes, got {list(sizes)}")
        if normalized_init and e3nn_init:
            raise ValueError("MLP: choose normalized_init or e3nn_init, not both")
        layers: list[nn.Module] = []
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = k == len(sizes) - 2
            linear = nn.Linear(n_in, n_out, bias=bias and (bias_last or not last))
            if normalized_init:
                bound = (1.0 if k == 0 else math.sqrt(2.0)) * math.sqrt(3.0 / n_in)
                nn.init.uniform_(linear.weight, -bound, bound)
            elif e3nn_init:
                nn.init.normal_(linear.weight, std=1.0 / math.sqrt(n_in))
            if (normalized_init or e3nn_init) and linear.bias is not None:
                nn.init.zeros_(linear.bias)
            layers.append(linear)
            if not last:
                layers.append(NormalisedSiLU() if e3nn_init else nn.SiLU())
        super().__init__(*layers)
