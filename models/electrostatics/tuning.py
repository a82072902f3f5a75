"""Ewald/PME parameters for a target accuracy, and a check that they reach it.

Both tails of the Ewald split are cut where they fall below ``δ = accuracy × SAFETY``:

    erfc(r_c / (√2 max(η, γ_max))) = δ          (real space, Å)
    exp(−η² k_c² / 2)              = δ          (reciprocal space, 1/Å)

and the splitting η balances the two costs: Ewald's explicit k-sum (O(N·n_k)) against
real-space pairs (O(N·ρ r_c³)) gives ``η = (V² / (16π³ N))^{1/6}``; PME's cheap mesh
favours a short real-space cutoff holding about ``PME_NEIGHBOURS`` neighbours per atom.
The PME interpolation error was measured (random 200-charge triclinic cell, orders
4–10) to follow ``≈ MESH_ERROR (h/η)^{p+2}`` for mesh spacing ``h``, so the mesh is
``h = η (δ/MESH_ERROR)^{1/(p+2)}`` (and at least Nyquist for ``k_c``), with the spline
order ``p`` growing as the target tightens (``_spline_order``).

Wide Gaussian charges (smallest pair width ``γ_min`` comparable to η or larger) need no
split: their own form factors make the k-sum converge, ``exp(−γ_min² k_c²/2) = δ``, and
the real-space part vanishes. ``tune`` returns such ``reciprocal_only`` parameters when
their estimated cost (atoms × wave vectors) is below that of the split sum (real-space
pairs + wave vectors or mesh); the split sum's real-space cutoff grows with the widest
pair width, so for Gaussians of several Å the reciprocal-only sum is far cheaper.

The tail bounds are heuristics (torch-pme's own tuner, at ``accuracy=1e-4``, was found
~2 % off the converged energy of a 200-charge cell), so ``check_accuracy`` measures
the relative energy/force error against a much tighter Ewald sum, and
``tune_checked`` tightens δ until the measured error is below the target.
tests/test_electrostatics.py checks the plain ``tune`` on random cells too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from scipy.special import erfcinv

Method = Literal["ewald", "pme"]

#: Tail bound relative to the requested accuracy (the heuristics are not exact error bounds).
SAFETY = 0.1
#: Real-space neighbours per atom targeted by PME's splitting.
PME_NEIGHBOURS = 60
#: Prefactor of the measured PME interpolation error ``MESH_ERROR (h/η)^{p+2}``.
MESH_ERROR = 0.05


@dataclass(frozen=True)
class EwaldParameters:
    """``splitting`` η (Å), ``real_cutoff`` r_c (Å), ``kspace_cutoff`` k_c (1/Å);
    for PME also ``mesh`` (points per cell vector) and B-spline ``order``.
    ``reciprocal_only``: Gaussian charges summed entirely in k-space with their form factors
    (η and r_c are 0 and unused; the k-sum is used whatever the method)."""

    splitting: float
    real_cutoff: float
    kspace_cutoff: float
    mesh: tuple[int, int, int] | None = None
    order: int = 6
    reciprocal_only: bool = False


def _spline_order(delta: float) -> int:
    """PME B-spline order for tail bound ``delta``: higher orders pay off at tight targets."""
    for order, bound in ((4, 1e-4), (6, 1e-6), (8, 1e-9)):
        if delta >= bound:
            return order
    return 10


def _fft_size(n: int) -> int:
    """Smallest integer ≥ n with no prime factor above 5 (fast FFT sizes)."""
    n = max(int(n), 1)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _wavevector_count(volume: float, kspace_cutoff: float) -> float:
    """Wave vectors of one half of the sphere ``|k| ≤ k_c`` (1/Å) in a cell of ``volume`` (Å³)."""
    return volume * kspace_cutoff**3 / (12 * math.pi**2)


def _split_cost(parameters: EwaldParameters, volume: float, n_atoms: int) -> float:
    """Estimated operations of the split sum: real-space pairs plus wave vectors (or mesh)."""
    pairs = n_atoms * (n_atoms / volume) * 4 / 3 * math.pi * parameters.real_cutoff**3
    if parameters.mesh is None:
        return pairs + n_atoms * _wavevector_count(volume, parameters.kspace_cutoff)
    points = math.prod(parameters.mesh)
    return pairs + points * math.log2(points) + n_atoms * parameters.order**3


def tune(
    cell: torch.Tensor, n_atoms: int, accuracy: float, method: Method = "ewald", max_width: float = 0.0,
    min_width: float = 0.0,
) -> EwaldParameters:
    """Parameters for relative accuracy ``accuracy`` (e.g. 1e-6) of energies and forces.

    ``cell``: (3, 3) Å; ``n_atoms``: atoms in the cell; ``max_width``, ``min_width``: largest
    and smallest pair width ``γ_ij`` (Å) of Gaussian charges (0 for point charges; a
    ``min_width`` > 0 allows ``reciprocal_only`` parameters where they are cheaper).
    """
    if not 0 < accuracy < 1:
        raise ValueError(f"accuracy must be in (0, 1), got {accuracy}")
    if method not in ("ewald", "pme"):
        raise ValueError(f"method must be 'ewald' or 'pme', got {method!r}")
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be >= 1, got {n_atoms}")
    delta = accuracy * SAFETY
    x = float(erfcinv(delta))  # r_c / (√2 η)
    y = math.sqrt(2.0 * math.log(1.0 / delta))  # η k_c
    cell = cell.detach().double().cpu()
    volume = float(torch.linalg.det(cell).abs())
    if method == "ewald":
        splitting = (volume**2 / (16 * math.pi**3 * n_atoms)) ** (1 / 6)
    else:
        density = n_atoms / volume
        target_cutoff = (3 * PME_NEIGHBOURS / (4 * math.pi * density)) ** (1 / 3)
        splitting = target_cutoff / (math.sqrt(2) * x)
    real_cutoff = math.sqrt(2) * max(splitting, max_width) * x
    kspace_cutoff = y / splitting
    if method == "ewald":
        split = EwaldParameters(splitting, real_cutoff, kspace_cutoff)
    else:
        order = _spline_order(delta)
        spacing = min(splitting * (delta / MESH_ERROR) ** (1.0 / (order + 2)), math.pi / kspace_cutoff)
        lengths = torch.linalg.vector_norm(cell, dim=1)
        mesh = tuple(max(_fft_size(math.ceil(float(length) / spacing)), order) for length in lengths)
        split = EwaldParameters(splitting, real_cutoff, kspace_cutoff, mesh, order)
    if min_width > 0:
        reciprocal = EwaldParameters(0.0, 0.0, y / min_width, reciprocal_only=True)
        if n_atoms * _wavevector_count(volume, reciprocal.kspace_cutoff) < _split_cost(split, volume, n_atoms):
            return reciprocal
    return split


def relative_errors(
    energy: torch.Tensor, forces: torch.Tensor, reference_energy: torch.Tensor, reference_forces: torch.Tensor
) -> tuple[float, float]:
    """``|ΔE|/|E_ref|`` and ``RMS(ΔF)/RMS(F_ref)`` (dimensionless)."""
    e_err = float((energy - reference_energy).abs() / reference_energy.abs().clamp_min(1e-300))
    f_err = float((forces - reference_forces).pow(2).mean().sqrt() / reference_forces.pow(2).mean().sqrt().clamp_min(1e-300))
    return e_err, f_err


def check_accuracy(
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
    parameters: EwaldParameters,
    method: Method = "ewald",
    widths: torch.Tensor | None = None,
) -> tuple[float, float]:
    """Measured relative energy and force errors of ``parameters`` against an Ewald sum
    tuned to 1e-12 (``positions`` (n, 3) Å, ``cell`` (3, 3) Å, ``charges`` (n,) e)."""
    from farfield.models.electrostatics.coulomb import energy_and_forces

    max_width = 0.0 if widths is None else float(2**0.5 * widths.max())
    reference = tune(cell, positions.shape[0], 1e-12, "ewald", max_width)
    e_ref, f_ref = energy_and_forces(positions, cell, charges, widths, reference, "ewald")
    energy, forces = energy_and_forces(positions, cell, charges, widths, parameters, method)
    return relative_errors(energy, forces, e_ref, f_ref)


def tune_checked(
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
    accuracy: float,
    method: Method = "ewald",
    widths: torch.Tensor | None = None,
    max_tries: int = 4,
) -> EwaldParameters:
    """``tune``, then tighten the tails tenfold until ``check_accuracy`` meets ``accuracy``."""
    max_width = 0.0 if widths is None else float(2**0.5 * widths.max())
    target = accuracy
    for _ in range(max_tries):
        parameters = tune(cell, positions.shape[0], target, method, max_width)
        errors = check_accuracy(positions, cell, charges, parameters, method, widths)
        if max(errors) <= accuracy:
            return parameters
        target /= 10
    raise ValueError(
        f"could not reach relative accuracy {accuracy} with {method} after {max_tries} tightenings "
        f"(last measured energy/force errors {errors[0]:.2e}/{errors[1]:.2e})"
    )

