"""CELLI's parametrisations (models/heads/celli_parameters.py), in float64.

The default ``reference`` parametrisation is re-derived in numpy from the paper's equations
(docs/fidelity.md) — edge features, electronegativity, hardness, widths, the constrained solve,
the energy with widths held fixed, the charge feedback — and checked as physics: forces equal
−dE/dx through the edge features and the solve, charges sum exactly to the total charge, and
energies are invariant under rotation, translation, permutation and periodic images.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from ase.data import covalent_radii
from pydantic import ValidationError
from scipy.special import erf

from farfield.models import AtomicGraph, ModelConfig, build_potential, collate
from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import EdgeEmbedding
from farfield.models.heads import CelliHead
from farfield.models.heads.config import CelliConfig
from farfield.models.training.checkpoint import load_checkpoint, save_checkpoint
from tests import physics_checks as checks

CUTOFF = 4.0
#: Independent constants: k_e = e²/(4πε₀) in eV·Å (CODATA 2018) and 1 kJ/mol in eV.
K_E = 14.3996454784
KJ_PER_MOL = 1000.0 / 96485.3321233


def _softplus(x):
    return np.logaddexp(0.0, x)


class _Backbone:
    """Stands in for a backbone: per-element invariant features and the radial basis and
    envelope of the graph's edges at the given positions."""

    def __init__(self, channels: int = 8):
        self.table = torch.randn(119, channels, generator=torch.Generator().manual_seed(3))
        self.edges = EdgeEmbedding(CUTOFF)

    def __call__(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor) -> BackboneOutput:
        edges = self.edges(graph.edge_vectors(positions, cell))
        h = self.table[graph.numbers]
        return BackboneOutput(node_features=h, layer_features=[h], edge_basis=edges.basis, edge_envelope=edges.envelope)


def _perturbed(head: CelliHead) -> CelliHead:
    """Moves the reference parameters off their starting values (widths of 1–5 Å, varied
    hardness and radii) so that every term of the parametrisation matters."""
    inputs = head.inputs
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        inputs.radius_shift.fill_(-20.0)
        inputs.radius.copy_(0.3 * torch.randn(inputs.radius.shape, generator=generator))
        inputs.raw_hardness.copy_(torch.randn(inputs.raw_hardness.shape, generator=generator))
        inputs.electronegativity_scale.fill_(0.4)
    return head


def _graph(atoms, total_charge: float = 0.0) -> AtomicGraph:
    atoms = atoms.copy()
    atoms.info["total_charge"] = total_charge
    return collate([AtomicGraph.from_atoms(atoms, CUTOFF)])


def _head(**config) -> CelliHead:
    torch.manual_seed(0)
    return _perturbed(CelliHead(8, CelliConfig(accuracy=1e-10, cg_tolerance=1e-13, **config), cutoff=CUTOFF))


# --- the reference equations in numpy ------------------------------------------------------


def _mlp(linears, x):
    """Bias-free MLP with SiLU scaled to unit second moment under N(0, 1) (e3nn's normalisation)."""
    z = np.linspace(-12, 12, 200001)
    silu = z / (1 + np.exp(-z))
    rms = math.sqrt(np.trapezoid(silu**2 * np.exp(-z**2 / 2) / math.sqrt(2 * math.pi), z))
    for k, weight in enumerate(linears):
        x = x @ weight.T
        if k < len(linears) - 1:
            x = x / (1 + np.exp(-x)) / rms
    return x


def _weights(mlp):
    return [layer.weight.detach().numpy() for layer in mlp if isinstance(layer, torch.nn.Linear)]


def _numpy_reference(head: CelliHead, graph: AtomicGraph, features: BackboneOutput, total: float, radius_shift=None):
    """χ (eV/e), J (eV/e²), σ (Å), charges (e), energy (eV, widths of the unshifted parameters in the
    energy) and feedback Δ of the paper's equations, from the head's weights."""
    p = head.inputs
    numbers = graph.numbers.numpy()
    positions = graph.positions.numpy()
    center, neighbor = graph.edge_index.numpy()
    r = np.linalg.norm(graph.edge_vectors().detach().numpy(), axis=1)
    x = r / CUTOFF
    u = np.where(x < 1, 1 - 28 * x**6 + 48 * x**7 - 21 * x**8, 0.0)
    rbf = math.sqrt(2) * np.sin(np.arange(1, 9)[None, :] * math.pi * x[:, None]) / x[:, None] * u[:, None]
    h = features.layer_features[0].numpy()
    edges = np.concatenate([h[center] * u[:, None], rbf], axis=1)
    charge_unit = math.sqrt(KJ_PER_MOL * 10.0 / K_E)
    chi = np.zeros(len(numbers))
    np.add.at(chi, center, _mlp(_weights(p.electronegativity), edges)[:, 0])
    chi *= KJ_PER_MOL / charge_unit * _softplus(p.electronegativity_scale.item())
    hardness = K_E / 10.0 * _softplus(p.raw_hardness.detach().numpy()[numbers])

    def widths(shift):
        g = _softplus(p.radius_scale.item()) * p.radius.detach().numpy()[numbers] + shift
        return 10.0 * _softplus(g * (covalent_radii[numbers] + 0.01) / 10.0)

    def coulomb(sigma):
        n = len(numbers)
        c = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                if i != j:
                    d = np.linalg.norm(positions[i] - positions[j])
                    c[i, j] = K_E * erf(d / math.sqrt(2 * (sigma[i] ** 2 + sigma[j] ** 2))) / d
        return c

    def solve(sigma):
        n = len(numbers)
        a = np.zeros((n + 1, n + 1))
        a[:n, :n] = coulomb(sigma) + np.diag(hardness + K_E / (math.sqrt(math.pi) * sigma))
        a[n, :n] = a[:n, n] = 1.0
        return np.linalg.solve(a, np.concatenate([-chi, [total]]))[:n]

    sigma0 = widths(p.radius_shift.item())
    sigma = sigma0 if radius_shift is None else widths(radius_shift)
    q = solve(sigma)
    energy = 0.5 * q @ coulomb(sigma0) @ q + (K_E * q**2 / (2 * math.sqrt(math.pi) * sigma0)).sum()
    t = p.charge_embedding.embedding.weight.detach().numpy()[numbers]
    w = _mlp(_weights(p.charge_features), np.concatenate([q[:, None] / charge_unit, t], axis=1))
    messages = _mlp(_weights(p.feedback_features), np.concatenate([edges, w[center]], axis=1)) * u[:, None]
    feedback = np.zeros((len(numbers), messages.shape[1]))
    np.add.at(feedback, center, messages)
    return {"chi": chi, "hardness": hardness, "widths": sigma, "charges": q, "energy": energy, "feedback": feedback}


def test_reference_parametrisation_equals_a_numpy_rederivation(water_dimer):
    head = _head(solver="dense")
    graph = _graph(water_dimer, total_charge=1.0)
    features = _Backbone()(graph, graph.positions, graph.cell)
    out = head(graph, features, graph.positions, graph.cell)
    expected = _numpy_reference(head, graph, features, 1.0)
    np.testing.assert_allclose(out["electronegativity"].detach().numpy(), expected["chi"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(head.hardness(graph.numbers).detach().numpy(), expected["hardness"], rtol=1e-10)
    np.testing.assert_allclose(head.widths(graph.numbers).detach().numpy(), expected["widths"], rtol=1e-10)
    assert 1.0 < expected["widths"].min() and expected["widths"].max() < 6.0  # the perturbation took effect
    np.testing.assert_allclose(out["charges"].detach().numpy(), expected["charges"], rtol=0, atol=1e-10)
    assert out["energy"][0].item() == pytest.approx(expected["energy"], rel=1e-10)
    feedback = head.node_inputs(graph, features, out).detach().numpy()
    assert feedback.shape == (len(water_dimer), 8) and np.abs(feedback).max() > 1e-3
    np.testing.assert_allclose(feedback, expected["feedback"], rtol=1e-9, atol=1e-11)


def test_widths_learn_through_the_charges_only(water_dimer):
    """dE/d(radius shift) by autograd equals the derivative of E(q(σ(b)), σ₀) in numpy: the energy's
    own dependence on σ is cut, as in the reference, and the charges' is kept."""
    head = _head(solver="dense")
    graph = _graph(water_dimer, total_charge=-0.5)
    features = _Backbone()(graph, graph.positions, graph.cell)
    energy = head(graph, features, graph.positions, graph.cell)["energy"].sum()
    (grad,) = torch.autograd.grad(energy, head.inputs.radius_shift)
    b, step = head.inputs.radius_shift.item(), 1e-5
    numeric = (_numpy_reference(head, graph, features, -0.5, b + step)["energy"]
               - _numpy_reference(head, graph, features, -0.5, b - step)["energy"]) / (2 * step)
    assert float(grad) == pytest.approx(numeric, rel=1e-6, abs=1e-12)
    assert abs(numeric) > 1e-6  # not trivially zero


# --- physics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["dense", "cg"])
@pytest.mark.parametrize("fixture", ["water_dimer", "nacl_cell"])
def test_forces_differentiate_through_edge_features_and_solve(solver, fixture, request):
    atoms = request.getfixturevalue(fixture)
    head, backbone = _head(solver=solver), _Backbone()
    graph = _graph(atoms)

    def energy(positions):
        return head(graph, backbone(graph, positions, graph.cell), positions, graph.cell)["energy"].sum()

    positions = graph.positions.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(positions), positions)
    assert float(grad.abs().max()) > 1e-4
    step = 1e-5
    for i, k in [(0, 0), (1, 2), (3, 1), (2, 0)]:
        plus, minus = graph.positions.clone(), graph.positions.clone()
        plus[i, k] += step
        minus[i, k] -= step
        numeric = float((energy(plus) - energy(minus)).detach()) / (2 * step)
        assert float(grad[i, k]) == pytest.approx(numeric, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("solver", ["dense", "cg"])
def test_charges_sum_exactly_to_each_total_charge(solver, nacl_cell, water_dimer, triclinic_cell):
    head = _head(solver=solver)
    structures = [(nacl_cell, 1.0), (water_dimer, -2.0), (triclinic_cell, 0.0)]
    graph = collate([_graph(a, q) for a, q in structures])
    charges = head(graph, _Backbone()(graph, graph.positions, graph.cell), graph.positions, graph.cell)["charges"]
    sums = torch.zeros(3).index_add(0, graph.batch, charges)
    torch.testing.assert_close(sums, torch.tensor([1.0, -2.0, 0.0]), rtol=0, atol=1e-10)
    assert float(charges.detach().abs().max()) > 1e-3


def _reference_model():
    """A PaiNN potential with the default CELLI head (reference parametrisation, feedback on),
    its parameters moved off their start as in ``_perturbed``."""
    torch.manual_seed(0)
    config = ModelConfig(channels=8, layers=2, cutoff=CUTOFF, dtype="float64", long_range=["celli"],
                         heads={"celli": {"accuracy": 1e-10}})
    potential = build_potential(config).eval()
    _perturbed(potential.heads["celli"])

    def model(atoms):
        out = potential(AtomicGraph.from_atoms(atoms, CUTOFF), compute_forces=True, compute_stress=bool(atoms.pbc.any()))
        stress = out["stress"][0].detach().numpy() if "stress" in out else None
        return float(out["energy"][0].detach()), out["forces"].detach().numpy(), stress

    return potential, model


@pytest.mark.parametrize("fixture", ["water_dimer", "nacl_cell"])
def test_reference_potential_is_conservative_and_invariant(fixture, request):
    atoms = request.getfixturevalue(fixture)
    potential, model = _reference_model()
    assert potential.backbone.node_inputs.n_inputs == 8  # the feedback Δ, channels wide
    checks.check_forces_are_energy_gradient(model, atoms, h=1e-5, n=4)
    checks.check_rotation(model, atoms)
    checks.check_translation(model, atoms)
    checks.check_permutation(model, atoms)
    if atoms.pbc.all():
        checks.check_wrapping(model, atoms)
        checks.check_stress_is_strain_derivative(model, atoms)


def test_electronegativity_is_smooth_where_a_neighbour_crosses_the_cutoff():
    """Bias-free MLPs of enveloped edge features: χ of a pair changes by ~nothing across the
    cutoff (an MLP with biases would jump by MLP(0)), yet is clearly non-zero inside it."""
    import ase

    head, backbone = _head(), _Backbone()
    with torch.no_grad():  # as after training: any bias would now be non-zero
        for parameter in head.inputs.electronegativity.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape))

    def chi(distance):
        graph = _graph(ase.Atoms("CO", positions=[[0, 0, 0], [distance, 0, 0]]))
        features = backbone(graph, graph.positions, graph.cell)
        return head.inputs(graph, features).electronegativity.detach()

    assert float((chi(CUTOFF - 1e-3) - chi(CUTOFF + 1e-3)).abs().max()) < 1e-9
    assert float((chi(CUTOFF - 1.0) - chi(CUTOFF + 1e-3)).abs().max()) > 1e-4


# --- starting values, options, checkpoints ---------------------------------------------------


def test_reference_starts_from_the_papers_values():
    """J = softplus(10) in the reference's units (k_e/nm: 14.40 eV/e²), σ from the covalent radii
    (≈ 7.1 Å), χ scale softplus(1)."""
    head = CelliHead(8, CelliConfig())
    numbers = torch.tensor([1, 6, 8, 30, 90])
    charge_unit = math.sqrt(KJ_PER_MOL * 10.0 / K_E)
    hardness = head.hardness(numbers).detach().numpy()
    np.testing.assert_allclose(hardness * charge_unit**2 / KJ_PER_MOL, math.log1p(math.exp(10.0)), rtol=1e-9)
    expected_widths = 10.0 * _softplus(0.5 * (covalent_radii[numbers.numpy()] + 0.01) / 10.0)
    np.testing.assert_allclose(head.widths(numbers).detach().numpy(), expected_widths, rtol=1e-12)
    assert torch.nn.functional.softplus(head.inputs.electronegativity_scale).item() == pytest.approx(math.log1p(math.e))


def test_celli_options_are_checked():
    with pytest.raises(ValidationError, match="parametrisation"):
        CelliConfig(parametrisation="paper")
    with pytest.raises(ValidationError, match="extra"):
        CelliConfig(hardness_start=10.0)
    with pytest.raises(ValidationError, match="initial_width"):
        CelliConfig(initial_width=0.5)  # farfield's option, meaningless for the reference
    with pytest.raises(ValidationError, match="hidden"):
        CelliConfig(hidden=0)
    assert CelliConfig(parametrisation="farfield", initial_width=0.5).initial_width == 0.5
    assert CelliConfig().mlp_widths() == (128, 2) and CelliConfig(parametrisation="farfield").mlp_widths() == (32, 1)


@pytest.mark.parametrize(("parametrisation", "feedback", "width"), [("reference", True, 8), ("farfield", True, 1),
                                                                       ("reference", False, 0)])
def test_feedback_width_follows_the_parametrisation(parametrisation, feedback, width):
    config = ModelConfig(channels=8, layers=2, cutoff=CUTOFF, long_range=["celli"],
                         heads={"celli": {"parametrisation": parametrisation, "feedback": feedback}})
    potential = build_potential(config)
    assert potential.backbone.node_inputs.n_inputs == width
    assert potential.feedback_heads == (["celli"] if feedback else [])


def test_checkpoints_from_before_the_option_load_as_farfield(water_dimer, tmp_path):
    """A checkpoint written before ``parametrisation`` existed (farfield's tensors directly on the
    head, no such key in its config) loads as the ``farfield`` parametrisation, exactly."""
    config = ModelConfig(channels=8, layers=1, cutoff=CUTOFF, dtype="float64", long_range=["celli"],
                         heads={"celli": {"parametrisation": "farfield", "feedback": False}})
    potential = build_potential(config)
    payload = torch.load(save_checkpoint(tmp_path / "new.pt", potential), weights_only=True)
    legacy = json.loads(payload["model_config"])
    celli = legacy["heads"]["celli"]
    del celli["parametrisation"], celli["hidden_layers"]
    celli["hidden"] = 32
    payload["model_config"] = json.dumps(legacy)
    payload["state_dict"] = {k.replace("heads.celli.inputs.", "heads.celli."): v for k, v in payload["state_dict"].items()}
    assert "heads.celli.raw_width" in payload["state_dict"]
    torch.save(payload, tmp_path / "legacy.pt")
    loaded, _ = load_checkpoint(tmp_path / "legacy.pt")
    assert loaded.heads["celli"].config.parametrisation == "farfield"
    graph = _graph(water_dimer)
    torch.testing.assert_close(loaded(graph)["energy"], potential(graph)["energy"], rtol=0, atol=0)
