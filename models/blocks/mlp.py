"""Multilayer perceptron with SiLU activations, the dense block of every model."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    """``Linear → SiLU → ... → Linear`` through ``sizes`` (n_in, hidden..., n_out).

    No activation after the last layer. Input (..., sizes[0]) → output (..., sizes[-1]).
    """

    def __init__(self, sizes: Sequence[int], bias_last: bool = True):
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least input and output sizes, got {list(sizes)}")
        layers: list[nn.Module] = []
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = k == len(sizes) - 2
            layers.append(nn.Linear(n_in, n_out, bias=bias_last or not last))
            if not last:
                layers.append(nn.SiLU())
        super().__init__(*layers)
