"""Long-range heads: each reads backbone features and adds an energy term.

A head is an ``nn.Module`` called as ``head(graph, features, positions, cell)`` with
``features`` a ``BackboneOutput`` and ``positions`` (n_atoms, 3) Å / ``cell``
(n_graphs, 3, 3) Å the (possibly strained) coordinates the forces and stress are taken
against. It returns a dict with ``energy`` (n_graphs,) eV and optionally ``charges``
(n_atoms,) e and other per-atom or per-structure predictions.

``HEADS`` maps a short name to a builder ``(ModelConfig) -> nn.Module``; ``FEEDBACK_WIDTHS``
maps the heads that can feed values back into the backbone (``feeds_back_charges``; the
potential then calls ``head.node_inputs(graph, features, outputs)``) to the width of those
values for a model config (0 when off); names that
predict per-atom charges comparable to reference charges (and so may be trained on
them, ``training.loss.charges > 0``) are also listed in ``CHARGE_HEADS``. LES reports
its latent charges too but is trained on energies and forces only.

    celli  charge equilibration with Gaussian charges, Ewald/PME      (celli.py)
    les    latent Ewald summation                                   (les.py)
    efa    periodic Euclidean fast attention                        (efa.py)
    d3     D3(BJ) dispersion from dftd3, fixed                      (d3.py)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from farfield.models.heads.celli import CelliHead
from farfield.models.heads.celli_parameters import PARAMETRISATIONS
from farfield.models.heads.d3 import D3Head
from farfield.models.heads.efa import EfaHead
from farfield.models.heads.les import LesHead


def _build_celli(config) -> nn.Module:
    return CelliHead(config.channels, config.heads.celli, n_radial=config.n_radial, cutoff=config.cutoff)


def _celli_feedback_width(config) -> int:
    celli = config.heads.celli
    return PARAMETRISATIONS[celli.parametrisation].feedback_width(config.channels) if celli.feedback else 0


def _build_les(config) -> nn.Module:
    return LesHead(config.channels, config.heads.les)


def _build_efa(config) -> nn.Module:
    return EfaHead(config.channels, config.heads.efa)


def _build_d3(config) -> nn.Module:
    return D3Head(config.channels, config.heads.d3)


HEADS: dict[str, Callable[..., nn.Module]] = {"celli": _build_celli, "les": _build_les, "efa": _build_efa, "d3": _build_d3}
CHARGE_HEADS: set[str] = {"celli"}
FEEDBACK_WIDTHS: dict[str, Callable[..., int]] = {"celli": _celli_feedback_width}

__all__ = ["CHARGE_HEADS", "FEEDBACK_WIDTHS", "HEADS", "CelliHead", "D3Head", "EfaHead", "LesHead"]
