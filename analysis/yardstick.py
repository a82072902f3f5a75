"""The long-range yardstick: how much Coulomb interaction of the reference charges lies beyond
a model's cutoff, on each split's test structures (../shared/PAPER.md, last section).

For one structure the reference partial charges (e) are made neutral (the mean is
subtracted), smeared as Gaussians of width ``WIDTH`` (Å), and their full periodic Coulomb
energy and forces are computed with farfield's own Ewald sum (``models/electrostatics``);
the part *beyond the cutoff* is that minus the same kernel ``erf(r/(√2γ))/r`` summed over
the pairs closer than the cutoff (periodic images included). Forces of that remainder come
from autograd, so they are its exact gradient.

Read as errors of a model that is exact except for that remainder:

- ``yardstick_f_mae`` (meV/Å): the mean |component| of the beyond-cutoff forces — the force
  MAE of a model that gets everything right but omits them;
- ``yardstick_e_mae`` (meV/atom): the mean absolute residual of the beyond-cutoff energy
  per atom after a least-squares fit of one constant per element (per atom of that element,
  over the split's test structures) — the energy MAE of a model that replaces it by
  per-element reference energies, fitted as the reference-energy baseline's are
  (``fit_reference_energies``). (Its
  mean absolute deviation from one constant per atom, ``e_beyond_mad``, is listed beside it;
  on the bundled MOFs about a third of it is composition, which per-element energies absorb.)

A model whose test error is far above these numbers cannot show what long-range terms are
worth. Per-structure values are cached as parquet per (dataset hash, cutoff, width).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ase import Atoms
from farfield.analysis.disk_cache import write_if_possible
from farfield.data import records
from farfield.data.graphs import check_cutoff
from farfield.models.blocks.readout import fit_reference_energies
from farfield.models.electrostatics import COULOMB_CONSTANT, EwaldParameters, coulomb_energy, periodic_potential, tune
from farfield.models.electrostatics.gaussian import pair_widths, smeared_kernel
from farfield.models.electrostatics.realspace import all_pairs, pair_potential, periodic_pairs

__all__ = ["ACCURACY", "STRUCTURE_COLUMNS", "WIDTH", "beyond_cutoff", "per_element_residuals", "split_yardsticks",
           "structure_yardsticks", "with_beyond_energies", "yardstick_tables"]

#: Gaussian width (standard deviation, Å) of every reference charge.
WIDTH = 1.0
#: Relative accuracy of the Ewald sum (energies and forces).
ACCURACY = 1e-5
STRUCTURE_COLUMNS = ["structure_id", "n_atoms", "has_charges", "e_beyond_per_atom_mev", "f_beyond_mae_mev"]


def _parameters(cell: torch.Tensor, n_atoms: int, pair_width: float) -> EwaldParameters:
    """Ewald parameters for ``ACCURACY`` with the splitting no wider than ``pair_width`` γ (Å).

    ``tune`` balances costs for point charges; for Gaussians of width γ its real-space cutoff
    grows with max(η, γ). With η = γ and ``tune``'s own tail bounds the real-space part is
    as short as the Gaussians allow: the same values (to 1e-5 relative) about 15× faster on
    the bundled MOFs (20 structures: 0.33 → 0.02 s each; energies agree with a 1e-8 sum to 2e-4 meV/atom)."""
    tuned = tune(cell, n_atoms, ACCURACY, "ewald", max_width=pair_width)
    if tuned.splitting <= pair_width:
        return tuned
    real_bound = tuned.real_cutoff / (math.sqrt(2.0) * tuned.splitting)  # r_c / (√2 max(η, γ)) at the tail bound
    kspace_bound = tuned.kspace_cutoff * tuned.splitting  # η k_c at the tail bound
    return EwaldParameters(pair_width, math.sqrt(2.0) * pair_width * real_bound, kspace_bound / pair_width)


def beyond_cutoff(atoms: Atoms, cutoff: float, width: float = WIDTH) -> tuple[float, np.ndarray]:
    """``(energy eV, forces (n_atoms, 3) eV/Å)`` of the neutralised reference charges of
    ``atoms`` (``arrays["charges"]``, e) from beyond ``cutoff`` (Å), as Gaussians of ``width`` Å.

    Periodic in all three directions: Ewald sum; otherwise the direct sum (nothing periodic).
    """
    if records.CHARGES not in atoms.arrays:
        raise ValueError(f"structure {atoms.info.get(records.STRUCTURE_ID, '?')} has no reference charges "
                         f"(arrays[{records.CHARGES!r}])")
    cutoff = check_cutoff(cutoff)
    if width <= 0:
        raise ValueError(f"width must be > 0 Å, got {width}")
    positions = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
    charges = torch.tensor(np.asarray(atoms.arrays[records.CHARGES], dtype=np.float64))
    charges = charges - charges.mean()
    widths = torch.full((len(atoms),), float(width), dtype=torch.float64)
    periodic = bool(np.all(atoms.pbc))
    cell = torch.tensor(atoms.cell.array if periodic else np.zeros((3, 3)), dtype=torch.float64)
    if periodic:
        full = periodic_potential(positions, cell, charges, widths, _parameters(cell, len(atoms), math.sqrt(2.0) * width),
                                  "ewald")
        pairs = periodic_pairs(positions, cell, cutoff)
    else:
        pairs = all_pairs(len(atoms), positions.device, positions.dtype)
        full = None
    distances = pairs.distances(positions, cell)
    kernel = smeared_kernel(distances, pair_widths(widths[pairs.center], widths[pairs.neighbor]))
    near = COULOMB_CONSTANT * pair_potential(pairs, torch.where(distances < cutoff, kernel, 0.0), charges[:, None])
    if full is None:
        full = COULOMB_CONSTANT * pair_potential(pairs, kernel, charges[:, None])
    energy = coulomb_energy(charges, full - near)[0]
    (gradient,) = torch.autograd.grad(energy, positions)
    return float(energy.detach()), (-gradient).numpy()


def _structure_row(atoms: Atoms, cutoff: float, width: float) -> dict:
    facts = {"structure_id": atoms.info[records.STRUCTURE_ID], "n_atoms": len(atoms)}
    if records.CHARGES not in atoms.arrays:
        return {**facts, "has_charges": False, "e_beyond_per_atom_mev": np.nan, "f_beyond_mae_mev": np.nan}
    energy, forces = beyond_cutoff(atoms, cutoff, width)
    return {**facts, "has_charges": True, "e_beyond_per_atom_mev": 1e3 * energy / len(atoms),
            "f_beyond_mae_mev": 1e3 * float(np.abs(forces).mean())}


def structure_yardsticks(context, structure_ids: Iterable[str], cutoff: float, width: float = WIDTH,
                         cache_dir: str | Path | None = None) -> pd.DataFrame:
    """``STRUCTURE_COLUMNS`` per structure of ``context`` (an ``analysis.dataset_context.DatasetContext``):
    beyond-cutoff energy per atom (meV/atom) and force MAE (meV/Å); NaN without charges.
    With ``cache_dir``, rows are read from and added to ``yardstick-<hash>-rc<cutoff>-w<width>.parquet``."""
    wanted = list(dict.fromkeys(structure_ids))
    cache = None
    known = pd.DataFrame(columns=STRUCTURE_COLUMNS)
    if cache_dir is not None:
        cache = Path(cache_dir) / f"yardstick-{context.content_hash[:16]}-rc{cutoff:g}-w{width:g}.parquet"
        if cache.is_file():
            known = pd.read_parquet(cache)
    cached = set(known["structure_id"])
    missing = [sid for sid in wanted if sid not in cached]
    if missing:
        fresh = pd.DataFrame([_structure_row(atoms, cutoff, width) for atoms in context.frames(missing)],
                             columns=STRUCTURE_COLUMNS)
        known = fresh if known.empty else pd.concat([known, fresh], ignore_index=True)
        if cache is not None:
            write_if_possible(cache, lambda tmp: known.to_parquet(tmp, index=False))
    return known.set_index("structure_id").loc[wanted].reset_index()


def per_element_residuals(element_counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (n_structures,), per atom, minus their fit by one constant per element: the
    reference-energy fit (``fit_reference_energies``, per-atom least squares) of the totals.
    ``element_counts``: (n_structures, MAX_ATOMIC_NUMBER + 1), as ``DatasetContext.element_counts``."""
    counts = np.asarray(element_counts, dtype=np.float64)
    n_atoms = counts.sum(axis=1)
    constants = fit_reference_energies(counts, values * n_atoms)
    return values - counts @ constants / n_atoms


def _summarise(rows: pd.DataFrame, context) -> dict:
    charged = rows[rows["has_charges"].astype(bool)]
    if charged.empty:
        return {"n_structures": len(rows), "n_with_charges": 0, "yardstick_f_mae": np.nan, "yardstick_e_mae": np.nan}
    energy = charged["e_beyond_per_atom_mev"].to_numpy(dtype=np.float64)
    return {"n_structures": len(rows), "n_with_charges": len(charged),
            "yardstick_f_mae": float(np.average(charged["f_beyond_mae_mev"], weights=charged["n_atoms"])),
            "yardstick_e_mae": float(np.abs(per_element_residuals(context.element_counts(charged["structure_id"]), energy)).mean()),
            "e_beyond_mad": float(np.abs(energy - energy.mean()).mean()),
            "e_beyond_mean": float(energy.mean())}


def yardstick_tables(trials: pd.DataFrame, structures: pd.DataFrame, contexts: dict, width: float = WIDTH,
                     cache_dir: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(split_yardsticks table, per-structure rows)``: the per-structure rows (``STRUCTURE_COLUMNS``
    plus the ``cutoff``, Å) of every split replica's test structures, computed once, and their
    summary per replica (see :func:`split_yardsticks`)."""
    columns = ["split", "split_hash", "cutoff", "n_structures", "n_with_charges", "yardstick_f_mae",
               "yardstick_e_mae", "e_beyond_mad", "e_beyond_mean"]
    rows, per_structure = [], []
    if not trials.empty and "cutoff" in trials:
        for (split, split_hash, cutoff), group in trials.groupby(["split", "split_hash", "cutoff"], sort=True):
            run_id = group["run_id"].iloc[0]
            if not math.isfinite(cutoff) or run_id not in contexts:
                continue
            ids = structures.loc[structures["run_id"] == run_id, "structure_id"].tolist()
            found = structure_yardsticks(contexts[run_id], ids, float(cutoff), width, cache_dir)
            rows.append({"split": split, "split_hash": split_hash, "cutoff": cutoff, **_summarise(found, contexts[run_id])})
            per_structure.append(found.assign(cutoff=cutoff))
    structures_table = (pd.concat(per_structure, ignore_index=True).drop_duplicates(["structure_id", "cutoff"])
                        if per_structure else pd.DataFrame(columns=[*STRUCTURE_COLUMNS, "cutoff"]))
    return pd.DataFrame(rows, columns=columns), structures_table


def split_yardsticks(trials: pd.DataFrame, structures: pd.DataFrame, contexts: dict, width: float = WIDTH,
                     cache_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per (split, split_hash, cutoff) of the trials: the yardstick of that split's test
    structures (``yardstick_f_mae`` meV/Å, ``yardstick_e_mae`` meV/atom, ``e_beyond_mad`` and
    ``e_beyond_mean`` meV/atom). ``contexts``: run id → dataset context (``AnalysisData.contexts``); the cutoff
    is each trial's ``cutoff`` column (param ``model.cutoff``, Å)."""
    return yardstick_tables(trials, structures, contexts, width, cache_dir)[0]


def with_beyond_energies(trials: pd.DataFrame, structures: pd.DataFrame, per_structure: pd.DataFrame) -> pd.DataFrame:
    """``structures`` plus ``e_beyond_per_atom_mev``: each test structure's beyond-cutoff Coulomb
    energy per atom (meV/atom) at its trial's cutoff, from ``per_structure`` (the second table of
    :func:`yardstick_tables`); NaN where unknown (no charges, no context)."""
    table = structures.drop(columns=["e_beyond_per_atom_mev"], errors="ignore")
    if per_structure.empty or "cutoff" not in trials:
        return table.assign(e_beyond_per_atom_mev=np.nan)
    cutoffs = trials[["run_id", "cutoff"]].drop_duplicates("run_id")
    beyond = per_structure[["structure_id", "cutoff", "e_beyond_per_atom_mev"]]
    return (table.merge(cutoffs, on="run_id", how="left")
            .merge(beyond, on=["structure_id", "cutoff"], how="left").drop(columns=["cutoff"]))
