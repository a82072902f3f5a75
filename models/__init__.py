"""farfield.models: backbones, long-range heads, the Potential that composes them, training.

Imports neither Ray nor MLflow (tests/test_packaging.py checks it).
"""

from farfield.models.config import LossWeights, ModelConfig, TrainingConfig
from farfield.models.graph import AtomicGraph, collate
from farfield.models.potential import Potential
from farfield.models.registry import BACKBONES, HEADS, build_potential

__all__ = [
    "BACKBONES",
    "HEADS",
    "AtomicGraph",
    "LossWeights",
    "ModelConfig",
    "Potential",
    "TrainingConfig",
    "build_potential",
    "collate",
]
