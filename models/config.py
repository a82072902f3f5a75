"""Typed configuration of the model and its training (part of a trial config).

The YAML keys are exactly these fields; builders take these objects.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator

from farfield.data.config import StrictModel
from farfield.data.graphs import check_cutoff
from farfield.models.external import EXTERNAL, ExternalConfig
from farfield.models.heads.config import HeadsConfig


#: ``model.dtype`` → the torch dtype of the parameters and of the graphs they read.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ModelConfig(StrictModel):
    """A potential: backbone + long-range heads + per-element reference energies.

    ``backbone``: a name from ``farfield.models.registry.BACKBONES``, or ``external``: a model
    trained by another library, described by ``external`` (``farfield.models.external``; the
    shared size fields below are translated to its trainer, see docs/backbones.md).
    ``long_range``: names from ``farfield.models.registry.HEADS`` (empty = short-range only).
    ``channels``: feature width. ``layers``: message-passing layers. ``cutoff``: Å.
    ``n_radial``: radial basis functions. ``dtype``: floating precision of the model.
    ``heads``: per-head options (``model.heads.<name>``), read by heads listed in ``long_range``.

    Backbone options (docs/backbones.md; PaiNN reads only channels/layers/cutoff/n_radial):
    ``l_max``: degree of the edge spherical harmonics (MACE's ``max_ell``; mace, nequip;
    allegro: also of its tensor track).
    ``hidden_l_max``: highest irrep of node features between layers (MACE's ``max_L``).
    ``correlation``: order of MACE's symmetric contraction (body order = correlation + 1).
    ``radial_mlp``: hidden widths of the radial MLP giving tensor-product weights (allegro:
    of the two-body MLP of the radial-chemical embedding).
    ``avg_neighbors``: neighbour sums are divided by this (typical neighbours within cutoff;
    allegro: by its square root, as the reference).
    ``n_element_features``: width of the element features of element-dependent weights.
    ``tensor_features``: allegro: channels of the equivariant tensor track (``num_tensor_features``).
    ``latent_mlp``: allegro: hidden widths of the latent MLP of every layer.
    ``parity``: allegro: the tensor track holds both parities of each ``l ≤ l_max`` (the
    reference default); false: natural parity only (the reference's ``parity: false``).
    ``node_input_features``: width of the ``node_inputs`` hook (e.g. 1 for CELLI charges
    fed back into layers ≥ 1); 0 = off.
    ``compile``: wrap the backbone with ``torch.compile`` (inference and first-derivative
    paths; see docs/backbones.md for what it supports).
    """

    backbone: str = "painn"
    long_range: list[str] = Field(default_factory=list)
    channels: int = Field(default=64, ge=1)
    layers: int = Field(default=3, ge=1)
    cutoff: float = 5.0
    n_radial: int = Field(default=8, ge=1)
    dtype: Literal[tuple(DTYPES)] = "float32"
    l_max: int = Field(default=3, ge=0, le=4)
    hidden_l_max: int = Field(default=1, ge=0, le=3)
    correlation: int = Field(default=3, ge=1, le=4)
    radial_mlp: list[int] = Field(default_factory=lambda: [64, 64])
    avg_neighbors: float = Field(default=20.0, gt=0)
    n_element_features: int = Field(default=16, ge=1)
    tensor_features: int = Field(default=16, ge=1)
    latent_mlp: list[int] = Field(default_factory=lambda: [64])
    parity: bool = True
    node_input_features: int = Field(default=0, ge=0)
    compile: bool = False
    heads: HeadsConfig = Field(default_factory=HeadsConfig)
    external: ExternalConfig | None = None

    @property
    def torch_dtype(self) -> torch.dtype:
        """``dtype`` as a torch dtype (``DTYPES``)."""
        return DTYPES[self.dtype]

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        from farfield.models.registry import BACKBONES

        if name not in BACKBONES and name != EXTERNAL:
            known = ", ".join([*sorted(BACKBONES), EXTERNAL])
            raise ValueError(f"unknown backbone {name!r}; known backbones: {known}")
        return name

    @model_validator(mode="after")
    def _external_matches_backbone(self) -> ModelConfig:
        if self.backbone == EXTERNAL and self.external is None:
            raise ValueError("model.backbone is 'external' but model.external is missing; give "
                             "model.external: {trainer: mace | maceles | nequip | allegro, version: ...}")
        if self.backbone != EXTERNAL and self.external is not None:
            raise ValueError(f"model.external is set but model.backbone is {self.backbone!r}; "
                             f"model.external is read only with model.backbone: external")
        if self.backbone == EXTERNAL and self.long_range:
            raise ValueError(f"model.long_range = {self.long_range} cannot be added to an external model "
                             f"(its library trains it); for mace-torch with LES use model.external.trainer: maceles")
        return self

    @property
    def backbone_tag(self) -> str:
        """What the run's ``backbone`` tag says: the backbone, or e.g. ``ext-mace`` for an external model."""
        return self.external.backbone_tag if self.external is not None else self.backbone

    @property
    def long_range_tag(self) -> list[str]:
        """The run's long-range schemes: ``long_range``, or the external model's own (MACELES: ``les``)."""
        return self.external.long_range_tag if self.external is not None else list(self.long_range)

    @field_validator("cutoff")
    @classmethod
    def _positive_cutoff(cls, cutoff: float) -> float:
        return check_cutoff(cutoff)

    @field_validator("radial_mlp", "latent_mlp")
    @classmethod
    def _positive_widths(cls, widths: list[int], info) -> list[int]:
        if any(w < 1 for w in widths):
            raise ValueError(f"{info.field_name} widths must be >= 1, got {widths}")
        return widths

    @field_validator("long_range")
    @classmethod
    def _known_heads(cls, names: list[str]) -> list[str]:
        from farfield.models.registry import HEADS

        for name in names:
            if name not in HEADS:
                known = ", ".join(sorted(HEADS)) or "(none registered yet)"
                raise ValueError(f"unknown long-range head {name!r}; known heads: {known}")
        if len(set(names)) != len(names):
            raise ValueError(f"long-range heads listed twice: {names}")
        return names


class LossWeights(StrictModel):
    """Weights of the mean-squared-error terms.

    ``normalize: false``: the weights multiply the raw terms (units (eV/atom)², (eV/Å)², e²,
    (eV/Å³)²). ``normalize: true``: each term is first divided by its target's variance on
    the training set (energy per atom after the reference energies, force components,
    reference charges, stress; :func:`farfield.models.training.loss.target_scales`), so the
    weights are relative and unit-free and neither term drowns the other whatever the data.
    ``final_energy_factor`` / ``final_fraction``: a second stage over the last
    ``final_fraction`` of the epochs with the energy weight multiplied by
    ``final_energy_factor`` (as mace-torch's SWA stage raises its energy weight); 1 = off.
    """

    energy: float = Field(default=1.0, ge=0)
    forces: float = Field(default=1.0, ge=0)
    charges: float = Field(default=0.0, ge=0)
    stress: float = Field(default=0.0, ge=0)
    normalize: bool = True
    final_energy_factor: float = Field(default=1.0, ge=0)
    final_fraction: float = Field(default=0.2, ge=0, le=1)


class TrainingConfig(StrictModel):
    """Optimisation of one trial.

    ``lr``: AdamW learning rate; ``lr_schedule``: ``cosine`` (to ``lr * min_lr_factor``
    over ``epochs``), ``plateau`` (halve when validation loss stalls) or ``constant``.
    ``ema_decay``: exponential moving average of weights used for evaluation (None = off).
    ``grad_clip``: max gradient norm (None = off). ``patience``: epochs without
    validation improvement before stopping (None = never).
    """

    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=4, ge=1)
    eval_batch_size: int = Field(default=16, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    min_lr_factor: float = Field(default=0.05, gt=0, le=1)
    ema_decay: float | None = Field(default=0.99, ge=0, lt=1)
    grad_clip: float | None = Field(default=10.0, gt=0)
    patience: int | None = Field(default=20, ge=1)
    loss: LossWeights = Field(default_factory=LossWeights)
