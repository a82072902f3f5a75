"""MD stability probe: short NVE trajectories of held-out MOFs through the ASE calculator.

Beyond the paper's static errors: a potential can have a small test MAE and still fall
apart in dynamics. For each chosen trial the probe takes its ``n_structures`` smallest
test parents (first configuration of each), draws Maxwell–Boltzmann velocities at
``temperature_k`` (seeded, no net momentum), runs velocity-Verlet NVE for ``steps`` steps
of ``timestep_fs`` with ``farfield.models.calculator.FarfieldCalculator`` and reports

- ``drift_mev_per_atom_ps``: slope of the total energy per atom against time;
- ``max_deviation_mev_per_atom``: largest |E(t) − E(0)| per atom;
- ``intact``: every bond of the start (pairs within ``bond_scale`` × the sum of ASE's
  natural cutoffs) is shorter than ``break_scale`` × that sum at the end, no two atoms
  came closer than ``min_distance`` Å, and energies stayed finite; ``broken_bonds`` counts.

A trajectory whose energy becomes non-finite or whose forces exceed ``max_force`` eV/Å
stops early with ``status = "exploded"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from ase import Atoms, units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import natural_cutoffs, neighbor_list

__all__ = ["ProbeSettings", "bonds_intact", "probe_structure", "probe_summary", "probe_trials", "select_probe_trials"]

if TYPE_CHECKING:
    from farfield.analysis.loading import AnalysisData


@dataclass
class ProbeSettings:
    """Trajectory settings (see the module docstring); times in fs, temperature in K."""

    steps: int = 200
    timestep_fs: float = 0.5
    temperature_k: float = 300.0
    n_structures: int = 2
    seed: int = 0
    bond_scale: float = 1.1
    break_scale: float = 1.5
    min_distance: float = 0.5
    max_force: float = 1e3

    def __post_init__(self):
        for name in ("steps", "timestep_fs", "n_structures"):
            if getattr(self, name) <= 0:
                raise ValueError(f"md probe: {name} must be > 0, got {getattr(self, name)}")
        if self.temperature_k < 0:
            raise ValueError(f"md probe: temperature_k must be >= 0, got {self.temperature_k}")


def _bonds(atoms: Atoms, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, shifts, reference length)`` of the bonded pairs (i < j or periodic images)."""
    cutoffs = np.asarray(natural_cutoffs(atoms)) * scale
    i, j, shifts = neighbor_list("ijS", atoms, cutoffs)
    keep = i < j
    return i[keep], j[keep], shifts[keep], (cutoffs[i[keep]] + cutoffs[j[keep]]) / scale


def bonds_intact(start: Atoms, end: Atoms, settings: ProbeSettings) -> tuple[bool, int, float]:
    """``(intact, broken bonds, closest pair distance Å)`` of ``end`` against ``start``'s bonds."""
    i, j, shifts, length = _bonds(start, settings.bond_scale)
    positions, cell = end.get_positions(), end.cell.array
    stretched = np.linalg.norm(positions[j] + shifts @ cell - positions[i], axis=1)
    broken = int((stretched > settings.break_scale * length).sum())
    closest = neighbor_list("d", end, max(3.0, 2 * settings.min_distance))
    min_distance = float(closest.min()) if len(closest) else float("inf")
    return broken == 0 and min_distance >= settings.min_distance, broken, min_distance


def probe_structure(atoms: Atoms, calculator, settings: ProbeSettings) -> dict:
    """Run one NVE trajectory of ``atoms`` (copied) with ``calculator``; returns one result row."""
    start = atoms.copy()
    system = atoms.copy()
    system.calc = calculator
    MaxwellBoltzmannDistribution(system, temperature_K=settings.temperature_k,
                                 rng=np.random.default_rng(settings.seed))
    Stationary(system)
    dynamics = VelocityVerlet(system, timestep=settings.timestep_fs * units.fs)
    n = len(system)
    energies, status = [system.get_total_energy() / n], "ok"
    for _ in range(settings.steps):
        dynamics.run(1)
        energy = system.get_total_energy() / n
        forces = system.get_forces()
        if not np.isfinite(energy) or not np.isfinite(forces).all() or np.abs(forces).max() > settings.max_force:
            status = "exploded"
            break
        energies.append(energy)
    energies = np.asarray(energies)
    time_ps = np.arange(len(energies)) * settings.timestep_fs * 1e-3
    drift = float(np.polyfit(time_ps, energies, 1)[0]) * 1e3 if len(energies) > 2 else float("nan")
    intact, broken, closest = bonds_intact(start, system, settings) if status == "ok" else (False, -1, float("nan"))
    return {"structure_id": atoms.info.get("structure_id", ""), "n_atoms": n, "steps_done": len(energies) - 1,
            "time_ps": float(time_ps[-1]), "status": status, "drift_mev_per_atom_ps": drift,
            "max_deviation_mev_per_atom": 1e3 * float(np.abs(energies - energies[0]).max()),
            "final_temperature_k": float(system.get_temperature()) if status == "ok" else float("nan"),
            "intact": bool(intact), "broken_bonds": broken, "min_distance": closest}


def select_probe_trials(data: AnalysisData, spec: list[str] | str) -> list[str]:
    """Run ids to probe: ``"best"`` = lowest test force MAE per (model, split); else the given
    ids (full or a unique prefix) of trials in ``data``."""
    trials = data.trials
    if spec == "best":
        scored = trials.dropna(subset=["test/f_mae"])
        best = scored.loc[scored.groupby(["model", "split"])["test/f_mae"].idxmin()]
        return best["run_id"].tolist()
    chosen = []
    for wanted in spec:
        matches = [r for r in trials["run_id"] if r.startswith(wanted)]
        if len(matches) != 1:
            raise ValueError(f"md probe: run id {wanted!r} matches {len(matches)} trials of the report "
                             f"(known: {', '.join(r[:8] for r in trials['run_id'])})")
        chosen.append(matches[0])
    return chosen


def probe_trials(data: AnalysisData, run_ids: list[str], settings: ProbeSettings | None = None) -> pd.DataFrame:
    """One row per (trial, probed structure), with the trial's model and split."""
    from farfield.models.calculator import FarfieldCalculator

    settings = settings or ProbeSettings()
    rows = []
    for run_id in run_ids:
        if run_id not in data.checkpoints:
            raise ValueError(f"md probe: run {run_id} has no checkpoint/model.pt artifact")
        trial = data.trials.set_index("run_id").loc[run_id]
        tests = data.structures[data.structures["run_id"] == run_id]
        firsts = tests.sort_values(["n_atoms", "structure_id"]).drop_duplicates("parent_id")
        context = data.contexts[run_id]
        calculator = FarfieldCalculator.from_checkpoint(data.checkpoints[run_id])
        for atoms in context.frames(firsts["structure_id"].head(settings.n_structures).tolist()):
            row = probe_structure(atoms, calculator, settings)
            rows.append({"run_id": run_id, "model": trial["model"], "split": trial["split"],
                         "layers": trial["layers"], **row})
    return pd.DataFrame(rows)


def probe_summary(probe: pd.DataFrame) -> pd.DataFrame:
    """Per scheme (model, split): trajectories, fraction intact and exploded, median |drift|
    (meV/atom/ps) over the trajectories that ran to the end."""
    columns = ["model", "split", "n_trajectories", "fraction_intact", "fraction_exploded",
               "median_abs_drift_mev_per_atom_ps", "max_deviation_mev_per_atom"]
    if probe.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (model, split), group in probe.groupby(["model", "split"], sort=True):
        finished = group[group["status"] == "ok"]
        rows.append({"model": model, "split": split, "n_trajectories": len(group),
                     "fraction_intact": float(group["intact"].mean()),
                     "fraction_exploded": float((group["status"] == "exploded").mean()),
                     "median_abs_drift_mev_per_atom_ps": float(finished["drift_mev_per_atom_ps"].abs().median())
                     if len(finished) else float("nan"),
                     "max_deviation_mev_per_atom": float(group["max_deviation_mev_per_atom"].max())})
    return pd.DataFrame(rows, columns=columns)
