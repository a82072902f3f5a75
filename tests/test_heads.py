"""Head-specific checks in float64: CELLI's constraint and solvers, LES against an
independent implementation of its formula, EFA's periodic construction, D3 against
dftd3, the charge-feedback hook and configuration errors."""

from __future__ import annotations

import math

import ase.build
import numpy as np
import pytest
import torch
from scipy.special import erf

from farfield.models import AtomicGraph, ModelConfig, build_potential, collate
from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import AtomwiseReadout, EdgeEmbedding, ReferenceEnergies
from farfield.models.electrostatics import COULOMB_CONSTANT
from farfield.models.electrostatics.solvers import equilibrate_cg, equilibrate_dense
from farfield.models.heads import CelliHead, D3Head, EfaHead, LesHead
from farfield.models.heads.config import CelliConfig, D3Config, EfaConfig, LesConfig
from farfield.models.potential import Potential

CUTOFF = 4.0


class _Features:
    """Deterministic invariant features of each element and the radial basis of the graph's
    edges (stands in for a backbone)."""

    def __init__(self, channels: int = 8):
        generator = torch.Generator().manual_seed(3)
        self.table = torch.randn(119, channels, generator=generator)
        self.edges = EdgeEmbedding(CUTOFF)

    def __call__(self, graph: AtomicGraph) -> BackboneOutput:
        features = self.table[graph.numbers]
        edges = self.edges(graph.edge_vectors())
        return BackboneOutput(node_features=features, layer_features=[features],
                              edge_basis=edges.basis, edge_envelope=edges.envelope)


def _graph(*structures) -> AtomicGraph:
    return collate([AtomicGraph.from_atoms(a, CUTOFF) for a in structures])


def _charged(atoms, total):
    atoms = atoms.copy()
    atoms.info["total_charge"] = total
    return atoms


def _run(head, graph, positions=None):
    positions = graph.positions if positions is None else positions
    return head(graph, _Features()(graph), positions, graph.cell)


# --- CELLI ------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["dense", "cg"])
def test_celli_charges_sum_to_total_charge_in_every_structure(solver, nacl_cell, water_dimer, triclinic_cell):
    torch.manual_seed(0)
    head = CelliHead(8, CelliConfig(solver=solver, accuracy=1e-8))
    graph = _graph(_charged(nacl_cell, 1.0), _charged(water_dimer, -2.0), triclinic_cell)
    charges = _run(head, graph)["charges"]
    sums = torch.zeros(3).index_add(0, graph.batch, charges)
    torch.testing.assert_close(sums, torch.tensor([1.0, -2.0, 0.0]), rtol=0, atol=1e-10)
    assert float(charges.detach().abs().max()) > 1e-3  # not trivially zero


def test_celli_dense_cg_and_numpy_solutions_agree(water_dimer, nacl_cell):
    torch.manual_seed(1)
    config = dict(accuracy=1e-10, cg_tolerance=1e-13)
    dense, cg = CelliHead(8, CelliConfig(solver="dense", **config)), CelliHead(8, CelliConfig(solver="cg", **config))
    cg.load_state_dict(dense.state_dict())
    for atoms in (_charged(water_dimer, 0.5), nacl_cell):
        graph = _graph(atoms)
        out_dense, out_cg = _run(dense, graph), _run(cg, graph)
        torch.testing.assert_close(out_cg["charges"], out_dense["charges"], rtol=0, atol=1e-9)
        torch.testing.assert_close(out_cg["energy"], out_dense["energy"], rtol=1e-9, atol=1e-12)
    # independent: Qeq of the water dimer built and solved in numpy
    graph = _graph(_charged(water_dimer, 0.5))
    chi = _run(dense, graph)["electronegativity"].detach().numpy()
    hardness = dense.hardness(graph.numbers).detach().numpy()
    sigma = dense.widths(graph.numbers).detach().numpy()
    pos, n = graph.positions.numpy(), len(chi)
    a = np.zeros((n + 1, n + 1))
    for i in range(n):
        a[i, i] = hardness[i] + COULOMB_CONSTANT / (math.sqrt(math.pi) * sigma[i])
        for j in range(n):
            if i != j:
                r = np.linalg.norm(pos[i] - pos[j])
                a[i, j] = COULOMB_CONSTANT * erf(r / math.sqrt(2 * (sigma[i] ** 2 + sigma[j] ** 2))) / r
    a[n, :n] = a[:n, n] = 1.0
    expected = np.linalg.solve(a, np.concatenate([-chi, [0.5]]))[:n]
    np.testing.assert_allclose(_run(dense, graph)["charges"].detach().numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("solver", ["dense", "cg"])
@pytest.mark.parametrize("fixture", ["water_dimer", "nacl_cell"])
def test_celli_forces_differentiate_through_the_solve(solver, fixture, request):
    """−dE/dx by finite differences equals autograd through the charge solve; the
    envelope-theorem shortcut (charges held fixed) would not."""
    atoms = request.getfixturevalue(fixture)
    torch.manual_seed(2)
    head = CelliHead(8, CelliConfig(solver=solver, accuracy=1e-10, cg_tolerance=1e-13))
    features = _Features()
    graph = _graph(atoms)

    def energy(positions):
        return head(graph, features(graph), positions, graph.cell)["energy"].sum()

    positions = graph.positions.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(positions), positions)
    h = 1e-5
    for i, k in [(0, 0), (1, 2), (3, 1)]:
        plus, minus = graph.positions.clone(), graph.positions.clone()
        plus[i, k] += h
        minus[i, k] -= h
        numeric = float((energy(plus) - energy(minus)).detach()) / (2 * h)
        assert float(grad[i, k]) == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_cg_solver_second_derivatives_match_dense():
    """Force training needs d(forces)/d(parameters): the implicit CG backward is itself differentiable."""
    n = 5
    x = torch.randn(n, 3, requires_grad=True)
    diag = torch.rand(n).add(1.0).requires_grad_(True)
    chi = torch.randn(n, requires_grad=True)

    def matrix(x, d):
        r2 = ((x[:, None] - x[None]) ** 2).sum(-1)
        return torch.exp(-r2 / 4) * (1 - torch.eye(n)) + torch.diag(d) + torch.eye(n)

    def cg(x, d, c):
        return equilibrate_cg(lambda v, x_, d_: matrix(x_, d_) @ v, (x, d), c, torch.tensor(0.3), tol=1e-13)

    def dense(x, d, c):
        return equilibrate_dense(matrix(x, d), c, torch.tensor(0.3))

    torch.testing.assert_close(cg(x, diag, chi), dense(x, diag, chi))
    assert torch.autograd.gradgradcheck(cg, (x, diag, chi))


# --- LES --------------------------------------------------------------------------------


def _les_reference(positions, cell, charges, sigma, kcut, background=False):
    """The LES formula written out in numpy (full k-sphere, complex structure factor);
    ``background`` adds the neutralising-background term."""
    volume = abs(np.linalg.det(cell))
    recip = 2 * math.pi * np.linalg.inv(cell).T
    m = [int(kcut * np.linalg.norm(c) / (2 * math.pi)) + 1 for c in cell]
    energy = 0.0
    for n in np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in m], indexing="ij"), -1).reshape(-1, 3):
        k = n @ recip
        k2 = k @ k
        if k2 == 0 or k2 > kcut**2:
            continue
        s = (charges * np.exp(1j * positions @ k)).sum()
        energy += 2 * math.pi / volume * math.exp(-0.5 * sigma**2 * k2) / k2 * abs(s) ** 2
    energy -= (charges**2).sum() / (math.sqrt(2 * math.pi) * sigma)
    if background:
        energy -= math.pi * sigma**2 * charges.sum() ** 2 / volume
    return COULOMB_CONSTANT * energy


def test_les_energy_matches_independent_formula(triclinic_cell, water_dimer):
    torch.manual_seed(4)
    head = LesHead(8, LesConfig(smearing=0.9, wavelength_cutoff=1.5))
    periodic = triclinic_cell.repeat((1, 2, 2))
    for atoms in (periodic, water_dimer):
        graph = _graph(atoms)
        out = _run(head, graph)
        q = out["charges"].detach().numpy()
        if atoms.pbc.all():
            expected = _les_reference(atoms.positions, atoms.cell.array, q, 0.9, 2 * math.pi / 1.5)
        else:
            pos = atoms.positions
            expected = sum(
                0.5 * COULOMB_CONSTANT * q[i] * q[j] * erf(np.linalg.norm(pos[i] - pos[j]) / (math.sqrt(2) * 0.9))
                / np.linalg.norm(pos[i] - pos[j])
                for i in range(len(q)) for j in range(len(q)) if i != j
            )
        assert float(out["energy"][0].detach()) == pytest.approx(expected, rel=1e-10)


#: e²/(4πε₀) in eV·Å (CODATA 2018), written here so the direct sum below shares nothing with farfield.
_KE = 14.399645478425668


def _direct_kspace_energy(positions, cell, charges, sigma, kcut):
    """Reference LES energy by a direct pair sum in k-space, in plain numpy:
    ``E = (2π k_e/V) Σ_{0<|k|≤kcut} e^{−σ²k²/2}/k² Σ_ij q_i q_j cos(k·(r_i − r_j)) − k_e Σ_i q_i²/(√(2π)σ)``
    — no structure factor, no half-space trick, no background term (the reference LES has none)."""
    volume = abs(np.linalg.det(cell))
    recip = 2 * math.pi * np.linalg.inv(cell).T  # rows b_i with a_i · b_j = 2π δ_ij
    separations = positions[:, None, :] - positions[None, :, :]  # (n, n, 3) Å
    qq = np.outer(charges, charges)
    reach = [int(np.ceil(kcut / np.linalg.norm(b))) + 1 for b in recip]
    total = 0.0
    for n1 in range(-reach[0], reach[0] + 1):
        for n2 in range(-reach[1], reach[1] + 1):
            for n3 in range(-reach[2], reach[2] + 1):
                k = n1 * recip[0] + n2 * recip[1] + n3 * recip[2]
                k2 = float(k @ k)
                if k2 == 0.0 or k2 > kcut**2:
                    continue
                total += math.exp(-0.5 * sigma**2 * k2) / k2 * float((qq * np.cos(separations @ k)).sum())
    return _KE * (2 * math.pi / volume * total - (charges**2).sum() / (math.sqrt(2 * math.pi) * sigma))


@pytest.mark.parametrize("fixture", ["mof_cell", "triclinic_cell", "nacl_cell"])
def test_les_non_neutral_charges_match_a_direct_kspace_sum(fixture, request):
    """Default LES (``background: false``) = the reference LES energy for any net charge;
    ``background: true`` differs by exactly −π k_e σ² Q²/V."""
    atoms = request.getfixturevalue(fixture)
    graph = _graph(atoms)
    rng = np.random.default_rng(11)
    q = rng.normal(0.3, 0.5, len(atoms))  # net charge clearly non-zero
    assert abs(q.sum()) > 0.5
    sigma, wavelength = 1.0, 2.0
    expected = _direct_kspace_energy(atoms.positions, atoms.cell.array, q, sigma, 2 * math.pi / wavelength)
    volume = abs(np.linalg.det(atoms.cell.array))
    for background, shift in ((False, 0.0), (True, -math.pi * _KE * sigma**2 * q.sum() ** 2 / volume)):
        head = LesHead(8, LesConfig(smearing=sigma, wavelength_cutoff=wavelength, background=background))
        head.charges = lambda graph, features: torch.as_tensor(q)  # fixed latent charges
        energy = float(_run(head, graph)["energy"][0])
        assert energy == pytest.approx(expected + shift, rel=1e-10, abs=1e-10)
    assert LesConfig().background is False


def test_les_neutral_option_and_no_charge_loss(nacl_cell):
    head = LesHead(8, LesConfig(neutral=True))
    graph = _graph(_charged(nacl_cell, 1.0))
    assert float(_run(head, graph)["charges"].detach().sum()) == pytest.approx(1.0, abs=1e-12)
    from farfield.models.heads import CHARGE_HEADS

    assert "les" not in CHARGE_HEADS  # LES is trained on energies and forces only


# --- EFA --------------------------------------------------------------------------------


def test_efa_periodic_kernel_tends_to_the_aperiodic_one(water_dimer):
    """A molecule in a growing box: the reciprocal-lattice sum converges to the Lebedev integral."""
    torch.manual_seed(5)
    head = EfaHead(8, EfaConfig(max_frequency=1.2, lebedev_degree=47, radial_nodes=24))
    molecule = _run(head, _graph(water_dimer))["energy"]
    errors = []
    for box in (14.0, 24.0):
        boxed = water_dimer.copy()
        boxed.set_cell(np.eye(3) * box)
        boxed.center()
        boxed.pbc = True
        errors.append(float((_run(head, _graph(boxed))["energy"] - molecule).detach().abs()))
    assert errors[1] < 0.2 * errors[0] and errors[1] < 1e-2 * float(molecule.detach().abs()), errors


def test_efa_supercell_and_shifted_images_per_cell(triclinic_cell):
    torch.manual_seed(6)
    head = EfaHead(8, EfaConfig())
    cell_energy = _run(head, _graph(triclinic_cell))["energy"]
    for repeat in ((2, 1, 1), (2, 2, 1)):
        super_energy = _run(head, _graph(triclinic_cell.repeat(repeat)))["energy"]
        torch.testing.assert_close(super_energy, cell_energy * int(np.prod(repeat)), rtol=1e-11, atol=0)
    shifted = triclinic_cell.copy()
    shifted.positions += np.array([[1, -2, 0], [0, 3, -1]]) @ shifted.cell.array
    torch.testing.assert_close(_run(head, _graph(shifted))["energy"], cell_energy, rtol=1e-11, atol=0)


# --- D3 ---------------------------------------------------------------------------------


def test_d3_matches_dftd3(nacl_cell, water_dimer):
    """Energy and forces equal dftd3's own (called independently here), with and without ATM."""
    from dftd3.interface import DispersionModel, RationalDampingParam

    bohr, hartree = 0.529177210903, 27.211386245988
    cutoffs = {"cutoff": 12.0, "three_body_cutoff": 8.0, "coordination_cutoff": 8.0}
    for atoms in (nacl_cell, water_dimer):
        periodic = bool(atoms.pbc.all())
        for three_body in (False, True):
            graph = _graph(atoms)
            positions = graph.positions.clone().requires_grad_(True)
            energy = D3Head(config=D3Config(three_body=three_body, **cutoffs))(graph, None, positions, graph.cell)["energy"]
            (grad,) = torch.autograd.grad(energy.sum(), positions)
            model = DispersionModel(
                atoms.numbers, atoms.positions / bohr, atoms.cell.array / bohr if periodic else None,
                np.array([True] * 3) if periodic else None,
            )
            model.set_realspace_cutoff(12.0 / bohr, 8.0 / bohr, 8.0 / bohr)
            ref = model.get_dispersion(RationalDampingParam(method="pbe", atm=three_body), grad=True)
            assert float(energy.detach()) == pytest.approx(ref["energy"] * hartree, rel=1e-12)
            np.testing.assert_allclose(grad.numpy(), ref["gradient"] * hartree / bohr, rtol=1e-10, atol=1e-12)


# --- feedback and configuration ----------------------------------------------------------


class _FeedbackBackbone(torch.nn.Module):
    """Accepts per-atom inputs: features depend on neighbours' distances and, if given, charges."""

    cutoff = CUTOFF

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 8)
        self.edges = EdgeEmbedding(CUTOFF)
        self.calls = 0

    def forward(self, graph, edge_vectors, node_inputs=None):
        self.calls += 1
        edges = self.edges(edge_vectors)
        density = torch.zeros(len(graph.numbers)).index_add(0, graph.edge_index[0], torch.exp(-edges.lengths))
        extra = torch.zeros_like(density) if node_inputs is None else node_inputs.sum(dim=1)
        features = torch.tanh(self.linear(torch.stack([density, extra], dim=1)))
        return BackboneOutput(node_features=features, layer_features=[features], edge_vectors=edge_vectors,
                              edge_basis=edges.basis, edge_envelope=edges.envelope)


def test_celli_feedback_reruns_the_backbone_with_charges(water_dimer):
    torch.manual_seed(7)
    backbone = _FeedbackBackbone()
    head = CelliHead(8, CelliConfig(feedback=True))
    potential = Potential(backbone, AtomwiseReadout(8), ReferenceEnergies(), heads={"celli": head})
    graph = _graph(water_dimer)
    out = potential(graph)
    assert backbone.calls == 2
    positions = graph.positions.clone()
    positions[0, 0] += 1e-5
    plus = graph.to()
    plus.positions = positions
    positions2 = graph.positions.clone()
    positions2[0, 0] -= 1e-5
    minus = graph.to()
    minus.positions = positions2
    energies = [float(potential(g, compute_forces=False)["energy"].detach()) for g in (plus, minus)]
    numeric = -(energies[0] - energies[1]) / 2e-5
    assert float(out["forces"][0, 0]) == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_feedback_needs_a_backbone_with_node_inputs():
    class _NoInputs(torch.nn.Module):
        cutoff = CUTOFF

        def forward(self, graph, edge_vectors):
            raise AssertionError("never called")

    head = CelliHead(8, CelliConfig(feedback=True))
    with pytest.raises(ValueError, match="node_inputs"):
        Potential(_NoInputs(), AtomwiseReadout(8), ReferenceEnergies(), heads={"celli": head})


def test_head_config_errors():
    with pytest.raises(ValueError, match="lebedev_degree"):
        ModelConfig(long_range=["efa"], heads={"efa": {"lebedev_degree": 33}})
    with pytest.raises(ValueError, match="hardnes"):
        ModelConfig(heads={"celli": {"hardnes": 3.0}})
    with pytest.raises(ValueError, match="known heads"):
        ModelConfig(long_range=["ewald"])


def test_mixed_periodicity_is_rejected(nacl_cell):
    slab = nacl_cell.copy()
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match="pbc"):
        _run(LesHead(8), _graph(slab))


def test_heads_report_their_predictions(nacl_cell):
    config = ModelConfig(channels=8, layers=1, cutoff=CUTOFF, long_range=["celli", "les", "efa"], dtype="float64")
    out = build_potential(config)(_graph(nacl_cell))
    for key in ("energy_celli", "charges_celli", "energy_les", "charges_les", "energy_efa", "charges"):
        assert key in out, key
    torch.testing.assert_close(out["charges"], out["charges_celli"])


# --- per-head reporting -------------------------------------------------------------------


def _reporting_potential():
    config = ModelConfig(channels=8, layers=1, cutoff=CUTOFF, long_range=["celli", "les", "d3"], dtype="float64")
    return build_potential(config, energy_scale=0.5)


def test_head_report_tables_and_metrics(nacl_cell, water_dimer):
    from farfield.models.heads.report import head_report

    nacl, water = nacl_cell.copy(), water_dimer.copy()
    nacl.info["structure_id"], water.info["structure_id"] = "nacl", "water"
    graphs = [AtomicGraph.from_atoms(a, CUTOFF) for a in (nacl, water)]
    potential = _reporting_potential()
    report = head_report(potential, graphs, batch_size=1)
    assert set(report.charges) == {"nacl", "water"}
    assert set(report.charges["nacl"]["head"]) == {"celli", "les"}
    assert len(report.charges["water"]) == 2 * len(water)
    assert report.metrics["q_std_celli"] > 0 and report.metrics["q_std_les"] > 0
    for name in ("celli", "les", "d3"):
        assert 0 < report.metrics[f"lr_energy_share_{name}"] < 1
    # LES charges collapsed to zero are visible
    les = potential.heads["les"].latent_charges
    with torch.no_grad():
        les[-1].weight.zero_()
        les[-1].bias.zero_()
    collapsed = head_report(potential, graphs)
    assert collapsed.metrics["q_std_les"] == 0.0 and collapsed.metrics["lr_energy_share_les"] == 0.0


class _RecordingClient:
    """Stands in for ``MlflowClient``: records which files each ``log_artifact(s)`` call uploads."""

    def __init__(self):
        self.logged: dict[str, list[str]] = {}

    def log_artifacts(self, run_id, local_dir, artifact_path=None):
        from pathlib import Path

        self.logged.setdefault(artifact_path, []).extend(sorted(p.name for p in Path(local_dir).iterdir()))

    def log_artifact(self, run_id, local_path, artifact_path=None):
        from pathlib import Path

        self.logged.setdefault(artifact_path, []).append(Path(local_path).name)


def test_trial_logs_head_predictions(tmp_path, nacl_cell):
    import pandas as pd

    from farfield.models.heads.report import head_report
    from farfield.orchestrator.trial_logging import log_head_report

    from farfield.analysis.loading import logged_charges

    client = _RecordingClient()
    atoms = nacl_cell.copy()
    atoms.info["structure_id"] = "nacl/rattled 1"
    other = nacl_cell.copy()
    other.rattle(0.05, seed=3)
    other.info["structure_id"] = "nacl/rattled 2"
    graphs = [AtomicGraph.from_atoms(a, CUTOFF) for a in (atoms, other)]
    report = head_report(_reporting_potential(), graphs)
    metrics = log_head_report(client, "run", report, tmp_path)
    assert metrics["test/q_std"] == metrics["test/q_std_celli"] > 0
    assert "test/lr_energy_share" in metrics
    assert client.logged == {"predictions": ["test_charges.parquet"]}  # one file, whatever the test set
    table = pd.read_parquet(tmp_path / "test_charges.parquet")
    assert list(table.columns) == ["structure_id", "atom", "number", "head", "charge", "reference_charge"]
    # read back as the report does, in the order asked for, structures without charges left out
    rows = logged_charges(tmp_path / "test_charges.parquet", ["nacl/rattled 2", "absent", "nacl/rattled 1"])
    expected = pd.concat([report.charges["nacl/rattled 2"], report.charges["nacl/rattled 1"]])
    assert rows["structure_id"].tolist() == ["nacl/rattled 2"] * len(report.charges["nacl/rattled 2"]) + \
        ["nacl/rattled 1"] * len(report.charges["nacl/rattled 1"])
    np.testing.assert_array_equal(rows["q_pred"], expected["charge"])
    np.testing.assert_array_equal(rows["atom"], expected["atom"])
