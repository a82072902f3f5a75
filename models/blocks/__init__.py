"""Building blocks shared by every backbone and head: radial bases, cutoffs, MLPs,
embeddings, scatter, readouts, and the equivariant blocks of the e3nn backbones
(spherical harmonics, dense irreps layout, equivariant linear maps, tensor-product
convolution, gate, symmetric contraction, Allegro's strided tensor product) and the stem the e3nn
backbones start from. Never copy one of these into a model file."""

from farfield.models.blocks.convolution import (
    ChannelwiseTensorProduct,
    EquivariantConvolution,
    RadialWeights,
    tensor_product_paths,
)
from farfield.models.blocks.embedding import MAX_ATOMIC_NUMBER, ElementEmbedding
from farfield.models.blocks.equivariant_linear import ElementGatedLinear, EquivariantLinear
from farfield.models.blocks.gate import Gate
from farfield.models.blocks.irreps import (
    SphericalHarmonics,
    irrep_dim,
    irrep_slice,
    irreps_string,
    join_blocks,
    split_blocks,
    to_e3nn_layout,
)
from farfield.models.blocks.mlp import MLP
from farfield.models.blocks.node_inputs import NodeInputInjection
from farfield.models.blocks.radial import BesselBasis, EdgeEmbedding, EdgeFeatures, PolynomialCutoff
from farfield.models.blocks.readout import AtomwiseReadout, EdgeEnergyReadout, ReferenceEnergies
from farfield.models.blocks.scatter import scatter_sum
from farfield.models.blocks.stem import EquivariantStem, StemFeatures
from farfield.models.blocks.strided_product import (
    StridedTensorProduct,
    WeightedHarmonics,
    harmonics_irreps,
    strided_dim,
)
from farfield.models.blocks.symmetric_contraction import SymmetricContraction, coupling_basis

__all__ = [
    "MAX_ATOMIC_NUMBER",
    "MLP",
    "AtomwiseReadout",
    "BesselBasis",
    "ChannelwiseTensorProduct",
    "EdgeEmbedding",
    "EdgeEnergyReadout",
    "EdgeFeatures",
    "ElementEmbedding",
    "ElementGatedLinear",
    "EquivariantConvolution",
    "EquivariantLinear",
    "EquivariantStem",
    "Gate",
    "NodeInputInjection",
    "PolynomialCutoff",
    "RadialWeights",
    "ReferenceEnergies",
    "SphericalHarmonics",
    "StemFeatures",
    "StridedTensorProduct",
    "SymmetricContraction",
    "WeightedHarmonics",
    "coupling_basis",
    "harmonics_irreps",
    "irrep_dim",
    "irrep_slice",
    "irreps_string",
    "join_blocks",
    "scatter_sum",
    "split_blocks",
    "strided_dim",
    "tensor_product_paths",
    "to_e3nn_layout",
]
