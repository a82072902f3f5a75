"""Weighted mean-squared-error loss over energy per atom, forces, charges and stress."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from farfield.models.config import LossWeights
from farfield.models.graph import AtomicGraph


LOSS_TERMS = ("energy", "forces", "charges", "stress")
#: Smallest variance :func:`target_scales` returns per term (units of the term squared).
SCALE_FLOORS = {"energy": 1e-6, "forces": 1e-6, "charges": 1e-6, "stress": 1e-10}


def target_scales(graphs: Sequence[AtomicGraph], reference_energy: Callable[[AtomicGraph], torch.Tensor]
                  ) -> dict[str, float]:
    """Variance of each loss term's target over ``graphs`` (the training set).

    ``energy``: of the energy per atom minus the per-element reference energies
    (``reference_energy(graph)`` → (1,) eV), (eV/atom)²; ``forces``: mean square of the
    force components, (eV/Å)²; ``charges``: of the reference charges, e²; ``stress``: mean
    square of the stress components, (eV/Å³)². A term without data gets 1; variances are
    floored (:data:`SCALE_FLOORS`: (1 meV/atom)², (1 meV/Å)², (1 me)², (1e-5 eV/Å³)²) so a
    nearly constant target — a handful of frames whose energies the reference energies fit
    exactly — cannot blow its weight up.
    """
    with torch.no_grad():
        per_atom = torch.cat([((g.energy - reference_energy(g)) / g.n_atoms).reshape(-1)
                              for g in graphs]).double()
        forces = torch.cat([g.forces.reshape(-1) for g in graphs]).double()
        charges = torch.cat([g.charges[g.has_charges[g.batch]].reshape(-1) for g in graphs]).double()
        stress = torch.cat([g.stress[g.has_stress].reshape(-1) for g in graphs]).double()
    values = {"energy": per_atom.var() if per_atom.numel() > 1 else None,
              "forces": forces[torch.isfinite(forces)].pow(2).mean() if forces.numel() else None,
              "charges": charges.var() if charges.numel() > 1 else None,
              "stress": stress.pow(2).mean() if stress.numel() else None}
    return {name: max(float(v), SCALE_FLOORS[name]) if v is not None and torch.isfinite(v) else 1.0
            for name, v in values.items()}


def weighted_loss(
    prediction: dict[str, torch.Tensor], batch: AtomicGraph, weights: LossWeights,
    scales: dict[str, float] | None = None, energy_factor: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss and its parts.

    Energy enters per atom ((eV/atom)²) so large and small cells weigh alike; forces in
    (eV/Å)²; charges (e²) only for structures with reference charges and only when the
    model predicts charges; stress ((eV/Å³)²) only where labelled.
    ``scales`` (from :func:`target_scales`): with ``weights.normalize`` each term is divided by
    its scale. ``energy_factor`` multiplies the energy weight (the trainer's final stage).
    Returns the scalar loss and a dict of the unweighted, unscaled parts (floats).
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
    divide = scales if (weights.normalize and scales) else {}
    factor = {"energy": energy_factor}
    total = sum(getattr(weights, name) * factor.get(name, 1.0) * value / divide.get(name, 1.0)
                for name, value in parts.items())
    if not isinstance(total, torch.Tensor):
        raise ValueError("loss has no terms: every loss weight with data is zero (training.loss)")
    return total, {name: float(value.detach()) for name, value in parts.items()}
