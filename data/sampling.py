"""Configurations of one parent MOF: input geometry, rattles, strains, MD snapshots.

:func:`sample_configurations` turns a parent (periodic ``Atoms``) into the unlabelled
frames a dataset build labels. Frame ``c0`` is the input geometry; ``c1 … c{k-1}``
cycle through :data:`KINDS` (``rattle``: Gaussian displacements of σ
``rattle_sigma`` Å; ``strain_iso``: the cell scaled by 1 + ε, ε uniform in
±``isotropic_strain``, atoms scaled with it, then rattled; ``strain_shear``: a
traceless symmetric strain with off-diagonal components uniform in ±``shear_strain``,
then rattled). MD snapshots need the labelling method itself, so they are made by
the labelling workers (:func:`md_snapshots`) from ``c0``.

The random stream depends only on the seed and the parent id, so a parent's frames
do not change when other parents are added or removed. Positions are rounded to
``POSITION_DECIMALS`` decimals (Å) before labelling, so a text export of the frames
reproduces the labelled geometry exactly. Every frame carries ``structure_id``
(``<parent>-c<k>``), ``parent_id``, ``source`` and ``config_kind``.
"""

from __future__ import annotations

import zlib

import numpy as np
from ase import Atoms
from pydantic import Field

from farfield.data.config import StrictModel
from farfield.data.records import PARENT_ID, SOURCE, STRUCTURE_ID

__all__ = ["CONFIG_KIND", "KINDS", "POSITION_DECIMALS", "SamplingSettings", "md_snapshots",
           "parent_rng", "sample_configurations"]

KINDS = ("rattle", "strain_iso", "strain_shear")
#: ``info`` key holding how a frame was made: ``input``, one of KINDS, or ``md``.
CONFIG_KIND = "config_kind"
POSITION_DECIMALS = 8


class SamplingSettings(StrictModel):
    """How many and which configurations each parent gets (lengths Å, T in K, time fs)."""

    configs_per_parent: int = Field(default=4, ge=1, le=64)
    rattle_sigma: float = Field(default=0.05, ge=0.0, le=0.5)
    isotropic_strain: float = Field(default=0.03, ge=0.0, le=0.2)
    shear_strain: float = Field(default=0.02, ge=0.0, le=0.2)
    md_snapshots: int = Field(default=0, ge=0, le=64)
    md_temperature: float = Field(default=500.0, gt=0.0)
    md_interval: int = Field(default=10, ge=1)
    md_timestep: float = Field(default=0.5, gt=0.0, le=5.0)
    #: Near-equilibrium frames (:mod:`farfield.data.relaxation`): labelled optimiser steps
    #: after the input geometry, then thermal frames around the last one. When either is
    #: set, a parent's frames come from the relaxation instead of ``configs_per_parent``.
    relax_steps: int = Field(default=0, ge=0, le=200)
    relax_max_step: float = Field(default=0.15, gt=0.0, le=1.0)
    relax_fmax: float = Field(default=0.05, gt=0.0)
    thermal_snapshots: int = Field(default=0, ge=0, le=64)
    thermal_sigma: float = Field(default=0.02, ge=0.0, le=0.5)
    thermal_strain: float = Field(default=0.01, ge=0.0, le=0.2)
    #: Parents with more atoms than ``large_atoms`` get ``large_relax_steps`` and
    #: ``large_thermal_snapshots`` instead (cheaper test-side parents); None = same as small.
    large_atoms: int | None = Field(default=None, ge=1)
    large_relax_steps: int = Field(default=0, ge=0, le=200)
    large_thermal_snapshots: int = Field(default=0, ge=0, le=64)

    @property
    def relaxes(self) -> bool:
        """Whether frames come from a relaxation (:mod:`farfield.data.relaxation`)."""
        return bool(self.relax_steps or self.thermal_snapshots)

    def frames_for(self, n_atoms: int) -> tuple[int, int]:
        """``(relax_steps, thermal_snapshots)`` for a parent of ``n_atoms`` atoms."""
        if self.large_atoms is not None and n_atoms > self.large_atoms:
            return self.large_relax_steps, self.large_thermal_snapshots
        return self.relax_steps, self.thermal_snapshots


def parent_rng(seed: int, parent_id: str) -> np.random.Generator:
    """The random stream of one parent: a function of (seed, parent id) only."""
    return np.random.default_rng([int(seed), zlib.crc32(parent_id.encode())])


def _quantised(atoms: Atoms) -> Atoms:
    atoms.positions = np.round(atoms.positions, POSITION_DECIMALS)
    return atoms


def _strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return out


def sample_configurations(parent: Atoms, parent_id: str, source: str,
                          settings: SamplingSettings, seed: int = 0) -> list[Atoms]:
    """``settings.configs_per_parent`` unlabelled frames of ``parent`` (see module doc)."""
    rng = parent_rng(seed, parent_id)
    base = parent.copy()
    base.calc = None
    base.info = {k: v for k, v in parent.info.items() if isinstance(v, (str, int, float))}
    frames = [base.copy()]
    kinds = ["input"]
    for k in range(1, settings.configs_per_parent):
        kind = KINDS[(k - 1) % len(KINDS)]
        if kind == "strain_iso":
            eps = rng.uniform(-settings.isotropic_strain, settings.isotropic_strain)
            frame = _strained(base, eps * np.eye(3))
        elif kind == "strain_shear":
            off = rng.uniform(-settings.shear_strain, settings.shear_strain, size=3)
            strain = np.zeros((3, 3))
            strain[[1, 0, 0], [2, 2, 1]] = off
            frame = _strained(base, strain + strain.T)
        else:
            frame = base.copy()
        frame.positions = frame.positions + rng.normal(0.0, settings.rattle_sigma,
                                                       size=frame.positions.shape)
        frames.append(frame)
        kinds.append(kind)
    for k, (frame, kind) in enumerate(zip(frames, kinds)):
        _quantised(frame)
        frame.info.update({STRUCTURE_ID: f"{parent_id}-c{k}", PARENT_ID: parent_id,
                           SOURCE: source, CONFIG_KIND: kind})
    return frames


def md_snapshots(start: Atoms, calculator, settings: SamplingSettings, seed: int,
                 first_index: int) -> list[Atoms]:
    """Unlabelled snapshots of a short Langevin run from ``start`` with ``calculator``.

    ``settings.md_snapshots`` frames, one every ``md_interval`` steps of
    ``md_timestep`` fs at ``md_temperature`` K (friction 0.01 / fs); velocities drawn
    from Maxwell–Boltzmann with the parent's random stream. Frames are numbered from
    ``c{first_index}`` and carry ``config_kind = "md"``.
    """
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    parent_id = str(start.info[PARENT_ID])
    rng = parent_rng(seed + 1, parent_id)
    atoms = start.copy()
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=settings.md_temperature, rng=rng)
    dyn = Langevin(atoms, settings.md_timestep * units.fs, temperature_K=settings.md_temperature,
                   friction=0.01 / units.fs, rng=rng)
    frames = []
    for k in range(settings.md_snapshots):
        dyn.run(settings.md_interval)
        frame = _quantised(Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc))
        frame.info = {key: v for key, v in start.info.items() if isinstance(v, (str, int, float))}
        frame.info.update({STRUCTURE_ID: f"{parent_id}-c{first_index + k}", CONFIG_KIND: "md"})
        frames.append(frame)
    return frames
