"""e3nn's equivariance checks (rotations, inversion, translations) on the equivariant blocks and
on the internal features of the e3nn backbones (Allegro's: tests/test_backbone_allegro.py),
in float64 — and the check failing on a broken block."""

from __future__ import annotations

import pytest
import torch
from e3nn.util.test import assert_equivariant

from farfield.models import AtomicGraph, ModelConfig, build_potential
from farfield.models.blocks import (
    ChannelwiseTensorProduct,
    EquivariantLinear,
    Gate,
    SphericalHarmonics,
    StridedTensorProduct,
    SymmetricContraction,
    irreps_string,
    join_blocks,
    split_blocks,
    strided_dim,
    to_e3nn_layout,
)

CHANNELS = 3


def _dense_irreps(channels: int, l_max: int) -> str:
    return irreps_string([channels] * (l_max + 1))


def _to_dense(flat: torch.Tensor, channels: int, l_max: int) -> torch.Tensor:
    """e3nn layout (n, Σ C(2l+1)) → dense (n, C, (l_max+1)²)."""
    blocks, start = [], 0
    for l in range(l_max + 1):
        width = channels * (2 * l + 1)
        blocks.append(flat[:, start : start + width].reshape(-1, channels, 2 * l + 1))
        start += width
    return join_blocks(blocks)


def _from_dense(x: torch.Tensor, l_max: int) -> torch.Tensor:
    return to_e3nn_layout(split_blocks(x, l_max))


def test_spherical_harmonics_equivariant():
    sh = SphericalHarmonics(3)
    assert_equivariant(sh, irreps_in=["1o"], irreps_out=[irreps_string([1, 1, 1, 1])])


@pytest.mark.parametrize("l_in, l_sh, l_out", [(0, 3, 3), (1, 3, 3), (2, 2, 1)])
def test_channelwise_tensor_product_equivariant(l_in, l_sh, l_out):
    tp = ChannelwiseTensorProduct(l_in, l_sh, l_out)
    weights = torch.randn(5, CHANNELS, tp.n_paths)
    sh = SphericalHarmonics(l_sh)

    def func(features, vectors):
        out = tp(_to_dense(features, CHANNELS, l_in), sh(vectors), weights)
        return to_e3nn_layout(tp.split_by_l(out))

    out_irreps = irreps_string([CHANNELS * n for n in tp.paths_per_l])
    assert_equivariant(func, args_in=[torch.randn(5, CHANNELS * (l_in + 1) ** 2), torch.randn(5, 3)],
                       irreps_in=[_dense_irreps(CHANNELS, l_in), "1o"], irreps_out=[out_irreps])


@pytest.mark.parametrize("correlation, l_out", [(3, 1), (3, 0), (2, 2)])
def test_symmetric_contraction_equivariant(correlation, l_out):
    contraction = SymmetricContraction(CHANNELS, 2, l_out, correlation, n_element_features=4)
    elements = torch.randn(6, 4)

    def func(features):
        return _from_dense(contraction(_to_dense(features, CHANNELS, 2), elements), l_out)

    assert_equivariant(func, args_in=[torch.randn(6, CHANNELS * 9)], irreps_in=[_dense_irreps(CHANNELS, 2)],
                       irreps_out=[_dense_irreps(CHANNELS, l_out)])


def test_gate_and_linear_equivariant():
    linear = EquivariantLinear([CHANNELS, 2, 4], [CHANNELS * 3, CHANNELS, CHANNELS], bias=True)
    gate = Gate(CHANNELS, 2)

    def func(features):
        blocks, start = [], 0
        for l, mult in enumerate([CHANNELS, 2, 4]):
            blocks.append(features[:, start : start + mult * (2 * l + 1)].reshape(-1, mult, 2 * l + 1))
            start += mult * (2 * l + 1)
        return _from_dense(gate(linear(blocks)), 2)

    assert_equivariant(func, irreps_in=[irreps_string([CHANNELS, 2, 4])], irreps_out=[_dense_irreps(CHANNELS, 2)])


@pytest.mark.parametrize("irreps_in1, irreps_out", [
    ([(0, 1), (1, -1), (2, 1)], [(0, 1), (1, 1), (1, -1), (2, 1), (2, -1)]),  # pseudotensors out
    ([(0, 1), (1, 1), (1, -1), (2, -1)], [(0, 1), (0, -1), (1, -1), (2, 1)]),  # and in
])
def test_strided_tensor_product_equivariant(irreps_in1, irreps_out):
    """Allegro's channel-by-channel product, pseudotensors included: rotations and inversion."""
    def as_string(irreps):
        return "+".join(f"{CHANNELS}x{l}{'e' if p == 1 else 'o'}" for l, p in irreps)

    def to_strided(flat, irreps):
        blocks, start = [], 0
        for l, _ in irreps:
            blocks.append(flat[:, start: start + CHANNELS * (2 * l + 1)].reshape(-1, CHANNELS, 2 * l + 1))
            start += CHANNELS * (2 * l + 1)
        return torch.cat(blocks, dim=-1)

    harmonics = [(0, 1), (1, -1), (2, 1)]
    tp = StridedTensorProduct(irreps_in1, harmonics, irreps_out, CHANNELS)
    index = torch.tensor([0, 2, 1, 2, 0])

    def func(x1, x2):
        out = tp(to_strided(x1, irreps_in1), to_strided(x2, harmonics), index)
        blocks = out.split([2 * l + 1 for l, _ in irreps_out], dim=-1)
        return torch.cat([b.reshape(out.shape[0], -1) for b in blocks], dim=-1)

    assert_equivariant(func, args_in=[torch.randn(5, CHANNELS * strided_dim(irreps_in1)), torch.randn(3, CHANNELS * 9)],
                       irreps_in=[as_string(irreps_in1), as_string(harmonics)], irreps_out=[as_string(irreps_out)])


def test_strided_tensor_product_equals_e3nn_uuu_product():
    """The same numbers as e3nn's ``TensorProduct`` with one ``uuu`` instruction per path,
    component irrep normalisation and no path normalisation — what Allegro's
    ``Contracter`` computes (Clebsch–Gordan order and normalisation, not just symmetry)."""
    from e3nn import o3

    irreps_in1, harmonics = [(0, 1), (1, -1), (1, 1), (2, 1)], [(0, 1), (1, -1), (2, 1)]
    irreps_out = [(0, 1), (1, -1), (1, 1), (2, -1)]
    tp = StridedTensorProduct(irreps_in1, harmonics, irreps_out, CHANNELS)
    as_irreps = [o3.Irreps("+".join(f"{CHANNELS}x{l}{'e' if p == 1 else 'o'}" for l, p in irreps))
                 for irreps in (irreps_in1, harmonics, irreps_out)]
    reference = o3.TensorProduct(*as_irreps, [(i1, i2, k, "uuu", True) for i1, i2, k in tp.paths],
                                 irrep_normalization="component", path_normalization="none",
                                 internal_weights=False, shared_weights=True)
    x1, x2 = torch.randn(6, as_irreps[0].dim), torch.randn(6, as_irreps[1].dim)

    def to_strided(flat, irreps):
        blocks = flat.split([CHANNELS * (2 * l + 1) for l, _ in irreps], dim=-1)
        return torch.cat([b.reshape(-1, CHANNELS, 2 * l + 1) for b, (l, _) in zip(blocks, irreps)], dim=-1)

    ours = tp(to_strided(x1, irreps_in1), to_strided(x2, harmonics), torch.arange(6))
    expected = reference(x1, x2, tp.weights.detach().T.reshape(-1))
    torch.testing.assert_close(ours.detach(), to_strided(expected, irreps_out))


def test_check_catches_broken_tensor_product():
    """Swapping two components of the Clebsch–Gordan matrix breaks equivariance; e3nn's check says so."""
    tp = ChannelwiseTensorProduct(1, 2, 2)
    tp.cg = tp.cg.reshape(9, 4, -1)[:, [0, 2, 1, 3]].reshape(9, -1)  # mislabel the l=1 input components
    weights = torch.randn(4, CHANNELS, tp.n_paths)
    sh = SphericalHarmonics(2)

    def func(features, vectors):
        return to_e3nn_layout(tp.split_by_l(tp(_to_dense(features, CHANNELS, 1), sh(vectors), weights)))

    with pytest.raises(AssertionError):
        assert_equivariant(func, args_in=[torch.randn(4, CHANNELS * 4), torch.randn(4, 3)],
                           irreps_in=[_dense_irreps(CHANNELS, 1), "1o"],
                           irreps_out=[irreps_string([CHANNELS * n for n in tp.paths_per_l])])


def _internal_features(backbone_name: str, structure, modules: str):
    """``f(positions, cell)`` → the outputs of every ``modules`` submodule, e3nn layout."""
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone_name, channels=4, layers=2, cutoff=4.0, l_max=2, hidden_l_max=1,
                         radial_mlp=[8], dtype="float64")
    backbone = build_potential(config).backbone
    graph = AtomicGraph.from_atoms(structure, 4.0)
    layers = getattr(backbone, modules)
    captured: list[torch.Tensor] = []
    for layer in layers:
        layer.register_forward_hook(lambda module, args, out: captured.append(out))

    def func(positions, cell):
        captured.clear()
        backbone(graph, graph.edge_vectors(positions, cell[None]))
        return tuple(_from_dense(h, int(round(h.shape[-1] ** 0.5)) - 1) for h in captured)

    with torch.no_grad():
        func(graph.positions, graph.cell[0])
    irreps_out = [_dense_irreps(4, int(round(h.shape[-1] ** 0.5)) - 1) for h in captured]
    return func, graph, irreps_out


@pytest.mark.parametrize("backbone_name, modules", [("mace", "interactions"), ("nequip", "convolutions")])
@pytest.mark.parametrize("fixture", ["mof_cell", "water_dimer"])
def test_backbone_internal_features_equivariant(backbone_name, modules, fixture, request):
    """Every layer's node features (all irreps) rotate, invert and translate as they should."""
    func, graph, irreps_out = _internal_features(backbone_name, request.getfixturevalue(fixture), modules)
    assert_equivariant(func, args_in=[graph.positions, graph.cell[0]], irreps_in=["cartesian_points", "1o"],
                       irreps_out=irreps_out)
