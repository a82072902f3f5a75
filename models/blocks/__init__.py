"""Building blocks shared by every backbone and head: radial bases, cutoffs, MLPs,
embeddings, scatter and readouts. Never copy one of these into a model file."""

from farfield.models.blocks.embedding import MAX_ATOMIC_NUMBER, ElementEmbedding
from farfield.models.blocks.mlp import MLP
from farfield.models.blocks.radial import BesselBasis, PolynomialCutoff
from farfield.models.blocks.readout import AtomwiseReadout, ReferenceEnergies
from farfield.models.blocks.scatter import scatter_sum

__all__ = [
    "MAX_ATOMIC_NUMBER",
    "MLP",
    "AtomwiseReadout",
    "BesselBasis",
    "ElementEmbedding",
    "PolynomialCutoff",
    "ReferenceEnergies",
    "scatter_sum",
]
