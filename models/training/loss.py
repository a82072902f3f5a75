"""Weighted mean-squared-error loss over energy per atom, forces, charges and stress."""

from __future__ import annotations

import torch

from farfield.models.config import LossWeights
from farfield.models.graph import AtomicGraph


def weighted_loss(
    prediction: dict[str, torch.Tensor], batch: AtomicGraph, weights: LossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss and its parts.

    Energy enters per atom ((eV/atom)²) so large and small cells weigh alike; forces in
    (eV/Å)²; charges (e²) only for structures with reference charges and only when the
    model predicts charges; stress ((eV/Å³)²) only where labelled.
    Returns the scalar loss and a dict of the unweighted parts (floats).
    """
    n_atoms = batch.n_atoms.to(prediction["energy"].dtype)
    parts: dict[str, torch.Tensor] = {}
    if weights.energy > 0:
        parts["energy"] = ((prediction["energy"] - batch.energy) / n_atoms).pow(2).mean()
    if weights.forces > 0:
        parts["forces"] = (prediction["forces"] - batch.forces).pow(2).mean()
    if weights.charges > 0 and "charges" in prediction and bool(batch.has_charges.any()):
        atom_mask = batch.has_charges[batch.batch]
        parts["charges"] = (prediction["charges"] - batch.charges)[atom_mask].pow(2).mean()
    if weights.stress > 0 and "stress" in prediction and bool(batch.has_stress.any()):
        parts["stress"] = (prediction["stress"] - batch.stress)[batch.has_stress].pow(2).mean()
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    if not isinstance(total, torch.Tensor):
        raise ValueError("loss has no terms: every loss weight with data is zero (training.loss)")
    return total, {name: float(value.detach()) for name, value in parts.items()}
