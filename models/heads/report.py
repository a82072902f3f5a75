"""What the heads predict, per structure: learned charges and the long-range energy share.

Used after training so a trial can log, for example, LES charges collapsing to zero
(``q_std`` ≈ 0) or a head whose energy is a negligible part of the interaction
energy (``lr_energy_share`` ≈ 0). Pure torch/pandas; the orchestrator logs the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from farfield.models.graph import AtomicGraph, collate


@dataclass
class HeadReport:
    """``charges``: one table per structure id (columns ``atom``, ``number``, ``head``,
    ``charge`` e, ``reference_charge`` e or NaN); ``metrics``: ``q_std_<head>`` (e, spread
    of the head's charges over all atoms), ``q_mean_abs_<head>`` (e), ``lr_energy_share_<head>``
    and ``lr_energy_share`` (all heads; mean over structures of ``|E_heads| / (|E_heads| +
    |E_short|)``, with ``E_short`` the backbone readout without reference energies)."""

    charges: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def head_report(potential, graphs: Sequence[AtomicGraph], batch_size: int = 16) -> HeadReport:
    """Run ``potential`` (a ``Potential`` with heads) over ``graphs`` and summarise its heads."""
    report = HeadReport()
    heads = list(potential.heads)
    if not heads or not graphs:
        return report
    parameter = next(potential.parameters())
    charges: dict[str, list[np.ndarray]] = {}
    shares: dict[str, list[float]] = {name: [] for name in [*heads, "all"]}
    for start in range(0, len(graphs), batch_size):
        batch = collate(list(graphs[start : start + batch_size])).to(parameter.device, parameter.dtype)
        out = potential(batch, compute_forces=False)
        short = out["atomic_energies"] - potential.reference_energies(batch.numbers)
        short = short.new_zeros(batch.n_graphs).index_add(0, batch.batch, short).abs().cpu().numpy()
        head_energies = {name: out[f"energy_{name}"].cpu().numpy() for name in heads}
        total = sum(head_energies.values())
        for name, energy in [*head_energies.items(), ("all", total)]:
            shares[name].extend((np.abs(energy) / np.maximum(np.abs(energy) + short, 1e-300)).tolist())
        atom_batch = batch.batch.cpu().numpy()
        for name in heads:
            if f"charges_{name}" not in out:
                continue
            q = out[f"charges_{name}"].cpu().numpy()
            charges.setdefault(name, []).append(q)
            for k, sid in enumerate(batch.structure_ids):
                mask = atom_batch == k
                table = pd.DataFrame({
                    "atom": np.arange(int(mask.sum())), "number": batch.numbers.cpu().numpy()[mask], "head": name,
                    "charge": q[mask], "reference_charge": batch.charges.cpu().numpy()[mask],
                })
                key = sid or f"structure-{start + k}"
                report.charges[key] = pd.concat([report.charges[key], table]) if key in report.charges else table
    for name, values in charges.items():
        q = np.concatenate(values)
        report.metrics[f"q_std_{name}"] = float(q.std())
        report.metrics[f"q_mean_abs_{name}"] = float(np.abs(q).mean())
    for name, values in shares.items():
        report.metrics["lr_energy_share" if name == "all" else f"lr_energy_share_{name}"] = float(np.mean(values))
    if charges:
        report.metrics["q_std"] = report.metrics[f"q_std_{next(iter(charges))}"]
    return report
