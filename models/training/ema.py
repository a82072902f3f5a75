"""Exponential moving average of model weights, used for evaluation and checkpoints."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn


class WeightEMA:
    """Shadow copy ``θ_ema ← d θ_ema + (1 - d) θ`` updated after every optimiser step.

    ``decay`` ramps up as ``min(d, (1 + n) / (10 + n))`` over the first updates so the
    average is not dominated by the random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.shadow[key].mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                self.shadow[key].copy_(value)

    @contextmanager
    def applied(self, model: nn.Module):
        """Temporarily load the averaged weights into ``model``."""
        backup = copy.deepcopy(model.state_dict())
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(backup)
