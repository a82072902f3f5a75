"""Near-equilibrium configurations: a short labelled relaxation and thermal frames around it.

The paper's data are near-relaxed (QMOF relaxed structures, ODAC25 lowest-energy frames),
so a build can make each parent's frames from a short GFN-xTB relaxation instead of large
rattles. :func:`relaxation_frames` is run by a labelling worker on a planned seed frame
(``config_kind = "relax_seed"``, see :mod:`farfield.data.label_shards`):

1. ``c0`` (``input``): the CIF geometry, labelled (or its labels reused from an earlier
   build when the planner found them: ``info["labels_reused"]``);
2. ``c1 … c{k}`` (``relax``): the geometries of ``k`` optimiser steps (ASE ``BFGS``, cell
   fixed, step ≤ ``relax_max_step`` Å). Every optimiser evaluation is a labelled frame, so
   nothing computed is wasted; the run stops early when max |F| < ``relax_fmax`` eV/Å;
3. ``c{k+1} …`` (``thermal``): the last relaxation geometry with an isotropic strain
   ε ~ U(±``thermal_strain``) and Gaussian displacements of σ ``thermal_sigma`` Å.

Counts come from the seed frame's ``info`` (``relax_steps``, ``thermal_snapshots``), so the
planner can give large parents fewer frames. A failed single point ends the relaxation (the
frames so far are kept); thermal frames then start from the last labelled geometry. The random
stream is :func:`farfield.data.sampling.parent_rng` (seed + 2), independent of other parents.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from farfield.data.records import CHARGES, ENERGY, FORCES, STRESS, STRUCTURE_ID
from farfield.data.sampling import CONFIG_KIND, POSITION_DECIMALS, SamplingSettings, parent_rng

__all__ = ["RELAX_SEED", "relaxation_frames"]

#: ``config_kind`` of a planned frame that stands for "relax from here" (expanded by the worker).
RELAX_SEED = "relax_seed"
#: ``info`` keys the planner sets on a relax seed.
RELAX_STEPS, THERMAL_SNAPSHOTS, LABELS_REUSED = "relax_steps", "thermal_snapshots", "labels_reused"

Labeller = Callable[[Atoms], Atoms]


class _LabelledSteps(Calculator):
    """ASE calculator that labels every evaluated geometry and keeps the labelled frames."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, label: Labeller, template: Atoms, first: Atoms | None):
        super().__init__()
        self.labeller, self.template = label, template
        self.frames: list[Atoms] = [] if first is None else [first]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.frames and np.array_equal(self.frames[-1].positions, self.atoms.positions):
            labelled = self.frames[-1]
        else:
            frame = self.template.copy()
            frame.positions = np.round(self.atoms.positions, POSITION_DECIMALS)
            labelled = self.labeller(frame)
            self.frames.append(labelled)
        self.results = {"energy": float(labelled.info[ENERGY]),
                        "forces": np.array(labelled.arrays[FORCES])}


def _has_labels(atoms: Atoms) -> bool:
    return ENERGY in atoms.info and FORCES in atoms.arrays


def _strip_labels(atoms: Atoms) -> Atoms:
    out = atoms.copy()
    out.calc = None
    for key in (ENERGY, STRESS, "total_charge_label"):
        out.info.pop(key, None)
    for key in (FORCES, CHARGES):
        if key in out.arrays:
            del out.arrays[key]
    return out


def relaxation_frames(seed_frame: Atoms, label: Labeller, settings: SamplingSettings,
                      seed: int) -> tuple[list[Atoms], list[dict]]:
    """Labelled frames ``c0 …`` of one parent from its relax seed (see module doc).

    ``label``: labels one unlabelled frame (raises ``ValueError`` on failure).
    Returns the frames and failure records (``structure_id``, ``reason``, ``detail``).
    """
    info = dict(seed_frame.info)
    parent_id = str(info["parent_id"])
    n_relax = int(info.pop(RELAX_STEPS, settings.relax_steps))
    n_thermal = int(info.pop(THERMAL_SNAPSHOTS, settings.thermal_snapshots))
    reused = bool(info.pop(LABELS_REUSED, False))
    template = _strip_labels(seed_frame)
    template.info = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))
                     and k not in (ENERGY, STRESS)}
    failures: list[dict] = []

    def named(atoms: Atoms, k: int, kind: str) -> Atoms:
        atoms.info.update({STRUCTURE_ID: f"{parent_id}-c{k}", CONFIG_KIND: kind})
        return atoms

    def labelled_or_none(frame: Atoms) -> Atoms | None:
        try:
            return label(frame)
        except ValueError as exc:
            reason = "scf_not_converged" if "converge" in str(exc).lower() else "tblite_error"
            failures.append({"structure_id": frame.info[STRUCTURE_ID], "reason": reason,
                             "detail": str(exc)})
            return None

    start = named(template.copy(), 0, "input")
    if reused and _has_labels(seed_frame):
        first = seed_frame.copy()
        first.info = dict(start.info, **{k: seed_frame.info[k] for k in seed_frame.info
                                         if k in (ENERGY, STRESS, "total_charge", "label_method")})
    else:
        first = labelled_or_none(start)
    if first is None:
        return [], failures
    frames = [first]
    if n_relax:
        from ase.optimize import BFGS

        calc = _LabelledSteps(lambda f: label(named(f, len(calc.frames), "relax")), template, first)
        atoms = Atoms(first.numbers, first.positions, cell=first.cell, pbc=first.pbc)
        atoms.calc = calc
        optimiser = BFGS(atoms, maxstep=settings.relax_max_step, logfile=None)
        try:
            optimiser.run(fmax=settings.relax_fmax, steps=n_relax)
        except ValueError as exc:
            k = len(calc.frames)
            reason = "scf_not_converged" if "converge" in str(exc).lower() else "tblite_error"
            failures.append({"structure_id": f"{parent_id}-c{k}", "reason": reason,
                             "detail": f"relaxation step {k}: {exc}"})
        frames = calc.frames[: 1 + n_relax]
    rng = parent_rng(seed + 2, parent_id)
    last, first_thermal = frames[-1], len(frames)
    for j in range(n_thermal):
        eps = rng.uniform(-settings.thermal_strain, settings.thermal_strain)
        frame = template.copy()
        frame.positions = last.positions
        frame.set_cell(last.cell.array * (1.0 + eps), scale_atoms=True)
        frame.positions = np.round(frame.positions + rng.normal(0.0, settings.thermal_sigma,
                                                                size=frame.positions.shape),
                                   POSITION_DECIMALS)
        done = labelled_or_none(named(frame, first_thermal + j, "thermal"))
        if done is not None:
            frames.append(done)
    return frames, failures
