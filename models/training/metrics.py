"""Error metrics in the reported units: meV/atom, meV/Å, milli-e.

Names follow DESIGN.md: ``e_mae``, ``e_rmse`` (energy per atom, meV/atom),
``f_mae``, ``f_rmse`` (force components, meV/Å), ``q_mae`` (charges, me).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from farfield.models.graph import AtomicGraph

METRIC_NAMES = ("e_mae", "e_rmse", "f_mae", "f_rmse", "q_mae")


class ErrorAccumulator:
    """Collects per-structure errors over batches; ``metrics()`` and ``table()`` summarise."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._force_errors: list[np.ndarray] = []
        self._charge_errors: list[np.ndarray] = []

    def add(self, prediction: dict[str, torch.Tensor], batch: AtomicGraph) -> None:
        energy = prediction["energy"].detach().double().cpu().numpy()
        ref = batch.energy.double().cpu().numpy()
        n_atoms = batch.n_atoms.cpu().numpy()
        atom_batch = batch.batch.cpu().numpy()
        forces = prediction.get("forces")
        ferr = None if forces is None else (forces.detach().double().cpu() - batch.forces.double().cpu()).numpy()
        charges = prediction.get("charges")
        has_q = batch.has_charges.cpu().numpy()
        qerr = None if charges is None else (charges.detach().double().cpu() - batch.charges.double().cpu()).numpy()
        for k, sid in enumerate(batch.structure_ids):
            atoms = atom_batch == k
            row = {
                "structure_id": sid,
                "n_atoms": int(n_atoms[k]),
                "energy_ref": float(ref[k]),
                "energy_pred": float(energy[k]),
                "e_error_per_atom_mev": 1e3 * float(energy[k] - ref[k]) / n_atoms[k],
            }
            if ferr is not None:
                f = ferr[atoms]
                self._force_errors.append(f.reshape(-1))
                row["f_mae_mev"] = 1e3 * float(np.abs(f).mean())
                row["f_rmse_mev"] = 1e3 * float(np.sqrt((f**2).mean()))
            if qerr is not None and has_q[k]:
                q = qerr[atoms]
                self._charge_errors.append(q)
                row["q_mae_me"] = 1e3 * float(np.abs(q).mean())
            self.rows.append(row)

    def metrics(self) -> dict[str, float]:
        """``e_mae``, ``e_rmse`` (meV/atom), ``f_mae``, ``f_rmse`` (meV/Å), ``q_mae`` (me; NaN if none)."""
        if not self.rows:
            return {name: math.nan for name in METRIC_NAMES}
        e = np.array([r["e_error_per_atom_mev"] for r in self.rows])
        f = np.concatenate(self._force_errors) if self._force_errors else np.array([np.nan])
        q = np.concatenate(self._charge_errors) if self._charge_errors else np.array([np.nan])
        return {
            "e_mae": float(np.abs(e).mean()),
            "e_rmse": float(np.sqrt((e**2).mean())),
            "f_mae": 1e3 * float(np.abs(f).mean()),
            "f_rmse": 1e3 * float(np.sqrt((f**2).mean())),
            "q_mae": 1e3 * float(np.abs(q).mean()),
        }

    def table(self) -> pd.DataFrame:
        """One row per structure with reference, prediction and per-structure errors."""
        return pd.DataFrame(self.rows)


def baseline_maes(graphs, reference_energies: np.ndarray) -> dict[str, float]:
    """MAEs of the dummy baseline on ``graphs`` (e.g. a test side): ``e_mae`` (meV/atom) of the
    per-element ``reference_energies`` (eV, indexed by atomic number, fitted on the training
    side) and ``f_mae`` (meV/Å) of zero forces (non-finite force components skipped)."""
    from farfield.models.training.graphs import element_count_matrix

    counts = element_count_matrix(graphs)
    energies = np.array([float(g.energy[0]) for g in graphs])
    e_mae = 1e3 * float(np.abs((counts @ reference_energies - energies) / counts.sum(axis=1)).mean())
    forces = np.concatenate([g.forces.double().numpy().reshape(-1) for g in graphs])
    forces = forces[np.isfinite(forces)]
    f_mae = 1e3 * float(np.abs(forces).mean()) if len(forces) else math.nan
    return {"e_mae": e_mae, "f_mae": f_mae}

