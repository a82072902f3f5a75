"""Gate nonlinearity for equivariant features (Weiler et al. 2018; as in NequIP and e3nn)."""

from __future__ import annotations

import torch
from torch import nn

from farfield.models.blocks.irreps import join_blocks


class Gate(nn.Module):
    """SiLU on scalars, ``l > 0`` features scaled by sigmoid gates (scalars themselves).

    Input blocks: ``l = 0`` of (n, channels + l_max · channels, 1) — the first ``channels``
    are the scalar features, the rest one gate per channel of every ``l ≥ 1`` — and
    ``l ≥ 1`` blocks of (n, channels, 2l+1). Output: dense (n, channels, (l_max+1)²).
    """

    def __init__(self, channels: int, l_max: int):
        super().__init__()
        self.channels, self.l_max = channels, l_max

    @property
    def in_multiplicities(self) -> list[int]:
        return [self.channels * (1 + self.l_max)] + [self.channels] * self.l_max

    def forward(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        c = self.channels
        scalars = nn.functional.silu(blocks[0][:, :c])
        gates = torch.sigmoid(blocks[0][:, c:, 0]).reshape(-1, self.l_max, c)
        gated = [block * gates[:, l - 1, :, None] for l, block in enumerate(blocks[1:], start=1)]
        return join_blocks([scalars, *gated])
