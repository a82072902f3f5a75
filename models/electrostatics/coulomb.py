"""Coulomb potentials and energies of (Gaussian-smeared) charges in one structure.

Periodic cells (pbc in all three directions) use the Ewald split: real-space pairs
(``realspace.py``) + reciprocal space by explicit k-sum (``ewald.py``) or PME
(``pme.py``) − the long-range self term + the neutralising-background term, so
non-neutral cells get the energy of their charges in a uniform compensating
background (the usual convention, also pymatgen's). Non-periodic structures use
the direct pair sum. With ``widths`` σ_i (Å) charges are Gaussians and pairs interact
through ``erf(r/(√2γ_ij))/r``; with ``widths=None`` they are points. When the Gaussians
are wide (``EwaldParameters.reciprocal_only``, chosen by ``tuning.tune``) the whole periodic
sum is a k-sum with their form factors and no real-space part; its k = 0 term is replaced
by ``−(2π/V) Σ_ij q_i q_j (σ_i² + σ_j²)/2``, which makes it the same convention as the split sum.

The potential ``φ_i`` (n_atoms, n_channels), eV/e, excludes each charge's interaction
with itself (the Gaussian self-energy is ``gaussian.gaussian_self_coefficient``) but
includes its periodic images, and the energy is ``E = ½ Σ_i q_i φ_i`` (eV). Everything
is differentiable in positions, cell, charges and widths.
"""

from __future__ import annotations

import math

import torch

from farfield.models.electrostatics.constants import COULOMB_CONSTANT
from farfield.models.electrostatics.ewald import kspace_matrix, kspace_potential
from farfield.models.electrostatics.gaussian import (
    ewald_self_coefficient,
    gaussian_self_coefficient,
    pair_widths,
    real_space_kernel,
    smeared_kernel,
)
from farfield.models.electrostatics.pme import pme_kspace_potential
from farfield.models.electrostatics.realspace import PairList, all_pairs, pair_matrix, pair_potential, periodic_pairs
from farfield.models.electrostatics.tuning import EwaldParameters, Method


def _as_channels(charges: torch.Tensor) -> torch.Tensor:
    return charges[:, None] if charges.dim() == 1 else charges


def _pair_widths(pairs: PairList, widths: torch.Tensor | None) -> torch.Tensor | None:
    return None if widths is None else pair_widths(widths[pairs.center], widths[pairs.neighbor])


def periodic_potential(
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
    widths: torch.Tensor | None,
    parameters: EwaldParameters,
    method: Method = "ewald",
    pairs: PairList | None = None,
) -> torch.Tensor:
    """Ewald potential (n_atoms, n_channels) eV/e of ``charges`` (n_atoms[, n_channels]) e.

    ``positions``: (n_atoms, 3) Å; ``cell``: (3, 3) Å rows; ``widths``: (n_atoms,) Å or None;
    ``pairs``: real-space pairs within ``parameters.real_cutoff`` when already known
    (e.g. across the iterations of a solver), else found here.
    """
    q = _as_channels(charges)
    if parameters.reciprocal_only:
        return _form_factor_potential(positions, cell, q, widths, parameters.kspace_cutoff)
    eta = parameters.splitting
    if pairs is None:
        pairs = periodic_pairs(positions, cell, parameters.real_cutoff)
    distances = pairs.distances(positions, cell)
    phi = pair_potential(pairs, real_space_kernel(distances, _pair_widths(pairs, widths), eta), q)
    if method == "ewald":
        phi = phi + kspace_potential(positions, cell, q, eta, parameters.kspace_cutoff)
    elif method == "pme":
        if parameters.mesh is None:
            raise ValueError("PME needs EwaldParameters.mesh; tune them with method='pme'")
        phi = phi + pme_kspace_potential(positions, cell, q, eta, parameters.mesh, parameters.order)
    else:
        raise ValueError(f"method must be 'ewald' or 'pme', got {method!r}")
    volume = torch.linalg.det(cell).abs()
    phi = phi - ewald_self_coefficient(eta) * q - (2.0 * math.pi * eta**2 / volume) * q.sum(dim=0, keepdim=True)
    return COULOMB_CONSTANT * phi


def periodic_matrix(
    positions: torch.Tensor, cell: torch.Tensor, widths: torch.Tensor | None, parameters: EwaldParameters
) -> torch.Tensor:
    """Dense (n_atoms, n_atoms), eV/e²: ``φ = A q`` of ``periodic_potential`` (Ewald k-sum)."""
    n = positions.shape[0]
    if parameters.reciprocal_only:
        _require_widths(widths)
        volume = torch.linalg.det(cell).abs()
        squares = widths.pow(2)
        matrix = kspace_matrix(positions, cell, 0.0, parameters.kspace_cutoff, widths)
        matrix = matrix - torch.diag(gaussian_self_coefficient(widths))
        return COULOMB_CONSTANT * (matrix - (2.0 * math.pi / volume) * (squares[:, None] + squares[None, :]))
    eta = parameters.splitting
    pairs = periodic_pairs(positions, cell, parameters.real_cutoff)
    distances = pairs.distances(positions, cell)
    matrix = pair_matrix(pairs, real_space_kernel(distances, _pair_widths(pairs, widths), eta), n)
    matrix = matrix + kspace_matrix(positions, cell, eta, parameters.kspace_cutoff)
    volume = torch.linalg.det(cell).abs()
    matrix = matrix - ewald_self_coefficient(eta) * torch.eye(n, dtype=positions.dtype, device=positions.device)
    return COULOMB_CONSTANT * (matrix - 2.0 * math.pi * eta**2 / volume)


def _require_widths(widths: torch.Tensor | None) -> None:
    if widths is None:
        raise ValueError("reciprocal-only Coulomb sums need Gaussian widths; tune without min_width for point charges")


def _form_factor_potential(
    positions: torch.Tensor, cell: torch.Tensor, q: torch.Tensor, widths: torch.Tensor | None, kspace_cutoff: float
) -> torch.Tensor:
    """``periodic_potential`` of Gaussian charges as one k-sum with form factors (eV/e, (n_atoms, n_channels)):
    minus each Gaussian's interaction with itself, ``q_i/(√π σ_i)``, and with the k = 0 term of the split sum."""
    _require_widths(widths)
    volume = torch.linalg.det(cell).abs()
    squares = widths.pow(2)[:, None]
    phi = kspace_potential(positions, cell, q, 0.0, kspace_cutoff, widths)
    phi = phi - gaussian_self_coefficient(widths)[:, None] * q
    phi = phi - (2.0 * math.pi / volume) * (squares * q.sum(dim=0, keepdim=True) + (squares * q).sum(dim=0, keepdim=True))
    return COULOMB_CONSTANT * phi


def molecular_potential(positions: torch.Tensor, charges: torch.Tensor, widths: torch.Tensor | None) -> torch.Tensor:
    """Direct-sum potential (n_atoms, n_channels), eV/e, of a non-periodic structure."""
    q = _as_channels(charges)
    pairs = all_pairs(positions.shape[0], positions.device, positions.dtype)
    distances = pairs.distances(positions, positions.new_zeros(3, 3))
    return COULOMB_CONSTANT * pair_potential(pairs, smeared_kernel(distances, _pair_widths(pairs, widths)), q)


def molecular_matrix(positions: torch.Tensor, widths: torch.Tensor | None) -> torch.Tensor:
    """Dense (n_atoms, n_atoms), eV/e², of ``molecular_potential``."""
    n = positions.shape[0]
    pairs = all_pairs(n, positions.device, positions.dtype)
    distances = pairs.distances(positions, positions.new_zeros(3, 3))
    return COULOMB_CONSTANT * pair_matrix(pairs, smeared_kernel(distances, _pair_widths(pairs, widths)), n)


def coulomb_energy(charges: torch.Tensor, potential: torch.Tensor) -> torch.Tensor:
    """``½ Σ_i q_i φ_i`` (n_channels,) eV from ``charges`` (n_atoms[, C]) e and ``potential`` (n_atoms, C) eV/e."""
    return 0.5 * (_as_channels(charges) * potential).sum(dim=0)


def energy_and_forces(
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
    widths: torch.Tensor | None,
    parameters: EwaldParameters,
    method: Method = "ewald",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy () eV and forces (n_atoms, 3) eV/Å of fixed ``charges`` (n_atoms,) e in a periodic cell."""
    positions = positions.detach().requires_grad_(True)
    energy = coulomb_energy(charges, periodic_potential(positions, cell.detach(), charges.detach(), widths, parameters, method))[0]
    (grad,) = torch.autograd.grad(energy, positions)
    return energy.detach(), -grad


#: From ``method="auto"`` on, structures with at least this many atoms use PME instead of the
#: Ewald k-sum (the crossover measured by benchmarks/heads.py on a 2-core CPU; see README).
PME_MIN_ATOMS = 300


def resolve_method(method: str, n_atoms: int) -> Method:
    """``"ewald"``/``"pme"`` as given; ``"auto"`` → PME from ``PME_MIN_ATOMS`` atoms on."""
    if method == "auto":
        return "pme" if n_atoms >= PME_MIN_ATOMS else "ewald"
    if method not in ("ewald", "pme"):
        raise ValueError(f"electrostatics method must be 'auto', 'ewald' or 'pme', got {method!r}")
    return method  # type: ignore[return-value]


def reciprocal_only_potential(
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
    smearing: float,
    kspace_cutoff: float,
    background: bool = True,
) -> torch.Tensor:
    """Potential (n_atoms, n_channels), eV/e, of Gaussian-smeared charges in a periodic cell
    whose pair kernel is ``erf(r/(√2σ))/r`` (each charge of width σ/√2), entirely in
    reciprocal space: the Ewald split with η = σ leaves no real-space part. Self
    interaction is removed as in ``periodic_potential``, and so is the neutralising-background
    term unless ``background`` is False (then a non-neutral cell's energy is the bare k ≠ 0
    sum minus the self term, LES's convention); ``kspace_cutoff`` (1/Å) truncates the sum."""
    q = _as_channels(charges)
    phi = kspace_potential(positions, cell, q, smearing, kspace_cutoff) - ewald_self_coefficient(smearing) * q
    if background:
        volume = torch.linalg.det(cell).abs()
        phi = phi - (2.0 * math.pi * smearing**2 / volume) * q.sum(dim=0, keepdim=True)
    return COULOMB_CONSTANT * phi
