"""The Allegro-style backbone: strictly local atom energies, smooth at the cutoff, an
equivariant tensor track (pseudotensors included), training, and every long-range head.

The physics shared with the other backbones (forces = −∇E, invariances, periodic images,
batch isolation, heads) runs in tests/test_physics.py, which covers every registered
backbone; the output form and the node-input hook in tests/test_backbones.py.
"""

from __future__ import annotations

import ase
import numpy as np
import pytest
import torch
from e3nn.util.test import assert_equivariant

from farfield.data.datasets import bundled_store
from farfield.models import HEADS, AtomicGraph, LossWeights, ModelConfig, build_potential, collate
from farfield.models.backbones.allegro import tensor_track_irreps
from farfield.models.blocks.strided_product import strided_dim
from farfield.models.blocks.readout import fit_reference_energies
from farfield.models.training import build_graphs, element_count_matrix, force_rms, weighted_loss

CUTOFF = 3.0
SMALL = dict(channels=8, layers=2, cutoff=CUTOFF, l_max=2, tensor_features=4, radial_mlp=[8], latent_mlp=[8],
             avg_neighbors=4.0, dtype="float64")


def _potential(backbone: str = "allegro", **overrides):
    torch.manual_seed(0)
    options = {**SMALL, **overrides}
    if backbone != "allegro":
        options = {k: v for k, v in options.items() if k not in ("tensor_features", "latent_mlp")}
    return build_potential(ModelConfig(backbone=backbone, **options), reference_energies=np.linspace(-1, 1, 119),
                           energy_scale=0.5).eval()


def _chain() -> ase.Atoms:
    """A non-periodic zigzag chain of C, O, N, H, 1.3 Å apart along x: each atom's cutoff
    (3 Å) holds its two neighbours on either side, so every other atom is reachable only
    through a neighbour — what message passing would use and Allegro must not."""
    rng = np.random.default_rng(3)
    n = 9
    positions = np.stack([1.3 * np.arange(n), 0.4 * (-1.0) ** np.arange(n), np.zeros(n)], axis=1)
    positions += rng.normal(scale=0.05, size=positions.shape)
    return ase.Atoms(["C", "O", "N", "H"] * 2 + ["C"], positions=positions)


def _nacl_supercell(nacl_cell) -> ase.Atoms:
    """2×2×2 rock salt (11.3 Å cube): within 3 Å only the six nearest neighbours."""
    return nacl_cell.repeat((2, 2, 2))


def _atom_energy_gradients(potential, atoms) -> np.ndarray:
    """(n_atoms, n_atoms): |∂E_i/∂r_k|, the dependence of atom i's energy on atom k."""
    graph = AtomicGraph.from_atoms(atoms, potential.cutoff)
    positions = graph.positions.clone().requires_grad_(True)
    graph.positions = positions
    atomic = potential(graph, compute_forces=False)["atomic_energies"]
    rows = [torch.autograd.grad(atomic[i], positions, retain_graph=True)[0].norm(dim=1) for i in range(len(atoms))]
    return torch.stack(rows).detach().numpy()


@pytest.mark.parametrize("backbone, local", [("allegro", True), ("nequip", False)])
@pytest.mark.parametrize("structure", ["chain", "nacl_supercell"])
def test_atom_energy_ignores_atoms_beyond_its_cutoff(backbone, local, structure, nacl_cell):
    """∂E_i/∂r_k = 0 exactly for every atom k farther than the cutoff from i (all periodic
    images), and ≠ 0 for some within it. Message passing (NequIP, 2 layers) fails the first
    part: atoms within two cutoffs reach E_i through a neighbour — so the check can fail."""
    atoms = _chain() if structure == "chain" else _nacl_supercell(nacl_cell)
    gradients = _atom_energy_gradients(_potential(backbone), atoms)
    distances = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    beyond = distances > CUTOFF
    assert beyond.any() and (distances[~beyond] > 0).any()
    within = gradients[~beyond & (distances > 0)].max()
    assert within > 1e-8, "atom energies do not depend on their neighbours"
    if local:
        assert gradients[beyond].max() == 0.0, f"E_i depends on an atom beyond the cutoff: {gradients[beyond].max():.3g}"
    else:
        assert gradients[beyond].max() > 1e-6 * within


@pytest.mark.parametrize("backbone, local", [("allegro", True), ("nequip", False)])
def test_moving_an_atom_beyond_the_cutoff_leaves_the_atom_energy_unchanged(backbone, local):
    """Chain atom 0's cutoff holds atoms 1 and 2; moving atom 3 (4 Å away, within the
    cutoff of 1 and 2) keeps it beyond 3 Å of atom 0: E_0 is unchanged, E_1 changes."""
    potential = _potential(backbone)
    atoms = _chain()
    moved = atoms.copy()
    moved.positions[3] += [0.1, 0.25, -0.2]
    assert min(atoms.get_distance(0, 3), moved.get_distance(0, 3)) > CUTOFF
    assert max(atoms.get_distance(1, 3), moved.get_distance(1, 3)) < CUTOFF

    def atomic(a):
        return potential(AtomicGraph.from_atoms(a, CUTOFF), compute_forces=False)["atomic_energies"].detach()

    change = (atomic(moved) - atomic(atoms)).abs()
    assert float(change[1]) > 1e-6, "the move changed nothing at all"
    if local:
        assert float(change[0]) == 0.0
    else:
        assert float(change[0]) > 1e-6 * float(change[1])


def test_energy_is_smooth_as_an_atom_crosses_the_cutoff():
    """Atom C moves radially from the cutoff − δ to the cutoff + δ of atom A (staying within
    the cutoff of B): the energy change equals −F·Δr with the force at the crossing, to
    O(δ³). A jump of the energy (an edge energy not vanishing at the cutoff) or a kink
    (forces jumping there) would show up as an error of order its size, or δ times it."""
    potential = _potential()
    direction = np.array([1.6, np.sqrt(CUTOFF**2 - 1.6**2), 0.0]) / CUTOFF
    delta = 1e-3

    def energy_and_forces(distance):
        atoms = ase.Atoms("COH", positions=[[0, 0, 0], [1.5, 0, 0], direction * distance])
        out = potential(AtomicGraph.from_atoms(atoms, CUTOFF), compute_forces=True)
        return float(out["energy"][0].detach()), out["forces"][2].detach().numpy()

    e_in, _ = energy_and_forces(CUTOFF - delta)
    e_out, _ = energy_and_forces(CUTOFF + delta)
    _, force_at_cutoff = energy_and_forces(CUTOFF)
    predicted = -float(force_at_cutoff @ (direction * 2 * delta))
    assert abs(e_out - e_in) > 1e-9, "moving C changed nothing"
    assert abs((e_out - e_in) - predicted) < 1e-9, f"ΔE {e_out - e_in:.6g} but −F·Δr {predicted:.6g}"


def _strided_to_e3nn(x: torch.Tensor, irreps) -> torch.Tensor:
    """Strided (n, C, Σ(2l+1)) → e3nn's mul_ir layout (n, Σ C(2l+1))."""
    blocks = x.split([2 * l + 1 for l, _ in irreps], dim=-1)
    return torch.cat([b.reshape(x.shape[0], -1) for b in blocks], dim=-1)


def _irreps_string(channels: int, irreps) -> str:
    return "+".join(f"{channels}x{l}{'e' if p == 1 else 'o'}" for l, p in irreps)


@pytest.mark.parametrize("fixture", ["mof_cell", "water_dimer"])
def test_tensor_track_equivariant_with_pseudotensors(fixture, request):
    """Every layer's tensor track (3 layers, both parities: pseudotensors such as 1e and
    2o appear) rotates, inverts and translates as its irreps say (e3nn's check)."""
    structure = request.getfixturevalue(fixture)
    potential = _potential(layers=3, parity=True, tensor_features=2)
    backbone = potential.backbone
    track = tensor_track_irreps(2, True, 3)
    assert any(p != (-1) ** l for irreps in track for l, p in irreps), "no pseudotensor in the track"
    graph = AtomicGraph.from_atoms(structure, CUTOFF)
    captured: list[torch.Tensor] = []
    for product in backbone.products:
        product.register_forward_hook(lambda module, args, out: captured.append(out))

    def func(positions, cell):
        captured.clear()
        backbone(graph, graph.edge_vectors(positions, cell[None]))
        return tuple(_strided_to_e3nn(x, irreps) for x, irreps in zip(captured, track[1:]))

    assert [strided_dim(irreps) for irreps in track[1:]] == [p.dims[2] for p in backbone.products]
    # tolerance: e3nn's D_from_matrix goes through Euler angles (acos), good to ~1e-8 for
    # some rotations; a wrong parity or path would be off by order one
    assert_equivariant(func, args_in=[graph.positions, graph.cell[0]], irreps_in=["cartesian_points", "1o"],
                       irreps_out=[_irreps_string(2, irreps) for irreps in track[1:]], tolerance=1e-6)


def test_parity_false_keeps_natural_parity_only():
    """``parity: false`` (the reference's option) leaves no pseudotensor in the track and,
    from 3 layers on, a different model than the default."""
    track = tensor_track_irreps(2, False, 3)
    assert all(p == (-1) ** l for irreps in track for l, p in irreps)
    both = _potential(layers=3, parity=True)
    natural = _potential(layers=3, parity=False)
    assert sum(p.numel() for p in both.parameters()) > sum(p.numel() for p in natural.parameters())


@pytest.fixture(scope="module")
def small_batch(tmp_path_factory):
    """The three smallest bundled MOF frames (GFN1-xTB labels) as one float64 batch."""
    frames = sorted(bundled_store(tmp_path_factory.mktemp("ws")).read(), key=len)[:3]
    return build_graphs(frames, CUTOFF, torch.float64)


def test_training_steps_reduce_the_loss(small_batch):
    """Forty AdamW steps on energy + force loss halve the loss of a small real batch."""
    torch.manual_seed(0)
    config = ModelConfig(backbone="allegro", **SMALL)
    energies = np.array([float(g.energy[0]) for g in small_batch])
    reference = fit_reference_energies(element_count_matrix(small_batch), energies)
    potential = build_potential(config, reference_energies=reference, energy_scale=force_rms(small_batch))
    batch = collate(small_batch)
    weights = LossWeights(energy=1.0, forces=10.0, normalize=False)
    optimizer = torch.optim.AdamW(potential.parameters(), lr=1e-2)

    def loss_value():
        return weighted_loss(potential(batch, compute_forces=True, create_graph=True), batch, weights)[0]

    initial = float(loss_value().detach())
    for _ in range(40):
        loss = loss_value()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = float(loss_value().detach())
    assert final < 0.5 * initial, f"loss {initial:.4g} → {final:.4g}"


HEAD_OPTIONS = {
    "celli": {"celli": {"accuracy": 1e-8}},
    "celli-feedback": {"celli": {"accuracy": 1e-8, "feedback": True}},
    "efa": {"efa": {"lebedev_degree": 23, "radial_nodes": 8}},
    "d3": {"d3": {"cutoff": 8.0, "three_body_cutoff": 5.0, "coordination_cutoff": 5.0}},
}


@pytest.mark.parametrize("head", ["none", *sorted(HEADS), "celli-feedback"])
def test_every_head_trains_on_allegro(head, nacl_cell, water_dimer):
    """Forward with forces and a backward of the training loss, periodic and not: finite
    gradients reach every backbone and head parameter (the node-input projections of
    CELLI's feedback included)."""
    name = head.split("-")[0]
    long_range = [] if head == "none" else [name]
    potential = _potential(long_range=long_range, heads=HEAD_OPTIONS.get(head, {})).train()
    assert set(HEADS) == {"celli", "d3", "efa", "les"}, "a new head: add it to this test"
    for atoms in (nacl_cell, water_dimer):
        graph = AtomicGraph.from_atoms(atoms, CUTOFF)
        graph.energy = torch.tensor([-3.0])
        graph.forces = torch.zeros_like(graph.positions)
        out = potential(graph, compute_forces=True, create_graph=True)
        loss, _ = weighted_loss(out, graph, LossWeights(energy=1.0, forces=1.0, normalize=False))
        potential.zero_grad()
        loss.backward()
        for parameter_name, parameter in potential.named_parameters():
            if parameter_name.startswith("heads.d3"):
                continue
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
            if parameter_name.startswith("backbone.") and "node_inputs" not in parameter_name:
                assert parameter.grad.abs().max() > 0, f"no gradient reaches {parameter_name}"
        if head == "celli-feedback":
            grads = [p.grad for n, p in potential.named_parameters() if "node_inputs" in n]
            assert grads and all(g.abs().max() > 0 for g in grads)
