"""Sum per-edge or per-atom values into per-atom or per-structure bins."""

from __future__ import annotations

import torch


def scatter_sum(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Sum rows of ``values`` into ``size`` bins.

    ``values``: (n, ...) any dtype. ``index``: (n,) int64 in ``[0, size)``.
    Returns (size, ...). Differentiable (``index_add``), deterministic on CPU.
    """
    out = values.new_zeros((size, *values.shape[1:]))
    return out.index_add(0, index, values)
