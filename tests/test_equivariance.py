"""e3nn's equivariance checks (rotations, inversion, translations) on the equivariant blocks and
on the internal features of the e3nn backbones, in float64 — and the check failing on a broken block."""

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
    SymmetricContraction,
    irreps_string,
    join_blocks,
    split_blocks,
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
