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


class HeadSummary:
    """Collects heads' per-structure outputs and summarises them as a :class:`HeadReport`.

    Shared by :func:`head_report` (farfield's heads) and external models with latent charges
    (mace-torch's MACELES, ``farfield.orchestrator.external``), so both report the same numbers.
    """

    def __init__(self) -> None:
        self.report = HeadReport()
        self._charges: dict[str, list[np.ndarray]] = {}
        self._shares: dict[str, list[float]] = {}

    def add(self, structure_id: str, numbers: np.ndarray, reference_charges: np.ndarray,
            head_energies: dict[str, float], short_energy: float, charges: dict[str, np.ndarray]) -> None:
        """One structure: ``numbers`` (n_atoms,), ``reference_charges`` (n_atoms,) e or NaN,
        ``head_energies`` {head: eV}, ``short_energy`` eV (the short-range interaction energy,
        without reference energies), ``charges`` {head: (n_atoms,) e}."""
        total = sum(head_energies.values())
        for name, energy in [*head_energies.items(), ("all", total)]:
            share = abs(energy) / max(abs(energy) + abs(short_energy), 1e-300)
            self._shares.setdefault(name, []).append(share)
        for name, q in charges.items():
            self._charges.setdefault(name, []).append(np.asarray(q, dtype=np.float64))
            table = pd.DataFrame({"atom": np.arange(len(q)), "number": numbers, "head": name, "charge": q,
                                  "reference_charge": reference_charges})
            previous = self.report.charges.get(structure_id)
            self.report.charges[structure_id] = table if previous is None else pd.concat([previous, table])

    def summary(self) -> HeadReport:
        """The report with its metrics (see :class:`HeadReport`)."""
        metrics = self.report.metrics
        for name, values in self._charges.items():
            q = np.concatenate(values)
            metrics[f"q_std_{name}"] = float(q.std())
            metrics[f"q_mean_abs_{name}"] = float(np.abs(q).mean())
        for name, values in self._shares.items():
            metrics["lr_energy_share" if name == "all" else f"lr_energy_share_{name}"] = float(np.mean(values))
        if self._charges:
            metrics["q_std"] = metrics[f"q_std_{next(iter(self._charges))}"]
        return self.report


@torch.no_grad()
def head_report(potential, graphs: Sequence[AtomicGraph], batch_size: int = 16) -> HeadReport:
    """Run ``potential`` (a ``Potential`` with heads) over ``graphs`` and summarise its heads."""
    heads = list(potential.heads)
    if not heads or not graphs:
        return HeadReport()
    summary = HeadSummary()
    parameter = next(potential.parameters())
    for start in range(0, len(graphs), batch_size):
        batch = collate(list(graphs[start : start + batch_size])).to(parameter.device, parameter.dtype)
        out = potential(batch, compute_forces=False)
        short = out["atomic_energies"] - potential.reference_energies(batch.numbers)
        short = short.new_zeros(batch.n_graphs).index_add(0, batch.batch, short).cpu().numpy()
        head_energies = {name: out[f"energy_{name}"].cpu().numpy() for name in heads}
        charges = {name: out[f"charges_{name}"].cpu().numpy() for name in heads if f"charges_{name}" in out}
        atom_batch = batch.batch.cpu().numpy()
        numbers, reference = batch.numbers.cpu().numpy(), batch.charges.cpu().numpy()
        for k, sid in enumerate(batch.structure_ids):
            mask = atom_batch == k
            summary.add(sid or f"structure-{start + k}", numbers[mask], reference[mask],
                        {name: float(energy[k]) for name, energy in head_energies.items()}, float(short[k]),
                        {name: q[mask] for name, q in charges.items()})
    return summary.summary()
