"""Per-atom charges of a trained potential on its test structures.

For a farfield trial the analysis reloads the logged checkpoint (``state_dict`` + config,
``weights_only``) and evaluates the test structures once. Every head output named
``charges_<head>`` (CELLI's equilibrated charges, LES's latent charges) becomes rows of the
charge table, next to the reference charges of the dataset (NaN where a structure has none).
An external model (mace-torch's MACELES) has no farfield checkpoint: its logged
``charges/<structure_id>.parquet`` tables are read instead (:func:`charges_from_tables`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ase import Atoms
from farfield.data import records
from farfield.models.graph import AtomicGraph, collate
from farfield.models.potential import Potential
from farfield.models.training import load_checkpoint

__all__ = ["CHARGE_COLUMNS", "charges_from_checkpoint", "charges_from_tables", "predict_charges"]

CHARGE_COLUMNS = ("structure_id", "atom", "element", "head", "q_pred", "q_ref")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def predict_charges(potential: Potential, frames: Sequence[Atoms], batch_size: int = 8) -> pd.DataFrame:
    """Rows ``structure_id, atom, element, head, q_pred (e), q_ref (e)`` for every head
    of ``potential`` that outputs charges; empty (with these columns) if none does."""
    dtype = next(potential.parameters()).dtype
    device = next(potential.parameters()).device
    cutoff = potential.cutoff
    parts = []
    potential.eval()
    for start in range(0, len(frames), batch_size):
        chunk = list(frames[start : start + batch_size])
        batch = collate([AtomicGraph.from_atoms(a, cutoff, dtype=dtype) for a in chunk]).to(device)
        with torch.no_grad():
            out = potential(batch, compute_forces=False)
        keys = [k for k in out if k.startswith("charges_")]
        if not keys:
            return pd.DataFrame(columns=list(CHARGE_COLUMNS))
        symbols = np.concatenate([np.asarray(a.get_chemical_symbols()) for a in chunk])
        sids = np.concatenate([[a.info[records.STRUCTURE_ID]] * len(a) for a in chunk])
        atom = np.concatenate([np.arange(len(a)) for a in chunk])
        ref = np.concatenate([np.asarray(a.arrays[records.CHARGES], dtype=np.float64) if records.CHARGES in a.arrays
                              else np.full(len(a), np.nan) for a in chunk])
        for key in keys:
            parts.append(pd.DataFrame({"structure_id": sids, "atom": atom, "element": symbols,
                                       "head": key.removeprefix("charges_"),
                                       "q_pred": out[key].detach().double().cpu().numpy(), "q_ref": ref}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(CHARGE_COLUMNS))


def charges_from_checkpoint(checkpoint: str | Path, frames: Sequence[Atoms]) -> pd.DataFrame:
    """:func:`predict_charges` of the potential stored in ``checkpoint`` (on CPU)."""
    potential, _ = load_checkpoint(checkpoint, device="cpu")
    dtype = _DTYPES.get(potential.model_config.get("dtype", "float32"), torch.float32)
    return predict_charges(potential.to(dtype), frames)


def charges_from_tables(folder: str | Path, structure_ids: Sequence[str]) -> pd.DataFrame:
    """The charge table of a trial's logged ``charges/`` folder (one parquet per test structure,
    columns ``atom, number, head, charge, reference_charge``) for ``structure_ids``; structures
    without a table are left out."""
    from ase.data import chemical_symbols

    from farfield.models.heads.report import charge_table_name

    parts = []
    for structure_id in structure_ids:
        path = Path(folder) / f"{charge_table_name(structure_id)}.parquet"
        if not path.is_file():
            continue
        table = pd.read_parquet(path)
        parts.append(pd.DataFrame({"structure_id": structure_id, "atom": table["atom"].to_numpy(),
                                   "element": [chemical_symbols[int(z)] for z in table["number"]],
                                   "head": table["head"].to_numpy(), "q_pred": table["charge"].to_numpy(),
                                   "q_ref": table["reference_charge"].to_numpy()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(CHARGE_COLUMNS))
