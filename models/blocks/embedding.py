"""Learned per-element embeddings."""

from __future__ import annotations

import torch
from torch import nn

#: Highest atomic number any model accepts.
MAX_ATOMIC_NUMBER = 118


class ElementEmbedding(nn.Module):
    """Map atomic numbers (n_atoms,) int64 to learned features (n_atoms, channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, channels)

    def forward(self, numbers: torch.Tensor) -> torch.Tensor:
        return self.embedding(numbers)
