"""The one training step every farfield benchmark times: the trainer's own loss, backward, update.

Benchmarks run as scripts (``python benchmarks/x.py``), so this module is imported by name.
"""

from __future__ import annotations

import torch

from farfield.models import LossWeights
from farfield.models.training import weighted_loss

#: The trainer's default weighting: energy per atom 1, forces 10.
BENCH_LOSS = LossWeights(energy=1.0, forces=10.0)


def training_step(potential, optimizer: torch.optim.Optimizer, batch) -> None:
    """Energy + forces (double backward), ``weighted_loss``, backward and optimiser step; syncs CUDA."""
    prediction = potential(batch, compute_forces=True, create_graph=True)
    loss, _ = weighted_loss(prediction, batch, BENCH_LOSS)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if batch.positions.is_cuda:
        torch.cuda.synchronize(batch.positions.device)
