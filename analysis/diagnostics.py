"""All diagnostics of an experiment, computed once from the tidy tables of ``loading``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
from farfield.analysis.buckets import BUCKETS, bucket_table
from farfield.analysis.charges import charge_by_element, charge_summary
from farfield.analysis.depth import depth_slopes, depth_table
from farfield.analysis.distance import distance_curves, distance_slopes
from farfield.analysis.pairing import help_by_bucket, paired_differences, paired_summary
from farfield.analysis.summary import split_gap, summary_table, with_skill

__all__ = ["Diagnostics", "compute_diagnostics"]

if TYPE_CHECKING:
    from farfield.analysis.loading import AnalysisData


@dataclass
class Diagnostics:
    """Every table of the report (see each module for columns and units)."""

    trials: pd.DataFrame
    structures: pd.DataFrame
    charges: pd.DataFrame
    summary: pd.DataFrame
    gap: pd.DataFrame
    distance_curves: pd.DataFrame
    distance_slopes: pd.DataFrame
    buckets: dict[str, pd.DataFrame]
    charge_summary: pd.DataFrame
    charge_elements: pd.DataFrame
    depth: pd.DataFrame
    depth_slopes: pd.DataFrame
    pair_differences: pd.DataFrame
    pair_summary: pd.DataFrame
    help_by_cluster: pd.DataFrame
    #: set by ``report.build_report``, which has the yardstick it correlates with
    energy_offsets: pd.DataFrame = field(default_factory=pd.DataFrame)
    md_probe: pd.DataFrame = field(default_factory=pd.DataFrame)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Named tables written as CSV/JSON (the per-atom charge table is left out: it can be large)."""
        named = {"trials": self.trials, "summary": self.summary, "split_gap": self.gap,
                 "structures": self.structures, "distance_curves": self.distance_curves,
                 "distance_slopes": self.distance_slopes, "charge_summary": self.charge_summary,
                 "charge_by_element": self.charge_elements, "depth": self.depth, "depth_slopes": self.depth_slopes,
                 "long_range_paired": self.pair_summary, "long_range_by_cluster": self.help_by_cluster,
                 "energy_offsets": self.energy_offsets}
        named.update({f"by_{kind}": table for kind, table in self.buckets.items()})
        if not self.md_probe.empty:
            from farfield.analysis.md_probe import probe_summary

            named["md_probe_summary"] = probe_summary(self.md_probe)
            named["md_probe"] = self.md_probe
        return named


def compute_diagnostics(data: AnalysisData, n_distance_bins: int = 5) -> Diagnostics:
    """Compute every diagnostic table from ``data``."""
    structures = data.structures
    differences = paired_differences(structures)
    return Diagnostics(
        trials=with_skill(data.trials), structures=structures, charges=data.charges,
        summary=summary_table(data.trials), gap=split_gap(data.trials),
        distance_curves=pd.concat([distance_curves(structures, m, n_distance_bins)
                                   for m in ("f_mae_mev", "e_abs_error_mev")], ignore_index=True),
        distance_slopes=distance_slopes(structures),
        buckets={kind: bucket_table(structures, kind) for kind in BUCKETS},
        charge_summary=charge_summary(data.charges), charge_elements=charge_by_element(data.charges),
        depth=depth_table(data.trials), depth_slopes=depth_slopes(data.trials),
        pair_differences=differences, pair_summary=paired_summary(differences),
        help_by_cluster=help_by_bucket(differences, "cluster"),
    )
