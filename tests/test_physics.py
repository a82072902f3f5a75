"""Every registered backbone as a potential obeys the physics of a conservative, invariant model.

All in float64. The checkers themselves are shown to fail on broken models.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from farfield.models import BACKBONES, AtomicGraph, ModelConfig, build_potential, collate
from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import scatter_sum
from tests import physics_checks as checks

CUTOFF = 4.0


def _as_model(potential):
    def model(atoms):
        graph = AtomicGraph.from_atoms(atoms, potential.cutoff)
        out = potential(graph, compute_forces=True, compute_stress=bool(atoms.pbc.any()))
        stress = out["stress"][0].detach().numpy() if "stress" in out else None
        return float(out["energy"][0].detach()), out["forces"].detach().numpy(), stress

    return model


def _potential(backbone: str, **overrides):
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, channels=16, layers=2, cutoff=CUTOFF, dtype="float64", **overrides)
    potential = build_potential(config, reference_energies=np.linspace(-3, 3, 119), energy_scale=0.7)
    # Random non-zero readout bias so energy extensivity is actually exercised.
    return potential.eval()


@pytest.fixture(params=sorted(BACKBONES))
def model(request):
    return _as_model(_potential(request.param))


@pytest.fixture(params=["nacl_cell", "triclinic_cell", "water_dimer"])
def structure(request):
    return request.getfixturevalue(request.param)


def test_forces_are_minus_energy_gradient(model, structure):
    checks.check_forces_are_energy_gradient(model, structure)


@pytest.mark.parametrize("fixture", ["nacl_cell", "triclinic_cell"])
def test_stress_is_strain_derivative(model, fixture, request):
    checks.check_stress_is_strain_derivative(model, request.getfixturevalue(fixture))


def test_rotation_invariance(model, structure):
    checks.check_rotation(model, structure)


def test_translation_invariance(model, structure):
    checks.check_translation(model, structure)


def test_permutation_invariance(model, structure):
    checks.check_permutation(model, structure)


@pytest.mark.parametrize("fixture", ["nacl_cell", "triclinic_cell"])
def test_periodic_image_choice(model, fixture, request):
    checks.check_wrapping(model, request.getfixturevalue(fixture))


@pytest.mark.parametrize("repeat", [(2, 1, 1), (1, 2, 2)])
def test_supercell_extensivity(model, nacl_cell, repeat):
    checks.check_supercell(model, nacl_cell, repeat)


def test_mof_cell_physics(model, mof_cell):
    """The real MOF fixture: forces, rotation and supercell on a non-orthogonal cell with many elements."""
    checks.check_forces_are_energy_gradient(model, mof_cell, n=3)
    checks.check_rotation(model, mof_cell)
    checks.check_supercell(model, mof_cell, (2, 1, 1))


def _assert_batch_isolation(potential, structures):
    """Energies and forces of each structure are the same in a batch and alone; returns the batch."""
    graphs = [AtomicGraph.from_atoms(a, CUTOFF) for a in structures]
    batch = collate(graphs)
    out = potential(batch, compute_forces=True)
    for k, graph in enumerate(graphs):
        alone = potential(graph, compute_forces=True)
        torch.testing.assert_close(out["energy"][k], alone["energy"][0], rtol=0, atol=1e-10)
        torch.testing.assert_close(out["forces"][batch.batch == k], alone["forces"], rtol=0, atol=1e-10)
    return batch


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_batch_isolation(backbone, nacl_cell, water_dimer, triclinic_cell):
    """A structure's energy does not depend on its batch mates; no gradient crosses frames."""
    potential = _potential(backbone)
    batch = _assert_batch_isolation(potential, (nacl_cell, water_dimer, triclinic_cell))
    positions = batch.positions.clone().requires_grad_(True)
    graph = batch.to()
    graph.positions = positions
    energy = potential(graph, compute_forces=False)["energy"]
    (grad,) = torch.autograd.grad(energy[0], positions)
    assert torch.all(grad[batch.batch != 0] == 0), "energy of frame 0 depends on atoms of other frames"


# --- the checkers must be able to fail -------------------------------------------------


class _DirectionalBackbone(nn.Module):
    """Broken on purpose: features depend on edge directions in the lab frame (not rotation invariant)."""

    cutoff = CUTOFF

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def forward(self, graph, edge_vectors):
        features = scatter_sum(torch.sin(self.linear(edge_vectors)), graph.edge_index[0], len(graph.numbers))
        return BackboneOutput(node_features=features, layer_features=[features])


class _AbsolutePositionModel:
    """Broken on purpose: adds an energy term that depends on absolute positions."""

    def __init__(self, model):
        self.model = model

    def __call__(self, atoms):
        energy, forces, stress = self.model(atoms)
        return energy + 0.1 * float(np.sin(atoms.positions).sum()), forces, stress


class _DetachedForceModel:
    """Broken on purpose: forces that are not the gradient of the energy."""

    def __init__(self, model):
        self.model = model

    def __call__(self, atoms):
        energy, forces, stress = self.model(atoms)
        return energy, forces * 1.01, stress


def _broken_potential():
    from farfield.models.blocks import AtomwiseReadout, ReferenceEnergies
    from farfield.models.potential import Potential

    torch.manual_seed(0)
    return Potential(_DirectionalBackbone(), AtomwiseReadout(4), ReferenceEnergies()).eval()


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_potential_refuses_a_graph_built_with_a_smaller_cutoff(backbone, nacl_cell):
    potential = _potential(backbone)
    with pytest.raises(ValueError, match=r"3\.5 Å neighbour list, but the backbone's cutoff is 4 Å"):
        potential(AtomicGraph.from_atoms(nacl_cell, CUTOFF - 0.5))
    # a larger list is accepted, and its extra edges lie beyond the envelope: same energy and forces
    exact = potential(AtomicGraph.from_atoms(nacl_cell, CUTOFF))
    wider = potential(AtomicGraph.from_atoms(nacl_cell, CUTOFF + 1.0))
    assert AtomicGraph.from_atoms(nacl_cell, CUTOFF + 1.0).edge_index.shape[1] > \
        AtomicGraph.from_atoms(nacl_cell, CUTOFF).edge_index.shape[1]
    torch.testing.assert_close(wider["energy"], exact["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(wider["forces"], exact["forces"], rtol=0, atol=1e-10)


def test_translation_check_catches_absolute_positions(nacl_cell):
    with pytest.raises(AssertionError, match="translation"):
        checks.check_translation(_AbsolutePositionModel(_as_model(_potential("painn"))), nacl_cell)


def test_rotation_check_catches_lab_frame_directions(nacl_cell):
    with pytest.raises(AssertionError, match="rotation"):
        checks.check_rotation(_as_model(_broken_potential()), nacl_cell)


def test_force_check_catches_non_conservative_forces(nacl_cell):
    with pytest.raises(AssertionError, match="-dE/dx"):
        checks.check_forces_are_energy_gradient(_DetachedForceModel(_as_model(_potential("painn"))), nacl_cell)


def test_supercell_check_catches_non_extensive_energy(nacl_cell):
    def not_extensive(atoms):
        return float(len(atoms)) ** 1.5, np.zeros((len(atoms), 3)), None

    with pytest.raises(AssertionError, match="supercell"):
        checks.check_supercell(not_extensive, nacl_cell)


# --- every long-range head on every backbone ----------------------------------------------

from farfield.models import HEADS  # noqa: E402

#: Head options for the physics checks: tight Ewald accuracy; short D3 cutoffs and a
#: smaller (still exact for these sizes) EFA Lebedev grid for speed.
HEAD_OVERRIDES = {
    "celli": {"celli": {"accuracy": 1e-10}},
    "efa": {"efa": {"lebedev_degree": 23, "radial_nodes": 10}},
    "d3": {"d3": {"cutoff": 9.0, "three_body_cutoff": 6.0, "coordination_cutoff": 6.0}},
}


def _head_potential(backbone: str, head: str):
    return _potential(backbone, long_range=[head], heads=HEAD_OVERRIDES.get(head, {}))


@pytest.fixture(params=[(b, h) for b in sorted(BACKBONES) for h in sorted(HEADS)], ids=lambda p: f"{p[0]}-{p[1]}")
def head_model(request):
    return _as_model(_head_potential(*request.param))


@pytest.mark.parametrize("fixture", ["nacl_cell", "water_dimer"])
def test_head_forces_and_invariances(head_model, fixture, request):
    """Forces = −dE/dx, rotation (cell included), translation and permutation, periodic and not."""
    atoms = request.getfixturevalue(fixture)
    checks.check_forces_are_energy_gradient(head_model, atoms, n=4)
    checks.check_rotation(head_model, atoms)
    checks.check_translation(head_model, atoms)
    checks.check_permutation(head_model, atoms)


def test_head_stress_images_and_supercell(head_model, triclinic_cell, nacl_cell):
    checks.check_stress_is_strain_derivative(head_model, triclinic_cell)
    checks.check_wrapping(head_model, triclinic_cell)
    checks.check_supercell(head_model, nacl_cell, (1, 2, 1))


@pytest.mark.parametrize("head", sorted(HEADS))
def test_head_batch_isolation(head, nacl_cell, water_dimer, triclinic_cell):
    """Heads sum over whole structures: a structure's energy and forces ignore its batch mates."""
    _assert_batch_isolation(_head_potential(sorted(BACKBONES)[0], head), (nacl_cell, water_dimer, triclinic_cell))
